"""The repository working directory's configuration: policy, image cap and the signers of each role."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import ConfigurationError
from metadata_templates.naming import PROVIDER_ROLE
from metadata_templates.outcomes import DEFAULT_OUTCOME_POLICY, OutcomePolicy
from metadata_templates.policy import RolePolicy
from repo_tool.entitle.policy import EntitlementPolicy
from repo_tool.gateway.model import DEFAULT_IMAGE_SIZE_CAP
from repo_tool.intake.bundle import DEFAULT_ROLE_SIZE_CAP
from repo_tool.signing.keys import SignerRef
from repo_tool.tlog.provider_log import LogKeyConfig

CONFIG_FILE = "cfl-repo.json"
TOP_LEVEL_ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
# The roles whose keys this file may name: the top-level ones, and the online delegated
# ``cfl-provider`` (issue 13), which repositories made before it do not have.
SIGNED_ROLES = (*TOP_LEVEL_ROLES, PROVIDER_ROLE)


@dataclass(frozen=True)
class RepoConfig:
    """What `cfl-repo init` decided; operators may edit the file by hand."""

    policy: RolePolicy
    signers: dict[str, tuple[SignerRef, ...]]
    thresholds: dict[str, int]
    image_size_cap: int = DEFAULT_IMAGE_SIZE_CAP
    dev_keys: bool = False
    # Largest role.json a bundle may carry, checked before any JSON work (repo_tool/intake/bundle.py).
    role_size_cap: int = DEFAULT_ROLE_SIZE_CAP
    extra: dict[str, Any] = field(default_factory=dict)
    log: LogKeyConfig | None = None  # transparency log key (repo_tool/tlog/provider_log.py)
    # Entitlement by estate (repo_tool/entitle/policy.py); written only when not the default, so
    # the file of a repository that never changed it stays as it was.
    entitlements: EntitlementPolicy = field(default_factory=EntitlementPolicy)
    # When outcome reports put an image on hold (issue 24; metadata_templates/outcome_document.py),
    # written only when not the default.
    outcomes: OutcomePolicy = DEFAULT_OUTCOME_POLICY

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "policy": self.policy.to_dict(),
            "image_size_cap": self.image_size_cap,
            "role_size_cap": self.role_size_cap,
            "dev_keys": self.dev_keys,
            "thresholds": self.thresholds,
            "signers": {
                role: [ref.to_dict() for ref in refs] for role, refs in self.signers.items()
            },
        }
        if self.log is not None:
            doc["log"] = self.log.to_dict()
        if self.entitlements != EntitlementPolicy():
            doc["entitlements"] = self.entitlements.to_dict()
        if self.outcomes != DEFAULT_OUTCOME_POLICY:
            doc["outcomes"] = self.outcomes.to_dict()
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def load(cls, repo: Path) -> RepoConfig:
        """Read and check the configuration.

        Raises:
            ConfigurationError: missing, not JSON, or a field is wrong.
        """
        path = repo / CONFIG_FILE
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError as e:
            raise ConfigurationError(
                f"{path}: not found; expected a repository made by `cfl-repo --repo {repo} init`"
            ) from e
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigurationError(f"{path}: unreadable ({e})") from e
        return cls.from_dict(doc, source=str(path))

    @classmethod
    def from_dict(cls, doc: Any, *, source: str) -> RepoConfig:
        """Check a configuration document; ``source`` names it in errors.

        Raises:
            ConfigurationError: a field is missing or wrong.
        """
        path = source
        if not isinstance(doc, dict):
            raise ConfigurationError(f"{path}: found {type(doc).__name__}, expected an object")
        try:
            if doc.get("schema_version") != SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{path}: schema_version: found {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}"
                )
            roles = [
                role for role in SIGNED_ROLES if role in TOP_LEVEL_ROLES or role in doc["signers"]
            ]
            signers = {
                role: tuple(SignerRef.from_dict(r) for r in doc["signers"][role]) for role in roles
            }
            thresholds = {role: int(doc["thresholds"][role]) for role in roles}
            cap = doc.get("image_size_cap", DEFAULT_IMAGE_SIZE_CAP)
            if not isinstance(cap, int) or cap < 1:
                raise ConfigurationError(
                    f"{path}: image_size_cap: found {cap!r}, expected a positive integer"
                )
            role_cap = doc.get("role_size_cap", DEFAULT_ROLE_SIZE_CAP)
            if not isinstance(role_cap, int) or isinstance(role_cap, bool) or role_cap < 1:
                raise ConfigurationError(
                    f"{path}: role_size_cap: found {role_cap!r}, expected a positive integer "
                    f"(bytes; default {DEFAULT_ROLE_SIZE_CAP})"
                )
            config = cls(
                policy=RolePolicy.from_dict(doc["policy"]),
                signers=signers,
                thresholds=thresholds,
                image_size_cap=cap,
                role_size_cap=role_cap,
                dev_keys=bool(doc.get("dev_keys", False)),
                log=LogKeyConfig.from_dict(doc["log"], str(path)) if "log" in doc else None,
                entitlements=_entitlement_policy(doc, path),
                outcomes=_outcome_policy(doc, path),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigurationError):
                raise
            raise ConfigurationError(f"{path}: malformed ({e!r})") from e
        for role in config.signers:
            if config.thresholds[role] < 1 or config.thresholds[role] > len(config.signers[role]):
                raise ConfigurationError(
                    f"{path}: thresholds.{role}: found {config.thresholds[role]}, expected 1.."
                    f"{len(config.signers[role])} (the number of {role} keys)"
                )
        return config

    @property
    def has_provider_keys(self) -> bool:
        """Whether this configuration names keys for the ``cfl-provider`` role."""
        return PROVIDER_ROLE in self.signers

    def save(self, repo: Path) -> None:
        atomic_write_bytes(repo / CONFIG_FILE, self.to_bytes())


def _outcome_policy(doc: dict[str, Any], path: str) -> OutcomePolicy:
    if "outcomes" not in doc:
        return DEFAULT_OUTCOME_POLICY
    try:
        return OutcomePolicy.from_dict(doc["outcomes"], "outcomes")
    except ValueError as e:
        raise ConfigurationError(f"{path}: {e}") from e


def _entitlement_policy(doc: dict[str, Any], path: str) -> EntitlementPolicy:
    if "entitlements" not in doc:
        return EntitlementPolicy()
    try:
        return EntitlementPolicy.from_dict(doc["entitlements"])
    except ValueError as e:
        raise ConfigurationError(f"{path}: {e}") from e
