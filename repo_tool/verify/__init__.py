"""repo_tool.verify."""
