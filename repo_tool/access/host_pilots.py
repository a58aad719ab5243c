"""The host's embargo (issue 22): an image still in its pilot goes only to its pilot suppliers.

`cfl-repo host nginx` asks the repository which images are embargoed at the time it runs
(``repo_tool.state.pilots.embargoed``: the same rule as every client, metadata_templates/releases.py)
and adds the nginx rules rendered here after the registry's own: a request the registry allows
is refused with 403 "this image is in a pilot and not yet released" unless the certificate
belongs to one of the pilot's suppliers. The configuration is static, so it is regenerated (and
nginx reloaded) after an ingest that accepts a pilot (before publishing it), after `release` and
`hold`, and after a `refresh` that released one; until then the host refuses on the safe side.

Rendering is pure: values in, text out; every value is generated (hex, Entity IDs, fixed paths).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from metadata_templates import naming

REFUSAL = "this image is in a pilot and not yet released"
# The nginx variable (without its "$") that holds the decision once the embargo is applied.
PILOT_REFUSAL_VARIABLE = "cfl_pilot_refusal"
_SAFE_BLOB = re.compile(r"[0-9A-F]{4}/[0-9a-f]{64}\.[A-Za-z0-9._-]+")
_ENTITY = re.compile(r"[0-9A-F]{16}")
_VARIABLE = re.compile(r"[a-z_]+")


@dataclass(frozen=True)
class Embargo:
    """One image in its pilot: the stored names of its files and who may fetch them.

    Attributes:
        target: the image target path (for the comment).
        blobs: ``<MFR>/<sha256>.<name>`` under ``targets/`` for the image and its release notes.
        suppliers: the pilot suppliers' Entity IDs.
        release_at: the release date (for the comment).
    """

    target: str
    blobs: tuple[str, ...]
    suppliers: tuple[str, ...]
    release_at: str


def embargo_of(
    target: str,
    sha256: str,
    suppliers: Sequence[str],
    release_at: str,
    notes: tuple[str, str] | None,
) -> Embargo:
    """The embargo of image ``target`` (and of its notes target, ``(path, sha256)``)."""
    blobs = [naming.blob_name(target, sha256)]
    if notes is not None:
        blobs.append(naming.blob_name(*notes))
    return Embargo(target, tuple(blobs), tuple(suppliers), release_at)


def render_pilot_rules(embargoes: Iterable[Embargo], *, after: str = "cfl_refusal") -> str:
    """The nginx ``map`` blocks of the embargo ("" for none), to go after the map of ``$<after>``.

    Args:
        embargoes: the images still in a pilot.
        after: the variable holding the decision the embargo narrows: the registry's
            (``cfl_refusal``), or the estate's (``cfl_estate_refusal``, repo_tool/access/host_estate.py)
            so that a pilot supplier still needs its entitlement.

    Raises:
        ValueError: a value that is not what the library generates (it would not be quoted safely).
    """
    items = sorted(embargoes, key=lambda e: e.target)
    if not items:
        return ""
    if not _VARIABLE.fullmatch(after):
        raise ValueError(f"decision variable: {after!r}")
    lines = [
        "    # Issue 22: images still in a pilot, only for their pilot suppliers (docs/hosting.md,",
        '    # "Pilots"). Regenerate after a pilot\'s ingest (before publish), release, hold, refresh.',
        "    map $uri $cfl_pilot_suppliers {",
        '        default "";',
    ]
    for embargo in items:
        if not all(_ENTITY.fullmatch(s) for s in embargo.suppliers) or not embargo.suppliers:
            raise ValueError(f"pilot suppliers of {embargo.target}: {embargo.suppliers!r}")
        allowed = ":" + ":".join(embargo.suppliers) + ":"
        lines.append(f"        # {embargo.target}: until {embargo.release_at}")
        for blob in embargo.blobs:
            if not _SAFE_BLOB.fullmatch(blob):
                raise ValueError(f"stored name of {embargo.target}: {blob!r}")
            pattern = "^/targets/" + re.escape(blob) + "$"
            lines.append(f'        "~{pattern}" "{allowed}";')
    lines += [
        "    }",
        "    # The earlier refusal first; then a pilot image only for a supplier its pilot names.",
        f'    map "${after}|$cfl_pilot_suppliers|$cfl_entity" ${PILOT_REFUSAL_VARIABLE} {{',
        '        "~^\\|\\|" "";',
        '        "~^\\|[^|]*:([0-9A-F]{16}):[^|]*\\|\\1$" "";',
        f'        "~^\\|" "{REFUSAL}";',
        f"        default ${after};",
        "    }",
    ]
    return "\n".join(lines)
