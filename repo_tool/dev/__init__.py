"""repo_tool.dev."""
