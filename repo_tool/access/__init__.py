"""repo_tool.access."""
