"""Backup and restore of a repository working directory (issue 25).

``holdings.py`` says which files of R a backup holds and which it leaves out (private keys above
all), and which of them are immutable; ``manifest.py`` is the dated manifest that lists every file
with its SHA-256. Both are pure. ``targets.py`` (a folder) and ``s3_target.py`` (object storage)
are the I/O edge where objects and manifests are stored; the operations are
``repo_tool/ops/backup.py`` and ``repo_tool/ops/restore.py``.
"""
