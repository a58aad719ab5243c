"""The ceremony operations on a repository: capturing what a routine operation would change in
targets so that a targets ceremony proposal can carry it (`capture_targets_change`, for `ceremony
start targets --cpl/--withdraw`), and committing a signed proposal (`finish_ceremony`) with
everything the new root or targets implies: the configuration, the registered manufacturers, the
provider documents, the ``cfl-provider`` and enrolment roles, the lodged events, and a fresh
snapshot and timestamp. The pure parts live in repo_tool/ceremony/; this module reads state,
writes, and commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates import naming
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.cpl_document import CplDocument
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError
from metadata_templates.withdrawals import WithdrawalList
from repo_tool.ceremony.apply import (
    config_after_root,
    manufacturers_after_targets,
    provider_documents_after_targets,
)
from repo_tool.ceremony.finish import check_applies, signed_metadata
from repo_tool.ceremony.proposal import sha256_hex
from repo_tool.ops.enrol import enrolments_after_targets
from repo_tool.ops.provider import provider_after_targets
from repo_tool.ops.snapshot import stage_snapshot
from repo_tool.state.repository import CapturedChange, Repository


@dataclass(frozen=True)
class CeremonyOutcome:
    """What `finish_ceremony` did: the role and its committed version, whether it had been
    committed by an earlier run, and anything the operator must still do."""

    role: str
    version: int
    already_finished: bool
    notes: list[str]


def finish_ceremony(
    repo: Repository, proposal: Any, signatures: list[Any], *, now: datetime
) -> CeremonyOutcome:
    """Commit a signed ceremony proposal: verify, write the new root or targets, follow it in
    the configuration (root) or the registered manufacturers (targets), stage snapshot and
    timestamp. Running it again after a crash, or after it finished, completes the same change.

    Raises:
        RejectedInputError: a stale proposal or a signature file that does not belong to it.
        VerificationError: the signatures do not meet the threshold(s).
    """
    is_root = proposal.role == Root.type
    current: Metadata[Any] = repo.root() if is_root else repo.targets()
    done = sha256_hex(current.signed_bytes) == proposal.signed_sha256
    if not done:
        check_applies(proposal, repo.root(), current)
        md = signed_metadata(proposal, signatures, now=now)
        # Version head+1 is not committed yet, so a file there is an orphan of a killed run.
        atomic_write_bytes(repo.metadata_path(proposal.role, md.signed.version), md.to_bytes())
        event = {
            "event": f"ceremony-{proposal.role}",
            "at": format_timestamp(now),
            "version": md.signed.version,
            "signed_by": sorted(md.signatures),
        }
        if is_root:
            repo.commit(replace(repo.head, root_version=md.signed.version), event=event)
        else:
            manufacturers = manufacturers_after_targets(repo.head.manufacturers, md.signed)
            documents = provider_documents_after_targets(repo.head, md.signed)
            # A new or re-keyed cfl-provider delegation (adoption, rotation) commits with the
            # role version its keys signed, and the configuration that names them (issue 13).
            roles = dict(repo.head.roles)
            online = {
                s.keyid: s.uri for s in proposal.online_signers if s.role == naming.PROVIDER_ROLE
            }
            followed = provider_after_targets(repo, md.signed, online, now=now)
            if followed is not None:
                new_config, roles[naming.PROVIDER_ROLE] = followed
                event["provider_version"] = roles[naming.PROVIDER_ROLE]
                event["config"] = json.loads(new_config.to_bytes())
            # Enrolment roles land with the delegations that point at them (issue 13).
            enrolled, enrol_events = enrolments_after_targets(
                repo, proposal.enrolments, md.signed, now=now
            )
            roles |= enrolled
            repo.commit(
                replace(
                    repo.head,
                    targets_version=md.signed.version,
                    roles=roles,
                    manufacturers=manufacturers,
                    cpl_sha256=documents["cpl_sha256"],
                    withdrawals_sha256=documents["withdrawals_sha256"],
                    suppliers_sha256=documents["suppliers_sha256"],
                ),
                event=event,
                **_document_events(repo, documents, now=now),
                **enrol_events,
            )
    notes: list[str] = []
    if is_root:
        root = repo.root().signed
        new_config = config_after_root(repo.config, root, proposal.online_signers)
        if new_config != repo.config:
            new_config.save(repo.path)
            repo.config = new_config
        targets_md = repo.targets()
        if not root.get_verification_result(
            Targets.type, targets_md.signed_bytes, targets_md.signatures
        ).verified:
            try:
                version = repo.stage_targets(lambda t: None, now)
                repo.commit(
                    replace(repo.head, targets_version=version),
                    event={"event": "resign-targets", "at": format_timestamp(now)},
                )
            except ConfigurationError:
                notes.append(
                    "targets is signed by keys this root no longer trusts and its new keys are "
                    "offline: run `cfl-repo ceremony start targets` before publishing"
                )
    try:
        stage_snapshot(repo, now=now, force=True)
    except ConfigurationError as e:
        notes.append(f"snapshot/timestamp not staged: {e}")
    return CeremonyOutcome(
        proposal.role,
        repo.head.root_version if is_root else repo.head.targets_version,
        done,
        notes,
    )


def _document_events(
    repo: Repository, documents: dict[str, str | None], *, now: datetime
) -> dict[str, dict[str, Any]]:
    """The lodged events a targets ceremony carries (a CPL import, withdrawals), recorded and
    logged exactly as the routine commands record them, so an auditor finds each one."""
    events: dict[str, dict[str, Any]] = {}
    at = format_timestamp(now)
    cpl = documents["cpl_sha256"]
    if cpl and cpl != repo.head.cpl_sha256:
        doc = CplDocument.from_bytes(repo.blobs.get(cpl))
        events["cpl"] = {
            "event": "cpl-import",
            "at": at,
            "cpl_sha256": cpl,
            "source_sha256": doc.source_sha256,
            "entries": len(doc.entries),
            "via": "ceremony-targets",
        }
    new_list = documents["withdrawals_sha256"]
    if new_list and new_list != repo.head.withdrawals_sha256:
        before = repo.withdrawals().by_target()
        after = WithdrawalList.from_bytes(repo.blobs.get(new_list))
        for n, withdrawal in enumerate(after.withdrawals):
            if withdrawal.target not in before:
                events[f"withdraw-{n}"] = {
                    "event": "withdraw",
                    "at": withdrawal.withdrawn,
                    **withdrawal.to_dict(),
                    "via": "ceremony-targets",
                }
    return events


def capture_targets_change(
    repo: Repository, operation: Callable[[], object]
) -> Callable[[Targets], None]:
    """Run a routine operation (``import_cpl``, ``withdraw`` ...) up to the point where it would
    re-sign targets, and return its change to targets instead, for a targets ceremony. Nothing
    is committed; only content-addressed blobs may have been stored.

    Raises:
        RejectedInputError: whatever the operation rejects.
        ConfigurationError: the operation does not change targets.
    """
    if repo.provider_delegated:
        raise ConfigurationError(
            "cfl/* documents are signed by the online cfl-provider role in this repository, "
            "not by targets; expected no --cpl/--withdraw in a targets ceremony",
            hint="run the routine command (`cfl-repo cpl import`, `cfl-repo withdraw`) instead",
        )
    repo.capturing = True
    try:
        operation()
    except CapturedChange as captured:
        return captured.change
    finally:
        repo.capturing = False
        repo.forget_head()  # whatever the operation read, re-read the committed head
    raise ConfigurationError("the operation changed nothing in targets; no ceremony needed")
