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
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError
from repo_tool.site import append as site_append
from repo_tool.site import append_state
from repo_tool.site import search as site_search
from repo_tool.site.files import (
    _INPUTS_NAME,
    _SEARCH_DIRTY,
    MANIFEST_NAME,
    _previous_files,
    _read_or_none,
    _write_if_changed,
)
from repo_tool.site.pages import _INPUTS_MAGIC, _WORD_SHARD, _Builder, _fingerprint
from repo_tool.site.render import _INDEX_PAGE, _SAFE_SEGMENT, _WRITERS, SiteBuildError, _check_aware
from repo_tool.verify.published import PublishedImage, PublishedLibrary

logger = logging.getLogger(__name__)

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
                ids.append(line[2:])  # an id the append path added (repo_tool.site.append)
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


def _prunable(line: str) -> bool:
    # Only prune what a build of ours could have written: relative, no "..", no hidden names.
    path = PurePosixPath(line)
    return (
        bool(line)
        and not path.is_absolute()
        and all(_SAFE_SEGMENT.fullmatch(p) for p in path.parts)
    )


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
    path (``repo_tool.site.append``) renders just the files they change, reading nothing per
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

    _check_aware(generated, "generated")
    fingerprint = _fingerprint(client_init_url, bool(library.advisories))
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
        raise UnavailableError(f"building the website: {_os_reason(e, out_dir)}") from e
    # A build that did not finish leaves the marker: nothing the folder records can be trusted.
    unfinished = (out_dir / append_state.DIRTY_NAME).exists()
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
        (out_dir / append_state.STATE_NAME).unlink(missing_ok=True)
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
            out_dir / append_state.STATE_NAME,
            append_state.state_from_builder(builder, fingerprint, shards),
        )
        (out_dir / append_state.DIRTY_NAME).unlink(missing_ok=True)
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
        raise UnavailableError(f"building the website: {_os_reason(e, out_dir)}") from e
    logger.info("site: %d files, %d changed, %d removed", len(files), len(changed), len(removed))
    return SiteBuildResult(
        out_dir=out_dir,
        listed=tuple(files),
        changed=tuple(sorted(set(changed))),
        removed=tuple(removed),
        image_count=len(library.images),
        index_pages=index_pages,
    )


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
        appended: whether the append path (``repo_tool.site.append``) built it.
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


def _os_reason(e: OSError, out_dir: Path) -> str:
    """``cannot write PATH: reason`` for a failed write, naming the file when the error knows it."""
    where = e.filename if e.filename is not None else out_dir
    return f"cannot write {where}: {e.strerror or e}"
