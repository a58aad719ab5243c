"""The website step of `cfl-repo publish`: tell the site which images the publish added.

``repo_tool.site.build.build_site`` renders one new image into a built site of 100,000 without looking at
the other 99,999, but only when it is told which images are new; otherwise it first loops over the
whole library to find them. A publish knows: the roles it brings the tree up to, from the versions
the tree's snapshot listed before, and what each version added, recorded at ingest
(``Repository.added_since``, the same record ``repo_tool.publish.folder.repository_plan`` uses).

The hint is relative to the tree the publish started from, so it is passed on only when the site
folder's ``BASIS_NAME`` record says its last complete build showed exactly that tree's roles (not
after a `refresh` or `publish --no-site` that published images, or a migration to hash bins,
without a site build). ``repo_tool.site.append`` then checks it again against the site's own
state (the count must add up, every told image must be newer than every listed one) and, when it
does not fit, finds the new images itself or renders everything (a killed build leaves a marker
that forces the full build), so a wrong hint costs time, never bytes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import UnavailableError
from repo_tool.publish.folder import targets_gained
from repo_tool.publish.plan import published_versions
from repo_tool.site.build import SiteBuildResult, build_site
from repo_tool.state.repository import Repository
from repo_tool.verify.lazy import LazyImages, LazyRecallError
from repo_tool.verify.memo import VerifyMemo
from repo_tool.verify.published import PublishedImage, PublishedLibrary
from repo_tool.verify.sources import Reader
from repo_tool.verify.stamps import STAMPS_NAME, FileStamps, RoleStamps

__all__ = [
    "BASIS_NAME",
    "RELEASES_MARK",
    "MemoUse",
    "PublishHint",
    "PublishedSite",
    "TreeState",
    "build_published_site",
    "images_named",
    "mark_site_releases",
    "publish_hint",
    "site_behind_releases",
    "tree_state",
]

logger = logging.getLogger(__name__)

# In the site folder: the digest of the role versions of the tree the site was last completely
# built from. A hint is relative to the tree a publish started from, so it is used only when the
# site shows exactly that tree's roles (not after a `refresh` or `publish --no-site` that published
# images, or a bins migration, without a site build). A `refresh` that only re-signs snapshot and
# timestamp leaves the roles, so it leaves the hint usable.
BASIS_NAME = ".cfl-site-basis"


@dataclass(frozen=True)
class TreeState:
    """The role versions (targets and every delegated role) a published tree's snapshot lists."""

    roles: dict[str, int]

    @property
    def digest(self) -> str:
        """A short, stable name for exactly these versions."""
        lines = "".join(f"{name} {version}\n" for name, version in sorted(self.roles.items()))
        return hashlib.sha256(lines.encode()).hexdigest()


@dataclass(frozen=True)
class PublishHint:
    """The target paths one publish added to the tree whose ``TreeState.digest`` is ``since``."""

    since: str
    targets: frozenset[str]


@dataclass(frozen=True)
class PublishedSite:
    """What the website step of a publish did."""

    site_dir: Path
    result: SiteBuildResult
    hinted: int | None  # how many images the site was told were new; None: no hint used
    memo: MemoUse | None = None  # what the verified-role memo saved; None: no memo used


@dataclass(frozen=True)
class MemoUse:
    """How the website step's verification used the verified-role memo."""

    recalled: int  # roles recalled, not verified again
    verified: int  # roles verified in full (new, changed or re-keyed since the last walk)
    remembered: int  # of those, written to the memo (verified with no problem)

    def to_dict(self) -> dict[str, int]:
        """For ``--json``."""
        return {"recalled": self.recalled, "verified": self.verified, "remembered": self.remembered}


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def tree_state(out: Path) -> TreeState | None:
    """What the published tree at ``out`` serves now; None when it has no readable timestamp or
    snapshot (a first publish). Read before a publish, it is what the publish adds to."""
    metadata = out / "metadata"
    roles = published_versions(
        _read(metadata / "timestamp.json"),
        lambda version: _read(metadata / f"{version}.snapshot.json"),
    )
    return TreeState(roles) if roles else None


def publish_hint(repo: Repository, before: TreeState | None) -> PublishHint | None:
    """The target paths the repository's roles gained since the tree state ``before``.

    A role ``before`` did not list contributes all its targets (a new manufacturer, or the bins a
    migration created); a version without its ingest record, the whole role, as
    ``repo_tool.publish.folder.repository_plan`` does.

    Args:
        repo: the repository, at the head just published.
        before: ``tree_state`` of the destination, read before the publish.

    Returns:
        The hint; None when nothing was published before (no site to append to either).
    """
    if before is None:
        return None
    gained = targets_gained(repo, before.roles)
    return PublishHint(before.digest, frozenset(path for path, _sha256 in gained))


def images_named(library: PublishedLibrary, targets: Iterable[str]) -> tuple[PublishedImage, ...]:
    """The verified images whose target path is in ``targets`` (targets that are not images, such
    as the CPL or the provider's documents, name none)."""
    wanted = frozenset(targets)
    if not wanted:
        return ()
    images = library.images
    # A flat walk: new images sit in changed roles, verified in full (a told image not found
    # there makes the site's count check fail, and the site then looks for its new images).
    pool = images.fresh if isinstance(images, LazyImages) else images
    return tuple(image for image in pool if image.target_path in wanted)


def site_basis(site_dir: Path) -> str | None:
    """The ``TreeState.digest`` the site at ``site_dir`` was last completely built from, or None."""
    data = _read(site_dir / BASIS_NAME)
    try:
        return data.decode("ascii").strip() if data is not None else None
    except UnicodeDecodeError:
        return None


def verified_for_site(
    read: Reader,
    root_bytes: bytes,
    *,
    now: datetime,
    memo: VerifyMemo | None,
    lazy: bool = False,
    stamps: RoleStamps | None = None,
) -> PublishedLibrary:
    """The verified library a website is built from (`publish`, `site build`, `publish --to
    s3://`): role files verified cleanly before are recalled from ``memo``, and the CPL's hash is
    checked without parsing its entries, which the site does not show. After the clean walk the
    memo keeps only this tree's roles. ``lazy``: the flat walk (repo_tool/verify/lazy.py), whose
    recalled roles' images are decoded only if the build iterates them.

    Raises:
        VerificationError: the tree does not verify (the memo is then left as it was).
    """
    from repo_tool.intake.cpl_cache import cpl_without_entries
    from repo_tool.verify.stamped_cpl import stamped_cpl_loader
    from repo_tool.verify.walk import CplLoader, verified_library

    cpl_loader: CplLoader = cpl_without_entries
    if lazy and memo is not None and stamps is not None:
        # the flat walk's CPL: stamped like its role files, so an unchanged CPL is not read again
        cpl_loader = stamped_cpl_loader(stamps)
    library = verified_library(
        read,
        root_bytes,
        now=now,
        check_blobs=False,
        memo=memo,
        cpl_loader=cpl_loader,
        lazy=lazy and memo is not None,
        stamps=stamps if lazy else None,
    )
    if stamps is not None and lazy:
        stamps.save()  # the walk was clean: these files matched their pins
    if memo is not None:
        pruned = memo.prune()  # the walk was clean and complete: keep only this tree's roles
        logger.info(
            "verify memo: %d role(s) recalled, %d verified (%d remembered), %d pruned",
            memo.hits,
            memo.misses,
            memo.written,
            pruned,
        )
    return library


def build_published_site(
    out: Path,
    root_bytes: bytes,
    *,
    now: datetime,
    hint: PublishHint | None,
    memo: VerifyMemo | None = None,
    flat: bool = True,
) -> PublishedSite:
    """Verify the published tree at ``out`` and render its website into ``out/site``.

    The hint is passed on only when the site was last built from the tree the hint starts from;
    ``repo_tool.site.append`` checks it again against the site's own record.

    Args:
        out: the published tree.
        root_bytes: the trusted root the tree is verified from.
        now: the build time (the site's only timestamp, and the verification time).
        hint: ``publish_hint`` of the publish that just ran; None when unknown.
        memo: the repository's verified-role memo (repo_tool/verify/memo.py): roles verified
            cleanly before are not verified again; pruned to this tree's roles after a clean walk.
            None verifies everything.
        flat: with a memo and a hint the site can use, walk flat (docs/site.md "Flat publish"):
            unchanged roles are recalled from their memo entries' headers and their images
            decoded only if the build needs them. False walks as before (the benchmark baseline).

    Returns:
        Where the site is, what the build did, and the size of the hint used.

    Raises:
        VerificationError: the published tree does not verify.
        UnavailableError: the site folder cannot be read or written.
        SiteBuildError: two images would share one page.
    """

    # Read before the library: a publish landing in between makes the site newer than its
    # record, which only withholds the next hint (the tree never moves back).
    basis = tree_state(out)
    site_dir = out / "site"
    told = hint is not None and site_basis(site_dir) == hint.since
    try:
        return _build(out, site_dir, root_bytes, basis, now, hint if told else None, memo, flat)
    except LazyRecallError as e:
        # A memo entry damaged between its header and its body: walk and build again, in full.
        logger.warning("%s; verifying the tree in full", e)
        return _build(out, site_dir, root_bytes, basis, now, hint if told else None, memo, False)


def _build(
    out: Path,
    site_dir: Path,
    root_bytes: bytes,
    basis: TreeState | None,
    now: datetime,
    hint: PublishHint | None,
    memo: VerifyMemo | None,
    flat: bool,
) -> PublishedSite:
    from repo_tool.verify.sources import folder_reader

    lazy = flat and hint is not None and memo is not None
    stamps = None
    if lazy and memo is not None:
        stamps = FileStamps(out.resolve(), memo.directory.parent / STAMPS_NAME)
        stamps.load()
    library = verified_for_site(
        folder_reader(out), root_bytes, now=now, memo=memo, lazy=lazy, stamps=stamps
    )
    added = images_named(library, hint.targets) if hint is not None else None
    try:
        # The record claims a complete build: withdraw it until this one completes.
        (site_dir / BASIS_NAME).unlink(missing_ok=True)
    except OSError as e:
        raise UnavailableError(f"site {site_dir / BASIS_NAME}: cannot remove: {e}") from e
    result = build_site(library, site_dir, generated=now, added=added)
    if basis is not None:
        try:
            atomic_write_bytes(site_dir / BASIS_NAME, f"{basis.digest}\n".encode("ascii"))
        except OSError as e:
            raise UnavailableError(f"site {site_dir / BASIS_NAME}: cannot write: {e}") from e
    logger.info(
        "site: told %s new image(s); %s",
        "no" if added is None else len(added),
        "appended" if result.appended else "keyed build",
    )
    return PublishedSite(site_dir, result, None if added is None else len(added), _memo_use(memo))


def _memo_use(memo: VerifyMemo | None) -> MemoUse | None:
    if memo is None:
        return None
    return MemoUse(recalled=memo.hits, verified=memo.misses, remembered=memo.written)


# Issue 22: the release document the website was last rebuilt for by `refresh`. `refresh` records a
# pilot's release and then rebuilds the site; should it be killed in between, the next `refresh`
# finds this mark behind the head's document and rebuilds then.
RELEASES_MARK = ".cfl-site-releases"


def site_behind_releases(site_dir: Path, releases_sha256: str | None) -> bool:
    """Whether the site in ``site_dir`` exists and was not rebuilt for ``releases_sha256`` yet."""
    if releases_sha256 is None or not site_dir.is_dir():
        return False
    try:
        return (site_dir / RELEASES_MARK).read_text("ascii").strip() != releases_sha256
    except (OSError, UnicodeDecodeError):
        return True


def mark_site_releases(site_dir: Path, releases_sha256: str) -> None:
    """Record that the site in ``site_dir`` was rebuilt for ``releases_sha256``."""
    try:
        atomic_write_bytes(site_dir / RELEASES_MARK, f"{releases_sha256}\n".encode("ascii"))
    except OSError as e:
        raise UnavailableError(f"site {site_dir / RELEASES_MARK}: cannot write: {e}") from e
