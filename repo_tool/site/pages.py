"""The build plan of the public website: every output file with a key of everything its bytes
depend on, and ``_Builder``, which renders any one of them. Pure; ``repo_tool.site.build`` writes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from markupsafe import Markup

from metadata_templates.custom import format_timestamp
from metadata_templates.withdrawals import Withdrawal
from repo_tool.site import advisories as site_advisories
from repo_tool.site import outcomes as site_outcomes
from repo_tool.site import search as site_search
from repo_tool.site.embargo import public_library
from repo_tool.site.render import (
    _FEED_NAMESPACE,
    CONTENT_SECURITY_POLICY,
    FEED_LIMIT,
    PAGE_SIZE,
    SITE_SCHEMA_VERSION,
    SiteBuildError,
    _bins_grouped,
    _check_aware,
    _environment,
    _feed_entries,
    _image_json,
    _ImageView,
    _json_bytes,
    _Listing,
    _newest_first,
    _page_name,
    _render,
    _role_order,
    _root_prefix,
    _safe_name,
    _search_row,
    _search_words,
    _static_files,
    _view,
    image_page,
    site_resources,
)
from repo_tool.verify.published import PublishedImage, PublishedLibrary

logger = logging.getLogger(__name__)

# --- the build plan: every output file with a key of everything its bytes depend on ---------------

# Bump when the Python side of rendering changes what a page holds for the same inputs; templates are
# hashed by content (see ``_fingerprint``).
_RENDER_VERSION = "2"
_INPUTS_MAGIC = "cfl-site-inputs 1"
_WORD_SHARD = "word-shard"  # the key recorded for word shards (they are merged, not keyed)
IMAGES_PER_PART = 1000


@dataclass(frozen=True)
class _Output:
    path: str
    key: str | None  # None: render every build (small files that carry the build time)
    render: Callable[[], bytes]


@dataclass
class _Plan:
    """What a build produces, with lazily rendered bytes."""

    fingerprint: str
    ids: list[str]  # image keys in id order (oldest first)
    outputs: list[_Output]
    tokens: Callable[[range], list[tuple[int, list[str]]]]  # (id, words) for ids


def _fingerprint(client_init_url: str | None, advisories: bool = False) -> str:
    # ``advisories``: whether the library has any, which adds a link to every page's navigation;
    # the first advisory therefore renders everything once (as a template change does).
    digest = hashlib.sha256()
    for part in (
        _RENDER_VERSION,
        str(PAGE_SIZE),
        str(IMAGES_PER_PART),
        str(site_search.ROWS_PER_SHARD),
        CONTENT_SECURITY_POLICY,
        client_init_url or "",
        *(("advisories",) if advisories else ()),
    ):
        digest.update(part.encode() + b"\0")
    templates = site_resources().joinpath("templates")
    for node in sorted(templates.iterdir(), key=lambda n: n.name):
        if node.is_file():
            digest.update(node.name.encode() + b"\0" + node.read_bytes() + b"\0")
    return digest.hexdigest()


def _image_key(image: PublishedImage, name: str, withdrawal: Withdrawal | None) -> str:
    """Everything an image's row and page show that can change for one target: its bytes (hash),
    role, the manufacturer's registered name and a withdrawal. The rest (custom.cfl) is fixed per
    (target, hash): the gateway refuses a role version that edits a lodged target
    (``role-content-altered``)."""
    w = "" if withdrawal is None else f"{withdrawal.withdrawn}\0{withdrawal.reason}"
    text = f"{image.target_path}\0{image.sha256}\0{image.length}\0{image.role}\0{name}\0{w}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _key(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:32]


def _archive_name(stem: str, chunk: int) -> str:
    return f"{stem}-{chunk}.html"


def _chunks(count: int) -> int:
    """Archive pages of a listing of ``count`` rows: the front page holds the newest
    ``PAGE_SIZE``..``2 * PAGE_SIZE - 1`` rows, archive page ``c`` (1 = oldest) the ``c``-th
    ``PAGE_SIZE`` rows in publication order. Archive pages are anchored at the oldest image, so a new
    image changes the front page only, never the hundreds of archive pages behind it."""
    return max(0, count // PAGE_SIZE - 1)


def _listing_pager(stem: str, current: int, archives: int) -> list[dict[str, Any]]:
    """Links, newest first: the front page (0), archive pages around the current one, the oldest."""
    if archives == 0:
        return []
    wanted = {0, 1, *range(max(1, current - 3), min(archives, current + 3) + 1)}
    if current == 0:
        wanted |= set(range(max(1, archives - 3), archives + 1))
    links: list[dict[str, Any]] = []
    previous: int | None = None
    for number in sorted(wanted, key=lambda n: (n != 0, -n)):
        if previous is not None and previous != 0 and previous - number > 1:
            links.append({"gap": True})
        if previous == 0 and number != archives:
            links.append({"gap": True})
        links.append(
            {
                "gap": False,
                "current": number == current,
                "label": "Latest" if number == 0 else str(number),
                "href": _page_name(stem, 1) if number == 0 else _archive_name(stem, number),
            }
        )
        previous = number
    return links


def listing_context(
    stem: str,
    title: str,
    kind: str,
    search: bool,
    chunk: int,
    archives: int,
    count: int,
    first: int,
    last: int,
) -> tuple[str, dict[str, Any]]:
    """The file name and template context of one listing page (``chunk`` 0 is the front page)
    but its rows; shared with ``repo_tool.site.append``, which renders the same pages from rows it
    keeps."""
    front = chunk == 0
    page = _page_name(stem, 1) if front else _archive_name(stem, chunk)
    pager = _listing_pager(stem, chunk, archives)
    newer = (
        None
        if front
        else (_page_name(stem, 1) if chunk == archives else _archive_name(stem, chunk + 1))
    )
    older = (
        (_archive_name(stem, archives) if archives else None)
        if front
        else (_archive_name(stem, chunk - 1) if chunk > 1 else None)
    )
    context: dict[str, Any] = {
        "root": "",
        "page": page,
        "title": title,
        "page_label": None if front else f"{first}\u2013{last}",
        "kind": kind,
        "search": search,
        "front": front,
        "count": count if front else None,
        "first": first,
        "last": last,
        "prev": newer,
        "next": older,
        "pager": pager,
        "stamped": search and front,
    }
    return page, context


def index_json_bytes(count: int, stamp: str) -> bytes:
    """``index.json``: names the ``data/`` parts; part k holds ids k*1000.. (newest first inside)."""
    parts = -(-count // IMAGES_PER_PART)
    return _json_bytes(
        {
            "schema_version": SITE_SCHEMA_VERSION,
            "generated": stamp,
            "count": count,
            "parts": [
                {
                    "href": f"data/images-{k}.json",
                    "images": min(count, (k + 1) * IMAGES_PER_PART) - k * IMAGES_PER_PART,
                }
                for k in reversed(range(parts))
            ],
        }
    )


class _Builder:
    """Plans every output of one build; renders lazily, so unchanged pages cost nothing."""

    def __init__(
        self, library: PublishedLibrary, generated: datetime, client_init_url: str | None
    ) -> None:
        _check_aware(generated, "generated")
        self.library = library
        self.generated = generated
        self.client_init_url = client_init_url
        self.stamp = format_timestamp(generated)
        withdrawals = {(w.target, w.sha256): w for w in library.withdrawals}
        self.ordered = _newest_first(library.images)  # position 0 = newest
        self.withdrawal: list[Withdrawal | None] = [
            i.withdrawal or withdrawals.get((i.target_path, i.sha256)) for i in self.ordered
        ]
        self.names = [
            library.manufacturers.get(i.cfl.manufacturer_id, i.cfl.manufacturer_name)
            for i in self.ordered
        ]
        self.keys = [
            _image_key(i, n, w)
            for i, n, w in zip(self.ordered, self.names, self.withdrawal, strict=True)
        ]
        # --- advisories (repo_tool/site/advisories.py): each image page's advisory section
        self.advisory_index = site_advisories.AdvisoryIndex.of(library)
        self.relations: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        if self.advisory_index.links:
            self.relations = [self.advisory_index.relations(i) for i in self.ordered]
            for position, (fixes, affected) in enumerate(self.relations):
                shown = site_advisories.relation_key(fixes, affected, self.advisory_index)
                if shown:
                    self.keys[position] = _key(self.keys[position], shown)
        # --- delivery outcomes (repo_tool/site/outcomes.py): figures and holds on image pages
        self.outcomes = site_outcomes.outcome_views(library, self.ordered)
        for position, image in enumerate(self.ordered) if self.outcomes else ():
            if (shown_outcome := self.outcomes.get(image.target_path)) is not None:
                self.keys[position] = _key(self.keys[position], shown_outcome.key)
        self._views: dict[int, _ImageView] = {}
        self._rows: dict[int, Markup] = {}
        self.common: dict[str, Any] = {
            "csp": CONTENT_SECURITY_POLICY,
            "generated": self.stamp,
            "generated_date": self.stamp[:10],
            "image_count": len(self.ordered),
            "advisories_nav": bool(library.advisories),
        }
        pages: dict[str, str] = {}
        self.pages = [image_page(image.target_path) for image in self.ordered]
        for image, page in zip(self.ordered, self.pages, strict=True):
            if page in pages:
                raise SiteBuildError(
                    f"image page {page}: found for {pages[page]!r} and {image.target_path!r}, "
                    "expected one image per page"
                )
            pages[page] = image.target_path
        for role in library.roles:
            _check_aware(role.expires, f"roles[{role.name}].expires")

    # positions (newest first) <-> ids (oldest first)
    def position(self, image_id: int) -> int:
        return len(self.ordered) - 1 - image_id

    def view(self, position: int) -> _ImageView:
        found = self._views.get(position)
        if found is None:
            found = _view(self.ordered[position], self.library, self.withdrawal[position])
            if self.relations and any(self.relations[position]):
                fixes, affected = self.relations[position]
                found = replace(
                    found,
                    advisory_fixes=self.advisory_index.link_list(fixes),
                    advisory_affected=self.advisory_index.link_list(affected),
                )
            if self.outcomes:
                found = replace(found, outcome=self.outcomes.get(found.target))
            self._views[position] = found
        return found

    def row(self, position: int) -> Markup:
        found = self._rows.get(position)
        if found is None:
            html = _environment().get_template("row.html").render(v=self.view(position), root="")
            found = Markup(html.rstrip("\n"))  # noqa: S704 - autoescaped template output
            self._rows[position] = found
        return found

    def tokens(self, ids: range) -> list[tuple[int, list[str]]]:
        return [(i, _search_words(self.view(self.position(i)))) for i in ids]

    # --- listings ---------------------------------------------------------------------------------

    def listing(self, listing: _Listing, *, kind: str, search: bool) -> Iterator[_Output]:
        count = len(listing.rows)
        archives = _chunks(count)
        front = listing.rows[: count - archives * PAGE_SIZE]
        yield self._listing_page(listing, kind, search, 0, archives, front, 1, len(front))
        for chunk in range(1, archives + 1):
            # Archive page `chunk` holds positions [count - chunk*S, count - (chunk-1)*S).
            rows = listing.rows[count - chunk * PAGE_SIZE : count - (chunk - 1) * PAGE_SIZE]
            first = (chunk - 1) * PAGE_SIZE + 1
            yield self._listing_page(
                listing, kind, search, chunk, archives, rows, first, first + PAGE_SIZE - 1
            )

    def _listing_page(
        self,
        listing: _Listing,
        kind: str,
        search: bool,
        chunk: int,
        archives: int,
        rows: tuple[int, ...],
        first: int,
        last: int,
    ) -> _Output:
        page, context = listing_context(
            listing.stem,
            listing.title,
            kind,
            search,
            chunk,
            archives,
            len(listing.rows),
            first,
            last,
        )
        stamped = bool(context["stamped"])
        key = _key(
            "listing",
            json.dumps({k: v for k, v in context.items()}, sort_keys=True),
            self.stamp if stamped else "",
            *(self.keys[i] for i in rows),
        )

        def render() -> bytes:
            return _render(
                "listing.html", **self.common, **context, rows=[self.row(i) for i in rows]
            )

        return _Output(page, key, render)

    # --- everything -------------------------------------------------------------------------------

    def outputs(self) -> Iterator[_Output]:
        n = len(self.ordered)
        yield from self.listing(
            _Listing("index", "Firmware images", tuple(range(n))), kind="index", search=True
        )

        by_manufacturer: dict[str, list[int]] = {}
        for position, image in enumerate(self.ordered):
            by_manufacturer.setdefault(image.cfl.manufacturer_id, []).append(position)
        manufacturers = []
        for mfr_id in sorted(set(by_manufacturer) | set(self.library.manufacturers)):
            positions = by_manufacturer.get(mfr_id, [])
            name = self.library.manufacturers.get(mfr_id) or (
                self.names[positions[0]] if positions else ""
            )
            stem = f"manufacturer-{_safe_name(mfr_id)}"
            manufacturers.append(
                {
                    "id": mfr_id,
                    "name": name,
                    "href": _page_name(stem, 1),
                    "images": len(positions),
                    "current": sum(1 for i in positions if self.withdrawal[i] is None),
                    "latest": self.ordered[positions[0]].cfl.published[:10] if positions else None,
                }
            )
            yield from self.listing(
                _Listing(stem, f"{name} ({mfr_id})", tuple(positions)),
                kind="manufacturer",
                search=False,
            )
        yield _Output(
            "manufacturers.html",
            _key("manufacturers", json.dumps(manufacturers, sort_keys=True)),
            lambda: _render(
                "manufacturers.html",
                **self.common,
                root="",
                page="manufacturers.html",
                manufacturers=manufacturers,
            ),
        )

        security = tuple(
            i
            for i, image in enumerate(self.ordered)
            if image.cfl.reason == "security" or image.cfl.advisories
        )
        yield from self.listing(
            _Listing("security", "Security fixes", security), kind="security", search=False
        )

        yield _Output("withdrawn.html", None, self._withdrawn_page)
        yield _Output("trust.html", None, self._trust_page)
        yield _Output("feed.xml", None, self._feed)
        if self.library.advisories:
            yield from self._advisory_outputs()

        # For machines: index.json names the parts; part k holds ids k*1000.. (newest first inside)
        parts = -(-n // IMAGES_PER_PART)
        yield _Output("index.json", None, lambda: index_json_bytes(n, self.stamp))
        for k in range(parts):
            ids = range(k * IMAGES_PER_PART, min(n, (k + 1) * IMAGES_PER_PART))
            yield _Output(
                f"data/images-{k}.json",
                _key("part", *(self.keys[self.position(i)] for i in ids)),
                functools.partial(self._part, ids),
            )

        per = site_search.ROWS_PER_SHARD
        for k in range(-(-n // per)):
            ids = range(k * per, min(n, (k + 1) * per))
            yield _Output(
                site_search.rows_shard_path(k),
                _key("rows", *(self.keys[self.position(i)] for i in ids)),
                functools.partial(self._rows_shard, ids),
            )
        for relative, data in _static_files():
            yield _Output(relative, None, functools.partial(lambda d: d, data))

    def _advisory_outputs(self) -> Iterator[_Output]:
        # A few hundred small pages at most, rendered every full build (unchanged bytes are not
        # rewritten); the append path leaves them alone (see repo_tool/site/advisories.py).
        rows, pages = site_advisories.page_contexts(self.library, self.ordered)
        yield _Output(
            site_advisories.ADVISORIES_PAGE,
            None,
            lambda: _render(
                "advisories.html",
                **self.common,
                root="",
                page=site_advisories.ADVISORIES_PAGE,
                advisories=rows,
            ),
        )
        for context in pages:
            yield _Output(
                context["page"],
                None,
                functools.partial(
                    _render,
                    "advisory.html",
                    **self.common,
                    root="../",
                    page=context["page"],
                    a=context,
                ),
            )
        feed = site_advisories.feed_context(self.library, self.client_init_url)
        yield _Output(
            site_advisories.ADVISORIES_FEED, None, lambda: _render("advisories.xml", **feed)
        )

    def image_page(self, position: int) -> bytes:
        """The page of the image at ``position``; ``self.pages`` and ``self.keys`` name and key
        them (kept out of ``outputs`` so a build compares 100,000 keys in bulk)."""
        return self._image_page(position)

    def _image_page(self, position: int) -> bytes:
        v = self.view(position)
        return _render("image.html", **self.common, root=_root_prefix(v.page), page=v.page, v=v)

    def _part(self, ids: range) -> bytes:
        images = [_image_json(self.view(self.position(i))) for i in reversed(ids)]
        return _json_bytes({"schema_version": SITE_SCHEMA_VERSION, "images": images})

    def _rows_shard(self, ids: range) -> bytes:
        return site_search.rows_shard_bytes([_search_row(self.view(self.position(i))) for i in ids])

    def _withdrawn_page(self) -> bytes:
        by_target = {
            (image.target_path, image.sha256): position
            for position, image in enumerate(self.ordered)
            if self.withdrawal[position] is not None
        }
        withdrawn: dict[tuple[str, str], Withdrawal] = {
            (w.target, w.sha256): w for w in self.library.withdrawals
        }
        for (target, sha), position in by_target.items():
            recorded = self.withdrawal[position]
            if recorded is not None:
                withdrawn.setdefault((target, sha), recorded)
        current = {image.target_path: p for p, image in enumerate(self.ordered)}
        rows = []
        for w in sorted(
            withdrawn.values(), key=lambda w: (w.withdrawn, w.target, w.sha256), reverse=True
        ):
            # A withdrawn image may have left the metadata since; then there is no page to link to.
            found = current.get(w.target)
            linked = (
                self.view(found)
                if found is not None and self.ordered[found].sha256 == w.sha256
                else None
            )
            rows.append({"withdrawal": w, "date": w.withdrawn[:10], "view": linked})
        return _render(
            "withdrawn.html", **self.common, root="", page="withdrawn.html", withdrawals=rows
        )

    def _trust_page(self) -> bytes:
        roles = [
            {
                "role": role,
                "expires": format_timestamp(role.expires),
                "expired": role.expires <= self.generated,
                "days_left": (role.expires - self.generated).days,
            }
            for role in _bins_grouped(sorted(self.library.roles, key=_role_order))
        ]
        root_role = next((r for r in self.library.roles if r.name == "root"), None)
        return _render(
            "trust.html",
            **self.common,
            root="",
            page="trust.html",
            root_version=self.library.root_version,
            root_role=root_role,
            roles=roles,
            client_init_url=self.client_init_url,
            stamped=True,
            log_vkey=self.library.log_vkey,  # the transparency log's key the timestamp binds
            log_size=self.library.log_size,
        )

    def _feed(self) -> bytes:
        # The newest FEED_LIMIT publications and every withdrawal hold the newest FEED_LIMIT
        # entries; nothing older can make the cut.
        positions = set(range(min(FEED_LIMIT, len(self.ordered))))
        positions |= {p for p, w in enumerate(self.withdrawal) if w is not None}
        views = [self.view(p) for p in sorted(positions)]
        feed_id = uuid.uuid5(_FEED_NAMESPACE, f"feed\n{self.client_init_url or ''}").urn
        return _render(
            "feed.xml", generated=self.stamp, feed_id=feed_id, entries=_feed_entries(views)
        )


def render_site(
    library: PublishedLibrary,
    *,
    generated: datetime,
    client_init_url: str | None = None,
) -> Iterator[tuple[str, bytes]]:
    """Every file of the site as ``(relative path, bytes)``, without touching the disk.

    Pages are produced one at a time so a library of 100,000 images never needs the whole site in
    memory. ``build_site`` writes the same files, rendering only those whose inputs changed.

    Args:
        library: the verified library.
        generated: when the site was built (timezone-aware); the only time that appears in output.
        client_init_url: the library's URL for the `cfl init` example on the trust page.

    Raises:
        ValueError: ``generated`` or a role expiry is a naive datetime.
        SiteBuildError: two images would share one page.
        ConfigurationError: the templates are missing (a broken installation).
    """
    # Issue 22: an image still in its pilot is not listed (as build_site).
    builder = _Builder(public_library(library, generated), generated, client_init_url)
    for output in builder.outputs():
        yield output.path, output.render()
    for position, page in enumerate(builder.pages):
        yield page, builder.image_page(position)
    n = len(builder.ordered)
    shards = site_search.word_shards(builder.tokens(range(n)))
    for prefix, data in sorted(shards.items()):
        yield site_search.word_shard_path(prefix), data
    yield site_search.META_PATH, site_search.meta_bytes(n, builder.stamp, shards)
