"""Superseded partial tiles are deleted (repo_tool/tlog/partial_tiles.py): at once in the provider's
state, after one publish of grace on the host; every tile a proof of the current size needs stays.

The log is grown and published with the provider's own code (append, sign the checkpoint,
``publish_log``); the expected files are computed from c2sp.org/tlog-tiles' layout
(``tiles_for_size``), never from the pruner.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.log.withdrawal_events import logged_withdrawals
from metadata_templates.tlog import events
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.merkle import verify_consistency
from metadata_templates.tlog.note import NoteSigner
from metadata_templates.tlog.proofs import TreeHashes
from metadata_templates.tlog.tiles import tiles_for_size
from repo_tool.tlog import provider_log
from repo_tool.tlog.partial_tiles import SWEPT_MARK, prune_partial_tiles

SIGNER = NoteSigner("cfl.test/log", Ed25519PrivateKey.from_private_bytes(bytes(32)))


def _event(index: int) -> bytes:
    return events.encode_event({"event": events.DEPOSIT, "at": "2026-01-01T00:00:00Z", "n": index})


class Provider:
    """A state log folder and a published ``log/`` folder, grown one commit at a time."""

    def __init__(self, base: Path) -> None:
        self.state_dir = base / "state" / "log"
        self.out = base / "public" / "log"
        self.state = provider_log.LogState()
        self.sizes: list[int] = []

    def commit(self, count: int) -> None:
        entries = [_event(self.state.size + i) for i in range(count)]
        self.state = provider_log.append(self.state_dir, self.state, entries)
        provider_log.sign_checkpoint(self.state_dir, self.state, SIGNER)

    def publish(self) -> None:
        provider_log.publish_log(self.state_dir, self.out, self.state)
        # Then the timestamp that binds the new checkpoint, as publish writes it (last).
        binding = provider_log.timestamp_binding(self.state_dir, self.state, SIGNER)
        timestamp = self.out.parent / "metadata" / "timestamp.json"
        timestamp.parent.mkdir(parents=True, exist_ok=True)
        timestamp.write_text(json.dumps({"signed": binding}))
        self.sizes.append(self.state.size)


def _partials(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and ".p/" in p.relative_to(folder).as_posix()
    }


def _partials_of(size: int) -> set[str]:
    return {t.path for t in tiles_for_size(size) if t.width < 256}


def _full_of(size: int) -> set[str]:
    return {t.path for t in tiles_for_size(size) if t.width == 256}


@pytest.mark.parametrize("steps", [[1] * 300, [5, 250, 1, 1, 300, 2, 1], [70000 // 100] * 100])
def test_only_the_current_and_previous_publish_partial_tiles_remain(
    tmp_path: Path, steps: list[int]
) -> None:
    provider = Provider(tmp_path)
    for count in steps:
        provider.commit(count)
        provider.publish()
        size = provider.state.size
        previous = provider.sizes[-2] if len(provider.sizes) > 1 else 0
        assert _partials(provider.state_dir) == _partials_of(size)
        on_host = _partials(provider.out)
        assert _partials_of(size) <= on_host <= _partials_of(size) | _partials_of(previous)
        for path in _full_of(size) | _partials_of(size):  # everything a proof of `size` reads
            assert (provider.out / path).is_file() and (provider.state_dir / path).is_file()


def test_commits_between_publishes_are_pruned_in_the_state_at_the_next_publish(
    tmp_path: Path,
) -> None:
    provider = Provider(tmp_path)
    for _ in range(40):
        provider.commit(1)  # a group commit's many small appends, or ingests without a publish
    assert len(_partials(provider.state_dir)) == 40 * 2  # entries and level 0, each width
    provider.publish()
    assert _partials(provider.state_dir) == _partials_of(40)


def test_a_client_holding_the_previous_checkpoint_still_finds_its_tiles(tmp_path: Path) -> None:
    """The grace: a supplier that read checkpoint N just before publish N+1 reads N's tiles."""
    provider = Provider(tmp_path)
    provider.commit(10)
    provider.publish()
    old = Checkpoint("cfl.test/log", provider.state.size, provider.state.root_hash)
    provider.commit(1)
    provider.publish()

    def read(tile: object) -> bytes:
        return (provider.out / tile.path).read_bytes()  # type: ignore[attr-defined]

    assert TreeHashes(old.size, read).root() == old.root_hash
    new = Checkpoint("cfl.test/log", provider.state.size, provider.state.root_hash)
    proof = TreeHashes(new.size, read).consistency_proof(old.size)
    verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    found = logged_withdrawals(new, 0, lambda rel: (provider.out.parent / rel).read_bytes())
    assert found.size == 11


def test_the_first_prune_of_a_folder_clears_what_older_versions_left(tmp_path: Path) -> None:
    """A log published before pruning existed holds every width; the first publish with it looks
    at every tile once (then only near the edge, marked by a dotfile nobody serves)."""
    provider = Provider(tmp_path)
    for _ in range(600):
        provider.state = provider_log.append(
            provider.state_dir, provider.state, [_event(provider.state.size)]
        )
    provider_log.sign_checkpoint(provider.state_dir, provider.state, SIGNER)
    assert len(_partials(provider.state_dir)) > 1000
    provider.publish()
    assert _partials(provider.state_dir) == _partials_of(600)
    assert (provider.state_dir / SWEPT_MARK).exists() and (provider.out / SWEPT_MARK).exists()


def test_nothing_that_cannot_be_listed_or_deleted_fails_a_publish(tmp_path: Path) -> None:
    assert prune_partial_tiles(tmp_path / "absent", since=0, size=1000, keep_from=1000) == 0


def test_a_publish_killed_before_its_timestamp_keeps_the_served_timestamp_s_tiles(
    tmp_path: Path,
) -> None:
    """Clients follow the timestamp: two publishes killed after their log step (checkpoint ahead
    of the timestamp) must not delete the tiles of the size the served timestamp binds."""
    provider = Provider(tmp_path)
    provider.commit(8)
    provider.publish()
    for _ in range(2):
        provider.commit(1)
        provider_log.publish_log(provider.state_dir, provider.out, provider.state)  # then killed
    for path in _partials_of(8) | _full_of(8):
        assert (provider.out / path).is_file(), path


def test_a_mark_of_thousands_of_digits_does_not_fail_a_publish(tmp_path: Path) -> None:
    provider = Provider(tmp_path)
    provider.commit(3)
    provider.publish()
    (provider.state_dir / SWEPT_MARK).write_text("9" * 5000)
    provider.commit(1)
    provider.publish()
    assert _partials(provider.state_dir) == _partials_of(4)
