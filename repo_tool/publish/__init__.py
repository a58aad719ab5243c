"""repo_tool.publish."""
