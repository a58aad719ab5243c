"""repo_tool.signing."""
