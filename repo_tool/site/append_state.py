"""What the append path remembers between builds (``.cfl-site-state.json``): the counts, the newest
image listed and digests of everything a new image cannot change. A state file that is missing,
damaged or written for other inputs is ignored, and the next build renders everything.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from repo_tool.site import advisories as site_advisories
from repo_tool.site import outcomes as site_outcomes
from repo_tool.site.files import (
    _SEARCH_DIRTY,
)
from repo_tool.site.pages import (
    _Builder,
)
from repo_tool.site.render import (
    FEED_LIMIT,
    _feed_entries,
    _page_name,
    _safe_name,
)
from repo_tool.verify.published import PublishedImage, PublishedLibrary

STATE_NAME = ".cfl-site-state.json"


DIRTY_NAME = ".cfl-site-dirty"


_STATE_MAGIC = "cfl-site-state 1"


def _digest(items: Iterable[object]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def _withdrawals_digest(library: PublishedLibrary) -> str:
    return _digest(sorted((w.target, w.sha256, w.withdrawn, w.reason) for w in library.withdrawals))


def _attached_digest(images: Iterable[PublishedImage]) -> str:
    return _digest(
        sorted(
            (i.target_path, i.sha256, i.withdrawal.withdrawn, i.withdrawal.reason)
            for i in images
            if i.withdrawal is not None
        )
    )


def _order_key(image: PublishedImage) -> tuple[str, str]:
    return (image.cfl.published, image.target_path)


def _is_newer(image: PublishedImage, newest: Sequence[str] | None) -> bool:
    """Whether ``image`` lists before ``newest`` (published, target): later, or as late with a
    smaller target path (``repo_tool.site.render._newest_first``)."""
    if newest is None:
        return True
    published, target = newest
    return image.cfl.published > published or (
        image.cfl.published == published and image.target_path < target
    )


def read_state(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The previous build's state, or None when missing, damaged, from another version, or left by
    a build that did not finish (``DIRTY_NAME``)."""

    # A marker of an unfinished build (this path's or the keyed build's word shards).
    if (out_dir / DIRTY_NAME).exists() or (out_dir / _SEARCH_DIRTY).exists():
        return None
    try:
        state = json.loads((out_dir / STATE_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("magic") != _STATE_MAGIC:
        return None
    if state.get("fingerprint") != fingerprint:
        return None
    return state if _well_formed(state) else None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_counts(value: object) -> bool:
    return isinstance(value, dict) and all(_is_count(n) for n in value.values())


def _well_formed(state: Mapping[str, Any]) -> bool:
    """Whether every field has the JSON shape ``state_from_builder`` writes: a damaged state must
    step aside for the full build, not crash every later build (and so every publish)."""
    newest = state.get("newest")
    names = state.get("names")
    manufacturers = state.get("manufacturers")
    recent = state.get("feed_recent")
    withdrawn = state.get("feed_withdrawn")
    return (
        all(
            isinstance(state.get(k), str)
            for k in ("generated", "withdrawals", "attached", "advisories", "outcomes")
        )
        and _is_count(state.get("count"))
        and (newest is None or (_is_str_list(newest) and len(newest) == 2))
        and isinstance(names, dict)
        and all(isinstance(n, str) for n in names.values())
        and _is_counts(state.get("roles"))
        and _is_counts(state.get("listings"))
        and isinstance(manufacturers, list)
        and all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in manufacturers)
        and isinstance(recent, list)
        and all(r is None or isinstance(r, dict) for r in recent)
        and isinstance(withdrawn, list)
        and all(isinstance(w, dict) for w in withdrawn)
        and _is_str_list(state.get("shards"))
    )


def state_from_builder(builder: _Builder, fingerprint: str, shards: Iterable[str]) -> bytes:
    """The state a full build leaves for the next append (one pass over the library)."""

    ordered = builder.ordered
    library = builder.library
    by_manufacturer: dict[str, list[int]] = {}
    for position, image in enumerate(ordered):
        by_manufacturer.setdefault(image.cfl.manufacturer_id, []).append(position)
    manufacturers = []
    listings: dict[str, int] = {"index": len(ordered)}
    for mfr_id in sorted(set(by_manufacturer) | set(library.manufacturers)):
        positions = by_manufacturer.get(mfr_id, [])
        name = library.manufacturers.get(mfr_id) or (
            builder.names[positions[0]] if positions else ""
        )
        stem = f"manufacturer-{_safe_name(mfr_id)}"
        listings[stem] = len(positions)
        manufacturers.append(
            {
                "id": mfr_id,
                "name": name,
                "href": _page_name(stem, 1),
                "images": len(positions),
                "current": sum(1 for i in positions if builder.withdrawal[i] is None),
                "latest": ordered[positions[0]].cfl.published[:10] if positions else None,
            }
        )
    listings["security"] = sum(1 for image in ordered if _is_security(image))
    recent: list[dict[str, Any] | None] = []
    for position in range(min(FEED_LIMIT, len(ordered))):
        recent.append(
            None
            if builder.withdrawal[position] is not None
            else _feed_entries([builder.view(position)])[0]
        )
    withdrawn_views = [builder.view(p) for p, w in enumerate(builder.withdrawal) if w is not None]
    state = {
        "magic": _STATE_MAGIC,
        "fingerprint": fingerprint,
        "generated": builder.stamp,
        "count": len(ordered),
        "newest": list(_order_key(ordered[0])) if ordered else None,
        "names": dict(library.manufacturers),
        "withdrawals": _withdrawals_digest(library),
        "attached": _attached_digest(ordered),
        "roles": dict(Counter(image.role for image in ordered)),
        "listings": listings,
        "manufacturers": manufacturers,
        "feed_recent": recent,
        # The withdrawn images' entries that can make the feed: a withdrawal adds two.
        "feed_withdrawn": _feed_entries(withdrawn_views),
        "shards": sorted(shards),
        # What the advisory files show; an append runs only while it holds.
        "advisories": site_advisories.digest(library),
        "outcomes": site_outcomes.digest(library),  # likewise the delivery outcomes (issue 24)
    }
    return _state_bytes(state)


def _state_bytes(state: Mapping[str, Any]) -> bytes:
    return (json.dumps(state, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _is_security(image: PublishedImage) -> bool:
    return image.cfl.reason == "security" or bool(image.cfl.advisories)
