"""repo_tool.monitor: the library watched like a service (issue 25).

`readings.py` reads what an operator alerts on from a repository, its inbox folders and its published
tree, at an injected ``now``; `exposition.py` turns those readings into the Prometheus text format
(prometheus_client) and writes a node exporter textfile atomically. Nothing here changes the
repository: `cfl-repo status --prometheus` may run every minute beside ingest and publish.
"""
