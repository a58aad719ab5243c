"""repo_tool.tlog."""
