"""The website step's CPL without reading it, when the published CPL file is stamped unchanged.

The site shows none of the CPL's entries, only where it came from and when it was imported, so
``cpl_without_entries`` already parses none of them; but it still read and hashed the whole
file on every publish: 43 MB at 100,000 entries, the largest single cost of a flat publish
(issue 26), although a CPL import is rare and an ingest does not change it. This loader treats
the CPL file as the flat walk treats a role file (repo_tool/verify/stamps.py): read, hashed and
accepted once, it is stamped, and while the stamp holds (same pin, same device, inode, size,
modification and change time, compared on the open file) only its last bytes are read, for the
envelope. A file whose stamp does not hold, or whose tail does not reach the envelope, is read,
hashed and checked whole, exactly as without stamps.
"""

from __future__ import annotations

from collections.abc import Callable

from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument
from repo_tool.intake.cpl_cache import cpl_of_tail, select_entries
from repo_tool.verify.stamps import RoleStamps

__all__ = ["TAIL_OCTETS", "stamped_cpl_loader"]

# The envelope (source hash, import time, schema version) is about 150 bytes.
TAIL_OCTETS = 4096


def stamped_cpl_loader(
    stamps: RoleStamps,
) -> Callable[[str, Callable[[], bytes | None]], CplDocument | None]:
    """A ``repo_tool.verify.walk.CplLoader`` for the tree ``stamps`` belongs to."""

    def load(sha256: str, fetch: Callable[[], bytes | None]) -> CplDocument | None:
        # Where the walk's blob check reads it (repo_tool/verify/walk.py, ``_check_blob``).
        relative = f"targets/{naming.blob_name(naming.CPL_TARGET_PATH, sha256)}"
        tail = stamps.tail_if_unchanged(relative, sha256, TAIL_OCTETS)
        known = cpl_of_tail(tail) if tail is not None else None
        if known is not None:
            return known
        before = stamps.stat(relative)
        data = fetch()  # read and hash-checked against the signed length and SHA-256
        if data is None:
            return None  # missing or not the signed bytes: already reported
        document = select_entries(data, ())
        if document is None:
            return CplDocument.from_bytes(data)  # another layout: parsed (and reported) whole
        stamps.stamp(relative, sha256, before)
        return document

    return load
