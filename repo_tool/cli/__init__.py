"""repo_tool.cli."""
