"""`cfl log verify URL`: an audit of a published library's transparency log that needs no keys and
no home. It downloads every entry bundle and tile, recomputes the whole tree, checks the signed
checkpoint, checks that every image, withdrawal and CPL the current TUF metadata lists has its
event in the log, and that every deposit's ``log/cfl-index/<sha256>`` file names that deposit's entry.
What it proves: nothing that is in the library today is missing from the log, every image can be
proved included the way clients prove it, and (with ``--previous``) nothing that was in the log then
has been removed since.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

from client.log.transparency import INDEX_DIR, Fetch
from metadata_templates import naming
from metadata_templates.advisory import is_advisory_target_path
from metadata_templates.errors import ConfigurationError, UnavailableError, VerificationError
from metadata_templates.notes import is_notes_target_path
from metadata_templates.tlog import events
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.binding import read_binding
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.merkle import verify_consistency
from metadata_templates.tlog.note import NoteVerifier, open_note, verified_by
from metadata_templates.tlog.proofs import TreeHashes
from metadata_templates.tlog.tiles import ENTRIES_LEVEL, TileId, decode_bundle, tiles_for_size
from metadata_templates.withdrawals import WithdrawalList

Progress = Callable[[int, int], None]


@dataclass
class AuditReport:
    """What `cfl log verify` found; ``problems`` empty means the log passed."""

    origin: str = ""
    size: int = 0
    root_hash: str = ""
    events: dict[str, int] = field(default_factory=dict)
    images_checked: int = 0
    withdrawals_checked: int = 0
    advisories_checked: int = 0  # reported only when the library holds advisories
    index_files_checked: int = 0
    cosigned_by: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": self.root_hash,
            "events": dict(sorted(self.events.items())),
            "images_checked": self.images_checked,
            "withdrawals_checked": self.withdrawals_checked,
            "index_files_checked": self.index_files_checked,
            **({"advisories_checked": self.advisories_checked} if self.advisories_checked else {}),
            "cosigned_by": self.cosigned_by,
            "ok": not self.problems,
            "problems": self.problems,
        }


def _metadata(fetch: Fetch, name: str) -> bytes:
    return fetch(f"metadata/{name}")


def audit(
    fetch: Fetch,
    *,
    vkey: NoteVerifier | None,
    previous: bytes | None = None,
    witnesses: tuple[NoteVerifier, ...] = (),
    progress: Progress | None = None,
) -> AuditReport:
    """Audit the library behind ``fetch``.

    Raises:
        ConfigurationError: no vkey given and the timestamp binds none.
        VerificationError: the checkpoint's signature or a tile's framing is wrong (nothing further
            can be checked then).
        UnavailableError: a file could not be fetched.
    """
    report = AuditReport()
    try:
        timestamp = Metadata[Timestamp].from_bytes(_metadata(fetch, "timestamp.json"))
    except RepositoryError as e:
        raise VerificationError(f"metadata/timestamp.json: not TUF metadata ({e})") from e
    binding = read_binding(timestamp.signed.unrecognized_fields)
    verifier = vkey or (binding.verifier if binding else None)
    if verifier is None:
        raise ConfigurationError(
            "--vkey: none given and metadata/timestamp.json binds no log; expected the log's vkey "
            "(`cfl-repo log key` at the provider, or the website's trust page)"
        )
    if binding is not None and binding.vkey != verifier.vkey:
        report.problems.append(
            f"timestamp binds log vkey {binding.vkey}, expected {verifier.vkey} (--vkey)"
        )
    note = open_note(fetch("log/checkpoint"), verifier)
    checkpoint = Checkpoint.from_text(note.text)
    report.origin, report.size = checkpoint.origin, checkpoint.size
    report.root_hash = checkpoint.root_hash.hex()
    report.cosigned_by = [w.name for w in verified_by(note, witnesses)]
    if binding is None:
        report.problems.append("metadata/timestamp.json: binds no log checkpoint")
    else:
        try:
            binding.check(checkpoint)
        except VerificationError as e:
            report.problems.append(str(e))

    # Every entry, and the whole tree recomputed from them.
    entries: list[bytes] = []
    tiles = list(tiles_for_size(checkpoint.size))
    bundles = [t for t in tiles if t.level == ENTRIES_LEVEL]
    for done, bundle in enumerate(bundles, 1):
        data = fetch("log/" + bundle.path)
        entries += decode_bundle(data, expected=bundle.width, where=bundle.path)
        if progress:
            progress(done, len(tiles))
    rebuilt = append_entries(0, _no_tiles, entries)
    if rebuilt.root_hash != checkpoint.root_hash:
        report.problems.append(
            f"log: the {len(entries)} entries hash to root {rebuilt.root_hash.hex()}, expected "
            f"{checkpoint.root_hash.hex()} (the checkpoint's)"
        )
    for done, tile in enumerate((t for t in tiles if t.level != ENTRIES_LEVEL), len(bundles) + 1):
        if fetch("log/" + tile.path) != rebuilt.tiles.get(tile):
            report.problems.append(
                f"log/{tile.path}: differs from the tile recomputed from entries"
            )
        if progress:
            progress(done, len(tiles))
    if previous is not None:
        _check_previous(previous, verifier, checkpoint, rebuilt.tiles, report)

    logged = [events.decode_event(entry, index=i) for i, entry in enumerate(entries)]
    report.events = dict(Counter(str(e["event"]) for e in logged))
    _check_library(fetch, timestamp.signed, logged, report)
    _check_index_files(fetch, logged, report)
    return report


def _no_tiles(tile: TileId) -> bytes:
    raise AssertionError(f"an append from size 0 reads no tile ({tile.path})")


def _check_previous(
    previous: bytes,
    verifier: NoteVerifier,
    checkpoint: Checkpoint,
    tiles: dict[TileId, bytes],
    report: AuditReport,
) -> None:
    old = Checkpoint.from_text(open_note(previous, verifier).text)
    try:
        if old.size > checkpoint.size:
            raise VerificationError(
                f"log size: found {checkpoint.size}, expected at least {old.size} (--previous)"
            )
        proof = TreeHashes(checkpoint.size, tiles.__getitem__).consistency_proof(old.size)
        verify_consistency(old.size, checkpoint.size, old.root_hash, checkpoint.root_hash, proof)
    except VerificationError as e:
        report.problems.append(f"--previous checkpoint (size {old.size}): {e}")


def _check_library(
    fetch: Fetch, timestamp: Timestamp, logged: list[dict[str, Any]], report: AuditReport
) -> None:
    """Every image, withdrawal and the CPL in today's TUF metadata has its event in the log."""
    deposits = {(e.get("target"), e.get("sha256")) for e in logged if e["event"] == events.DEPOSIT}
    withdrawn = {
        (e.get("target"), e.get("sha256")) for e in logged if e["event"] == events.WITHDRAWAL
    }
    cpls = {e.get("cpl_sha256") for e in logged if e["event"] == events.CPL_IMPORT}
    advisories = {
        (e.get("target"), e.get("sha256")) for e in logged if e["event"] == events.ADVISORY
    }
    version = timestamp.snapshot_meta.version
    snapshot = Metadata[Snapshot].from_bytes(_metadata(fetch, f"{version}.snapshot.json"))
    for name, meta in sorted(snapshot.signed.meta.items()):
        role = Metadata[Targets].from_bytes(_metadata(fetch, f"{meta.version}.{name}")).signed
        for path, target in sorted(role.targets.items()):
            sha = target.hashes.get("sha256")
            if path == naming.CPL_TARGET_PATH:
                if sha not in cpls:
                    report.problems.append(f"{path} (sha256 {sha}): no cpl-import event in the log")
            elif path == naming.WITHDRAWALS_TARGET_PATH:
                data = fetch(f"targets/{naming.blob_name(path, str(sha))}")
                for withdrawal in WithdrawalList.from_bytes(data).withdrawals:
                    report.withdrawals_checked += 1
                    if (withdrawal.target, withdrawal.sha256) not in withdrawn:
                        report.problems.append(
                            f"withdrawal of {withdrawal.target}: no withdraw event in the log"
                        )
            elif name != f"{Targets.type}.json" and not naming.is_provider_target(path):
                # cfl-provider (issue 13) holds the registry, suspensions and grants: not images.
                if is_notes_target_path(path):
                    # Encrypted release notes are lodged with their image, in the same role version
                    # and the same deposit event; they are not images of their own.
                    continue
                if is_advisory_target_path(path):
                    # Every revision of a security advisory has its own advisory event.
                    report.advisories_checked += 1
                    if (path, sha) not in advisories:
                        report.problems.append(
                            f"advisory {path} (sha256 {sha}): no advisory event in the log"
                        )
                    continue
                report.images_checked += 1
                if (path, sha) not in deposits:
                    report.problems.append(
                        f"image {path} (sha256 {sha}): no deposit event in the log"
                    )


def _check_index_files(fetch: Fetch, logged: list[dict[str, Any]], report: AuditReport) -> None:
    """Every deposit's ``log/cfl-index/<sha256>`` names the index of that deposit's entry.

    A client finds the entry to prove for an image it downloads through this file (client/log/transparency.py,
    ``deposit_index``). The file is untrusted: the client proves the entry it names is included and
    names the image, so a wrong or missing file cannot make a client accept anything. It does make
    every download of that image fail, which is worth an auditor's finding. The publisher writes the
    files in log order, so for bytes deposited twice the later entry's index is the one served.
    """
    expected: dict[str, int] = {}
    for index, event in enumerate(logged):
        sha = event.get("sha256")
        if event["event"] == events.DEPOSIT and isinstance(sha, str) and len(sha) == 64:
            expected[sha] = index
    for sha, index in sorted(expected.items()):
        path = f"{INDEX_DIR}/{sha}"
        report.index_files_checked += 1
        try:
            text = fetch(path)
        except UnavailableError as e:
            report.problems.append(
                f"{path}: cannot fetch ({e}), expected {index} (the deposit's log index); clients "
                "cannot prove this image logged and refuse to download it"
            )
            continue
        try:
            found = int(text.strip())
        except ValueError:
            found = None
        if found != index:
            report.problems.append(
                f"{path}: found {text[:20]!r}, expected {index} (the deposit's log index); clients "
                "cannot prove this image logged and refuse to download it"
            )
