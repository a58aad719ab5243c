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
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
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

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError
from metadata_templates.naming import image_target_path
from metadata_templates.withdrawals import Withdrawal
from repo_tool.published import PublishedImage, PublishedLibrary, RoleSummary

logger = logging.getLogger(__name__)

SITE_SCHEMA_VERSION = 1
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
        files: every file of the site, relative POSIX paths, sorted.
        changed: the files whose bytes differed from what was on disk (and were rewritten).
        removed: files a previous build wrote that this build no longer produces.
        image_count: images listed.
        index_pages: pages of the main index.
    """

    out_dir: Path
    files: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    image_count: int
    index_pages: int


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
    source = Path(__file__).resolve().parent.parent / "site"
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


def _views(library: PublishedLibrary) -> list[_ImageView]:
    withdrawals = {(w.target, w.sha256): w for w in library.withdrawals}
    views: list[_ImageView] = []
    for image in library.images:
        cfl = image.cfl
        models = sorted({_Model(e.model_id, e.model_name) for e in cfl.cpl_entries}, key=_model_key)
        mfr_id = cfl.manufacturer_id
        views.append(
            _ImageView(
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
                withdrawal=image.withdrawal or withdrawals.get((image.target_path, image.sha256)),
            )
        )
    # Newest first; ties (same second) broken by target path so the order never depends on input order.
    views.sort(key=lambda v: v.target)
    views.sort(key=lambda v: v.published, reverse=True)
    return views


def _model_key(model: _Model) -> tuple[str, str]:
    return (model.id, model.name)


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


def _pager(stem: str, current: int, total: int) -> list[dict[str, Any]]:
    """Page links around the current one, plus first and last: short even with hundreds of pages."""
    wanted = {1, total, *range(max(1, current - 3), min(total, current + 3) + 1)}
    links: list[dict[str, Any]] = []
    previous = 0
    for number in sorted(wanted):
        if number - previous > 1:
            links.append({"gap": True})
        links.append({"gap": False, "number": number, "href": _page_name(stem, number)})
        previous = number
    return links


def _render(name: str, *, stamped: bool = False, **context: Any) -> bytes:
    """Render one template; ``stamped`` pages show the build time in their footer."""
    return _environment().get_template(name).render(stamped=stamped, **context).encode("utf-8")


def _listing_pages(
    listing: _Listing,
    rows: Sequence[Markup],
    common: dict[str, Any],
    *,
    search: bool,
    kind: str,
) -> Iterator[tuple[str, bytes]]:
    total = max(1, -(-len(listing.rows) // PAGE_SIZE))
    for number in range(1, total + 1):
        chunk = listing.rows[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
        page = _page_name(listing.stem, number)
        yield (
            page,
            _render(
                "listing.html",
                **common,
                root="",
                page=page,
                title=listing.title,
                kind=kind,
                search=search,
                rows=[rows[i] for i in chunk],
                count=len(listing.rows),
                first=(number - 1) * PAGE_SIZE + 1,
                last=(number - 1) * PAGE_SIZE + len(chunk),
                number=number,
                pages=total,
                prev=_page_name(listing.stem, number - 1) if number > 1 else None,
                next=_page_name(listing.stem, number + 1) if number < total else None,
                pager=_pager(listing.stem, number, total) if total > 1 else [],
                stamped=search,
            ),
        )


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


def _search_index(views: Sequence[_ImageView], generated: str) -> bytes:
    """The table the search script loads: positional rows, manufacturers and models stored once.

    Manufacturers are ``[ID, name, page]``, models ``[ID, name]``. Row fields, in order (``search.js``
    reads them by position):

    0. image type
    1. target path, or null when it is the standard ``naming.image_target_path`` of the row's fields
       (it nearly always is; leaving it out saves a sixth of the file)
    2. page, or null when it is ``image/<target>.html``
    3. manufacturer index; 4. device type; 5. model indexes; 6. firmware version; 7. hardware text;
    8. reason; 9. advisories; 10. size in bytes; 11. size text; 12. publication date;
    13. SHA-256 of the file; 14. Manufacturer Image SHA-256; 15. withdrawal date or null.
    """
    manufacturers = sorted(
        {(v.manufacturer_id, v.manufacturer_name, v.manufacturer_page) for v in views}
    )
    mfr_index = {m[:2]: i for i, m in enumerate(manufacturers)}
    models = sorted({m for v in views for m in v.models}, key=_model_key)
    model_index = {m: i for i, m in enumerate(models)}
    rows = [
        [
            v.image.cfl.image_type,
            None if v.target == _standard_target(v) else v.target,
            None if v.page == f"image/{v.target}.html" else v.page,
            mfr_index[(v.manufacturer_id, v.manufacturer_name)],
            v.device_type,
            [model_index[m] for m in v.models],
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
        for v in views
    ]
    doc = {
        "schema_version": SITE_SCHEMA_VERSION,
        "generated": generated,
        "manufacturers": [list(m) for m in manufacturers],
        "models": [[m.id, m.name] for m in models],
        "rows": rows,
    }
    # No sort_keys needed for stability (dict order is fixed above); one row per line keeps diffs
    # of the golden file readable without the bytes of full indentation.
    head = json.dumps({k: v for k, v in doc.items() if k != "rows"}, ensure_ascii=False)[:-1]
    body = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows)
    return f'{head}, "rows": [\n{body}\n]}}\n'.encode()


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


def render_site(
    library: PublishedLibrary,
    *,
    generated: datetime,
    client_init_url: str | None = None,
) -> Iterator[tuple[str, bytes]]:
    """Every file of the site as ``(relative path, bytes)``, without touching the disk.

    Pages are produced one at a time so a library of 100,000 images never needs the whole site in
    memory.

    Args:
        library: the verified library.
        generated: when the site was built (timezone-aware); the only time that appears in output.
        client_init_url: the library's URL for the `cfl init` example on the trust page.

    Raises:
        ValueError: ``generated`` or a role expiry is a naive datetime.
        SiteBuildError: two images would share one page.
        ConfigurationError: the templates are missing (a broken installation).
    """
    _check_aware(generated, "generated")
    stamp = format_timestamp(generated)
    views = _views(library)
    pages: dict[str, str] = {}
    for v in views:
        if v.page in pages:
            raise SiteBuildError(
                f"image page {v.page}: found for {pages[v.page]!r} and {v.target!r}, "
                "expected one image per page"
            )
        pages[v.page] = v.target

    common: dict[str, Any] = {
        "csp": CONTENT_SECURITY_POLICY,
        "generated": stamp,
        "generated_date": stamp[:10],
        "image_count": len(views),
    }

    # Rows are the bulk of every listing; render each once and reuse it on the index, manufacturer
    # and security pages (all sit at the site root, so the relative links inside are the same).
    row_template = _environment().get_template("row.html")
    rows = [
        Markup(row_template.render(v=v, root="").rstrip("\n"))  # noqa: S704 - autoescaped output
        for v in views
    ]

    yield from _listing_pages(
        _Listing("index", "Firmware images", tuple(range(len(views)))),
        rows,
        common,
        search=True,
        kind="index",
    )

    by_manufacturer: dict[str, list[int]] = {}
    for i, v in enumerate(views):
        by_manufacturer.setdefault(v.manufacturer_id, []).append(i)
    manufacturer_ids = sorted(set(by_manufacturer) | set(library.manufacturers))
    manufacturers = []
    for mfr_id in manufacturer_ids:
        positions = by_manufacturer.get(mfr_id, [])
        name = library.manufacturers.get(mfr_id) or (
            views[positions[0]].manufacturer_name if positions else ""
        )
        stem = f"manufacturer-{_safe_name(mfr_id)}"
        manufacturers.append(
            {
                "id": mfr_id,
                "name": name,
                "href": _page_name(stem, 1),
                "images": len(positions),
                "current": sum(1 for i in positions if views[i].withdrawal is None),
                "latest": views[positions[0]].published_date if positions else None,
            }
        )
        yield from _listing_pages(
            _Listing(stem, f"{name} ({mfr_id})", tuple(positions)),
            rows,
            common,
            search=False,
            kind="manufacturer",
        )
    yield (
        "manufacturers.html",
        _render(
            "manufacturers.html",
            **common,
            root="",
            page="manufacturers.html",
            manufacturers=manufacturers,
        ),
    )

    security = tuple(i for i, v in enumerate(views) if v.reason == "security" or v.advisories)
    yield from _listing_pages(
        _Listing("security", "Security fixes", security),
        rows,
        common,
        search=False,
        kind="security",
    )

    views_by_target = {v.target: v for v in views}
    withdrawn: dict[tuple[str, str], Withdrawal] = {
        (w.target, w.sha256): w for w in library.withdrawals
    }
    for v in views:
        if v.withdrawal is not None:
            withdrawn.setdefault((v.target, v.sha256), v.withdrawal)
    withdrawn_rows = []
    for w in sorted(
        withdrawn.values(), key=lambda w: (w.withdrawn, w.target, w.sha256), reverse=True
    ):
        # A withdrawn image may have left the metadata since; then there is no page to link to.
        view = views_by_target.get(w.target)
        linked = view if view is not None and view.sha256 == w.sha256 else None
        withdrawn_rows.append({"withdrawal": w, "date": w.withdrawn[:10], "view": linked})
    yield (
        "withdrawn.html",
        _render(
            "withdrawn.html", **common, root="", page="withdrawn.html", withdrawals=withdrawn_rows
        ),
    )

    for role in library.roles:
        _check_aware(role.expires, f"roles[{role.name}].expires")
    roles = [
        {
            "role": role,
            "expires": format_timestamp(role.expires),
            "expired": role.expires <= generated,
            "days_left": (role.expires - generated).days,
        }
        for role in sorted(library.roles, key=_role_order)
    ]
    root_role = next((r for r in library.roles if r.name == "root"), None)
    yield (
        "trust.html",
        _render(
            "trust.html",
            **common,
            root="",
            page="trust.html",
            root_version=library.root_version,
            root_role=root_role,
            roles=roles,
            client_init_url=client_init_url,
            stamped=True,
            log_vkey=library.log_vkey,  # tlog hook
            log_size=library.log_size,
        ),
    )

    for v in views:
        yield v.page, _render("image.html", **common, root=_root_prefix(v.page), page=v.page, v=v)

    feed_id = uuid.uuid5(_FEED_NAMESPACE, f"feed\n{client_init_url or ''}").urn
    yield (
        "feed.xml",
        _render("feed.xml", generated=stamp, feed_id=feed_id, entries=_feed_entries(views)),
    )
    yield (
        "index.json",
        _json_bytes(
            {
                "schema_version": SITE_SCHEMA_VERSION,
                "generated": stamp,
                "images": [_image_json(v) for v in views],
            }
        ),
    )
    yield "search-index.json", _search_index(views, stamp)
    yield from _static_files()


# --- writing --------------------------------------------------------------------------------------


def _previous_files(out_dir: Path) -> list[str]:
    try:
        text = (out_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UnavailableError(f"site manifest {out_dir / MANIFEST_NAME}: cannot read: {e}") from e
    names = []
    for line in text.splitlines():
        # Only prune what a build of ours could have written: relative, no "..", no hidden names.
        path = PurePosixPath(line)
        if line and not path.is_absolute() and all(_SAFE_SEGMENT.fullmatch(p) for p in path.parts):
            names.append(line)
    return names


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


def build_site(
    library: PublishedLibrary,
    out_dir: Path,
    *,
    generated: datetime,
    client_init_url: str | None = None,
) -> SiteBuildResult:
    """Render the public website for ``library`` into ``out_dir``.

    Each file is written atomically (temporary file, fsync, rename) and only when its bytes change,
    so readers never see a torn page and a rebuild after a publish touches few files. Files that an
    earlier build listed in ``.cfl-site-files`` but this build no longer produces are removed; nothing
    else in ``out_dir`` is touched. The server should send ``CONTENT_SECURITY_POLICY`` as a header too.

    Args:
        library: the verified library (built by ``repo_tool.verify`` only).
        out_dir: the site folder, e.g. ``<published tree>/site``; created if missing.
        generated: the build time, timezone-aware; injected so output is reproducible.
        client_init_url: the URL suppliers pass to `cfl init`; a placeholder is shown when None.

    Returns:
        What was written, changed and removed.

    Raises:
        ValueError: ``generated`` or a role expiry is a naive datetime.
        SiteBuildError: two images, or two pages, would share one file.
        ConfigurationError: the templates are missing (a broken installation).
        UnavailableError: ``out_dir`` cannot be read or written.
    """
    previous = _previous_files(out_dir)
    files: list[str] = []
    seen: set[str] = set()
    changed: list[str] = []
    index_pages = 0
    pending: deque[tuple[str, Future[bool]]] = deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            relative, future = pending.popleft()
            if future.result():
                changed.append(relative)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Rendering holds the GIL; the fsyncs of atomic writes do not, and they dominate (rendering
        # is a tenth of the time). A few writer threads overlap them (about 2.5x faster on a
        # two-core machine); the bounded queue keeps memory flat.
        with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="site-write") as pool:
            try:
                for relative, data in render_site(
                    library, generated=generated, client_init_url=client_init_url
                ):
                    if relative in seen:
                        raise SiteBuildError(f"site file {relative}: produced twice, expected once")
                    seen.add(relative)
                    files.append(relative)
                    if _INDEX_PAGE.fullmatch(relative):
                        index_pages += 1
                    pending.append(
                        (relative, pool.submit(_write_if_changed, out_dir / relative, data))
                    )
                    settle(_WRITERS * 8)
                settle(0)
            finally:
                for _, future in pending:
                    future.cancel()
        files.sort()
        manifest = "".join(f"{f}\n" for f in files).encode()
        if _write_if_changed(out_dir / MANIFEST_NAME, manifest):
            changed.append(MANIFEST_NAME)
        current = set(files)
        removed = sorted(f for f in previous if f not in current)
        for name in removed:
            (out_dir / name).unlink(missing_ok=True)
    except OSError as e:
        raise UnavailableError(f"site {out_dir}: cannot write: {e}") from e
    logger.info("site: %d files, %d changed, %d removed", len(files), len(changed), len(removed))
    return SiteBuildResult(
        out_dir=out_dir,
        files=tuple(files),
        changed=tuple(sorted(changed)),
        removed=tuple(removed),
        image_count=len(library.images),
        index_pages=index_pages,
    )
