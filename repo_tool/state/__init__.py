"""The provider's state layer: what is current (the head), how a change becomes current (one commit),
and the event log that records every commit.

Operations (``repo_tool.ops``) build new immutable files and then commit a new head through
``repo_tool.state.repository.Repository.commit``; nothing here knows what an operation means.
"""
