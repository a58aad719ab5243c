"""Run the gateway on a bundle: stage what it accepts, keep what it rejects with a report.

The verdict is the gateway's pure function of (bundle, context); this module reads the bundle and
the repository, and writes: the blob, the manufacturer's role exactly as signed, and one commit.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Targets

from metadata_templates import SCHEMA_VERSION, naming
from metadata_templates.atomic import atomic_write_bytes, undeferred
from metadata_templates.custom import format_timestamp
from metadata_templates.steps import step
from repo_tool.gateway.check import judge
from repo_tool.gateway.model import Code, Finding, GatewayContext, LibraryIndex, Verdict
from repo_tool.intake import inbox
from repo_tool.intake.bundle import (
    KIND_ADVISORY,
    KIND_RENEWAL,
    KIND_SPLIT_BINS,
    Bundle,
    BundleError,
)
from repo_tool.notes.audience import NotesAudienceDocuments, notes_audience_documents
from repo_tool.ops import ingest_bins
from repo_tool.ops.ingest_advisory import commit_advisory
from repo_tool.ops.manufacturers import delegate
from repo_tool.state import journal
from repo_tool.state.group_commit import group_commits
from repo_tool.state.repository import Repository


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


def gateway_context(
    repo: Repository, now: datetime, cpl_entry_ids: Collection[str] | None = None
) -> GatewayContext:
    """What the gateway checks one bundle against. Of the CPL, only the entries a deposit
    declares when ``cpl_entry_ids`` names them (the gateway looks up nothing else in it, and
    parsing a large CPL whole costs more than the rest of an ingest); None: the whole CPL."""
    head = repo.head
    return GatewayContext(
        cpl=repo.cpl() if cpl_entry_ids is None else repo.cpl_entries(cpl_entry_ids),
        manufacturers={k: v.as_registered() for k, v in head.manufacturers.items()},
        # Loaded on demand: checking one bundle should not parse every manufacturer's role.
        current_role=lambda name: repo.role(name) if name in head.roles else None,
        index=repo.index(),
        now=now,
        image_size_cap=repo.config.image_size_cap,
        role_validity=repo.config.policy.manufacturer_validity(),
        suspended={k: v["reason"] for k, v in head.suspended.items()},
        read_blob=lambda sha: repo.blobs.get(sha) if repo.blobs.has(sha) else None,
        max_embargo=timedelta(days=repo.config.policy.advisory_max_embargo_days),
        **_notes_audience(repo, head.targets_version, head.roles.get(naming.PROVIDER_ROLE)),
    )


@functools.lru_cache(maxsize=4)
def _notes_audience(
    repo: Repository, targets_version: int, provider_version: int | None
) -> NotesAudienceDocuments:
    """The registry and custodian key of the provider documents as these role versions stage
    them: read once per versions, not once per deposit of an inbox (a staged version's bytes
    never change once written). The registry and custodian documents are frozen."""
    return notes_audience_documents(repo)


def ingest(repo: Repository, bundle_path: Path, *, now: datetime) -> IngestResult:
    """Run the gateway on one bundle and stage it if accepted; keep it with a report if not."""
    try:
        # No links followed, size caps before any JSON work (repo_tool/intake/inbox.py).
        bundle = inbox.read_bundle_file(bundle_path, role_size_cap=repo.config.role_size_cap)
    except BundleError as e:
        verdict = Verdict((Finding(Code.MALFORMED_BUNDLE, str(e)),), None, None)
        return _reject(repo, bundle_path, verdict, now)
    seen = inbox.already_accepted(bundle, repo.head.roles, _stored_role_bytes(repo))
    if seen is not None:
        # A scheduled re-run: the committed head holds this role version byte for byte.
        return IngestResult(bundle_path.name, "accepted", bundle.target or None, [], [seen])
    if bundle.kind == KIND_SPLIT_BINS or (
        bundle.kind == KIND_RENEWAL and ingest_bins.is_split(repo, bundle.manufacturer_id)
    ):
        # Hash bins: a migration, or a renewal of a split manufacturer (repo_tool/ops/ingest_bins.py).
        verdict = judge(bundle, gateway_context(repo, now, bundle.declaration.cpl_entries))
        if not verdict.staged:
            return _reject(repo, bundle_path, verdict, now)
        ingest_bins.commit_restaged(repo, bundle_path, bundle, verdict.staged, now)
        what = "split into bins" if bundle.kind == KIND_SPLIT_BINS else "renewed"
        names = ", ".join(f"{r.name} v{r.role.signed.version}" for r in verdict.staged[:3])
        more = f" and {len(verdict.staged) - 3} more" if len(verdict.staged) > 3 else ""
        return IngestResult(bundle_path.name, "accepted", None, [], [f"{what}: {names}{more}"])
    if bundle.kind == KIND_RENEWAL:
        return _ingest_renewal(repo, bundle_path, bundle, now)
    if bundle.kind == KIND_ADVISORY:
        # The whole CPL: a fix may reach an affected entry through intermediate images, whose
        # entries the bundle does not name (advisories are rare; a deposit stays narrow).
        verdict = judge(bundle, gateway_context(repo, now))
        if verdict.advisory is None or bundle.advisory is None:
            return _reject(repo, bundle_path, verdict, now)
        commit_advisory(
            repo, bundle_path, bundle.advisory, verdict.advisory, now, bundle.advisory_detail
        )
        advisory = verdict.advisory.advisory
        return IngestResult(
            bundle_path.name,
            "accepted",
            verdict.advisory.target.path,
            [],
            [
                f"advisory {advisory.id} revision {advisory.revision} ({advisory.severity})"
                + (
                    f"; detail encrypted until {advisory.disclosure}"
                    if advisory.detail_state == "encrypted"
                    else ""
                )
            ],
        )
    staged = repo.blobs.stage(bundle.image)  # written while the gateway hashes
    try:
        context = gateway_context(repo, now, bundle.declaration.cpl_entries)
        verdict = judge(bundle, context)  # a gateway defect rejects one bundle, not the run
    except BaseException:
        staged.discard()
        raise
    accepted = verdict.accepted
    if accepted is None:
        staged.discard()
        return _reject(repo, bundle_path, verdict, now)
    not_enrolled = _not_enrolled(repo, bundle.manufacturer_id)
    if not_enrolled is not None:
        # One manufacturer that is not enrolled yet must not halt the inbox for everyone else.
        staged.discard()
        return _reject(repo, bundle_path, Verdict((not_enrolled,), verdict.target, None), now)

    head = repo.head
    with step(f"storing the image of {bundle_path.name}"):
        staged.commit(accepted.digests.file_sha256)
        added = [accepted.target]
        if accepted.notes_target is not None and bundle.notes_jwe is not None:
            # Ciphertext only: the gateway refused any plaintext, and nothing here can decrypt.
            repo.blobs.put(bundle.notes_jwe)
            added.append(accepted.notes_target)
    # Keep exactly the bytes the manufacturer signed.
    staged_roles = ingest_bins.staged_roles(accepted, bundle.role_bytes)
    for role in staged_roles:
        repo.write_staged(role.name, role.role.signed.version, role.data)
        repo.write_added(
            role.name,
            role.role.signed.version,
            [t for t in added if t.path in role.role.signed.targets],
        )

    target_path = accepted.target.path
    # Only what this deposit adds: the index store chains it onto the current index, so a deposit
    # costs the same in a library of 100,000 images as in one of 100 (repo_tool/state/library_index.py).
    added_index = LibraryIndex(
        {accepted.digests.file_sha256: target_path},
        {accepted.digests.manufacturer_image_sha256: target_path},
        {entry_id: target_path for entry_id in bundle.declaration.cpl_entries},
    )
    roles = dict(head.roles)
    first_deposit = naming.role_name(bundle.manufacturer_id) not in roles
    for role in staged_roles:
        roles[role.name] = role.role.signed.version
    targets_version = head.targets_version
    pilot = accepted.info.pilot
    # Issue 22: a pilot image waits for its release date (refresh) or the provider's release.
    pilots = head.pilots if pilot is None else {**head.pilots, target_path: pilot.release_at}
    if first_deposit:
        manufacturer = head.manufacturers[bundle.manufacturer_id]
        targets_version = repo.stage_targets(lambda t: delegate(t, manufacturer), now)
    repo.commit(
        replace(
            head,
            roles=roles,
            targets_version=targets_version,
            index_sha256=repo.index_store().add(head.index_sha256 or None, added_index),
            pilots=pilots,
        ),
        event={
            "event": "ingest-accepted",
            "at": format_timestamp(now),
            "bundle": bundle_path.name,
            "target": target_path,
            "sha256": accepted.digests.file_sha256,
            "role": accepted.role_name,
            "role_version": accepted.role.signed.version,
            "manufacturer_image_sha256": accepted.digests.manufacturer_image_sha256,
            "cpl_entries": list(bundle.declaration.cpl_entries),
            **({} if pilot is None else {"pilot": pilot.to_dict()}),
        },
    )
    notes = list(verdict.notes)
    if pilot is not None:
        notes.append(
            f"pilot for {', '.join(pilot.suppliers)} until {pilot.release_at}: regenerate the "
            "host configuration (`cfl-repo host nginx`) and reload nginx before `cfl-repo publish`"
        )
    return IngestResult(bundle_path.name, "accepted", target_path, [], notes)


# Deposits per group commit (issue 26): about a second of an inbox's work between durable
# commits, so a kill costs at most that to redo, and one sync and one head write serve them all.
BATCH = 200


def ingest_batches(
    repo: Repository,
    bundle_paths: Iterable[Path],
    *,
    now: Callable[[], datetime],
    batch: int = BATCH,
) -> Iterator[list[IngestResult]]:
    """`ingest` over many bundles, ``batch`` of them per group commit (repo_tool/state/
    group_commit.py): each bundle is judged against the library as every earlier one left it,
    and a batch's results are yielded only once the batch is committed durably. ``batch`` 1
    commits each bundle on its own. The caller holds the repository lock."""
    with group_commits(repo) as group:
        done: list[IngestResult] = []
        for path in bundle_paths:
            done.append(ingest(repo, path, now=now()))
            if len(done) >= batch:
                group.flush()
                yield done
                done = []
        group.flush()
        if done:
            yield done


def _ingest_renewal(
    repo: Repository, bundle_path: Path, bundle: Bundle, now: datetime
) -> IngestResult:
    verdict = judge(bundle, gateway_context(repo, now, bundle.declaration.cpl_entries))
    role = verdict.renewal
    if role is None:
        return _reject(repo, bundle_path, verdict, now)
    role_name = naming.role_name(bundle.manufacturer_id)
    repo.write_staged(role_name, role.signed.version, bundle.role_bytes)
    repo.write_added(role_name, role.signed.version, [])
    roles = dict(repo.head.roles)
    roles[role_name] = role.signed.version
    repo.commit(
        replace(repo.head, roles=roles),
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


def _not_enrolled(repo: Repository, manufacturer_id: str) -> Finding | None:
    """A first deposit needs a delegation in targets; with the targets key offline (issue 13) only
    the manufacturer's enrolment, carried by a targets ceremony, may add it."""
    role = naming.role_name(manufacturer_id)
    if role in repo.head.roles or not repo.held_offline(Targets.type):
        return None
    return Finding(
        Code.NOT_ENROLLED,
        f"{role}: found no delegation and the targets key offline, expected {manufacturer_id} "
        f"enrolled before its first deposit (the manufacturer signs `cfl-repo enrol --manufacturer "
        f"{manufacturer_id} --key KEY.pem --out ENROL.json`; the provider runs `cfl-repo manufacturer "
        f"enrol {manufacturer_id} ENROL.json --proposal FILE` and a targets ceremony)",
    )


def _reject(repo: Repository, bundle_path: Path, verdict: Verdict, now: datetime) -> IngestResult:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    keep = repo.path / "rejected" / f"{stamp}-{bundle_path.name}"
    suffix = 1
    while keep.exists():
        suffix += 1
        keep = repo.path / "rejected" / f"{stamp}-{suffix}-{bundle_path.name}"
    result = IngestResult(
        bundle=bundle_path.name,
        status="rejected",
        target=verdict.target,
        reasons=verdict.codes,
        messages=[f"{f.code.value}: {f.message}" for f in verdict.findings],
        kept_at=str(keep.relative_to(repo.path)),
    )
    # A private, bounded copy that never follows a link (repo_tool/intake/inbox.py). A bundle refused for
    # plaintext notes is not copied at all: the provider keeps no plaintext note.
    inbox.make_private_dir(repo.path / "rejected")
    inbox.make_private_dir(keep)
    copy_info: dict[str, object] | None = None
    if Code.NOTES_NOT_ENCRYPTED not in verdict.codes:
        kept = inbox.keep_rejected_copy(
            bundle_path,
            keep / bundle_path.name,
            cap=inbox.rejected_copy_cap(
                image_size_cap=repo.config.image_size_cap,
                role_size_cap=repo.config.role_size_cap,
            ),
        )
        if kept is not None:
            copy_at = f"{result.kept_at}/{bundle_path.name}"
            earlier = inbox.share_earlier_copy(
                repo.path / "rejected", keep / bundle_path.name, kept, copy_at
            )
            copy_info = kept.to_dict() | {"copy": earlier or copy_at}
    report = {
        "schema_version": SCHEMA_VERSION,
        "rejected": format_timestamp(now),
        **result.to_dict(),
        "file": copy_info,
    }
    with undeferred():  # durable before the log line that points at it, inside a group too
        atomic_write_bytes(
            keep / "report.json",
            json.dumps(report, indent=2, sort_keys=True).encode(),
            mode=inbox.PRIVATE_FILE,
        )
    line = {
        "event": "ingest-rejected",
        "at": format_timestamp(now),
        "bundle": bundle_path.name,
        "reasons": result.reasons,
        # Not a commit: it records which commit it followed (see journal.py).
        "after_seq": repo.head.event_seq,
    }
    if repo.group is not None:
        repo.group.log_after_commit(line)  # after the commit of the deposits judged before it
    else:
        journal.append(repo.path / "events.jsonl", [line])
    return result


def bundles_in(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """The bundles named: files as given, and the *.cflb entries of inbox folders, sorted. Listing
    never follows a link; a link or special file is listed, then rejected (repo_tool/intake/inbox.py)."""
    return inbox.list_inbox(paths)


def _stored_role_bytes(repo: Repository) -> Callable[[str, int], bytes | None]:
    def read(role: str, version: int) -> bytes | None:
        try:
            return repo.metadata_path(role, version).read_bytes()
        except OSError:
            return None

    return read
