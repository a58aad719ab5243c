"""repo_tool.submit."""
