"""The ``cfl-provider`` role as the verify walk checks it: documents only, under its own prefix.

Kept apart from repo_tool/verify/walk.py, which calls it for the one role whose targets are the
provider's documents (CPL, withdrawals, registry, notes keys, releases, outcomes) rather than
images, and to read and parse those documents once every role is walked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuf.api.metadata import DelegatedRole, Metadata, TargetFile, Targets

from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument
from metadata_templates.notes import CUSTODIAN_TARGET_PATH, CustodianDocument, NotesError
from metadata_templates.outcomes import OutcomesDocument
from metadata_templates.releases import RELEASES_TARGET_PATH, ReleaseList
from metadata_templates.suppliers import SUPPLIERS_TARGET_PATH, SupplierRegistry
from metadata_templates.withdrawals import WithdrawalList


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


@dataclass(frozen=True)
class VerifiedDocuments:
    """The provider's documents of a walked tree, each parsed strictly (absent: the default)."""

    cpl: CplDocument | None = None
    withdrawals: WithdrawalList = field(default_factory=WithdrawalList)
    suppliers: SupplierRegistry | None = None
    custodian: CustodianDocument | None = None
    releases: ReleaseList = field(default_factory=ReleaseList)
    outcomes: OutcomesDocument | None = None


# Path -> (field of VerifiedDocuments, parser); the CPL is the caller's (it may come from a cache).
_PARSERS: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    naming.WITHDRAWALS_TARGET_PATH: ("withdrawals", WithdrawalList.from_bytes),
    SUPPLIERS_TARGET_PATH: ("suppliers", SupplierRegistry.from_bytes),
    CUSTODIAN_TARGET_PATH: ("custodian", CustodianDocument.from_bytes),
    RELEASES_TARGET_PATH: ("releases", ReleaseList.from_bytes),
    naming.OUTCOMES_TARGET_PATH: ("outcomes", OutcomesDocument.from_bytes),
}


def read_provider_documents(
    documents: Mapping[str, TargetFile],
    check_blob: Callable[[str, int, str], bytes | None],
    fail: Callable[[str], None],
    *,
    cpl_loader: Callable[[str, Callable[[], bytes | None]], CplDocument | None] | None,
    parse_cpl: Callable[[bytes], CplDocument],
) -> VerifiedDocuments:
    """Each known document of ``documents`` read through ``check_blob`` (None: missing or not the
    signed bytes, already reported) and parsed strictly: a malformed one is reported through
    ``fail`` and fails the tree. ``cpl_loader`` (a deposit's local CPL index) replaces reading the
    CPL blob when given; ``parse_cpl`` parses it otherwise."""
    found: dict[str, Any] = {}
    for path, target in sorted(documents.items()):
        sha256 = target.hashes.get("sha256", "")
        if path == naming.CPL_TARGET_PATH and cpl_loader is not None:
            try:
                found["cpl"] = cpl_loader(
                    sha256, functools.partial(check_blob, path, target.length, sha256)
                )
            except ValueError as e:
                fail(f"{path}: {e}")
            continue
        data = check_blob(path, target.length, sha256)  # every document's bytes, known or not
        parser = ("cpl", parse_cpl) if path == naming.CPL_TARGET_PATH else _PARSERS.get(path)
        if data is None or parser is None:
            continue
        name, parse = parser
        try:
            found[name] = parse(data)
        except (ValueError, NotesError) as e:
            fail(f"{path}: {e}")
    return VerifiedDocuments(**found)
