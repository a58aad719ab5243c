"""Who can sign what, and where the keys live: the key section of `cfl-repo status`.

Only the URI scheme is shown (``hsm``, ``encfile``, ``file2``, ``offline``, ``awskms`` ...): a path or
token label says more than an operator's status page should, and a secret never appears in a URI.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from tuf.api.metadata import Root

from metadata_templates.naming import PROVIDER_ROLE
from repo_tool.signing.keys import uri_scheme
from repo_tool.signing.provider_role import provider_keys
from repo_tool.state.bins import bins_summary
from repo_tool.state.config import TOP_LEVEL_ROLES

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository


def key_inventory(repo: Repository, *, now: datetime) -> dict[str, Any]:
    """Every role's keys (key ID, algorithm, where it lives), threshold and expiry.

    Top-level roles are read from the committed root (what clients trust), joined with the
    configuration for where each key lives; manufacturer roles from the registered records.
    """
    root: Root = repo.root().signed
    where = {
        ref.keyid: uri_scheme(ref.uri) for refs in repo.config.signers.values() for ref in refs
    }
    expiries = {Root.type: root.expires}
    for name, md in (
        ("targets", repo.targets()),
        ("snapshot", repo.snapshot()),
        ("timestamp", repo.timestamp()),
    ):
        if md is not None:
            expiries[name] = md.signed.expires
    roles: dict[str, Any] = {}
    for role in TOP_LEVEL_ROLES:
        expires = expiries.get(role)
        roles[role] = {
            "threshold": root.roles[role].threshold,
            "keys": [
                {
                    "keyid": keyid,
                    "scheme": root.keys[keyid].scheme,
                    "location": where.get(keyid, "unknown"),
                }
                for keyid in root.roles[role].keyids
            ],
            "expires": expires.isoformat() if expires else None,
            "expires_in_days": (expires - now).days if expires else None,
        }
    head = repo.head
    if PROVIDER_ROLE in head.roles:
        # The online provider role's keys live in targets' delegation, not root (issue 13).
        delegated = provider_keys(repo.targets().signed)
        expires = repo.role(PROVIDER_ROLE).signed.expires
        keys, threshold = delegated if delegated is not None else ([], 0)
        roles[PROVIDER_ROLE] = {
            "threshold": threshold,
            "keys": [
                {"keyid": k.keyid, "scheme": k.scheme, "location": where.get(k.keyid, "unknown")}
                for k in keys
            ],
            "expires": expires.isoformat(),
            "expires_in_days": (expires - now).days,
        }
    for mfr_id, record in sorted(head.manufacturers.items()):
        name = f"mfr-{mfr_id}"
        expires = repo.role(name).signed.expires if name in head.roles else None
        bins = bins_summary(repo, mfr_id)
        if bins is not None:
            # Its bins are signed by the same keys and renewed with it: the first to lapse counts.
            expires = bins.first_expiry
        roles[name] = {
            "threshold": record.threshold,
            "keys": [
                {"keyid": keyid, "scheme": str(key.get("scheme")), "location": "manufacturer"}
                for keyid, key in sorted(record.keys.items())
            ],
            "retiring": sorted(record.retiring),
            "suspended": head.suspended.get(mfr_id),
            "expires": expires.isoformat() if expires else None,
            "expires_in_days": (expires - now).days if expires else None,
        }
    return roles


def render_inventory(roles: dict[str, Any]) -> list[str]:
    """One line per role for people."""
    lines = []
    for name, info in roles.items():
        keys = ", ".join(f"{k['keyid'][:8]} ({k['location']})" for k in info["keys"])
        extra = ""
        if info.get("retiring"):
            extra += f"; retiring {', '.join(k[:8] for k in info['retiring'])}"
        if info.get("suspended"):
            extra += f"; SUSPENDED since {info['suspended']['at']}: {info['suspended']['reason']}"
        expiry = f"expires {info['expires']}" if info["expires"] else "no role yet"
        lines.append(f"keys {name:<10} {info['threshold']} of [{keys}]; {expiry}{extra}")
    return lines
