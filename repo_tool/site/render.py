"""Rendering the public website: the Jinja2 environment, the view of each image, and the JSON,
feed and search rows built from it. Pure: the same library always gives the same bytes.

The plan of which files a build writes is ``repo_tool.site.pages``; writing them is
``repo_tool.site.build``; the append path (``repo_tool.site.append``) reuses both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from metadata_templates import naming
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.naming import image_target_path
from metadata_templates.withdrawals import Withdrawal
from repo_tool.site import search as site_search
from repo_tool.verify.published import PublishedImage, PublishedLibrary, RoleSummary

logger = logging.getLogger(__name__)

SITE_SCHEMA_VERSION = 2
PAGE_SIZE = 500
FEED_LIMIT = 100
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
    # Published advisories this image fixes and that affect it (repo_tool.site.advisories
    # AdvisoryLink), set by the builder; empty in a library without advisories.
    advisory_fixes: tuple[Any, ...] = ()
    advisory_affected: tuple[Any, ...] = ()
    # Delivery outcomes (repo_tool.site.outcomes OutcomeView): figures and any hold, or None.
    outcome: Any = None

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
