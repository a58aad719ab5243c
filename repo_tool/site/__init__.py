"""repo_tool.site."""
