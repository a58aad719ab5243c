"""The security advisories of a verified tree: the newest revision of each ID, read and checked.

Each revision is a target of its manufacturer's role (or bin) that the walk has already verified
(signatures, delegation, snapshot); this reads the newest revision's bytes against the length and
hash the role signed and parses them with the contract's own reader (``Advisory.from_bytes``, which
recomputes the CVSS score and severity). A document that does not parse, or that names another ID
or revision than its path, is a problem of the tree: the gateway should never have admitted it, so
``cfl-repo verify`` reports it and the website (built from verified data only) does not show it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from metadata_templates.advisory import Advisory, AdvisoryError, latest_revisions

# (target path, length, sha256) -> the bytes, or None after reporting a mismatch.
BlobReader = Callable[[str, int, str], bytes | None]


def verified_advisories(
    refs: Iterable[tuple[str, int, str]], read: BlobReader, fail: Callable[[str], None]
) -> tuple[Advisory, ...]:
    """The newest revision of every advisory among ``refs`` (advisory targets of verified roles),
    by ID; each problem is passed to ``fail`` and its advisory left out."""
    signed = {path: (length, sha) for path, length, sha in refs}
    latest = latest_revisions(list(signed))
    found: list[Advisory] = []
    for advisory_id in sorted(latest):
        path = latest[advisory_id][1]
        length, sha = signed[path]
        data = read(path, length, sha)
        if data is None:
            continue  # `read` reported the mismatch
        try:
            advisory = Advisory.from_bytes(data, path)
        except AdvisoryError as e:
            fail(str(e))
            continue
        if advisory.target_path != path:
            fail(
                f"{path}: found {advisory.id} revision {advisory.revision} inside, expected "
                "the ID and revision of its path"
            )
            continue
        found.append(advisory)
    return tuple(found)
