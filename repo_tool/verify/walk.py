"""An independent, complete check of a published tree, and the verified view built from it.

Where the client (ngclient) verifies only what it needs, this walks everything: the root chain from a
trusted root, timestamp, snapshot, targets, every delegated role, every blob's length and hash, and
that snapshot lists exactly the roles that exist. All signature checks are python-tuf's
(``verify_delegate``); this module only decides which file to check against which delegator.

The source is a function from a relative path to bytes, so the same walk reads a local folder (the
operator's `verify`, the website build) or a URL (the manufacturer's `submit --from`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from tuf.api.metadata import (
    DelegatedRole,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    Targets,
    Timestamp,
)

from metadata_templates import naming
from metadata_templates.advisory import DETAIL_SUFFIX, is_advisory_target_path
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import CflTargetInfo, CustomMetadataError
from metadata_templates.errors import VerificationError
from metadata_templates.notes import (
    is_notes_target_path,
)
from repo_tool.verify.advisories import check_detail_targets, verified_advisories
from repo_tool.verify.lazy import LazyImages, LazyRole, OwnedPaths, RoleSource, lazy_role, read_role
from repo_tool.verify.memo import RoleFacts, VerifiedRoleMetadata, VerifyMemo, memo_key
from repo_tool.verify.provider_documents import check_provider_role, read_provider_documents
from repo_tool.verify.published import PublishedImage, PublishedLibrary, RoleSummary
from repo_tool.verify.sources import NotFound, Reader, _read_listed, _Walk
from repo_tool.verify.stamps import RoleStamps

# How the walk turns the signed CPL into a document: given its signed SHA-256 and a function that
# reads and checks the blob (None when it is missing or does not match, a problem already
# recorded), the document, None, or ValueError for a malformed CPL. The default reads and parses
# it whole; a deposit looks in its local index first (repo_tool/intake/cpl_cache.py via submit_scope).
CplLoader = Callable[[str, Callable[[], bytes | None]], CplDocument | None]
MAX_ROOT_ROTATIONS = 1024


def _verify_root_chain(walk: _Walk, trusted_root: bytes) -> Metadata[Root] | None:
    try:
        root = Metadata[Root].from_bytes(trusted_root)
        root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
    except Exception as e:
        walk.fail(f"trusted root: not a self-signed TUF root ({e})")
        return None
    # The tree must serve the root we trust under its own name: clients bootstrapping from the
    # tree's 1.root.json (a manufacturer's first `submit --from`) would otherwise trust other bytes.
    own = f"metadata/{root.signed.version}.root.json"
    try:
        if walk.read(own) != trusted_root:
            walk.fail(f"{own}: differs from the trusted root given with --root")
    except NotFound:
        walk.fail(f"{own}: missing (the trusted root's version must be published)")
    for _ in range(MAX_ROOT_ROTATIONS):
        version = root.signed.version + 1
        try:
            data = walk.read(f"metadata/{version}.root.json")
        except NotFound:
            break
        try:
            new = Metadata[Root].from_bytes(data)
            root.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)
            new.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)
        except Exception as e:
            walk.fail(
                f"metadata/{version}.root.json: does not verify against root {version - 1} ({e})"
            )
            return None
        if new.signed.version != version:
            walk.fail(
                f"metadata/{version}.root.json: version: found {new.signed.version}, expected {version}"
            )
            return None
        root = new
    walk.expiry("root", root.signed.expires)
    return root


def _load(
    walk: _Walk,
    relative: str,
    role: str,
    delegator: Root | Targets,
    kind: type,
    meta: MetaFile | None = None,
    *,
    contain_expiry: bool = False,
) -> Metadata | None:  # type: ignore[type-arg]
    data = _read_listed(walk, relative, meta)
    if data is None:
        return None
    return _load_bytes(walk, relative, data, role, delegator, kind, contain_expiry=contain_expiry)


def _load_bytes(
    walk: _Walk,
    relative: str,
    data: bytes,
    role: str,
    delegator: Root | Targets,
    kind: type,
    *,
    contain_expiry: bool = False,
) -> Metadata | None:  # type: ignore[type-arg]
    try:
        md = Metadata.from_bytes(data)
    except Exception as e:
        walk.fail(f"{relative}: not TUF metadata ({e})")
        return None
    if not isinstance(md.signed, kind):
        walk.fail(f"{relative}: type: found {md.signed.type!r}, expected {kind.type!r}")  # type: ignore[attr-defined]
        return None
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except Exception as e:
        walk.fail(f"{relative}: signatures do not verify for role {role} ({e})")
        return None
    _expiry(walk, role, md.signed.expires, contain=contain_expiry)
    return md


def _expiry(walk: _Walk, role: str, expires: datetime, *, contain: bool) -> None:
    if contain and expires <= walk.now:
        walk.expired_roles[role] = expires
    else:
        walk.expiry(role, expires)


def _check_blob(walk: _Walk, path: str, length: int, sha256: str) -> bytes | None:
    relative = f"targets/{naming.blob_name(path, sha256)}"
    if PurePosixPath(relative).is_absolute() or ".." in PurePosixPath(relative).parts:
        walk.fail(f"target path {path!r}: escapes the targets directory")
        return None
    data = walk.get(relative)
    if data is None:
        return None
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != length or actual != sha256:
        walk.fail(
            f"{relative}: found {len(data)} bytes hashing to {actual}, expected {length} bytes hashing to {sha256}"
        )
        return None
    return data


def load_verified_library(
    read: Reader,
    trusted_root: bytes,
    *,
    now: datetime,
    check_blobs: bool = True,
    wanted: Callable[[str], bool] | None = None,
    cpl_loader: CplLoader | None = None,
    memo: VerifyMemo | None = None,
    lazy: bool = False,
    stamps: RoleStamps | None = None,
) -> tuple[PublishedLibrary | None, list[str]]:
    """Walk and verify a published tree. Returns the library (None if the walk could not finish)
    and every problem found (empty when the tree is fully valid).

    An expired manufacturer role is not a problem of the tree: it is listed in the library's
    ``expired_roles`` (clients cannot verify that manufacturer's images until it renews), and every
    other check of that role still runs.

    ``wanted`` narrows the walk to the delegated roles (and bins) it returns True for, the way a
    client looks up only what it needs (``submit``: repo_tool/submit/scope.py): root chain,
    timestamp, snapshot, targets and the provider's documents are always verified, and every role
    walked is verified in full against its delegator and snapshot; other roles are neither read
    nor checked, so the library holds only the wanted roles' images. None walks everything.

    ``cpl_loader`` (see ``CplLoader``) replaces reading and parsing the CPL whole.

    ``memo`` (repo_tool/verify/memo.py, the provider's website step only) skips verifying again
    a manufacturer role or bin whose exact bytes verified cleanly before under the same
    delegation; the library is the same as without it. Auditors' checks never pass one.
    ``lazy``: a hit reads only the entry's header, and ``stamps`` spare reading role files that
    matched their pin before and are untouched since (repo_tool/verify/lazy.py, stamps.py)."""
    walk = _Walk(read, now)
    root_md = _verify_root_chain(walk, trusted_root)
    if root_md is None:
        return None, walk.problems
    root = root_md.signed
    timestamp = _load(walk, "metadata/timestamp.json", Timestamp.type, root, Timestamp)
    if timestamp is None:
        return None, walk.problems
    snap_meta = timestamp.signed.snapshot_meta
    snapshot_rel = f"metadata/{snap_meta.version}.snapshot.json"
    snapshot_bytes = walk.get(snapshot_rel)
    if snapshot_bytes is None:
        return None, walk.problems
    try:
        snap_meta.verify_length_and_hashes(snapshot_bytes)
    except Exception as e:
        walk.fail(f"{snapshot_rel}: does not match timestamp ({e})")
        return None, walk.problems
    snapshot = _load(walk, snapshot_rel, Snapshot.type, root, Snapshot)
    if snapshot is None:
        return None, walk.problems
    if snapshot.signed.version != snap_meta.version:
        walk.fail(
            f"{snapshot_rel}: version: found {snapshot.signed.version}, expected {snap_meta.version}"
        )
    meta = snapshot.signed.meta
    targets_meta = meta.get("targets.json")
    if targets_meta is None:
        walk.fail("snapshot: lists no targets.json")
        return None, walk.problems
    targets = _load(
        walk,
        f"metadata/{targets_meta.version}.targets.json",
        Targets.type,
        root,
        Targets,
        targets_meta,
    )
    if targets is None:
        return None, walk.problems
    if targets.signed.version != targets_meta.version:
        walk.fail(
            f"targets: version: found {targets.signed.version}, expected {targets_meta.version} (snapshot)"
        )

    summaries = [
        RoleSummary(
            name,
            md.signed.version,
            md.signed.expires,
            tuple(root.roles[name].keyids),
            root.roles[name].threshold,
        )
        for name, md in (
            (Root.type, root_md),
            (Targets.type, targets),
            (Snapshot.type, snapshot),
            (Timestamp.type, timestamp),
        )
    ]
    delegations = targets.signed.delegations
    delegated = dict(delegations.roles or {}) if delegations is not None else {}
    listed = {name.removesuffix(".json") for name in meta} - {Targets.type}
    manufacturers: dict[str, str] = {}
    images: list[tuple[PublishedImage, ...] | LazyRole] = []  # by role, in walk order
    lazy_roles: dict[str, list[LazyRole]] = {}  # owner -> its roles recalled lazily
    role_metadata: dict[str, RoleSource] = {}  # bytes, a reader: recalled from the memo
    role_paths: dict[str, Collection[str]] = {}  # every target path of each walked role
    # Provider documents: targets' own (older trees), then cfl-provider's (issue 13).
    documents = dict(targets.signed.targets)
    # Hash bins: a manufacturer role with a succinct delegation is followed by its bins, verified
    # with its keys; each bin's targets must be the ones the rule assigns to it (naming.py).
    walked: set[str] = set(delegated)
    queue: list[tuple[str, DelegatedRole | SuccinctRoles, Targets, DelegatedRole]] = [
        (name, role, targets.signed, role) for name, role in sorted(delegated.items())
    ]
    notes_refs: list[tuple[str, str, str, str]] = []  # (role, image, notes target, owner role)
    skipped: set[str] = set()  # roles `wanted` left out: their owners' notes are not cross-checked
    split_owners: set[str | None] = set()  # manufacturers whose role delegates to bins
    advisory_refs: list[tuple[str, int, str]] = []  # (path, length, sha256) of advisory targets
    while queue:
        name, role, delegator, prefix = queue.pop(0)
        if wanted is not None and not wanted(name):
            skipped.add(_owner(name))
            continue
        role_meta = meta.get(f"{name}.json")
        if role_meta is None:
            walk.fail(
                f"snapshot: does not list delegated role {name}.json (clients cannot look it up)"
            )
            continue
        relative = f"metadata/{role_meta.version}.{name}.json"
        # One manufacturer letting its role lapse must not fail the library for everyone: its
        # images are reported unverifiable until it renews; the rest stays valid. The provider's
        # own online role is refreshed by cron: its lapse is a failure, as targets'.
        contain = not naming.is_provider_role(name)
        md: Metadata[Targets] | None = None
        facts: RoleFacts | LazyRole | None = None
        remembered_as: str | None = None
        if memo is not None and not naming.is_provider_role(name):
            # --- verified-role memo (repo_tool/verify/memo.py): a hit stands for the checks
            # this role's bytes passed under this very delegation; expiry is checked again.
            got = read_role(walk, relative, role_meta, stamps if lazy else None)
            if got is None:
                continue
            source, sha256 = got
            remembered_as = memo_key(name, role, delegator, prefix, sha256)
            facts = (
                lazy_role(memo, remembered_as, name) if lazy else memo.recall(remembered_as, name)
            )
            if facts is not None:
                _expiry(walk, name, facts.expires, contain=contain)
                role_metadata[name] = source
            else:
                # a stamped file not in the memo after all: read (and check) it now
                raw = (
                    source if isinstance(source, bytes) else _read_listed(walk, relative, role_meta)
                )
                if raw is None:
                    continue
                md = _load_bytes(
                    walk, relative, raw, name, delegator, Targets, contain_expiry=contain
                )
            # --- end of the verified-role memo
        else:
            md = _load(walk, relative, name, delegator, Targets, role_meta, contain_expiry=contain)
        if md is None and facts is None:
            continue
        if md is not None:
            version, expires = md.signed.version, md.signed.expires
        else:
            assert facts is not None
            version, expires = facts.version, facts.expires
        if version != role_meta.version:
            walk.fail(f"{name}: version: found {version}, expected {role_meta.version} (snapshot)")
        keyids = tuple(role.keyids)
        summaries.append(RoleSummary(name, version, expires, keyids, role.threshold))
        if md is not None and naming.is_provider_role(name) and isinstance(role, DelegatedRole):
            # Documents, not images: not a manufacturer's role.
            if md.signed.delegations is not None:
                walk.fail(f"{name}: delegates further, expected no delegations")
            check_provider_role(walk.fail, role, md, documents)
            continue
        if facts is None:
            assert md is not None
            role_metadata[name] = md
            before = len(walk.problems)
            facts = _role_facts(walk, name, role, md, prefix)
            if memo is not None and remembered_as is not None and len(walk.problems) == before:
                memo.remember(remembered_as, name, facts)
        if isinstance(facts, LazyRole):  # a flat walk: summary only (repo_tool/verify/lazy.py)
            lazy_roles.setdefault(_owner(name), []).append(facts)
        else:
            role_paths[name] = facts.paths if md is None else frozenset(md.signed.targets)
        if facts.delegations is not None and facts.delegations.succinct_roles is not None:
            succinct = facts.delegations.succinct_roles
            split_owners.add(naming.owner_of_role(name))
            bins = list(succinct.get_roles())
            walked.update(bins)
            bins_delegator = md.signed if md is not None else facts.as_delegator()
            queue.extend((b, succinct, bins_delegator, prefix) for b in bins)
        if check_blobs:
            whole = facts.facts() if isinstance(facts, LazyRole) else facts
            for path, length, sha in whole.targets:
                _check_blob(walk, path, length, sha)
        if isinstance(facts, LazyRole):
            advisory_refs.extend(facts.advisory_targets)
            manufacturers.update(facts.manufacturers)
            images.append(facts)
            continue
        advisory_refs.extend(t for t in facts.targets if is_advisory_target_path(t[0]))
        for path, notes_target in facts.notes_refs:
            # Checked once every role is walked: with bins the notes may sit in another bin.
            notes_refs.append((name, path, notes_target, _owner(name)))
        for image in facts.images:
            manufacturers[image.cfl.manufacturer_id] = image.cfl.manufacturer_name
        images.append(facts.images)

    for extra in sorted(listed - walked):
        if wanted is not None and not wanted(extra):
            continue  # may be a bin of a role not walked: not this caller's to judge
        if naming.manufacturer_of_bin(extra) in split_owners:
            continue  # a bin a doubling retired: listed for TUF clients, delegated by nobody
        walk.fail(f"snapshot: lists {extra}.json, which targets does not delegate")
    known: dict[str, set[str]] = {}
    for role_name, paths in role_paths.items():
        known.setdefault(_owner(role_name), set()).update(paths)
    owned = OwnedPaths(known, lazy_roles)
    for role_name, path, notes_target, owner in notes_refs:
        if owner in skipped:
            continue  # the notes target may sit in a bin not walked
        if notes_target not in owned.get(owner, set()):
            walk.fail(
                f"{role_name}: {path}: custom.cfl.release_notes.target: found {notes_target!r}, "
                "expected a notes target of the same role (or of a bin of the same manufacturer)"
            )

    docs = read_provider_documents(
        documents,
        functools.partial(_check_blob, walk),
        walk.fail,
        cpl_loader=cpl_loader,
        parse_cpl=_parsed_cpl,
    )
    withdrawn = docs.withdrawals.by_target()
    library_images = LazyImages(images, withdrawn)
    library = PublishedLibrary(
        root_version=root.version,
        roles=tuple(summaries),
        images=library_images if lazy_roles else tuple(library_images),
        manufacturers=manufacturers,
        cpl=docs.cpl,
        withdrawals=docs.withdrawals.withdrawals,
        role_metadata=_role_metadata(role_metadata),
        targets_metadata=targets,
        expired_roles=dict(walk.expired_roles),
        suppliers=docs.suppliers,
        notes_custodian=docs.custodian,
        releases=docs.releases,
        outcomes=docs.outcomes,
        **_log_fields(timestamp.signed.unrecognized_fields),  # tlog hook
        advisories=verified_advisories(
            advisory_refs, functools.partial(_check_blob, walk), walk.fail
        ),
        role_lengths={
            name.removesuffix(".json"): m.length for name, m in meta.items() if m.length is not None
        },
    )
    check_detail_targets(library.advisories, owned, skipped, walk.fail)
    return library, walk.problems


@functools.lru_cache(maxsize=1)
def _parsed_cpl(data: bytes) -> CplDocument:
    """The published CPL, parsed once for the very same bytes: a submit walks twice over one cached
    read (repo_tool/submit/scope.py), and at 10,000 entries a parse costs most of its walk.
    Sharing is safe: CplDocument and its entries are frozen.

    Raises:
        ValueError: a malformed CPL (not remembered: every walk reports it).
    """
    return CplDocument.from_bytes(data)


def _bins_of(md: Metadata[Targets]) -> SuccinctRoles | None:
    """The succinct delegation to hash bins a manufacturer role holds, if any and nothing else."""
    delegations = md.signed.delegations
    if delegations is None or delegations.roles:
        return None
    return delegations.succinct_roles


def _role_facts(
    walk: _Walk,
    name: str,
    role: DelegatedRole | SuccinctRoles,
    md: Metadata[Targets],
    prefix: DelegatedRole,
) -> RoleFacts:
    """What the walk takes from a manufacturer role or bin whose signatures verified, reporting
    every problem of its own content (a delegation it may not make, a target outside its
    delegation or bin, a ``custom.cfl`` the schema rejects); the targets with a problem are left
    out. Depends only on the role's bytes and the delegation: what the memo may remember."""
    delegations = None
    succinct = _bins_of(md) if isinstance(role, DelegatedRole) else None
    if succinct is not None and naming.manufacturer_of_role(name) is not None:
        delegations = md.signed.delegations
    elif md.signed.delegations is not None:
        walk.fail(
            f"{name}: delegates further, expected a manufacturer role without delegations "
            "(or, for a manufacturer role, one succinct delegation to its hash bins)"
        )
    targets: list[tuple[str, int, str]] = []
    images: list[PublishedImage] = []
    notes_refs: list[tuple[str, str]] = []
    for path, target in sorted(md.signed.targets.items()):
        if not prefix.is_delegated_path(path):
            walk.fail(f"{name}: target {path!r} is outside its delegation {prefix.paths}")
            continue
        if isinstance(role, SuccinctRoles) and role.get_role_for_target(path) != name:
            walk.fail(
                f"{name}: target {path!r} is in the wrong bin, expected "
                f"{role.get_role_for_target(path)}"
            )
            continue
        sha = target.hashes.get("sha256", "")
        if is_notes_target_path(path) or is_advisory_target_path(path.removesuffix(DETAIL_SUFFIX)):
            # Encrypted release notes (a ciphertext blob named by its image's custom.cfl),
            # security advisories (documents without custom.cfl) and their encrypted detail
            # (named by the advisory's detail_target) are not images.
            targets.append((path, target.length, sha))
            continue
        try:
            info = CflTargetInfo.from_target_custom(target.custom)
        except CustomMetadataError as e:
            walk.fail(f"{name}: {path}: {e}")
            continue
        targets.append((path, target.length, sha))
        if info.release_notes is not None:
            notes_refs.append((path, info.release_notes.target))
        images.append(PublishedImage(path, target.length, sha, info, name))
    return RoleFacts(
        md.signed.version,
        md.signed.expires,
        tuple(targets),
        tuple(images),
        tuple(notes_refs),
        delegations,
    )


def _role_metadata(
    roles: dict[str, RoleSource],
) -> Mapping[str, Metadata[Targets]]:
    """The verified roles as the library holds them: a plain dict unless some were recalled from
    the memo (kept as bytes until used)."""
    if any(not isinstance(value, Metadata) for value in roles.values()):
        return VerifiedRoleMetadata(roles)
    return {name: value for name, value in roles.items() if isinstance(value, Metadata)}


def _owner(role: str) -> str:
    """The manufacturer role a role belongs to (itself, or the role whose bin it is)."""
    owner = naming.owner_of_role(role)
    return naming.role_name(owner) if owner is not None else role


def _log_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The log's vkey and size as the verified timestamp binds them (none when it binds none)."""
    from metadata_templates.errors import VerificationError
    from metadata_templates.tlog.binding import read_binding

    try:
        binding = read_binding(fields)
    except VerificationError:
        return {}
    return {"log_vkey": binding.vkey, "log_size": binding.size} if binding else {}


def verified_library(
    read: Reader,
    trusted_root: bytes,
    *,
    now: datetime,
    check_blobs: bool = True,
    wanted: Callable[[str], bool] | None = None,
    cpl_loader: CplLoader | None = None,
    memo: VerifyMemo | None = None,
    lazy: bool = False,
    stamps: RoleStamps | None = None,
) -> PublishedLibrary:
    """Like `load_verified_library`, but any problem is an error.

    Raises:
        VerificationError: listing every problem found.
    """
    library, problems = load_verified_library(
        read,
        trusted_root,
        now=now,
        check_blobs=check_blobs,
        wanted=wanted,
        cpl_loader=cpl_loader,
        memo=memo,
        lazy=lazy,
        stamps=stamps,
    )
    if problems or library is None:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise VerificationError(
            f"published tree failed verification ({len(problems)} problem(s)):\n  {shown}{more}"
        )
    return library
