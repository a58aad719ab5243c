"""What is staged: versions and expiry of every role, manufacturers, images, what publish would change,
and which roles need attention soon."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tuf.api.metadata import Snapshot, Timestamp

from metadata_templates import naming
from repo_tool.ops.key_inventory import key_inventory
from repo_tool.state.bins import bins_summary
from repo_tool.state.repository import Repository

EXPIRY_WARNING = timedelta(days=30)


def status_report(repo: Repository, *, now: datetime) -> dict[str, Any]:
    """The `status --json` document (without ``schema_version``)."""
    head = repo.head
    roles: dict[str, Any] = {}
    for role, md in (
        ("root", repo.root()),
        ("targets", repo.targets()),
        ("snapshot", repo.snapshot()),
        ("timestamp", repo.timestamp()),
    ):
        if md is not None:
            roles[role] = {"version": md.signed.version, "expires": md.signed.expires.isoformat()}
    for name in sorted(head.roles):
        md = repo.role(name)
        roles[name] = {
            "version": md.signed.version,
            "expires": md.signed.expires.isoformat(),
            "targets": len(md.signed.targets),
        }
    snapshot = repo.snapshot()
    published_versions = (
        {k.removesuffix(".json"): v.version for k, v in snapshot.signed.meta.items()}
        if snapshot
        else {}
    )
    pending = sorted(
        name
        for name, v in ({"targets": head.targets_version} | head.roles).items()
        if published_versions.get(name) != v
    )
    cpl = repo.cpl()
    return {
        "repository": str(repo.path),
        "dev_keys": repo.config.dev_keys,
        "roles": roles,
        "manufacturers": {
            k: {
                "name": v.name,
                "threshold": v.threshold,
                "keys": len(v.keys),
                "delegated": f"mfr-{k}" in head.roles,
                # Hash bins: null when not split; "grow": the next deposit doubles them by itself.
                "bins": None if (bins := bins_summary(repo, k)) is None else bins.to_dict(),
            }
            for k, v in sorted(head.manufacturers.items())
        },
        "cpl_entries": len(cpl.entries) if cpl else 0,
        # cfl-provider holds the provider's documents, not images (issue 13).
        "images": sum(
            r.get("targets", 0) for n, r in roles.items() if not naming.is_provider_role(n)
        ),
        "withdrawn": len(repo.withdrawals().withdrawals),
        "unpublished_changes": pending,
        "expiring_soon": expiring(roles, now),
        # Every role's keys, where they live (URI scheme only, never secrets), when it expires.
        "keys": key_inventory(repo, now=now),
    }


def expiring(roles: dict[str, Any], now: datetime) -> list[str]:
    """Roles that expire within 30 days (timestamp, snapshot and cfl-provider are short-lived by
    design and are re-signed by `refresh`; they are reported only once actually expired)."""
    soon: list[str] = []
    for name, info in roles.items():
        expires = datetime.fromisoformat(info["expires"])
        refreshed = (Timestamp.type, Snapshot.type, naming.PROVIDER_ROLE)
        window = timedelta(0) if name in refreshed else EXPIRY_WARNING
        if expires - now <= window:
            soon.append(name)
    return soon
