"""The public website: a static listing of what firmware the library holds, readable by anyone.

``build_site`` renders a verified ``PublishedLibrary`` into plain files (HTML, CSS, one JavaScript
file, an Atom feed and two JSON documents). It never serves images or release notes, only what the
signed metadata says about them. Rendering is pure: the same library, ``generated`` time and
``client_init_url`` always give the same bytes, so a rebuild after a publish rewrites only the files
whose content changed.

Safe by construction:

- Every template is autoescaped; the search script builds rows with ``textContent`` only. A model
  name or header string such as ``<script>alert(1)</script>`` is shown as text.
- Every page carries ``CONTENT_SECURITY_POLICY`` in a ``<meta http-equiv>``: no inline script, no
  inline style, nothing loaded from another origin. The static host should also send it as a
  ``Content-Security-Policy`` response header: a header applies before any markup is parsed, covers
  responses that are not HTML, and can carry directives a meta tag cannot (``frame-ancestors``).
  ``docs/site.md`` has an nginx snippet.
- Links are relative, so the site works from any folder, any host path and from ``file://``.

Scale: listings are split into pages of ``PAGE_SIZE`` rows (each a complete static table, so the site
is usable without JavaScript), and the search box loads one compact ``search-index.json`` on first use
and searches every image, not just the current page.

Output layout (relative to ``out_dir``)::

    index.html, index-2.html, ...            every image, newest first, PAGE_SIZE rows per page
    manufacturers.html                       one row per manufacturer
    manufacturer-<ID>.html, -<ID>-2.html     that manufacturer's images
    security.html, security-2.html, ...      images that fix security advisories
    withdrawn.html                           every recorded withdrawal, with date and reason
    trust.html                               root version and key IDs, role expiry, `cfl init`
    image/<target path>.html                 one page per image
    feed.xml                                 Atom feed of publications and withdrawals, newest first
    index.json                               every image for machines, ``schema_version`` 1
    search-index.json                        the compact table the search script loads
    static/style.css, static/search.js, static/favicon.svg
    .cfl-site-files                          the list of files this build wrote (to prune later)
    .cfl-site-inputs, .cfl-site-state.json   what the next build needs to render only what changed
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
from markupsafe import Markup

from metadata_templates import naming
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError
from metadata_templates.naming import image_target_path
from metadata_templates.withdrawals import Withdrawal
from repo_tool.site import search as site_search
from repo_tool.verify.published import PublishedImage, PublishedLibrary, RoleSummary

logger = logging.getLogger(__name__)

SITE_SCHEMA_VERSION = 2
PAGE_SIZE = 500
FEED_LIMIT = 100
MANIFEST_NAME = ".cfl-site-files"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)

_WRITERS = 8
_INDEX_PAGE = re.compile(r"index(-[0-9]+)?\.html")
# Top-level roles in the order a reader meets them on the trust page; delegated roles follow by name.
_TOP_LEVEL_ROLES = ("root", "targets", "snapshot", "timestamp")
# A file-name segment we are willing to put in a URL and on disk unchanged: no "..", no separators,
# nothing a browser or shell would reinterpret. Anything else is replaced by a hash-derived name.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Characters XML 1.0 cannot carry at all (escaping does not help); header strings come from firmware.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Stable namespace for Atom IDs, so feed readers see the same entry across rebuilds.
_FEED_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cfl:site-feed")


class SiteBuildError(RejectedInputError):
    """The library cannot be rendered as given: two images (or pages) would share one file."""


@dataclass(frozen=True)
class SiteBuildResult:
    """What ``build_site`` did.

    Attributes:
        out_dir: where the site was written.
        files: every file of the site, relative POSIX paths, sorted (after an append build, read
            from the manifest when first asked for: listing 100,000 names is not part of a build).
        changed: the files whose bytes differed from what was on disk (and were rewritten).
        removed: files a previous build wrote that this build no longer produces.
        image_count: images listed.
        index_pages: pages of the main index.
        appended: whether the append path (``repo_tool.site_append``) built it.
    """

    out_dir: Path
    listed: tuple[str, ...] | None
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    image_count: int
    index_pages: int
    appended: bool = False

    @functools.cached_property
    def files(self) -> tuple[str, ...]:
        if self.listed is not None:
            return self.listed
        return tuple(sorted(set(_previous_files(self.out_dir))))


@dataclass(frozen=True)
class _Model:
    id: str
    name: str


@dataclass(frozen=True)
class _ImageView:
    """One image as every template and the JSON outputs show it: formatted once, in one place."""

    image: PublishedImage
    target: str
    page: str
    manufacturer_id: str
    manufacturer_name: str
    manufacturer_page: str
    device_type: str
    models: tuple[_Model, ...]
    firmware_version: str
    hardware: str
    reason: str
    advisories: tuple[str, ...]
    size: int
    size_text: str
    published: str
    published_date: str
    sha256: str
    manufacturer_image_sha256: str
    withdrawal: Withdrawal | None

    @property
    def withdrawn_date(self) -> str | None:
        return self.withdrawal.withdrawn[:10] if self.withdrawal else None


@dataclass(frozen=True)
class _Listing:
    """A paginated table of images: the main index, one manufacturer, or the security page."""

    stem: str
    title: str
    rows: tuple[int, ...]  # positions in the sorted view list


# --- templates and assets -------------------------------------------------------------------------


def site_resources() -> Traversable:
    """The folder holding ``templates/`` and ``static/``.

    A wheel carries it as ``repo_tool/_site`` (hatch force-include); an editable install or a source
    checkout reads ``<repository root>/site`` directly.

    Raises:
        ConfigurationError: neither location exists (a broken installation).
    """
    packaged = resources.files("repo_tool").joinpath("_site")
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parents[2] / "site"
    if source.is_dir():
        return source
    raise ConfigurationError(
        f"site templates: found neither {packaged} nor {source}, expected one of them",
        hint="reinstall the cfl distribution",
    )


class _ResourceLoader(jinja2.BaseLoader):
    """Loads templates through importlib.resources, so a zipped install works as well as a folder."""

    def __init__(self, root: Traversable) -> None:
        self._root = root.joinpath("templates")

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = self._root
        for part in template.split("/"):
            node = node.joinpath(part)
        if not node.is_file():
            raise jinja2.TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True


def _finalize(value: Any) -> Any:
    # Runs on every {{ expression }} before escaping. Markup was produced by our own templates and
    # already cleaned; plain strings from metadata lose characters that would make feed.xml invalid.
    if isinstance(value, str) and not isinstance(value, Markup):
        return _XML_INVALID.sub("\ufffd", value)
    return value


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=_ResourceLoader(site_resources()),
        # Every template, whatever its name (feed.xml included): escaping is never opt-in.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _static_files() -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                found.append((f"{prefix}{child.name}", child.read_bytes()))

    walk(site_resources().joinpath("static"), "static/")
    return found


# --- view model -----------------------------------------------------------------------------------


def _safe_name(text: str) -> str:
    if _SAFE_SEGMENT.fullmatch(text):
        return text
    return "x-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def image_page(target_path: str) -> str:
    """Where an image's page lives, relative to the site root.

    ``121D/ESME-0001-ACDCACDC-3f2a9c1d0b7e4a51.ota`` becomes
    ``image/121D/ESME-0001-ACDCACDC-3f2a9c1d0b7e4a51.ota.html``; the search script applies the same
    rule. A path with any segment outside a conservative character set gets a hash-derived name.
    """
    segments = target_path.split("/")
    if all(_SAFE_SEGMENT.fullmatch(s) for s in segments):
        return f"image/{target_path}.html"
    return f"image/_/{hashlib.sha256(target_path.encode()).hexdigest()}.html"


def _page_name(stem: str, number: int) -> str:
    return f"{stem}.html" if number == 1 else f"{stem}-{number}.html"


def _size_text(size: int) -> str:
    # Decimal units, as firmware limits are stated (DUIS: 10,240,000 octets; HAN: 750 kB).
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.2f} MB"


def _hardware_text(low: str | None, high: str | None) -> str:
    if low is None and high is None:
        return "any"
    return f"{low or 'any'}\u2013{high or 'any'}"


def _view(
    image: PublishedImage, library: PublishedLibrary, withdrawal: Withdrawal | None
) -> _ImageView:
    cfl = image.cfl
    models = sorted({_Model(e.model_id, e.model_name) for e in cfl.cpl_entries}, key=_model_key)
    mfr_id = cfl.manufacturer_id
    return _ImageView(
        image=image,
        target=image.target_path,
        page=image_page(image.target_path),
        manufacturer_id=mfr_id,
        manufacturer_name=library.manufacturers.get(mfr_id, cfl.manufacturer_name),
        manufacturer_page=_page_name(f"manufacturer-{_safe_name(mfr_id)}", 1),
        device_type=cfl.device_type,
        models=tuple(models),
        firmware_version=cfl.firmware_version,
        hardware=_hardware_text(cfl.hardware_version_min, cfl.hardware_version_max),
        reason=cfl.reason,
        advisories=tuple(sorted(cfl.advisories)),
        size=image.length,
        size_text=_size_text(image.length),
        published=cfl.published,
        published_date=cfl.published[:10],
        sha256=image.sha256,
        manufacturer_image_sha256=cfl.manufacturer_image_sha256,
        withdrawal=withdrawal,
    )


def _newest_first(images: Sequence[PublishedImage]) -> list[PublishedImage]:
    """Newest first; ties (same second) broken by target path so the order never depends on input
    order."""
    ordered = sorted(images, key=lambda i: i.target_path)
    ordered.sort(key=lambda i: i.cfl.published, reverse=True)
    return ordered


def _views(library: PublishedLibrary) -> list[_ImageView]:
    withdrawals = {(w.target, w.sha256): w for w in library.withdrawals}
    return [
        _view(i, library, i.withdrawal or withdrawals.get((i.target_path, i.sha256)))
        for i in _newest_first(library.images)
    ]


def _model_key(model: _Model) -> tuple[str, str]:
    return (model.id, model.name)


def _bins_grouped(roles: Sequence[RoleSummary]) -> list[RoleSummary | _BinsRow]:
    """The roles with each manufacturer's hash bins folded into one row, after its role: a split
    manufacturer has up to thousands of bins, which share one delegation (keys and threshold).
    The row gives their count, the range of their versions and the earliest expiry, the one a
    reader must watch. A manufacturer's bin-named roles whose keys differ are not folded."""
    bins: dict[str, list[RoleSummary]] = {}
    kept: list[RoleSummary | _BinsRow] = []
    for role in roles:
        owner = naming.manufacturer_of_bin(role.name)
        if owner is None:
            kept.append(role)
        else:
            bins.setdefault(owner, []).append(role)
    for owner, members in bins.items():
        parent = naming.role_name(owner)
        at = next((i + 1 for i, r in enumerate(kept) if r.name == parent), len(kept))
        if len({(tuple(sorted(m.keyids)), m.threshold) for m in members}) > 1:
            # Bins of one succinct delegation share its keys; roles named like bins that do not
            # (targets delegating one directly) are shown one by one, never under another's keys.
            kept[at:at] = members
            continue
        versions = sorted({m.version for m in members})
        soonest = min(members, key=lambda m: m.expires)
        row = _BinsRow(
            name=f"{naming.bin_name_prefix(owner)}-* ({len(members)} hash bins)",
            version=(str(versions[0]) if len(versions) == 1 else f"{versions[0]}–{versions[-1]}"),
            expires=soonest.expires,
            keyids=soonest.keyids,
            threshold=soonest.threshold,
        )
        kept.insert(at, row)
    return kept


@dataclass(frozen=True)
class _BinsRow:
    """A trust-page row standing for all of one manufacturer's bins."""

    name: str
    version: str
    expires: datetime
    keyids: tuple[str, ...]
    threshold: int


def _role_order(role: RoleSummary) -> tuple[int, str]:
    if role.name in _TOP_LEVEL_ROLES:
        return (_TOP_LEVEL_ROLES.index(role.name), "")
    return (len(_TOP_LEVEL_ROLES), role.name)


def _check_aware(moment: datetime, field: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{field}: found naive datetime {moment.isoformat()}, expected an aware one"
        )


# --- rendering ------------------------------------------------------------------------------------


def _root_prefix(page: str) -> str:
    return "../" * page.count("/")


def _render(name: str, *, stamped: bool = False, **context: Any) -> bytes:
    """Render one template; ``stamped`` pages show the build time in their footer."""
    return _environment().get_template(name).render(stamped=stamped, **context).encode("utf-8")


def _image_json(view: _ImageView) -> dict[str, Any]:
    cfl = view.image.cfl
    return {
        "target": view.target,
        "page": view.page,
        "length": view.size,
        "sha256": view.sha256,
        "role": view.image.role,
        "device_type": view.device_type,
        "manufacturer_id": view.manufacturer_id,
        "manufacturer_name": view.manufacturer_name,
        "image_type": cfl.image_type,
        "firmware_version": view.firmware_version,
        "hardware_version_min": cfl.hardware_version_min,
        "hardware_version_max": cfl.hardware_version_max,
        "manufacturer_image_sha256": view.manufacturer_image_sha256,
        "cpl_entries": [
            {
                "id": e.id,
                "model_id": e.model_id,
                "model_name": e.model_name,
                "hardware_version": e.hardware_version,
                "status": e.status,
            }
            for e in cfl.cpl_entries
        ],
        "reason": view.reason,
        "advisories": list(view.advisories),
        "published": view.published,
        "withdrawn": (
            None
            if view.withdrawal is None
            else {"date": view.withdrawal.withdrawn, "reason": view.withdrawal.reason}
        ),
    }


def _json_bytes(doc: Any) -> bytes:
    return (
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    ).encode()


def _standard_target(v: _ImageView) -> str:
    return image_target_path(
        v.manufacturer_id, v.device_type, v.image.cfl.image_type, v.firmware_version, v.sha256
    )


def _feed_entries(views: Sequence[_ImageView]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for v in views:
        models = ", ".join(f"{m.id} {m.name}" for m in v.models)
        reason = v.reason + (f" ({', '.join(v.advisories)})" if v.advisories else "")
        title = f"{v.manufacturer_name} ({v.manufacturer_id}) {v.device_type} firmware {v.firmware_version}"
        entries.append(
            {
                "id": uuid.uuid5(_FEED_NAMESPACE, f"published\n{v.target}\n{v.sha256}").urn,
                "title": f"Published: {title}",
                "updated": v.published,
                "href": v.page,
                "category": v.reason,
                "summary": f"Models: {models}. Reason: {reason}. SHA-256: {v.sha256}.",
            }
        )
        if v.withdrawal is not None:
            entries.append(
                {
                    "id": uuid.uuid5(_FEED_NAMESPACE, f"withdrawn\n{v.target}\n{v.sha256}").urn,
                    "title": f"Withdrawn: {title}",
                    "updated": v.withdrawal.withdrawn,
                    "href": v.page,
                    "category": "withdrawn",
                    "summary": f"Withdrawn: {v.withdrawal.reason}. SHA-256: {v.sha256}.",
                }
            )
    entries.sort(key=lambda e: e["id"])
    entries.sort(key=lambda e: e["updated"], reverse=True)
    return entries[:FEED_LIMIT]


def _search_row(v: _ImageView) -> list[Any]:
    """One row of a search rows shard. Fields by position (``search.js`` reads them so):

    0. image type
    1. target path, or null when it is the standard ``naming.image_target_path`` of the row's fields
    2. page, or null when it is ``image/<target>.html``
    3. ``[manufacturer ID, name, page]``; 4. device type; 5. models as ``[ID, name]``;
    6. firmware version; 7. hardware text; 8. reason; 9. advisories; 10. size in bytes;
    11. size text; 12. publication date; 13. SHA-256 of the file; 14. Manufacturer Image SHA-256;
    15. withdrawal date or null.
    """
    return [
        v.image.cfl.image_type,
        None if v.target == _standard_target(v) else v.target,
        None if v.page == f"image/{v.target}.html" else v.page,
        [v.manufacturer_id, v.manufacturer_name, v.manufacturer_page],
        v.device_type,
        [[m.id, m.name] for m in v.models],
        v.firmware_version,
        v.hardware,
        v.reason,
        list(v.advisories),
        v.size,
        v.size_text,
        v.published_date,
        v.sha256,
        v.manufacturer_image_sha256,
        v.withdrawn_date,
    ]


def _search_words(v: _ImageView) -> list[str]:
    """The words search finds a row by; ``haystack`` in search.js builds the same list."""
    # Not the target path: it starts with the manufacturer ID, so every image would add one long
    # unique word to that ID's shard; its parts (ID, device type, version, hash) are words already.
    parts = [
        v.image.cfl.image_type,
        v.manufacturer_id,
        v.manufacturer_name,
        v.device_type,
        v.firmware_version,
        v.hardware,
        v.reason,
        " ".join(v.advisories),
        v.published_date,
        v.sha256,
        v.manufacturer_image_sha256,
    ]
    for model in v.models:
        parts += [model.id, model.name]
    if v.withdrawal is not None:
        parts.append("withdrawn")
    return site_search.words(parts)


# --- the build plan: every output file with a key of everything its bytes depend on ---------------

# Bump when the Python side of rendering changes what a page holds for the same inputs; templates are
# hashed by content (see ``_fingerprint``).
_RENDER_VERSION = "2"
_INPUTS_NAME = ".cfl-site-inputs"
_SEARCH_DIRTY = ".cfl-site-search-dirty"
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


def _fingerprint(client_init_url: str | None) -> str:
    digest = hashlib.sha256()
    for part in (
        _RENDER_VERSION,
        str(PAGE_SIZE),
        str(IMAGES_PER_PART),
        str(site_search.ROWS_PER_SHARD),
        CONTENT_SECURITY_POLICY,
        client_init_url or "",
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
    but its rows; shared with ``repo_tool.site_append``, which renders the same pages from rows it
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
        self._views: dict[int, _ImageView] = {}
        self._rows: dict[int, Markup] = {}
        self.common: dict[str, Any] = {
            "csp": CONTENT_SECURITY_POLICY,
            "generated": self.stamp,
            "generated_date": self.stamp[:10],
            "image_count": len(self.ordered),
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
    builder = _Builder(library, generated, client_init_url)
    for output in builder.outputs():
        yield output.path, output.render()
    for position, page in enumerate(builder.pages):
        yield page, builder.image_page(position)
    n = len(builder.ordered)
    shards = site_search.word_shards(builder.tokens(range(n)))
    for prefix, data in sorted(shards.items()):
        yield site_search.word_shard_path(prefix), data
    yield site_search.META_PATH, site_search.meta_bytes(n, builder.stamp, shards)


# --- writing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """What the previous build rendered: the input key of every file, and the image keys by id."""

    fingerprint: str
    ids: list[str]
    files: dict[str, str]


def _read_inputs(out_dir: Path) -> _Inputs | None:
    """The previous build's inputs; None when missing or unreadable (then everything is rendered)."""
    try:
        lines = (out_dir / _INPUTS_NAME).read_text(encoding="utf-8").split("\n")
        magic, fingerprint = lines[0].rsplit(" ", 1)
        if magic != _INPUTS_MAGIC or lines[1] != "ids":
            return None
        end = lines.index("files", 2)
        ids = lines[2:end]
        files = {}
        for line in lines[end + 1 :]:
            if line.startswith("+ "):
                ids.append(line[2:])  # an id the append path added (repo_tool.site_append)
            elif line:
                key, path = line.split(" ", 1)
                files[path] = key  # a later line wins; "-" is a key no output has
        return _Inputs(fingerprint, ids, files)
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _inputs_bytes(fingerprint: str, ids: Sequence[str], files: Mapping[str, str]) -> bytes:
    lines = [f"{_INPUTS_MAGIC} {fingerprint}", "ids", *ids, "files"]
    lines += [f"{key} {path}" for path, key in files.items()]
    return ("\n".join(lines) + "\n").encode()


def _previous_files(out_dir: Path) -> list[str]:
    """What the previous build listed; validated by ``_prunable`` only for the few it no longer
    produces (checking 100,000 names each build cost more than the build)."""
    try:
        return (out_dir / MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UnavailableError(f"site manifest {out_dir / MANIFEST_NAME}: cannot read: {e}") from e


def _prunable(line: str) -> bool:
    # Only prune what a build of ours could have written: relative, no "..", no hidden names.
    path = PurePosixPath(line)
    return (
        bool(line)
        and not path.is_absolute()
        and all(_SAFE_SEGMENT.fullmatch(p) for p in path.parts)
    )


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except IsADirectoryError as e:
        raise UnavailableError(f"site file {path}: found a directory, expected a file") from e
    atomic_write_bytes(path, data)
    return True


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def build_site(
    library: PublishedLibrary,
    out_dir: Path,
    *,
    generated: datetime,
    client_init_url: str | None = None,
    added: Sequence[PublishedImage] | None = None,
) -> SiteBuildResult:
    """Render the public website for ``library`` into ``out_dir``, rendering only what changed.

    When the library only gained images newer than every image the last build listed, the append
    path (``repo_tool.site_append``) renders just the files they change, reading nothing per
    image of the library; ``added``, the new images when the caller knows them, spares it even
    finding them. Otherwise the keyed build below runs.

    ``.cfl-site-inputs`` records, for every file, a key of everything its bytes depend on (for an
    image page: the image's target, hash, role, manufacturer name and withdrawal; for a listing
    page: its rows' keys and its links). A file whose key is unchanged is neither rendered nor
    read; the others are rendered and written atomically (temporary file, fsync, rename) when their
    bytes differ. The search word shards are updated in place for new images when the library only
    grew, and rebuilt otherwise. Publishing one image into a library of 100,000 therefore renders a
    handful of pages. The same library, ``generated`` and ``client_init_url`` always give the same
    bytes as ``render_site``, whatever was in ``out_dir`` before.

    Files that an earlier build listed in ``.cfl-site-files`` but this build no longer produces are
    removed; nothing else in ``out_dir`` is touched. The server should send
    ``CONTENT_SECURITY_POLICY`` as a header too.

    Args:
        library: the verified library (built by ``repo_tool.verify`` only).
        out_dir: the site folder, e.g. ``<published tree>/site``; created if missing.
        generated: the build time, timezone-aware; injected so output is reproducible.
        client_init_url: the URL suppliers pass to `cfl init`; a placeholder is shown when None.
        added: the images new since the last build into ``out_dir`` (the caller vouches that
            nothing else changed but what the library's small fields show: names, roles'
            expiry, withdrawals); None to let the build find out.

    Returns:
        What was written, changed and removed.

    Raises:
        ValueError: ``generated`` or a role expiry is a naive datetime.
        SiteBuildError: two images, or two pages, would share one file.
        ConfigurationError: the templates are missing (a broken installation).
        UnavailableError: ``out_dir`` cannot be read or written.
    """
    from repo_tool.site import append as site_append

    _check_aware(generated, "generated")
    fingerprint = _fingerprint(client_init_url)
    # --- append path hook (issue 14): everything else lives in repo_tool/site/append.py
    try:
        plan = site_append.prepare_append(library, out_dir, fingerprint, added)
        if plan is not None:
            with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="site-write") as pool:
                appended = site_append.run_append(
                    plan,
                    library,
                    out_dir,
                    generated=generated,
                    client_init_url=client_init_url,
                    fingerprint=fingerprint,
                    pool=pool,
                )
            if appended is not None:
                logger.info("site: appended %d image(s)", len(plan.added))
                return SiteBuildResult(
                    out_dir=out_dir,
                    listed=None,
                    changed=appended.changed,
                    removed=(),
                    image_count=appended.image_count,
                    index_pages=appended.index_pages,
                    appended=True,
                )
    except ValueError as e:
        raise UnavailableError(f"site {out_dir}: a search shard is unreadable: {e}") from e
    except OSError as e:
        raise UnavailableError(f"site {out_dir}: cannot write: {e}") from e
    # A build that did not finish leaves the marker: nothing the folder records can be trusted.
    unfinished = (out_dir / site_append.DIRTY_NAME).exists()
    # --- end of the append path hook
    builder = _Builder(library, generated, client_init_url)
    previous = _previous_files(out_dir)
    inputs = None if unfinished else _read_inputs(out_dir)
    if inputs is not None and inputs.fingerprint != fingerprint:
        inputs = None
    known = inputs.files if inputs is not None else {}
    files: list[str] = []
    keys: dict[str, str] = {}
    seen: set[str] = set()
    changed: list[str] = []
    index_pages = 0
    pending: deque[tuple[str, Future[bool]]] = deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            relative, future = pending.popleft()
            if future.result():
                changed.append(relative)

    def emit(
        pool: ThreadPoolExecutor, relative: str, key: str | None, render: Callable[[], bytes] | None
    ) -> None:
        nonlocal index_pages
        if relative in seen:
            raise SiteBuildError(f"site file {relative}: produced twice, expected once")
        seen.add(relative)
        files.append(relative)
        if _INDEX_PAGE.fullmatch(relative):
            index_pages += 1
        if key is not None:
            keys[relative] = key
            if known.get(relative) == key or render is None:
                return
        assert render is not None
        pending.append((relative, pool.submit(_write_if_changed, out_dir / relative, render())))
        settle(_WRITERS * 8)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # The append state describes the folder as it is; this build changes it, so it goes first.
        (out_dir / site_append.STATE_NAME).unlink(missing_ok=True)
        grown_from = (
            len(inputs.ids)
            if inputs is not None
            and not (out_dir / _SEARCH_DIRTY).exists()
            and builder.keys[::-1][: len(inputs.ids)] == inputs.ids
            else None
        )
        # Rendering holds the GIL; the fsyncs of atomic writes do not. A few writer threads overlap
        # them; the bounded queue keeps memory flat.
        with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="site-write") as pool:
            try:
                for output in builder.outputs():
                    emit(pool, output.path, output.key, output.render)
                # Image pages in bulk: at 100,000 images the per-file bookkeeping above would cost
                # more than the few pages that changed. They all live under image/, which no other
                # output does, and __init__ refused two images on one page.
                files.extend(builder.pages)
                seen.update(builder.pages)
                keys.update(zip(builder.pages, builder.keys, strict=True))
                stale = [
                    position
                    for position, (page, key) in enumerate(
                        zip(builder.pages, builder.keys, strict=True)
                    )
                    if known.get(page) != key
                ]
                for position in stale:
                    data = builder.image_page(position)
                    target = out_dir / builder.pages[position]
                    pending.append(
                        (builder.pages[position], pool.submit(_write_if_changed, target, data))
                    )
                    settle(_WRITERS * 8)
                settle(0)
                # Word shards: a crash while they change must not leave shards that the next
                # build trusts, so a marker says "rebuild them" until the inputs file is written.
                atomic_write_bytes(out_dir / _SEARCH_DIRTY, b"")
                n = len(builder.ordered)
                if grown_from is not None:
                    shard_prefix = f"{site_search.SEARCH_DIR}/w-"
                    shards = {
                        site_search.decode_shard_name(p[len(shard_prefix) : -len(".json")])
                        for p in known
                        if p.startswith(shard_prefix)
                    }
                    changed_shards = site_search.merge_shards(
                        shards,
                        lambda prefix: _read_or_none(out_dir / site_search.word_shard_path(prefix)),
                        builder.tokens(range(grown_from, n)),
                    )
                    for prefix, data in sorted(changed_shards.items()):
                        relative = site_search.word_shard_path(prefix)
                        pending.append(
                            (relative, pool.submit(_write_if_changed, out_dir / relative, data))
                        )
                        settle(_WRITERS * 8)
                    shards |= set(changed_shards)
                    for prefix in sorted(shards):
                        # Merged above, or unchanged: listed, not rendered again.
                        emit(pool, site_search.word_shard_path(prefix), _WORD_SHARD, None)
                else:
                    full = site_search.word_shards(builder.tokens(range(n)))
                    produced = set()
                    for prefix, data in sorted(full.items()):
                        relative = site_search.word_shard_path(prefix)
                        emit(pool, relative, None, functools.partial(lambda d: d, data))
                        keys[relative] = _WORD_SHARD
                        produced.add(relative)
                    # A build killed while merging may have left shards no manifest lists; the
                    # search folder is ours alone, so anything there not produced now goes.
                    for stray in (out_dir / site_search.SEARCH_DIR).glob("w-*.json"):
                        if f"{site_search.SEARCH_DIR}/{stray.name}" not in produced:
                            stray.unlink(missing_ok=True)
                    shards = set(full)
                meta = site_search.meta_bytes(n, builder.stamp, shards)
                emit(pool, site_search.META_PATH, None, functools.partial(lambda d: d, meta))
                settle(0)
            finally:
                for _, future in pending:
                    future.cancel()
        ids = builder.keys[::-1]
        atomic_write_bytes(out_dir / _INPUTS_NAME, _inputs_bytes(fingerprint, ids, keys))
        (out_dir / _SEARCH_DIRTY).unlink(missing_ok=True)
        atomic_write_bytes(
            out_dir / site_append.STATE_NAME,
            site_append.state_from_builder(builder, fingerprint, shards),
        )
        (out_dir / site_append.DIRTY_NAME).unlink(missing_ok=True)
        files.sort()
        manifest = "".join(f"{f}\n" for f in files).encode()
        if _write_if_changed(out_dir / MANIFEST_NAME, manifest):
            changed.append(MANIFEST_NAME)
        current = set(files)
        removed = sorted(f for f in previous if f not in current and _prunable(f))
        for name in removed:
            (out_dir / name).unlink(missing_ok=True)
    except ValueError as e:
        raise UnavailableError(f"site {out_dir}: a search shard is unreadable: {e}") from e
    except OSError as e:
        raise UnavailableError(f"site {out_dir}: cannot write: {e}") from e
    logger.info("site: %d files, %d changed, %d removed", len(files), len(changed), len(removed))
    return SiteBuildResult(
        out_dir=out_dir,
        listed=tuple(files),
        changed=tuple(sorted(set(changed))),
        removed=tuple(removed),
        image_count=len(library.images),
        index_pages=index_pages,
    )
