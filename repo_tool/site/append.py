"""The website's append path: a rebuild after new images whose cost does not grow with the library.

A publish usually adds a few images, newer than every image already listed, and changes nothing
else. Then only a handful of files change: the new images' pages, the front page of each listing
that shows them (the index, their manufacturers, the security page), an archive page or two when a
listing fills one, ``manufacturers.html``, ``trust.html``, ``feed.xml``, ``index.json``, the newest
``data/`` part and rows shard, the word shards of the new words and ``search/meta.json``. This
module renders exactly those, from:

- the new images (found by the caller, or here from the library: see ``added_images``);
- a small persisted state, ``.cfl-site-state.json``, that the previous build left: listing sizes,
  the manufacturers table, the feed's candidates, the search shard names, the newest image, and
  digests of what an append must not change (manufacturer names, withdrawals, image roles);
- the rows already on the pages it rewrites: a front page's rows are read back from the front
  page itself, and accepted only when re-rendering the old page from them gives its bytes exactly.
  The newest ``data/`` part and rows shard are read back the same way.

Nothing here reads or writes anything per image of the library. Whenever any check fails (no
state, another version or template set, a withdrawal, a renamed manufacturer, an image older than
the newest, a damaged page) ``prepare_append`` answers None and ``repo_tool.site.build.build_site`` does
its keyed full build, which then writes a fresh state.

Crash safety: ``.cfl-site-dirty`` is written before the first file changes and removed after the
state is replaced; a build that finds it renders everything (a kill -9 anywhere, then a re-run,
gives the bytes a full build gives).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from metadata_templates.atomic import atomic_write_bytes
from repo_tool.site import advisories as site_advisories
from repo_tool.site import outcomes as site_outcomes
from repo_tool.site import search as site_search
from repo_tool.site.append_state import (
    DIRTY_NAME,
    STATE_NAME,
    _attached_digest,
    _is_newer,
    _is_security,
    _order_key,
    _state_bytes,
    _withdrawals_digest,
    read_state,
)
from repo_tool.site.files import (
    _INPUTS_NAME,
    MANIFEST_NAME,
    _read_or_none,
    _write_if_changed,
)
from repo_tool.site.pages import (
    _WORD_SHARD,
    IMAGES_PER_PART,
    _archive_name,
    _Builder,
    _chunks,
    index_json_bytes,
    listing_context,
)
from repo_tool.site.render import (
    _FEED_NAMESPACE,
    CONTENT_SECURITY_POLICY,
    FEED_LIMIT,
    PAGE_SIZE,
    SITE_SCHEMA_VERSION,
    _feed_entries,
    _image_json,
    _json_bytes,
    _newest_first,
    _page_name,
    _render,
    _safe_name,
    _search_row,
    _search_words,
    _static_files,
)
from repo_tool.verify.published import PublishedImage, PublishedLibrary

logger = logging.getLogger(__name__)

# How a listing row begins in listing.html's table body (row.html); escaping keeps it out of cells.
_ROW_START = '\n<tr data-target="'
_TBODY = ("<tbody>\n", "</tbody>")


@dataclass(frozen=True)
class AppendPlan:
    """Everything the append path needs, checked: the state and the new images, newest first."""

    state: dict[str, Any]
    added: tuple[PublishedImage, ...]


# --- digests of what an append must leave alone ---------------------------------------------------


# --- the state ------------------------------------------------------------------------------------


# --- deciding whether the append path applies -----------------------------------------------------


def added_images(
    library: PublishedLibrary, state: Mapping[str, Any]
) -> tuple[PublishedImage, ...] | None:
    """The images the library holds beyond the state's, newest first, when they are all newer
    than every image the state knew and nothing else changed; None otherwise.

    Images are never removed and a lodged target never changes, so every image newer than the
    previous newest is new; with ``k`` more images than before, the append path applies exactly
    when ``k`` images are newer. This is one pass over the library (no hashing, no rendering):
    what a caller that does not know what it added pays; ``build_site(added=...)`` skips it.
    """
    images = library.images
    k = len(images) - int(state["count"])
    if k < 0:
        return None
    newest = state["newest"]
    since = newest[0] if newest is not None else ""
    # One loop over the library for all three facts: at 100,000 images each pass costs tens of
    # milliseconds in memory traffic alone, more than the pages an append renders.
    roles: Counter[str] = Counter()
    attached: list[PublishedImage] = []
    recent: list[PublishedImage] = []
    for image in images:
        roles[image.role] += 1
        if image.withdrawal is not None:
            attached.append(image)
        if image.cfl.published >= since:
            recent.append(image)
    if _attached_digest(attached) != state["attached"]:
        return None
    found = tuple(i for i in _newest_first(recent) if _is_newer(i, newest))
    if len(found) != k:
        return None
    # Every image keeps its role (a migration to hash bins re-roles them all: a full build).
    if roles != Counter(state["roles"]) + Counter(i.role for i in found):
        return None
    return found


def _told(
    library: PublishedLibrary, state: Mapping[str, Any], added: Sequence[PublishedImage]
) -> tuple[PublishedImage, ...] | None:
    """The caller's new images, newest first, when they account for the library's growth since
    the state and are all newer than its newest image; None otherwise.

    Images are never removed and a lodged target never changes, so ``k`` told images that are
    all newer than every listed one, with the library ``k`` images larger, are exactly the new
    ones.
    """
    if len(library.images) != int(state["count"]) + len(added):
        return None
    found = tuple(_newest_first(added))
    if found and not _is_newer(found[-1], state["newest"]):
        return None
    return found


def prepare_append(
    library: PublishedLibrary,
    out_dir: Path,
    fingerprint: str,
    added: Sequence[PublishedImage] | None,
) -> AppendPlan | None:
    """The append plan, or None when the full build must run (see the module doc)."""
    state = read_state(out_dir, fingerprint)
    if state is None:
        return None
    try:
        for mfr, name in state["names"].items():
            if library.manufacturers.get(mfr) != name:
                return None  # renamed or unregistered: rows and titles change
        for mfr in library.manufacturers:
            stem = f"manufacturer-{_safe_name(mfr)}"
            if mfr not in state["names"] and state["listings"].get(stem, 0):
                return None  # newly registered with images already listed under another name
        if _withdrawals_digest(library) != state["withdrawals"]:
            return None
        found = _told(library, state, added) if added is not None else None
        if found is None:
            # No hint, or one that does not fit this folder (a publish without a site build in
            # between): find the new images in one pass rather than render everything.
            found = added_images(library, state)
            if found is None:
                return None
        if any(not _is_newer(i, state["newest"]) or i.withdrawal is not None for i in found):
            return None
        withdrawn = {(w.target, w.sha256) for w in library.withdrawals}
        if any((i.target_path, i.sha256) in withdrawn for i in found):
            return None
        # Advisories: a new or revised one changes image pages all over the library, and a new
        # image that an advisory shows (a fix, an affected entry's image) changes its page: both
        # rare, so the keyed full build takes them (repo_tool/site/advisories.py).
        if site_advisories.digest(library) != state["advisories"]:
            return None
        if library.advisories:
            index = site_advisories.AdvisoryIndex.of(library)
            if any(index.touches(image) for image in found):
                return None
        # Delivery outcomes: new figures or holds change pages and rows all over the library, and
        # a newly listed image with figures (a released pilot) needs its section: the keyed build.
        if site_outcomes.digest(library) != state["outcomes"]:
            return None
        reported = site_outcomes.mentioned(library)
        if any(image.target_path in reported for image in found):
            return None
        known = {m["id"]: m for m in state["manufacturers"]}
        for image in found:
            mfr = image.cfl.manufacturer_id
            # the listing's name as the full build picks it (a registered "" falls through once)
            name = library.manufacturers.get(mfr) or library.manufacturers.get(
                mfr, image.cfl.manufacturer_name
            )
            if mfr in known and known[mfr]["images"] and known[mfr]["name"] != name:
                return None  # the listing's title and rows change: a full build
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return AppendPlan(state, found)


# --- reading rows back from the pages they are on --------------------------------------------------


def _rows_of(page: bytes) -> list[Markup] | None:
    """The rows of a listing page's table body, as rendered; None when it has no table."""
    text = page.decode("utf-8")
    start = text.find(_TBODY[0])
    end = text.find(_TBODY[1], start + 1)
    if start < 0 or end < 0:
        return None
    body = "\n" + text[start + len(_TBODY[0]) : end]
    if not body.strip():
        return []
    if not body.startswith(_ROW_START):
        return None
    parts = body.split(_ROW_START)[1:]
    return [Markup(_ROW_START[1:] + part.rstrip("\n")) for part in parts]  # noqa: S704


class _Stale(Exception):
    """A file the append path reads back is not what the state says it is: do a full build."""


# --- the append build ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppendResult:
    changed: tuple[str, ...]
    new_files: tuple[str, ...]
    image_count: int
    index_pages: int


def run_append(
    plan: AppendPlan,
    library: PublishedLibrary,
    out_dir: Path,
    *,
    generated: datetime,
    client_init_url: str | None,
    fingerprint: str,
    pool: ThreadPoolExecutor,
) -> AppendResult | None:
    """Render and write what the new images change; None (before writing anything) when a page
    read back does not match the state.

    Raises:
        OSError: a file cannot be read or written (``build_site`` reports it).
        ValueError: a search shard is unreadable (``build_site`` reports it).
    """

    state = plan.state
    added = plan.added  # newest first
    k = len(added)
    n0 = int(state["count"])
    n = n0 + k
    builder = _Builder(replace(library, images=added), generated, client_init_url)
    stamp = builder.stamp
    size = PAGE_SIZE
    outputs: dict[str, bytes] = {}
    new_files: list[str] = []

    def common(stamp_: str, count: int) -> dict[str, Any]:
        return {
            "csp": CONTENT_SECURITY_POLICY,
            "generated": stamp_,
            "generated_date": stamp_[:10],
            "image_count": count,
            "advisories_nav": bool(library.advisories),
        }

    def listing_page(
        stem: str,
        title: str,
        kind: str,
        chunk: int,
        archives: int,
        count: int,
        rows: Sequence[Markup],
        stamp_: str,
        total: int,
    ) -> tuple[str, bytes]:
        first = 1 if chunk == 0 else (chunk - 1) * size + 1
        last = len(rows) if chunk == 0 else first + size - 1
        page, context = listing_context(
            stem, title, kind, kind == "index", chunk, archives, count, first, last
        )
        data = _render("listing.html", **common(stamp_, total), **context, rows=list(rows))
        return page, data

    def read_back(
        stem: str, title: str, kind: str, chunk: int, archives: int, count: int
    ) -> list[Markup]:
        page = _page_name(stem, 1) if chunk == 0 else _archive_name(stem, chunk)
        try:
            old = (out_dir / page).read_bytes()
        except FileNotFoundError as e:
            raise _Stale(page) from e
        rows = _rows_of(old)
        if rows is None:
            raise _Stale(page)
        _, again = listing_page(
            stem, title, kind, chunk, archives, count, rows, state["generated"], n0
        )
        if again != old:
            raise _Stale(page)
        return rows

    try:
        # --- listings: the index, the new images' manufacturers, the security page
        listings: list[tuple[str, str, str, list[int]]] = [
            ("index", "Firmware images", "index", list(range(k)))
        ]
        manufacturers = {m["id"]: dict(m) for m in state["manufacturers"]}
        for mfr_id in library.manufacturers:
            if mfr_id not in manufacturers:
                stem = f"manufacturer-{_safe_name(mfr_id)}"
                manufacturers[mfr_id] = {
                    "id": mfr_id,
                    "name": library.manufacturers[mfr_id],
                    "href": _page_name(stem, 1),
                    "images": 0,
                    "current": 0,
                    "latest": None,
                }
        by_mfr: dict[str, list[int]] = {}
        for position, image in enumerate(added):
            by_mfr.setdefault(image.cfl.manufacturer_id, []).append(position)
        for mfr_id in sorted(
            set(by_mfr) | (set(manufacturers) - {m["id"] for m in state["manufacturers"]})
        ):
            positions = by_mfr.get(mfr_id, [])
            stem = f"manufacturer-{_safe_name(mfr_id)}"
            entry = manufacturers.get(mfr_id)
            if entry is None:
                entry = {
                    "id": mfr_id,
                    "name": "",
                    "href": _page_name(stem, 1),
                    "images": 0,
                    "current": 0,
                    "latest": None,
                }
                manufacturers[mfr_id] = entry
            if positions:
                newest = added[positions[0]]
                entry["name"] = library.manufacturers.get(mfr_id) or builder.names[positions[0]]
                entry["images"] += len(positions)
                entry["current"] += len(positions)
                entry["latest"] = newest.cfl.published[:10]
            listings.append((stem, f"{entry['name']} ({mfr_id})", "manufacturer", positions))
        security = [p for p, image in enumerate(added) if _is_security(image)]
        if security:
            listings.append(("security", "Security fixes", "security", security))

        counts = dict(state["listings"])
        index_pages = 0
        for stem, title, kind, positions in listings:
            c0 = int(counts.get(stem, 0))
            c = c0 + len(positions)
            counts[stem] = c
            a0, a = _chunks(c0), _chunks(c)
            if kind == "index":
                index_pages = 1 + a
            if not positions and kind != "index" and stem in state["listings"]:
                continue
            old_front = read_back(stem, title, kind, 0, a0, c0) if c0 else []
            combined = [builder.row(p) for p in positions] + old_front
            # combined[j] is listing id c - 1 - j; archive page `chunk` holds ids
            # (chunk-1)*size .. chunk*size-1, so it is combined[c - chunk*size : c - (chunk-1)*size].
            page, data = listing_page(
                stem, title, kind, 0, a, c, combined[: c - a * size], stamp, n
            )
            outputs[page] = data
            if stem not in state["listings"]:
                new_files.append(page)
            for chunk in range(a0 + 1, a + 1):
                rows = combined[c - chunk * size : c - (chunk - 1) * size]
                page, data = listing_page(stem, title, kind, chunk, a, c, rows, stamp, n)
                outputs[page] = data
                new_files.append(page)
            if a != a0:
                for chunk in range(max(1, a0 - 3), a0 + 1):
                    rows = read_back(stem, title, kind, chunk, a0, c0)
                    page, data = listing_page(stem, title, kind, chunk, a, c, rows, stamp, n)
                    outputs[page] = data

        table = [manufacturers[m] for m in sorted(manufacturers)]
        outputs["manufacturers.html"] = _render(
            "manufacturers.html",
            **common(stamp, n),
            root="",
            page="manufacturers.html",
            manufacturers=table,
        )
        outputs["trust.html"] = builder._trust_page()

        # --- the feed: the newest FEED_LIMIT publications and the withdrawn images' entries
        limit = FEED_LIMIT
        fresh: list[dict[str, Any] | None] = [
            _feed_entries([builder.view(p)])[0] for p in range(min(k, limit))
        ]
        recent = (fresh + list(state["feed_recent"]))[:limit]
        entries = [e for e in recent if e is not None] + list(state["feed_withdrawn"])
        entries.sort(key=lambda e: e["id"])
        entries.sort(key=lambda e: e["updated"], reverse=True)
        feed_id = uuid.uuid5(_FEED_NAMESPACE, f"feed\n{client_init_url or ''}").urn
        outputs["feed.xml"] = _render(
            "feed.xml", generated=stamp, feed_id=feed_id, entries=entries[:limit]
        )

        # --- for machines and for search
        outputs["index.json"] = index_json_bytes(n, stamp)

        def ids_of(first_id: int, end_id: int) -> list[int]:
            # mini-library positions of the new ids first_id..end_id-1 (new ids are n0..n-1)
            return [n - 1 - i for i in range(first_id, end_id)]

        per_part = IMAGES_PER_PART
        for part in range(n0 // per_part, -(-n // per_part)):
            lo, hi = part * per_part, min(n, (part + 1) * per_part)
            relative = f"data/images-{part}.json"
            old_images: list[Any] = []
            if lo < n0:
                old = (out_dir / relative).read_bytes()
                doc = json.loads(old)
                if _json_bytes(doc) != old or len(doc["images"]) != n0 - lo:
                    raise _Stale(relative)
                old_images = doc["images"]
            else:
                new_files.append(relative)
            fresh_images = [_image_json(builder.view(p)) for p in ids_of(max(lo, n0), hi)[::-1]]
            outputs[relative] = _json_bytes(
                {"schema_version": SITE_SCHEMA_VERSION, "images": fresh_images + old_images}
            )

        per_shard = site_search.ROWS_PER_SHARD
        for shard in range(n0 // per_shard, -(-n // per_shard)):
            lo, hi = shard * per_shard, min(n, (shard + 1) * per_shard)
            relative = site_search.rows_shard_path(shard)
            old_rows: list[Any] = []
            if lo < n0:
                old = (out_dir / relative).read_bytes()
                old_rows = json.loads(old)["rows"]
                if site_search.rows_shard_bytes(old_rows) != old or len(old_rows) != n0 - lo:
                    raise _Stale(relative)
            else:
                new_files.append(relative)
            outputs[relative] = site_search.rows_shard_bytes(
                old_rows + [_search_row(builder.view(p)) for p in ids_of(max(lo, n0), hi)]
            )
    except _Stale as e:
        logger.info("site: %s is not what the last build left; rendering everything", e)
        return None
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        logger.info("site: cannot append (%s); rendering everything", e)
        return None

    # From here on files change: a crash leaves the marker, and the next build renders everything.
    atomic_write_bytes(out_dir / DIRTY_NAME, b"")
    changed: list[str] = []
    pending: list[tuple[str, Future[bool]]] = []

    def write(relative: str, data: bytes) -> None:
        target = out_dir / relative
        pending.append((relative, pool.submit(_write_if_changed, target, data)))

    for position, page in enumerate(builder.pages):
        write(page, builder.image_page(position))
        new_files.append(page)
    for relative, data in outputs.items():
        write(relative, data)
    for relative, static in _static_files():
        write(relative, static)
    shards = set(state["shards"])
    merged = site_search.merge_shards(
        shards,
        lambda prefix: _read_or_none(out_dir / site_search.word_shard_path(prefix)),
        [(n - 1 - p, _search_words(builder.view(p))) for p in range(k)],
    )
    for prefix, data in sorted(merged.items()):
        relative = site_search.word_shard_path(prefix)
        write(relative, data)
        if prefix not in shards:
            new_files.append(relative)
    shards |= set(merged)
    write(site_search.META_PATH, site_search.meta_bytes(n, stamp, shards))
    for relative, future in pending:
        if future.result():
            changed.append(relative)

    # The keyed full build's records: new files join the manifest (for pruning), and the inputs
    # file learns the new ids and that the rewritten pages' keys are unknown ("-").
    if new_files:
        with (out_dir / MANIFEST_NAME).open("a", encoding="utf-8") as manifest:
            manifest.write("".join(f"{f}\n" for f in new_files))
        changed.append(MANIFEST_NAME)
    lines = [f"+ {key}" for key in reversed(builder.keys)]
    lines += [f"{key} {page}" for page, key in zip(builder.pages, builder.keys, strict=True)]
    lines += [f"- {relative}" for relative in outputs if relative in changed]
    lines += [f"{_WORD_SHARD} {site_search.word_shard_path(p)}" for p in sorted(merged)]
    with (out_dir / _INPUTS_NAME).open("a", encoding="utf-8") as inputs:
        inputs.write("".join(f"{line}\n" for line in lines))

    state = dict(state)
    state.update(
        generated=stamp,
        count=n,
        newest=list(_order_key(added[0])) if added else state["newest"],
        names=dict(library.manufacturers),
        roles=dict(Counter(state["roles"]) + Counter(i.role for i in added)),
        listings=counts,
        manufacturers=table,
        feed_recent=recent,
        shards=sorted(shards),
    )
    atomic_write_bytes(out_dir / STATE_NAME, _state_bytes(state))
    (out_dir / DIRTY_NAME).unlink()
    return AppendResult(
        changed=tuple(sorted(set(changed))),
        new_files=tuple(new_files),
        image_count=n,
        index_pages=index_pages,
    )


__all__ = [
    "DIRTY_NAME",
    "STATE_NAME",
    "AppendPlan",
    "AppendResult",
    "added_images",
    "prepare_append",
    "run_append",
]
