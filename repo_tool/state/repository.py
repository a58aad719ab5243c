"""The state layer's transaction API over a repository working directory: paths, the lock, the head
and its one commit, reading and staging signed metadata, and signing with the configured keys.

Layout of a working directory R::

    cfl-repo.json               configuration (policy, signer URIs and public keys per role)
    state/head.json             the commit point: which version of everything is current
    state/metadata/<role>/N.json  every signed metadata version ever staged (immutable once committed)
    state/index/<sha>.json      the duplicate index of a head (immutable, content-addressed)
    blobs/<ab>/<sha256>         images and provider documents (immutable, content-addressed)
    (release-notes/)            older versions kept plaintext notes here; no longer written, and an
                                existing folder is left alone (notes are now encrypted targets)
    rejected/<when>-<name>/     rejected bundles with their report.json
    events.jsonl                the event log: every commit, numbered (state/journal.py)
    public/                     the default published tree

An operation (``repo_tool.ops``) writes its new immutable files first and then calls `commit` once:
a crash at any instruction leaves the previous head, and therefore the previous repository, intact,
and a file a killed operation staged but never committed is replaced by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import SecretsHandler, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from metadata_templates import naming
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplDocument
from metadata_templates.errors import ConfigurationError, UnavailableError
from metadata_templates.locking import LockPolicy
from metadata_templates.naming import SPEC_VERSION
from metadata_templates.steps import step
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, SupplierRegistry
from metadata_templates.withdrawals import WithdrawalList
from repo_tool.gateway.model import LibraryIndex
from repo_tool.intake.cpl_cache import select_entries
from repo_tool.signing.keys import SignerRef, is_offline, load_signer, sign_or_explain
from repo_tool.state import journal
from repo_tool.state.config import CONFIG_FILE, RepoConfig
from repo_tool.state.head import Head, log_state_of, provider_version, snapshot_wanted
from repo_tool.state.library_index import IndexStore
from repo_tool.state.lock import RepositoryLock, read_or_none
from repo_tool.state.store import BlobStore
from repo_tool.tlog import provider_log as tlog

logger = logging.getLogger(__name__)


class Repository:
    """A repository working directory. Construct with `create` or `open`."""

    def __init__(
        self,
        path: Path,
        config: RepoConfig,
        *,
        secrets_handler: SecretsHandler | None = None,
        lock: LockPolicy | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.secrets_handler = secrets_handler
        self.lock = RepositoryLock(path, lock)  # R/.lock (state/lock.py)
        self.blobs = BlobStore(path / "blobs")
        self._head: Head | None = None
        self._signer_cache: dict[tuple[str, str], Signer] = {}
        # True while repo_tool/ops/ceremony.py `capture_targets_change` runs an operation
        self.capturing = False
        self.group: Any = None  # a group commit holding commits (state/group_commit.py)

    # ----------------------------------------------------------------------------------- paths

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def default_out(self) -> Path:
        return self.path / "public"

    def metadata_path(self, role: str, version: int) -> Path:
        return self.state_dir / "metadata" / role / f"{version}.json"

    # ------------------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        secrets_handler: SecretsHandler | None = None,
        lock: LockPolicy | None = None,
    ) -> Repository:
        """Open an existing working directory (``lock``: how `locked` records itself and waits).

        Raises:
            ConfigurationError: not a repository, or its configuration or head is unreadable.
        """
        seen = read_or_none(path / CONFIG_FILE)  # before parsing: a change in between is seen
        repo = cls(path, RepoConfig.load(path), secrets_handler=secrets_handler, lock=lock)
        repo.lock.config_bytes = seen
        repo.head  # noqa: B018  (fail early on an unreadable head)
        return repo

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the repository lock across a whole read, check and commit (every mutating command
        does): the head, and a configuration another process changed, are read again once held, and
        what a killed command committed but did not record (its events, a key change's
        cfl-repo.json) is completed. Nested holds by one object are one hold (state/lock.py).

        Raises:
            BusyError: another process holds it (for longer than ``--wait``).
        """

        def taken() -> None:
            self._head = None
            if (self.state_dir / "head.json").exists():
                if self.lock.config_changed():
                    self.config = RepoConfig.load(self.path)
                self.after_commit(self.head)

        with self.lock.hold(taken):
            yield

    @property
    def head(self) -> Head:
        if self._head is None:
            path = self.state_dir / "head.json"
            try:
                self._head = Head.from_bytes(path.read_bytes())
            except FileNotFoundError as e:
                raise ConfigurationError(f"{path}: not found; run `cfl-repo init` first") from e
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise ConfigurationError(f"{path}: unreadable ({e!r})") from e
        return self._head

    def forget_head(self) -> None:  # the next read of `head` re-reads the committed one
        self._head = None

    def commit(self, head: Head, *, event: dict[str, Any], **more: dict[str, Any]) -> None:
        """The single atomic step that makes a change real.

        ``event`` (and any further events given by keyword, in order) are numbered and committed
        inside the new head, then appended to ``events.jsonl``; see `_after_commit`.
        """
        with step("committing the new state"):
            if self.group is not None:  # held back until the group's one durable commit
                self.group.hold(head, [event, *more.values()])
                return
            self._commit(head, [event, *more.values()])

    def _commit(self, head: Head, events: list[dict[str, Any]]) -> None:
        base = self.head.event_seq if (self.state_dir / "head.json").exists() else 0
        # The transparency log's entries commit with the change: their tiles are written now and
        # made current by this head (tlog.py); a key change's configuration is not logged.
        head = self._logged(head, [{k: v for k, v in e.items() if k != "config"} for e in events])
        numbered = [{**e, "seq": base + i} for i, e in enumerate(events, start=1)]
        head = replace(head, event_seq=base + len(numbered), last_events=numbered)
        atomic_write_bytes(self.state_dir / "head.json", head.to_bytes())
        self._head = head
        self.after_commit(head)

    def after_commit(self, head: Head) -> None:
        """Carry out, at most once more, what a commit implies outside ``state/``: a key change's new
        configuration, then the event lines. Idempotent, so it may run after a crash."""
        log = self.path / "events.jsonl"
        logged = journal.repair_tail(log)
        pending = [e for e in head.last_events if int(e.get("seq", 0)) > logged]
        if not pending:
            return
        for event in pending:
            config = event.get("config")
            if isinstance(config, dict):
                # The rotation committed a root whose keys this configuration names; write it
                # before the event so a crash here redoes it.
                new_config = RepoConfig.from_dict(config, source="the committed key change")
                new_config.save(self.path)
                self.config = new_config
        journal.append(log, [{k: v for k, v in e.items() if k != "config"} for e in pending])

    # ------------------------------------------------------------ transparency log (tlog.py)

    @property
    def log_dir(self) -> Path:
        return self.path / tlog.LOG_DIR

    def log_state(self) -> tlog.LogState:
        return log_state_of(self.head)

    def _logged(self, head: Head, events: list[dict[str, Any]]) -> Head:
        """``head`` with ``events`` appended to the log (tiles written now, committed by the head)."""
        after = tlog.append_events(self.log_dir, log_state_of(head), events)
        return replace(head, log_size=after.size, log_root=after.root_hash.hex())

    def log_binding_current(self, head: Head) -> bool:
        """Whether the staged timestamp already binds the committed log size."""
        if self.config.log is None:
            return True
        timestamp = self.timestamp()
        fields = timestamp.signed.unrecognized_fields if timestamp else None
        return tlog.bound_size(fields) == head.log_size

    def log_binding(self, head: Head) -> dict[str, Any]:
        """The timestamp field binding the signed checkpoint (none without a log key)."""
        if self.config.log is None:
            return {}
        signer = tlog.load_log_signer(self.path, self.config.log, self.secrets_handler)
        state = log_state_of(head)
        return tlog.timestamp_binding(self.log_dir, state, signer)

    # ----------------------------------------------------------------------- metadata access

    def metadata_bytes(self, role: str, version: int) -> bytes:
        """The signed bytes of one staged metadata version.

        Raises:
            UnavailableError: the file is missing.
        """
        try:
            return self.metadata_path(role, version).read_bytes()
        except OSError as e:
            raise UnavailableError(f"state: {role} version {version} missing ({e.strerror})") from e

    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_bytes(self.metadata_bytes(Root.type, self.head.root_version))

    def targets(self) -> Metadata[Targets]:
        return Metadata[Targets].from_bytes(
            self.metadata_bytes(Targets.type, self.head.targets_version)
        )

    def role(self, name: str) -> Metadata[Targets]:
        return Metadata[Targets].from_bytes(self.metadata_bytes(name, self.head.roles[name]))

    def snapshot(self) -> Metadata[Snapshot] | None:
        if not self.head.snapshot_version:
            return None
        return Metadata[Snapshot].from_bytes(
            self.metadata_bytes(Snapshot.type, self.head.snapshot_version)
        )

    def timestamp(self) -> Metadata[Timestamp] | None:
        if not self.head.timestamp_version:
            return None
        return Metadata[Timestamp].from_bytes(
            self.metadata_bytes(Timestamp.type, self.head.timestamp_version)
        )

    def cpl(self) -> CplDocument | None:
        sha = self.head.cpl_sha256
        if not sha:
            return None
        # scale branch: parsed once per process, not once per deposit (it is content-addressed)
        cached: tuple[str, CplDocument] | None = getattr(self, "_cpl_cache", None)
        if cached is None or cached[0] != sha:
            cached = self._cpl_cache = (sha, CplDocument.from_bytes(self.blobs.get(sha)))
        return cached[1]

    def cpl_entries(self, entry_ids: Collection[str]) -> CplDocument | None:
        """The imported CPL holding only those of ``entry_ids`` it lists (None: no CPL imported).

        What the gateway needs of the CPL for one bundle. A `cfl-repo ingest` is a fresh process,
        and parsing a CPL of 10,000 entries costs more than the rest of the ingest, so the entries
        are found in the CPL's hash-checked blob and only they are parsed
        (repo_tool/intake/cpl_cache.py ``select_entries``); the CPL is parsed whole only when one is not
        there, which gives the refusal a whole CPL gives. Nothing outside the signed blob is read:
        an index beside it would let whoever can write it forge an entry.
        """
        sha = self.head.cpl_sha256
        if not sha:
            return None
        cached: tuple[str, CplDocument] | None = getattr(self, "_cpl_cache", None)
        if cached is not None and cached[0] == sha:
            return cached[1]  # already parsed in this process (an inbox run)
        kept: tuple[str, bytes] | None = getattr(self, "_cpl_bytes", None)
        if kept is None or kept[0] != sha:  # read and hash-checked once per process (an inbox run)
            kept = self._cpl_bytes = (sha, self.blobs.get(sha))
        data = kept[1]
        found = select_entries(data, entry_ids)
        if found is not None:
            return found
        self._cpl_cache = (sha, CplDocument.from_bytes(data))
        return self._cpl_cache[1]

    def withdrawals(self) -> WithdrawalList:
        sha = self.head.withdrawals_sha256
        return WithdrawalList.from_bytes(self.blobs.get(sha)) if sha else WithdrawalList()

    def index(self) -> LibraryIndex:
        # scale branch: delta-chained and cached, see repo_tool/state/library_index.py
        return self.index_store().load(self.head.index_sha256 or None)

    def index_store(self) -> IndexStore:
        store: IndexStore | None = getattr(self, "_indexes", None)
        if store is None:
            store = self._indexes = IndexStore(self.state_dir / "index")
        return store

    def _added_path(self, role: str, version: int) -> Path:
        return self.state_dir / "metadata" / role / f"{version}.added.json"

    def write_added(self, role: str, version: int, targets: list[TargetFile]) -> None:
        """Record which targets a role version added, so publishing it need not parse the role."""
        doc = [{"path": t.path, "sha256": t.hashes["sha256"]} for t in targets]
        atomic_write_bytes(self._added_path(role, version), json.dumps(doc).encode())

    def added_since(self, role: str, published: int, current: int) -> list[tuple[str, str]] | None:
        """(path, sha256) of every target the versions after ``published`` up to ``current`` added,
        or None when a version's record is missing (the caller then reads the whole role)."""
        added: list[tuple[str, str]] = []
        for version in range(published + 1, current + 1):
            try:
                doc = json.loads(self._added_path(role, version).read_bytes())
            except (OSError, ValueError):
                return None
            added.extend((str(item["path"]), str(item["sha256"])) for item in doc)
        return added

    # -------------------------------------------------------------------------------- signing

    def signers(self, role: str, config: RepoConfig | None = None) -> list[SignerRef]:
        return list((config or self.config).signers[role])

    def signer(self, ref: SignerRef) -> Signer:
        """Load a signer once per command: a passphrase prompt or an HSM login per key, not per
        signature."""
        cached = self._signer_cache.get((ref.keyid, ref.uri))
        if cached is None:
            cached = load_signer(ref, base=self.path, secrets_handler=self.secrets_handler)
            self._signer_cache[(ref.keyid, ref.uri)] = cached
        return cached

    def sign(
        self,
        md: Metadata[Any],
        role: str,
        *,
        delegator: Root | Targets | None,
        config: RepoConfig | None = None,
    ) -> Metadata[Any]:
        """Sign with every configured key of a top-level role (or of ``cfl-provider``, whose
        delegator is targets), then verify before anything is written."""
        md.signatures.clear()
        refs = self.signers(role, config)
        signed_bytes = md.signed_bytes  # canonicalized once for every key and the check below
        for ref in refs:
            if is_offline(ref.uri):  # a key holder's key signs only in ceremonies
                continue
            # an HSM's PIN error is one line
            sign_or_explain(md, self.signer(ref), ref, signed_bytes)
        check_root = delegator if delegator is not None else md.signed
        try:
            check_root.verify_delegate(role, signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            offline = any(is_offline(ref.uri) for ref in refs)
            raise ConfigurationError(
                f"{role}: the configured keys do not meet the role's threshold ({e})",
                hint=f"the {role} keys are held offline: change {role} through "
                f"`cfl-repo ceremony start {'targets' if role == naming.PROVIDER_ROLE else role}`"
                if offline
                else "compare cfl-repo.json signers with the keys in root",
            ) from e
        return md

    def write_metadata(self, role: str, md: Metadata[Any]) -> None:
        self.write_staged(role, md.signed.version, md.to_bytes())

    def write_staged(self, role: str, version: int, data: bytes) -> None:
        """Write a metadata version that the next commit will make current.

        A committed version is immutable. A file for a later version can only be the orphan of a
        command killed before its commit: no head names it and nothing published it, so it is
        replaced rather than allowed to wedge every later command.

        Raises:
            UnavailableError: the version is committed already.
        """
        path = self.metadata_path(role, version)
        committed = self.head if (self.state_dir / "head.json").exists() else Head()
        if version <= committed.committed_version(role) and path.exists():
            raise UnavailableError(
                f"state: {role} version {version} is committed already; refusing to replace it"
            )
        atomic_write_bytes(path, data)

    def bump(self, signed: Signed, role: str, now: datetime) -> None:
        signed.version += 1
        signed.expires = now + self.config.policy.expiry(role)

    def stage_targets(
        self,
        change: Callable[[Targets], None],
        now: datetime,
        *,
        root: Root | None = None,
        config: RepoConfig | None = None,
    ) -> int:
        """Apply ``change`` to a copy of targets, sign it as the next version, and write it.

        ``root`` and ``config`` default to the committed ones; a key rotation passes the new ones
        so that root and the targets it re-keys land in one commit.
        """
        if self.capturing:  # the change goes into a targets ceremony instead (ceremony/)
            raise CapturedChange(change)
        md = self.targets()
        change(md.signed)
        self.bump(md.signed, Targets.type, now)
        delegator = root if root is not None else self.root().signed
        self.write_metadata(
            Targets.type, self.sign(md, Targets.type, delegator=delegator, config=config)
        )
        return md.signed.version

    # --------------------------------------------------------------------- provider documents

    @property
    def provider_delegated(self) -> bool:
        """Whether targets delegates ``cfl/...`` to the online ``cfl-provider`` role (issue 13)."""
        return naming.PROVIDER_ROLE in self.head.roles

    def provider_targets(self) -> dict[str, TargetFile]:
        """The provider documents as staged: in ``cfl-provider`` when it exists, else in targets."""
        role = self.role(naming.PROVIDER_ROLE) if self.provider_delegated else self.targets()
        return {p: t for p, t in role.signed.targets.items() if naming.is_provider_target(p)}

    def stage_provider_change(self, change: Callable[[Targets], None], now: datetime) -> Head:
        """The one place provider documents (``cfl/...``) are staged: ``change`` is applied to the
        next version of ``cfl-provider``, signed with its online keys, when targets delegates that
        role; otherwise to the next targets version (a targets ceremony captures it when the
        targets key is offline). Returns the head to commit, with the role's new version.

        Raises:
            ConfigurationError: the keys at hand do not meet the role's threshold.
        """
        if not self.provider_delegated:
            return replace(self.head, targets_version=self.stage_targets(change, now))
        version = self.stage_provider_role(change, now)
        return replace(self.head, roles={**self.head.roles, naming.PROVIDER_ROLE: version})

    def stage_provider_role(
        self,
        change: Callable[[Targets], None],
        now: datetime,
        *,
        delegator: Targets | None = None,
        config: RepoConfig | None = None,
    ) -> int:
        """Apply ``change`` to a copy of ``cfl-provider``, sign it as the next version with the
        configured online keys, verify it against ``delegator`` (default: the committed targets)
        and write it. Returns the new version.

        Raises:
            ConfigurationError: the keys at hand do not meet the delegation's threshold.
        """
        md = self.role(naming.PROVIDER_ROLE)
        change(md.signed)
        self.bump(md.signed, naming.PROVIDER_ROLE, now)
        check = delegator if delegator is not None else self.targets().signed
        self.write_metadata(
            naming.PROVIDER_ROLE,
            self.sign(md, naming.PROVIDER_ROLE, delegator=check, config=config),
        )
        return md.signed.version

    def suppliers(self) -> SupplierRegistry:
        """The current supplier registry (empty before the first registration)."""
        sha = self.head.suppliers_sha256
        return SupplierRegistry.from_bytes(self.blobs.get(sha)) if sha else SupplierRegistry()

    def commit_suppliers(
        self, registry: SupplierRegistry, *, now: datetime, event: dict[str, Any]
    ) -> int:
        """Store ``registry``, sign it as target ``cfl/suppliers.json``, and commit with ``event``
        (repo_tool/ops/suppliers.py). Returns the new version of the role that signs it."""
        data = registry.to_bytes()
        sha = self.blobs.put(data)

        def change(targets: Targets) -> None:
            targets.targets[SUPPLIERS_TARGET_PATH] = TargetFile(
                len(data), {"sha256": sha}, SUPPLIERS_TARGET_PATH
            )

        head = self.stage_provider_change(change, now)
        self.commit(replace(head, suppliers_sha256=sha), event={**event, "suppliers_sha256": sha})
        return provider_version(head)

    def provider_document(self, path: str) -> bytes | None:
        """The bytes of a provider target (``cfl/...``) as staged (``cfl-provider`` or targets)."""
        target = self.provider_targets().get(path)
        return None if target is None else self.blobs.get(target.hashes["sha256"])

    def put_provider_targets(
        self, files: Mapping[str, bytes], *, now: datetime, event: dict[str, Any]
    ) -> int:
        """Publish provider documents (``cfl/...``) in one new version of the role that holds them
        (`stage_provider_change`): blobs first, then the signed version, then one commit. Returns
        that role's new version (`provider_signing_role`)."""
        staged = {path: (len(data), self.blobs.put(data)) for path, data in files.items()}

        def change(targets: Targets) -> None:
            for path, (length, sha) in staged.items():
                targets.targets[path] = TargetFile(length, {"sha256": sha}, path)

        head = self.stage_provider_change(change, now)
        self.commit(head, event=event)
        return provider_version(head)

    def sign_snapshot(
        self,
        head: Head,
        *,
        now: datetime,
        root: Root | None = None,
        config: RepoConfig | None = None,
    ) -> Head:
        """Write a snapshot of ``head``'s roles and a timestamp for it; return the head that makes
        them current (the caller commits it, with whatever else its transaction changed)."""
        wanted = snapshot_wanted(head)
        current = self.snapshot()
        previous = current.signed.meta if current is not None else {}

        def pinned(name: str, version: int) -> MetaFile:
            # Length and hash, not only the version: otherwise a role signed by its own (e.g. a
            # manufacturer's) key but never admitted by the gateway passes for the listed version.
            known = previous.get(name)
            if known is not None and known.version == version and known.hashes:
                return known
            data = self.metadata_bytes(name.removesuffix(".json"), version)
            return MetaFile(
                version=version,
                length=len(data),
                hashes={"sha256": hashlib.sha256(data).hexdigest()},
            )

        delegator = root if root is not None else self.root().signed
        snapshot = Snapshot(
            version=self.head.snapshot_version + 1,
            expires=now + self.config.policy.expiry(Snapshot.type),
            meta={name: pinned(name, version) for name, version in wanted.items()},
        )
        snapshot.spec_version = SPEC_VERSION
        snapshot_md = self.sign(
            Metadata(snapshot), Snapshot.type, delegator=delegator, config=config
        )
        snapshot_bytes = snapshot_md.to_bytes()
        self.write_metadata(Snapshot.type, snapshot_md)
        timestamp = Timestamp(
            version=self.head.timestamp_version + 1,
            expires=now + self.config.policy.expiry(Timestamp.type),
            snapshot_meta=MetaFile(
                version=snapshot.version,
                length=len(snapshot_bytes),
                hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()},
            ),
        )
        timestamp.spec_version = SPEC_VERSION
        timestamp.unrecognized_fields.update(self.log_binding(head))
        self.write_metadata(
            Timestamp.type,
            self.sign(Metadata(timestamp), Timestamp.type, delegator=delegator, config=config),
        )
        return replace(head, snapshot_version=snapshot.version, timestamp_version=timestamp.version)

    def held_offline(self, role: str) -> bool:
        """Whether the keys this repository can use for ``role`` fall short of its threshold
        (the rest are key holders' ``offline:`` keys): then only a ceremony can sign it."""
        usable = [ref for ref in self.signers(role) if not is_offline(ref.uri)]
        return len(usable) < self.config.thresholds[role]


class CapturedChange(BaseException):
    """Carries a targets change out of an operation run by `capture_targets_change`
    (repo_tool/ops/ceremony.py), raised by `Repository.stage_targets`. A BaseException so that
    no ``except Exception`` inside an operation swallows it."""

    def __init__(self, change: Callable[[Targets], None]) -> None:
        super().__init__("targets change captured for a ceremony")
        self.change = change
