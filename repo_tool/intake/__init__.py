"""repo_tool.intake."""
