"""Signing ceremonies for the offline roles (root, targets).

A ceremony has three steps, each on its own machine if need be:

1. ``start`` (at the repository, no private key): the next version of the role, unsigned, plus the
   state it was built from, written as a *proposal* file (:mod:`repo_tool.ceremony.proposal`).
2. ``sign`` (at each key holder, no repository): the summary is recomputed from the proposal's own
   old and new metadata (:mod:`repo_tool.ceremony.diff`), shown, and one detached *signature file* is
   written (:mod:`repo_tool.ceremony.sign`). Holders sign in parallel; nothing is appended to a shared
   file.
3. ``finish`` (at the repository): the signatures are checked by python-tuf against the threshold of
   the delegating root (for root: the old and the new root), the proposal is checked to still apply to
   the current state, and the new version is committed (:mod:`repo_tool.ceremony.finish`).
"""
