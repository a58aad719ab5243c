"""repo_tool.gateway."""
