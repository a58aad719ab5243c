"""The head: the one document that says which version of everything is current.

``state/head.json`` is replaced atomically by every commit; everything it names is immutable. Adding
a kind of state (a registry, a log) means adding a field here with a default, so older heads load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from metadata_templates import SCHEMA_VERSION, naming
from metadata_templates.tlog.merkle import EMPTY_ROOT
from repo_tool.gateway.model import RegisteredManufacturer
from repo_tool.tlog.provider_log import LogState


@dataclass(frozen=True)
class ManufacturerRecord:
    """A registered manufacturer as the provider stores it."""

    id: str
    name: str
    keys: dict[str, dict[str, Any]]  # keyid -> TUF key dict
    threshold: int
    registered: str
    # Keys removed by `manufacturer rotate-key` that the published delegation keeps until the
    # manufacturer re-signs its role with the new keys (keyid -> TUF key dict); the gateway never
    # accepts them.
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
    suppliers_sha256: str | None = None
    # Suspended manufacturers (ID -> {"reason", "at"}): their deposits are rejected.
    suspended: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # the supplier registry blob (repo_tool/ops/suppliers.py)
    index_sha256: str | None = None
    # Issue 22: the release document (cfl/releases.json) and the pilot images not released yet,
    # target -> release date, so `refresh` finds what is due without reading every role.
    releases_sha256: str | None = None
    pilots: dict[str, str] = field(default_factory=dict)
    snapshot_version: int = 0
    timestamp_version: int = 0
    # The journal: the events of the last commit travel inside the commit itself, numbered, so a
    # crash between replacing head.json and appending to events.jsonl cannot lose them (they are
    # appended when the repository is next locked) nor log a change that never happened.
    event_seq: int = 0
    last_events: list[dict[str, Any]] = field(default_factory=list)
    # Entitlement by estate (repo_tool/state/entitlements.py): the SHA-256 of the current history
    # document under state/entitlements/, whose last entry is the record in force.
    entitlements_sha256: str | None = None
    # Transparency log (repo_tool/tlog/provider_log.py): committed size and root, appended in every commit.
    log_size: int = 0
    log_root: str = EMPTY_ROOT.hex()
    # Bins a doubling retired (name -> last version; repo_tool/ops/ingest_bins.py): no longer
    # delegated, still listed by every snapshot, because a TUF client refuses a new snapshot that
    # drops a role its trusted one lists (python-tuf: "New snapshot is missing info for ...").
    retired_roles: dict[str, int] = field(default_factory=dict)
    # Delivery outcomes (issue 24, repo_tool/ops/outcomes.py): the published cfl/outcomes.json and
    # the provider's private ledger of every report received (blobs; never published).
    outcomes_sha256: str | None = None
    outcome_reports_sha256: str | None = None

    def committed_version(self, role: str) -> int:
        """The version of ``role`` this head makes current (0 when it has none)."""
        fixed = {
            Root.type: self.root_version,
            Targets.type: self.targets_version,
            Snapshot.type: self.snapshot_version,
            Timestamp.type: self.timestamp_version,
        }
        return fixed[role] if role in fixed else self.roles.get(role, 0)

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        if not doc["retired_roles"]:
            del doc["retired_roles"]  # a head without retired bins keeps its bytes
        for name in ("outcomes_sha256", "outcome_reports_sha256"):
            if doc[name] is None:
                del doc[name]  # likewise a head that never ingested an outcome report
        doc["schema_version"] = SCHEMA_VERSION
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        doc = json.loads(data)
        doc.pop("schema_version", None)
        doc["manufacturers"] = {k: ManufacturerRecord(**v) for k, v in doc["manufacturers"].items()}
        return cls(**doc)


def provider_signing_role(head: Head) -> str:
    """The role that signs provider documents in ``head``: ``cfl-provider``, or targets before it."""
    return naming.PROVIDER_ROLE if naming.PROVIDER_ROLE in head.roles else Targets.type


def provider_version(head: Head) -> int:
    """The version of the role that signs provider documents in ``head``."""
    return head.committed_version(provider_signing_role(head))


def snapshot_wanted(head: Head) -> dict[str, int]:
    """The role versions a snapshot of ``head`` lists (retired bins too: see ``retired_roles``)."""
    return {f"{Targets.type}.json": head.targets_version} | {
        f"{name}.json": version
        for name, version in sorted((head.retired_roles | head.roles).items())
    }


def log_state_of(head: Head) -> LogState:
    """The transparency log's committed size and root, as ``head`` records them."""
    return LogState(head.log_size, bytes.fromhex(head.log_root))
