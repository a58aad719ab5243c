"""The ``cfl-provider`` role as the verify walk checks it: documents only, under its own prefix.

Kept apart from repo_tool/verify/walk.py, which calls it for the one role whose targets are the
provider's documents (CPL, withdrawals, registry, notes keys) rather than images.
"""

from __future__ import annotations

from collections.abc import Callable

from tuf.api.metadata import DelegatedRole, Metadata, TargetFile, Targets

from metadata_templates import naming


def check_provider_role(
    fail: Callable[[str], None],
    role: DelegatedRole,
    md: Metadata[Targets],
    documents: dict[str, TargetFile],
) -> None:
    """The ``cfl-provider`` role holds only provider documents, under a terminating delegation
    to ``cfl/`` paths; its targets join ``documents`` (they are not images). Each problem is
    reported through ``fail``."""
    if not role.terminating or tuple(role.paths or ()) != naming.PROVIDER_PATTERNS:
        fail(
            f"targets: delegation {role.name}: found terminating={role.terminating} paths="
            f"{role.paths}, expected terminating=True paths={list(naming.PROVIDER_PATTERNS)}"
        )
    for path, target in sorted(md.signed.targets.items()):
        if not role.is_delegated_path(path):
            fail(f"{role.name}: target {path!r} is outside its delegation {role.paths}")
        elif path in documents:
            fail(f"{role.name}: target {path!r} is signed by targets too, expected one signer")
        else:
            documents[path] = target
