"""repo_tool.notes."""
