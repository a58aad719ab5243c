"""The provider's repository working directory: staged state, signing, and the gateway's effects.

Layout of a working directory R::

    cfl-repo.json               configuration (policy, signer URIs and public keys per role)
    state/head.json             the commit point: which version of everything is current
    state/metadata/<role>/N.json  every signed metadata version ever staged (immutable)
    state/index/<sha>.json      the duplicate index of a head (immutable, content-addressed)
    blobs/<ab>/<sha256>         images and provider documents (immutable, content-addressed)
    release-notes/<sha256>      release notes, kept by the provider and never published
    rejected/<when>-<name>/     rejected bundles with their report.json
    events.jsonl                append-only audit log (imports, registrations, ingests, withdrawals)
    public/                     the default published tree

Every mutation writes its new immutable files first and then replaces ``state/head.json`` in one
atomic rename: a crash at any point leaves the previous head, and therefore the previous repository,
intact. Nothing is ever half-added.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, SecretsHandler
from tuf.api.metadata import (
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from metadata_templates import SCHEMA_VERSION, naming
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, UnavailableError
from metadata_templates.locking import exclusive_lock
from metadata_templates.withdrawals import Withdrawal, WithdrawalList
from repo_tool.bundle import KIND_RENEWAL, Bundle, BundleError, read_bundle
from repo_tool.config import TOP_LEVEL_ROLES, RepoConfig
from repo_tool.gateway import (
    Code,
    Finding,
    GatewayContext,
    LibraryIndex,
    RegisteredManufacturer,
    Verdict,
    check_bundle,
    manufacturer_delegation,
)
from repo_tool.keys import SignerRef, is_offline, load_signer, sign_or_explain
from repo_tool.store import BlobStore

SPEC_VERSION = "1.0.31"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManufacturerRecord:
    """A registered manufacturer as the provider stores it."""

    id: str
    name: str
    keys: dict[str, dict[str, Any]]  # keyid -> TUF key dict
    threshold: int
    registered: str
    # keys branch: keys removed by `manufacturer rotate-key` that the published delegation keeps
    # until the manufacturer re-signs its role with the new keys (keyid -> TUF key dict); never
    # used by the gateway.
    retiring: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_registered(self) -> RegisteredManufacturer:
        return RegisteredManufacturer(
            id=self.id,
            name=self.name,
            keys={keyid: Key.from_dict(keyid, dict(key)) for keyid, key in self.keys.items()},
            threshold=self.threshold,
        )


@dataclass(frozen=True)
class Head:
    """The current state of the repository; replaced atomically on every change."""

    root_version: int = 1
    targets_version: int = 1
    roles: dict[str, int] = field(default_factory=dict)
    manufacturers: dict[str, ManufacturerRecord] = field(default_factory=dict)
    cpl_sha256: str | None = None
    withdrawals_sha256: str | None = None
    index_sha256: str | None = None
    snapshot_version: int = 0
    timestamp_version: int = 0
    # keys branch: suspended manufacturers (ID -> {"reason", "at"}); their deposits are rejected.
    suspended: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        doc["schema_version"] = SCHEMA_VERSION
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        doc = json.loads(data)
        doc.pop("schema_version", None)
        doc["manufacturers"] = {k: ManufacturerRecord(**v) for k, v in doc["manufacturers"].items()}
        return cls(**doc)


@dataclass(frozen=True)
class IngestResult:
    """The outcome for one bundle, in the stable `ingest --json` shape."""

    bundle: str
    status: str  # "accepted" | "rejected"
    target: str | None
    reasons: list[str]
    messages: list[str]
    kept_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "bundle": self.bundle,
            "status": self.status,
            "target": self.target,
            "reasons": self.reasons,
            "messages": self.messages,
        }
        if self.kept_at:
            doc["kept_at"] = self.kept_at
        return doc


def _json_line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode() + b"\n"


class Repository:
    """A repository working directory. Construct with `create` or `open`."""

    def __init__(
        self, path: Path, config: RepoConfig, *, secrets_handler: SecretsHandler | None = None
    ) -> None:
        self.path = path
        self.config = config
        self.secrets_handler = secrets_handler
        self.blobs = BlobStore(path / "blobs")
        self._head: Head | None = None
        self._capturing = False  # keys branch: see capture_targets_change

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
    def open(cls, path: Path, *, secrets_handler: SecretsHandler | None = None) -> Repository:
        """Open an existing working directory.

        Raises:
            ConfigurationError: not a repository, or its configuration or head is unreadable.
        """
        repo = cls(path, RepoConfig.load(path), secrets_handler=secrets_handler)
        repo.head  # noqa: B018  (fail early on an unreadable head)
        return repo

    @classmethod
    def create(
        cls,
        path: Path,
        config: RepoConfig,
        *,
        now: datetime,
        secrets_handler: SecretsHandler | None = None,
    ) -> Repository:
        """Create version 1 of root and targets in a new working directory.

        Raises:
            ConfigurationError: the directory is a repository already, or a key cannot sign.
        """
        if (path / "state" / "head.json").exists():
            raise ConfigurationError(
                f"{path} is a repository already; refusing to re-initialise it"
            )
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path, config, secrets_handler=secrets_handler)
        with repo.locked():
            root = Root(
                version=1, expires=now + config.policy.expiry(Root.type), consistent_snapshot=True
            )
            root.spec_version = SPEC_VERSION
            for role in TOP_LEVEL_ROLES:
                for ref in config.signers[role]:
                    root.add_key(ref.public_key, role)
                root.roles[role].threshold = config.thresholds[role]
            root_md = repo._sign(Metadata(root), Root.type, delegator=None)
            targets = Targets(version=1, expires=now + config.policy.expiry(Targets.type))
            targets.spec_version = SPEC_VERSION
            targets_md = repo._sign(Metadata(targets), Targets.type, delegator=root)
            repo._write_metadata(Root.type, root_md)
            repo._write_metadata(Targets.type, targets_md)
            config.save(path)
            repo._commit(
                Head(),
                event={"event": "init", "at": format_timestamp(now), "dev_keys": config.dev_keys},
            )
        return repo

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the repository lock (every mutating command does)."""
        with exclusive_lock(self.path / ".lock", what="cfl-repo command"):
            self._head = None  # re-read under the lock
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

    def _commit(self, head: Head, *, event: dict[str, Any]) -> None:
        """The single atomic step that makes a change real; the audit line follows it."""
        atomic_write_bytes(self.state_dir / "head.json", head.to_bytes())
        self._head = head
        with (self.path / "events.jsonl").open("ab") as log:
            log.write(_json_line(event))

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
        return CplDocument.from_bytes(self.blobs.get(sha)) if sha else None

    def withdrawals(self) -> WithdrawalList:
        sha = self.head.withdrawals_sha256
        return WithdrawalList.from_bytes(self.blobs.get(sha)) if sha else WithdrawalList()

    def index(self) -> LibraryIndex:
        sha = self.head.index_sha256
        if not sha:
            return LibraryIndex()
        doc = json.loads((self.state_dir / "index" / f"{sha}.json").read_bytes())
        return LibraryIndex(
            doc["file_sha256"], doc["manufacturer_image_sha256"], doc["cpl_entries"]
        )

    def _write_index(self, index: LibraryIndex) -> str:
        data = json.dumps(
            {
                "file_sha256": dict(index.file_sha256),
                "manufacturer_image_sha256": dict(index.manufacturer_image_sha256),
                "cpl_entries": dict(index.cpl_entries),
            },
            sort_keys=True,
        ).encode()
        sha = hashlib.sha256(data).hexdigest()
        path = self.state_dir / "index" / f"{sha}.json"
        if not path.exists():
            atomic_write_bytes(path, data)
        return sha

    def _added_path(self, role: str, version: int) -> Path:
        return self.state_dir / "metadata" / role / f"{version}.added.json"

    def _write_added(self, role: str, version: int, targets: list[TargetFile]) -> None:
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

    def _signers(self, role: str) -> list[SignerRef]:
        return list(self.config.signers[role])

    def _sign(self, md: Metadata[Any], role: str, *, delegator: Root | None) -> Metadata[Any]:
        """Sign with every configured key of a top-level role, then verify before anything is written."""
        md.signatures.clear()
        for ref in self._signers(role):
            if is_offline(ref.uri):  # keys branch: a key holder's key signs only in ceremonies
                continue
            signer = load_signer(ref, base=self.path, secrets_handler=self.secrets_handler)
            sign_or_explain(md, signer, ref)  # keys branch: an HSM asks for its PIN only here
        check_root = delegator if delegator is not None else md.signed
        try:
            check_root.verify_delegate(role, md.signed_bytes, md.signatures)
        except Exception as e:
            offline = any(is_offline(ref.uri) for ref in self._signers(role))
            raise ConfigurationError(
                f"{role}: the configured keys do not meet the role's threshold ({e})",
                hint=f"the {role} keys are held offline: change {role} through "
                f"`cfl-repo ceremony start {role}`"
                if offline
                else "compare cfl-repo.json signers with the keys in root",
            ) from e
        return md

    def _write_metadata(self, role: str, md: Metadata[Any]) -> None:
        path = self.metadata_path(role, md.signed.version)
        if path.exists():
            raise UnavailableError(
                f"state: {role} version {md.signed.version} exists already; refusing to replace it"
            )
        atomic_write_bytes(path, md.to_bytes())

    def _bump(self, signed: Signed, role: str, now: datetime) -> None:
        signed.version += 1
        signed.expires = now + self.config.policy.expiry(role)

    def _stage_targets(self, change: Callable[[Targets], None], now: datetime) -> int:
        """Apply ``change`` to a copy of targets, sign it as the next version, and write it."""
        if self._capturing:  # keys branch: the change goes into a targets ceremony instead
            raise _CapturedChange(change)
        md = self.targets()
        change(md.signed)
        self._bump(md.signed, Targets.type, now)
        self._write_metadata(
            Targets.type, self._sign(md, Targets.type, delegator=self.root().signed)
        )
        return md.signed.version

    # ---------------------------------------------------------------------------- operations

    def import_cpl(self, doc: CplDocument, *, now: datetime) -> int:
        """Store the CPL and publish it as target ``cfl/cpl.json`` of the top-level targets role.

        Returns the new targets version.
        """
        data = doc.to_bytes()
        sha = self.blobs.put(data)

        def change(targets: Targets) -> None:
            targets.targets[naming.CPL_TARGET_PATH] = TargetFile(
                len(data), {"sha256": sha}, naming.CPL_TARGET_PATH
            )

        version = self._stage_targets(change, now)
        self._commit(
            replace(self.head, cpl_sha256=sha, targets_version=version),
            event={
                "event": "cpl-import",
                "at": format_timestamp(now),
                "cpl_sha256": sha,
                "source_sha256": doc.source_sha256,
                "entries": len(doc.entries),
            },
        )
        return version

    def add_manufacturer(
        self, manufacturer_id: str, name: str, keys: list[Key], threshold: int, *, now: datetime
    ) -> ManufacturerRecord:
        """Register a manufacturer's keys. Its delegation appears with its first accepted deposit,
        so the published targets never delegate to a role that has no metadata (which would break
        every client that walks the delegations).

        Raises:
            RejectedInputError: already registered, no keys, duplicate keys, or a bad threshold.
        """
        if manufacturer_id in self.head.manufacturers:
            raise RejectedInputError(
                f"manufacturer {manufacturer_id}: found it registered already, expected a new manufacturer ID",
                hint="key rotation for a registered manufacturer is not supported yet",
            )
        keyids = {key.keyid for key in keys}
        if not keys or len(keyids) != len(keys):
            raise RejectedInputError(
                f"--key: found {len(keys)} key(s), {len(keyids)} distinct; expected >= 1, distinct"
            )
        if not 1 <= threshold <= len(keys):
            raise RejectedInputError(
                f"--threshold: found {threshold}, expected 1..{len(keys)} (the number of keys)"
            )
        record = ManufacturerRecord(
            id=manufacturer_id,
            name=name,
            keys={key.keyid: key.to_dict() for key in keys},
            threshold=threshold,
            registered=format_timestamp(now),
        )
        manufacturers = dict(self.head.manufacturers)
        manufacturers[manufacturer_id] = record
        self._commit(
            replace(self.head, manufacturers=manufacturers),
            event={
                "event": "manufacturer-add",
                "at": format_timestamp(now),
                "manufacturer": manufacturer_id,
                "keyids": sorted(keyids),
                "threshold": threshold,
            },
        )
        return record

    def gateway_context(self, now: datetime) -> GatewayContext:
        head = self.head
        return GatewayContext(
            cpl=self.cpl(),
            manufacturers={k: v.as_registered() for k, v in head.manufacturers.items()},
            # Loaded on demand: checking one bundle should not parse every manufacturer's role.
            current_role=lambda name: self.role(name) if name in head.roles else None,
            index=self.index(),
            now=now,
            image_size_cap=self.config.image_size_cap,
            suspended={k: v["reason"] for k, v in head.suspended.items()},  # keys branch
        )

    def ingest(self, bundle_path: Path, *, now: datetime) -> IngestResult:
        """Run the gateway on one bundle and stage it if accepted; keep it with a report if not."""
        try:
            bundle = read_bundle(bundle_path)
        except BundleError as e:
            verdict = Verdict((Finding(Code.MALFORMED_BUNDLE, str(e)),), None, None)
            return self._reject(bundle_path, verdict, now)
        if bundle.kind == KIND_RENEWAL:
            return self._ingest_renewal(bundle_path, bundle, now)
        staged = self.blobs.stage(bundle.image)  # written while the gateway hashes
        try:
            context = self.gateway_context(now)
            verdict = check_bundle(bundle, context)
        except BaseException:
            staged.discard()
            raise
        accepted = verdict.accepted
        if accepted is None:
            staged.discard()
            return self._reject(bundle_path, verdict, now)

        head = self.head
        staged.commit(accepted.digests.file_sha256)
        if bundle.release_notes is not None:
            notes = self.path / "release-notes" / hashlib.sha256(bundle.release_notes).hexdigest()
            if not notes.exists():
                atomic_write_bytes(notes, bundle.release_notes, mode=0o600)
        # Keep exactly the bytes the manufacturer signed.
        path = self.metadata_path(accepted.role_name, accepted.role.signed.version)
        if path.exists():
            raise UnavailableError(f"state: {path} exists already; refusing to replace it")
        atomic_write_bytes(path, bundle.role_bytes)
        self._write_added(accepted.role_name, accepted.role.signed.version, [accepted.target])

        index = context.index  # read once for the duplicate check; the lock keeps it current
        target_path = accepted.target.path
        new_index = LibraryIndex(
            {**index.file_sha256, accepted.digests.file_sha256: target_path},
            {
                **index.manufacturer_image_sha256,
                accepted.digests.manufacturer_image_sha256: target_path,
            },
            {
                **index.cpl_entries,
                **{entry_id: target_path for entry_id in bundle.declaration.cpl_entries},
            },
        )
        roles = dict(head.roles)
        first_deposit = accepted.role_name not in roles
        roles[accepted.role_name] = accepted.role.signed.version
        targets_version = head.targets_version
        if first_deposit:
            manufacturer = head.manufacturers[bundle.manufacturer_id]
            targets_version = self._stage_targets(lambda t: _delegate(t, manufacturer), now)
        self._commit(
            replace(
                head,
                roles=roles,
                targets_version=targets_version,
                index_sha256=self._write_index(new_index),
            ),
            event={
                "event": "ingest-accepted",
                "at": format_timestamp(now),
                "bundle": bundle_path.name,
                "target": target_path,
                "sha256": accepted.digests.file_sha256,
                "role": accepted.role_name,
                "role_version": accepted.role.signed.version,
            },
        )
        return IngestResult(bundle_path.name, "accepted", target_path, [], [])

    def _ingest_renewal(self, bundle_path: Path, bundle: Bundle, now: datetime) -> IngestResult:
        verdict = check_bundle(bundle, self.gateway_context(now))
        role = verdict.renewal
        if role is None:
            return self._reject(bundle_path, verdict, now)
        role_name = naming.role_name(bundle.manufacturer_id)
        path = self.metadata_path(role_name, role.signed.version)
        if path.exists():
            raise UnavailableError(f"state: {path} exists already; refusing to replace it")
        atomic_write_bytes(path, bundle.role_bytes)
        self._write_added(role_name, role.signed.version, [])
        roles = dict(self.head.roles)
        roles[role_name] = role.signed.version
        self._commit(
            replace(self.head, roles=roles),
            event={
                "event": "ingest-renewal",
                "at": format_timestamp(now),
                "bundle": bundle_path.name,
                "role": role_name,
                "role_version": role.signed.version,
                "expires": format_timestamp(role.signed.expires),
            },
        )
        return IngestResult(bundle_path.name, "accepted", None, [], [])

    def _reject(self, bundle_path: Path, verdict: Verdict, now: datetime) -> IngestResult:
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        keep = self.path / "rejected" / f"{stamp}-{bundle_path.name}"
        suffix = 1
        while keep.exists():
            suffix += 1
            keep = self.path / "rejected" / f"{stamp}-{suffix}-{bundle_path.name}"
        result = IngestResult(
            bundle=bundle_path.name,
            status="rejected",
            target=verdict.target,
            reasons=verdict.codes,
            messages=[f"{f.code.value}: {f.message}" for f in verdict.findings],
            kept_at=str(keep.relative_to(self.path)),
        )
        keep.mkdir(parents=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(bundle_path, keep / bundle_path.name)
        report = {
            "schema_version": SCHEMA_VERSION,
            "rejected": format_timestamp(now),
            **result.to_dict(),
        }
        atomic_write_bytes(
            keep / "report.json", json.dumps(report, indent=2, sort_keys=True).encode()
        )
        with (self.path / "events.jsonl").open("ab") as log:
            log.write(
                _json_line(
                    {
                        "event": "ingest-rejected",
                        "at": format_timestamp(now),
                        "bundle": bundle_path.name,
                        "reasons": result.reasons,
                    }
                )
            )
        return result

    def withdraw(self, target: str, reason: str, *, now: datetime) -> Withdrawal:
        """Record a withdrawal: the target leaves clients' recommendations; its blob stays.

        Raises:
            RejectedInputError: unknown target, already withdrawn, or no reason.
        """
        if not reason.strip():
            raise RejectedInputError(
                "--reason: found an empty reason, expected why the image is withdrawn"
            )
        manufacturer = naming.manufacturer_of_target(target)
        role_name = naming.role_name(manufacturer) if manufacturer else None
        if (
            role_name is None
            or role_name not in self.head.roles
            or target not in self.role(role_name).signed.targets
        ):
            raise RejectedInputError(
                f"TARGET: found {target!r}, expected an image target in the library"
            )
        current = self.withdrawals()
        if target in current.by_target():
            raise RejectedInputError(
                f"TARGET: {target} was withdrawn already ({current.by_target()[target].withdrawn})"
            )
        sha = self.role(role_name).signed.targets[target].hashes["sha256"]
        withdrawal = Withdrawal(
            target=target, sha256=sha, withdrawn=format_timestamp(now), reason=reason.strip()
        )
        data = current.with_added(withdrawal).to_bytes()
        doc_sha = self.blobs.put(data)

        def change(targets: Targets) -> None:
            targets.targets[naming.WITHDRAWALS_TARGET_PATH] = TargetFile(
                len(data), {"sha256": doc_sha}, naming.WITHDRAWALS_TARGET_PATH
            )

        version = self._stage_targets(change, now)
        self._commit(
            replace(self.head, withdrawals_sha256=doc_sha, targets_version=version),
            event={"event": "withdraw", "at": withdrawal.withdrawn, **withdrawal.to_dict()},
        )
        return withdrawal

    def stage_snapshot(self, *, now: datetime, force: bool = False) -> bool:
        """Sign a new snapshot and timestamp when the staged roles changed (or ``force``).

        Returns whether anything was signed.
        """
        head = self.head
        wanted = {f"{Targets.type}.json": head.targets_version} | {
            f"{name}.json": version for name, version in sorted(head.roles.items())
        }
        current = self.snapshot()
        if (
            not force
            and current is not None
            and {k: v.version for k, v in current.signed.meta.items()} == wanted
        ):
            return False
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

        root = self.root().signed
        snapshot = Snapshot(
            version=head.snapshot_version + 1,
            expires=now + self.config.policy.expiry(Snapshot.type),
            meta={name: pinned(name, version) for name, version in wanted.items()},
        )
        snapshot.spec_version = SPEC_VERSION
        snapshot_md = self._sign(Metadata(snapshot), Snapshot.type, delegator=root)
        snapshot_bytes = snapshot_md.to_bytes()
        self._write_metadata(Snapshot.type, snapshot_md)
        timestamp = Timestamp(
            version=head.timestamp_version + 1,
            expires=now + self.config.policy.expiry(Timestamp.type),
            snapshot_meta=MetaFile(
                version=snapshot.version,
                length=len(snapshot_bytes),
                hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()},
            ),
        )
        timestamp.spec_version = SPEC_VERSION
        self._write_metadata(
            Timestamp.type, self._sign(Metadata(timestamp), Timestamp.type, delegator=root)
        )
        self._commit(
            replace(head, snapshot_version=snapshot.version, timestamp_version=timestamp.version),
            event={"event": "snapshot", "at": format_timestamp(now), "snapshot": snapshot.version},
        )
        return True

    def rotate_keys(
        self,
        role: str,
        *,
        add: list[SignerRef],
        remove: list[str],
        threshold: int | None,
        now: datetime,
    ) -> int:
        """Change a top-level role's keys or threshold through a new root version.

        The new root is signed by the current root keys (so clients holding the old root accept
        it) and, for a root rotation, by the new ones too (so it is valid on its own); both checks
        are python-tuf's before anything is written. Targets is re-signed with its new keys, and a
        fresh snapshot and timestamp are staged. Returns the new root version.

        Raises:
            RejectedInputError: unknown role or key ID, no key left, duplicate key, bad threshold.
            ConfigurationError: the signatures do not meet the old or the new root's threshold.
        """
        if role not in TOP_LEVEL_ROLES:
            raise RejectedInputError(
                f"ROLE: found {role!r}, expected one of {', '.join(TOP_LEVEL_ROLES)}"
            )
        current = list(self.config.signers[role])
        dropped = set()
        for prefix in remove:
            matches = [ref.keyid for ref in current if ref.keyid.startswith(prefix)]
            if len(matches) != 1:
                raise RejectedInputError(
                    f"--remove: found {prefix!r} matching {len(matches)} {role} key(s), expected exactly one of "
                    f"{[ref.keyid[:8] for ref in current]}"
                )
            dropped.add(matches[0])
        refs = [ref for ref in current if ref.keyid not in dropped] + list(add)
        keyids = [ref.keyid for ref in refs]
        if not refs or len(set(keyids)) != len(keyids):
            raise RejectedInputError(
                f"{role} keys: found {len(refs)} ({len(set(keyids))} distinct), expected >= 1, distinct"
            )
        new_threshold = threshold if threshold is not None else self.config.thresholds[role]
        if not 1 <= new_threshold <= len(refs):
            raise RejectedInputError(
                f"--threshold: found {new_threshold}, expected 1..{len(refs)} ({role} keys)"
            )

        old_root = self.root().signed
        new_root = (
            Metadata[Root].from_bytes(self.metadata_bytes(Root.type, self.head.root_version)).signed
        )
        new_root.version += 1
        new_root.expires = now + self.config.policy.expiry(Root.type)
        for keyid in list(new_root.roles[role].keyids):
            new_root.revoke_key(keyid, role)
        for ref in refs:
            new_root.add_key(ref.public_key, role)
        new_root.roles[role].threshold = new_threshold
        md = Metadata(new_root)
        signing_refs = {ref.keyid: ref for ref in self._signers(Root.type)}
        if role == Root.type:
            signing_refs.update({ref.keyid: ref for ref in refs})
        for ref in signing_refs.values():
            try:
                signer = load_signer(ref, base=self.path, secrets_handler=self.secrets_handler)
            except ConfigurationError:
                if ref.keyid in dropped:
                    continue  # a lost or compromised key being removed; the others must suffice
                raise
            sign_or_explain(md, signer, ref)  # keys branch: an HSM's PIN error is one line
        for name, delegator in (("the current root", old_root), ("the new root", new_root)):
            try:
                delegator.verify_delegate(Root.type, md.signed_bytes, md.signatures)
            except Exception as e:
                raise ConfigurationError(
                    f"root v{new_root.version}: does not verify against {name} ({e})"
                ) from e
        self._write_metadata(Root.type, md)

        signers = dict(self.config.signers) | {role: tuple(refs)}
        thresholds = dict(self.config.thresholds) | {role: new_threshold}
        policy = self.config.policy
        if role == Root.type:
            policy = replace(policy, root_keys=len(refs), root_threshold=new_threshold)
        new_config = replace(self.config, signers=signers, thresholds=thresholds, policy=policy)
        self._commit(
            replace(self.head, root_version=new_root.version),
            event={
                "event": "rotate-keys",
                "at": format_timestamp(now),
                "role": role,
                "root_version": new_root.version,
                "added": [ref.keyid for ref in add],
                "removed": sorted(dropped),
                "threshold": new_threshold,
            },
        )
        # The configuration follows the committed root; if this write were lost, signing would
        # fail loudly against the new root rather than produce anything invalid.
        new_config.save(self.path)
        self.config = new_config
        if role == Targets.type:
            version = self._stage_targets(lambda t: None, now)
            self._commit(
                replace(self.head, targets_version=version),
                event={"event": "resign-targets", "at": format_timestamp(now)},
            )
        self.stage_snapshot(now=now, force=True)
        return new_root.version

    def refresh(self, *, now: datetime, force: bool = False) -> list[str]:
        """Re-sign the roles the provider holds keys for whose remaining validity is below the
        policy's margin. Returns the roles re-signed."""
        margin = self.config.policy.refresh_margin_fraction
        resigned: list[str] = []

        def due(expires: datetime, role: str) -> bool:
            return force or (expires - now) < self.config.policy.expiry(role) * margin

        targets_expires = self.targets().signed.expires
        if due(targets_expires, Targets.type) and self.held_offline(Targets.type):
            # keys branch: never let an offline targets key stop snapshot/timestamp from being
            # re-signed; the targets refresh is a ceremony (status and this warning say when).
            logger.warning(
                "targets expires %s and its keys are offline: run `cfl-repo ceremony start targets`",
                targets_expires.isoformat(),
            )
        elif due(targets_expires, Targets.type):
            version = self._stage_targets(lambda t: None, now)
            self._commit(
                replace(self.head, targets_version=version),
                event={"event": "refresh-targets", "at": format_timestamp(now), "targets": version},
            )
            resigned.append(Targets.type)
        snapshot, timestamp = self.snapshot(), self.timestamp()
        stale = (
            snapshot is None
            or timestamp is None
            or due(snapshot.signed.expires, Snapshot.type)
            or due(timestamp.signed.expires, Timestamp.type)
        )
        if (stale or resigned) and self.stage_snapshot(now=now, force=True):
            resigned += [Snapshot.type, Timestamp.type]
        return resigned

    # ------------------------------------------- keys branch hooks: logic in repo_tool/ceremony/,
    # repo_tool/manufacturer_keys.py; these methods only read state, write, and commit.

    def finish_ceremony(
        self, proposal: Any, signatures: list[Any], *, now: datetime
    ) -> CeremonyOutcome:
        """Commit a signed ceremony proposal: verify, write the new root or targets, follow it in
        the configuration (root) or the registered manufacturers (targets), stage snapshot and
        timestamp. Running it again after a crash, or after it finished, completes the same change.

        Raises:
            RejectedInputError: a stale proposal or a signature file that does not belong to it.
            VerificationError: the signatures do not meet the threshold(s).
        """
        from repo_tool.ceremony.apply import (
            config_after_root,
            manufacturers_after_targets,
            provider_documents_after_targets,
        )
        from repo_tool.ceremony.finish import check_applies, signed_metadata
        from repo_tool.ceremony.proposal import sha256_hex

        is_root = proposal.role == Root.type
        current: Metadata[Any] = self.root() if is_root else self.targets()
        done = sha256_hex(current.signed_bytes) == proposal.signed_sha256
        if not done:
            check_applies(proposal, self.root(), current)
            md = signed_metadata(proposal, signatures, now=now)
            # Version head+1 is not committed yet, so a file there is an orphan of a killed run.
            atomic_write_bytes(self.metadata_path(proposal.role, md.signed.version), md.to_bytes())
            event = {
                "event": f"ceremony-{proposal.role}",
                "at": format_timestamp(now),
                "version": md.signed.version,
                "signed_by": sorted(md.signatures),
            }
            if is_root:
                self._commit(replace(self.head, root_version=md.signed.version), event=event)
            else:
                manufacturers = manufacturers_after_targets(self.head.manufacturers, md.signed)
                documents = provider_documents_after_targets(self.head, md.signed)
                self._commit(
                    replace(
                        self.head,
                        targets_version=md.signed.version,
                        manufacturers=manufacturers,
                        cpl_sha256=documents["cpl_sha256"],
                        withdrawals_sha256=documents["withdrawals_sha256"],
                    ),
                    event=event,
                )
        notes: list[str] = []
        if is_root:
            root = self.root().signed
            new_config = config_after_root(self.config, root, proposal.online_signers)
            if new_config != self.config:
                new_config.save(self.path)
                self.config = new_config
            targets_md = self.targets()
            if not root.get_verification_result(
                Targets.type, targets_md.signed_bytes, targets_md.signatures
            ).verified:
                try:
                    version = self._stage_targets(lambda t: None, now)
                    self._commit(
                        replace(self.head, targets_version=version),
                        event={"event": "resign-targets", "at": format_timestamp(now)},
                    )
                except ConfigurationError:
                    notes.append(
                        "targets is signed by keys this root no longer trusts and its new keys are "
                        "offline: run `cfl-repo ceremony start targets` before publishing"
                    )
        try:
            self.stage_snapshot(now=now, force=True)
        except ConfigurationError as e:
            notes.append(f"snapshot/timestamp not staged: {e}")
        return CeremonyOutcome(
            proposal.role,
            self.head.root_version if is_root else self.head.targets_version,
            done,
            notes,
        )

    def capture_targets_change(self, operation: Callable[[], object]) -> Callable[[Targets], None]:
        """Run a routine operation (``import_cpl``, ``withdraw`` ...) up to the point where it would
        re-sign targets, and return its change to targets instead, for a targets ceremony. Nothing
        is committed; only content-addressed blobs may have been stored.

        Raises:
            RejectedInputError: whatever the operation rejects.
            ConfigurationError: the operation does not change targets.
        """
        self._capturing = True
        try:
            operation()
        except _CapturedChange as captured:
            return captured.change
        finally:
            self._capturing = False
            self._head = None  # whatever the operation read, re-read the committed head
        raise ConfigurationError("the operation changed nothing in targets; no ceremony needed")

    def held_offline(self, role: str) -> bool:
        """Whether the keys this repository can use for ``role`` fall short of its threshold
        (the rest are key holders' ``offline:`` keys): then only a ceremony can sign it."""
        usable = [ref for ref in self._signers(role) if not is_offline(ref.uri)]
        return len(usable) < self.config.thresholds[role]

    def update_manufacturer(
        self,
        record: ManufacturerRecord,
        *,
        now: datetime,
        event: dict[str, Any],
    ) -> bool:
        """Replace a manufacturer's record; when it is delegated already, re-sign targets with the
        delegation that follows it (needs the targets key online). Returns whether targets changed.

        Raises:
            ConfigurationError: the targets key is offline (use a targets ceremony instead).
        """
        head = self.head
        manufacturers = dict(head.manufacturers) | {record.id: record}
        targets_version = head.targets_version
        delegated = naming.role_name(record.id) in head.roles
        if delegated:
            targets_version = self._stage_targets(lambda t: _redelegate(t, record), now)
        self._commit(
            replace(head, manufacturers=manufacturers, targets_version=targets_version),
            event=event,
        )
        return delegated

    def propose_manufacturer(self, record: ManufacturerRecord, *, now: datetime) -> Any:
        """A targets ceremony proposal that changes one manufacturer's delegation to ``record``."""
        from repo_tool.ceremony.start import propose_targets

        return propose_targets(
            self.root(),
            self.targets(),
            now=now,
            expires_in=self.config.policy.expiry(Targets.type),
            change=lambda t: _redelegate(t, record),
        )

    def set_suspended(
        self,
        suspended: dict[str, dict[str, str]],
        document: bytes,
        *,
        now: datetime,
        event: dict[str, Any],
    ) -> bool:
        """Record the suspended manufacturers; publish the list as ``cfl/suspensions.json`` when
        the targets key is online. Returns whether the list was published in targets."""
        sha = self.blobs.put(document)

        def change(targets: Targets) -> None:
            targets.targets[SUSPENSIONS_TARGET_PATH] = TargetFile(
                len(document), {"sha256": sha}, SUSPENSIONS_TARGET_PATH
            )

        targets_version = self.head.targets_version
        # Offline targets key: the gateway enforces it now, the next targets ceremony signs it.
        published = not self.held_offline(Targets.type)
        if published:
            targets_version = self._stage_targets(change, now)
        self._commit(
            replace(self.head, suspended=suspended, targets_version=targets_version), event=event
        )
        return published


SUSPENSIONS_TARGET_PATH = "cfl/suspensions.json"


class _CapturedChange(BaseException):
    """Carries a targets change out of an operation run by `capture_targets_change`. A
    BaseException so that no ``except Exception`` inside an operation swallows it."""

    def __init__(self, change: Callable[[Targets], None]) -> None:
        super().__init__("targets change captured for a ceremony")
        self.change = change


@dataclass(frozen=True)
class CeremonyOutcome:
    """What `finish_ceremony` did: the role and its committed version, whether it had been
    committed by an earlier run, and anything the operator must still do."""

    role: str
    version: int
    already_finished: bool
    notes: list[str]


def _redelegate(targets: Targets, manufacturer: ManufacturerRecord) -> None:
    """keys branch: a changed delegation, without keys that no role lists any more."""
    from repo_tool.manufacturer_keys import mark_retiring, prune_unused_keys

    _delegate(targets, manufacturer)
    mark_retiring(targets, manufacturer)
    prune_unused_keys(targets)


def _delegate(targets: Targets, manufacturer: ManufacturerRecord) -> None:
    """Add the manufacturer's delegation: its keys, its threshold, its one path prefix, terminating."""
    if targets.delegations is None:
        targets.delegations = Delegations(keys={}, roles={})
    assert targets.delegations.roles is not None
    # keys branch: retiring keys stay delegated until the manufacturer has re-signed with new keys.
    keys = manufacturer.keys | manufacturer.retiring
    role = manufacturer_delegation(manufacturer.id, list(keys), manufacturer.threshold)
    for keyid, key in keys.items():
        targets.delegations.keys[keyid] = Key.from_dict(keyid, dict(key))
    roles = dict(targets.delegations.roles)
    roles[role.name] = role
    targets.delegations.roles = dict(sorted(roles.items()))
