"""The website's security advisories: the advisories page, one page per advisory, their Atom feed,
and what each image page says about the advisories that it fixes and that affect it. Pure.

Only the verified library's advisories are shown (``PublishedLibrary.advisories``, the newest
revision of each ID, read by ``repo_tool.verify`` through the same verification as the roles), and
only their public part: ID, title, summary, severity, the affected CPL entries and models, the fix.
Encrypted technical detail is never read here; detail a later revision made public is shown as
text. Every string goes through the autoescaped templates, so a title such as
``</title><script>`` is text on the page and in the feed.

A library without advisories renders no advisory file and no advisory link: its pages keep the
bytes they had before advisories existed.

What the append path (``repo_tool.site.append``) relies on: the advisory pages and feed depend only
on the advisories and on the images that carry an affected CPL entry or are named by ``fixed_by``
(``touches``); an image page's advisory section depends only on the advisories and its own entries
and target. So an append whose new images touch no advisory, under an unchanged ``digest``, leaves
every advisory file as it was.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from metadata_templates.advisory import Advisory
from metadata_templates.custom import CplEntryRef
from repo_tool.site.render import _FEED_NAMESPACE, _safe_name, image_page
from repo_tool.verify.published import PublishedImage, PublishedLibrary

ADVISORIES_PAGE = "advisories.html"
ADVISORIES_FEED = "advisories.xml"
# A feed entry carries the start of the summary; the page has all of it (up to 20,000 characters).
FEED_SUMMARY = 1000


def advisory_page(advisory_id: str) -> str:
    """``advisory/CFL-121D-2026-0001.html`` (IDs are checked on the way in; hashed if not safe)."""
    return f"advisory/{_safe_name(advisory_id)}.html"


@dataclass(frozen=True)
class AdvisoryLink:
    """An advisory as an image page lists it."""

    id: str
    title: str
    severity: str
    score: float
    page: str  # relative to the site root


@dataclass(frozen=True)
class AdvisoryIndex:
    """The advisories of a library, indexed by the image facts that relate them to images."""

    advisories: tuple[Advisory, ...]
    by_target: dict[str, tuple[str, ...]]  # fixed_by target -> advisory IDs
    by_entry: dict[str, tuple[str, ...]]  # affected CPL entry ID -> advisory IDs
    links: dict[str, AdvisoryLink]

    @classmethod
    def of(cls, library: PublishedLibrary) -> AdvisoryIndex:
        by_target: dict[str, list[str]] = {}
        by_entry: dict[str, list[str]] = {}
        links: dict[str, AdvisoryLink] = {}
        for a in library.advisories:
            links[a.id] = AdvisoryLink(a.id, a.title, a.severity, a.score, advisory_page(a.id))
            for target in a.fixed_by:
                by_target.setdefault(target, []).append(a.id)
            for entry in a.affected_cpl_entries:
                by_entry.setdefault(entry, []).append(a.id)
        return cls(
            library.advisories,
            {k: tuple(sorted(v)) for k, v in by_target.items()},
            {k: tuple(sorted(v)) for k, v in by_entry.items()},
            links,
        )

    def relations(self, image: PublishedImage) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(advisories the image fixes, advisories that affect it), IDs sorted. It fixes what
        names it in ``fixed_by`` and what it declared at submission (when that advisory is
        published); it is affected where one of its CPL entries is affected and it is no fix."""
        if not self.links:
            return (), ()
        fixes = set(self.by_target.get(image.target_path, ()))
        fixes |= {a for a in image.cfl.advisories if a in self.links}
        affected = {a for e in image.cfl.cpl_entries for a in self.by_entry.get(e.id, ())}
        return tuple(sorted(fixes)), tuple(sorted(affected - fixes))

    def touches(self, image: PublishedImage) -> bool:
        """Whether an advisory page shows this image (a fix, or the carrier of an affected entry)."""
        return image.target_path in self.by_target or any(
            e.id in self.by_entry for e in image.cfl.cpl_entries
        )

    def link_list(self, ids: Iterable[str]) -> tuple[AdvisoryLink, ...]:
        return tuple(self.links[i] for i in ids)


def relation_key(fixes: Sequence[str], affected: Sequence[str], index: AdvisoryIndex) -> str:
    """What an image page's advisory section shows, for the page's key ("" when it has none)."""
    if not fixes and not affected:
        return ""
    shown = [(a.id, a.title, a.severity, a.score) for a in index.link_list([*fixes, *affected])]
    return json.dumps([list(fixes), list(affected), shown], ensure_ascii=False)


def digest(library: PublishedLibrary) -> str:
    """A digest of the advisories the site shows: the append path runs only while it holds."""
    h = hashlib.sha256()
    for a in library.advisories:
        h.update(hashlib.sha256(a.to_bytes()).digest())
    return h.hexdigest()


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs; single newlines stay (the page shows them as spaces)."""
    return [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


def page_contexts(
    library: PublishedLibrary, ordered: Sequence[PublishedImage]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows of the advisories page, the context of each advisory page), newest update first.

    One pass over the images finds those an advisory shows: the image carrying each affected CPL
    entry (the gateway gives an entry at most one image) and the fixes named by ``fixed_by``.
    """
    index = AdvisoryIndex.of(library)
    carriers: dict[str, tuple[PublishedImage, CplEntryRef]] = {}
    targets: dict[str, PublishedImage] = {}
    for image in ordered:
        if image.target_path in index.by_target:
            targets[image.target_path] = image
        for entry in image.cfl.cpl_entries:
            if entry.id in index.by_entry:
                carriers.setdefault(entry.id, (image, entry))
    names = library.manufacturers
    rows: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    for a in sorted(library.advisories, key=lambda a: (a.updated, a.id), reverse=True):
        page = advisory_page(a.id)
        affected = [_entry_row(e, carriers.get(e)) for e in a.affected_cpl_entries]
        fixes = [_fix_row(target, targets.get(target)) for target in a.fixed_by]
        models = sorted({(r["model_id"], r["model_name"]) for r in affected if r["model_id"]})
        row = {
            "advisory": a,
            "page": page,
            "manufacturer_name": names.get(a.manufacturer_id, ""),
            "models": models,
        }
        rows.append(row)
        pages.append(
            {
                **row,
                "summary": _paragraphs(a.summary),
                "workaround": _paragraphs(a.workaround),
                "detail": _paragraphs(a.detail) if a.detail is not None else None,
                "affected": affected,
                "fixes": fixes,
                "role": f"mfr-{a.manufacturer_id}",
            }
        )
    return rows, pages


def _entry_row(entry_id: str, found: tuple[PublishedImage, CplEntryRef] | None) -> dict[str, Any]:
    """An affected CPL entry as the advisory page shows it: with its image's facts if any."""
    if found is None:
        return {"id": entry_id, "model_id": None, "model_name": None, "page": None}
    image, entry = found
    return {
        "id": entry_id,
        "model_id": entry.model_id,
        "model_name": entry.model_name,
        "hardware_version": entry.hardware_version,
        "firmware_version": image.cfl.firmware_version,
        "device_type": image.cfl.device_type,
        "page": image_page(image.target_path),
    }


def _fix_row(target: str, image: PublishedImage | None) -> dict[str, Any]:
    if image is None:
        return {"target": target, "firmware_version": None, "page": None}
    return {
        "target": target,
        "firmware_version": image.cfl.firmware_version,
        "page": image_page(target),
    }


def feed_context(library: PublishedLibrary, client_init_url: str | None) -> dict[str, Any]:
    """The advisories feed: one entry per advisory (its newest revision), newest update first.
    It carries no build time, so it changes only when an advisory does."""
    entries = []
    for a in sorted(library.advisories, key=lambda a: (a.updated, a.id), reverse=True):
        summary = a.summary if len(a.summary) <= FEED_SUMMARY else a.summary[:FEED_SUMMARY] + "…"
        entries.append(
            {
                # One entry per advisory, its ID stable across revisions: a reader sees an update.
                "id": uuid.uuid5(_FEED_NAMESPACE, f"advisory\n{a.id}").urn,
                "title": f"{a.id}: {a.title}",
                "updated": f"{a.updated}T00:00:00Z",
                "published": f"{a.published}T00:00:00Z",
                "href": advisory_page(a.id),
                "category": a.severity,
                "summary": (
                    f"Severity {a.severity} ({a.score}), status {a.status}, revision "
                    f"{a.revision}. {summary}"
                ),
            }
        )
    updated = max((e["updated"] for e in entries), default="1970-01-01T00:00:00Z")
    feed_id = uuid.uuid5(_FEED_NAMESPACE, f"advisories\n{client_init_url or ''}").urn
    return {"feed_id": feed_id, "updated": updated, "entries": entries}
