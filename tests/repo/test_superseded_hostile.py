"""A hostile or confused environment around the superseded-metadata expiry
(repo_tool/publish/superseded.py, repo_tool/publish/folder.py): damaged ledgers, odd names in
metadata/, a ledger that lies about the clock. Nothing here may fail a publish, and nothing a
client may still read may go."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory import (
    LibraryFactory,
    deposit_published_at,
    one_maker_library,
)
from metadata_templates.errors import ConfigurationError
from repo_tool.publish.folder import expire_superseded
from repo_tool.publish.superseded import LEDGER_NAME, Ledger, Served

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "data",
    [
        # a time without a zone after one with a zone (and the other way round)
        b'{"floor": null, "served": [["2026-06-01T12:00:00", 4], ["2026-06-01T13:00:00+00:00", 5]]}',
        b'{"floor": null, "served": [["2026-06-01T12:00:00+00:00", 4], ["2026-06-01T13:00:00", 5]]}',
        b'{"floor": null, "served": [["2026-06-01T12:00:00+00:00", 1e400]]}',
    ],
)
def test_a_ledger_that_does_not_read_never_raises(data: bytes) -> None:
    assert Ledger.from_bytes(data) == Ledger()


# --- a published folder ----------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DAY = timedelta(days=1)


def _snapshots(out: Path) -> list[int]:
    names = os.listdir(out / "metadata")
    return sorted(int(n.split(".")[0]) for n in names if n.endswith(".snapshot.json"))


def _served(out: Path) -> int:
    doc = json.loads((out / "metadata" / "timestamp.json").read_bytes())
    return int(doc["signed"]["meta"]["snapshot.json"]["version"])


def _expire_with_timeout(factory: LibraryFactory, when: datetime) -> int:
    done: list[int] = []
    worker = threading.Thread(
        target=lambda: done.append(
            expire_superseded(factory.repo, factory.out, now=when, grace=DAY)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(20)
    return done[0] if done else -1


def test_a_fifo_or_a_symlink_for_a_ledger_neither_hangs_nor_is_followed(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 2, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    ledger_path = factory.out / "metadata" / LEDGER_NAME
    ledger_path.unlink()
    os.mkfifo(ledger_path)
    assert _expire_with_timeout(factory, NOW + DAY) >= 0, "the publish hung on a FIFO ledger"
    assert ledger_path.is_file() and not ledger_path.is_symlink()
    # A link to another destination's ledger (or anything else) is not this one's clock and
    # its target is never written.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(Ledger((Served(NOW - 9 * DAY, 1),), None).to_bytes())
    kept = elsewhere.read_bytes()
    ledger_path.unlink()
    ledger_path.symlink_to(elsewhere)
    before = sorted(os.listdir(factory.out / "metadata"))
    assert expire_superseded(factory.repo, factory.out, now=NOW + DAY, grace=DAY) == 0
    assert elsewhere.read_bytes() == kept
    assert not ledger_path.is_symlink()
    assert sorted(os.listdir(factory.out / "metadata")) == before


def test_a_directory_named_like_a_version_or_the_ledger_fails_no_publish(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 3, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    metadata = factory.out / "metadata"
    (metadata / "1.snapshot.json").unlink()
    (metadata / "1.snapshot.json").mkdir()
    (metadata / "1.snapshot.json" / "keep").write_bytes(b"x")
    deposit_published_at(factory, images[1], 2, NOW + 3 * DAY)  # the first expiry lists metadata/
    assert (metadata / "1.snapshot.json" / "keep").read_bytes() == b"x"
    served = _served(factory.out)
    assert _snapshots(factory.out) == [1, served - 1, served]  # the directory, the cut, the head
    (metadata / LEDGER_NAME).unlink()
    (metadata / LEDGER_NAME).mkdir()
    deposit_published_at(factory, images[2], 3, NOW + 6 * DAY)
    assert (metadata / LEDGER_NAME).is_dir()


def test_a_ledger_that_lies_about_the_clock_never_takes_what_was_served_before(
    tmp_path: Path,
) -> None:
    """A ledger copied from another destination, restored from a backup or edited may claim that
    the snapshot this publish signs was served days ago; the snapshot the destination served just
    before the publish, and what it lists, are what a client mid-refresh reads, so they stay."""
    factory, images = one_maker_library(tmp_path, 2, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    served_before = _served(factory.out)
    listed = json.loads((factory.out / "metadata" / f"{served_before}.snapshot.json").read_bytes())
    forged = Ledger((Served(NOW - 9 * DAY, served_before + 1),), floor=None)
    (factory.out / "metadata" / LEDGER_NAME).write_bytes(forged.to_bytes())
    deposit_published_at(factory, images[1], 2, NOW + timedelta(hours=2))
    assert _served(factory.out) == served_before + 1
    assert served_before in _snapshots(factory.out)
    for name, meta in listed["signed"]["meta"].items():
        assert (factory.out / "metadata" / f"{meta['version']}.{name}").is_file(), name


def test_the_cut_is_never_above_what_was_served_before() -> None:
    ledger = Ledger().record(5, T0).record(9, T0 + timedelta(hours=1))
    later = T0 + 3 * DAY
    assert ledger.cut(later, DAY) == 9
    assert ledger.cut(later, DAY, served_before=7) == 7
    assert ledger.cut(later, DAY, served_before=None) == 9  # the destination served nothing
    assert ledger.cut(later, DAY, served_before=0) is None  # a timestamp.json that did not read
    assert ledger.expired_to(7).cut(later, DAY, served_before=7) is None


def _cli(args: list[str], clock: datetime) -> Any:
    from click.testing import CliRunner

    from repo_tool.cli.console import CLOCK
    from repo_tool.cli.main import cli

    return CliRunner().invoke(cli, args, obj={CLOCK: lambda: clock})


def test_refresh_keeps_what_publish_was_told_to_keep(tmp_path: Path) -> None:
    """An hourly `cfl-repo refresh` publishes too: with no --keep-superseded of its own it deleted
    at the default day what `publish --keep-superseded forever` keeps."""
    factory, images = one_maker_library(tmp_path, 2, now=NOW)
    repo = str(factory.repo.path)
    for n in (1, 2):
        factory.ingest(factory.submit(images[n - 1], [f"CPL-{n:04d}"]), name=f"d{n}")
        args = ["--repo", repo, "publish", "--no-site", "--keep-superseded", "forever"]
        done = _cli(args, NOW + n * timedelta(hours=1))
        assert done.exit_code == 0, done.output
    args = ["--repo", repo, "refresh", "--force", "--keep-superseded", "forever"]
    done = _cli(args, NOW + 3 * DAY)
    assert done.exit_code == 0, done.output
    assert _snapshots(factory.out) == list(range(1, _served(factory.out) + 1))
    done = _cli(["--repo", repo, "refresh", "--keep-superseded", "0h"], NOW + 3 * DAY)
    # (the console script turns a ConfigurationError into one error: line and exit 2)
    assert isinstance(done.exception, ConfigurationError)
    assert str(done.exception).startswith("--keep-superseded: found '0h', expected ")


def test_a_ledger_dated_in_the_future_restarts_rather_than_stopping_expiry_for_ever() -> None:
    future = Ledger((Served(datetime(9999, 1, 1, tzinfo=UTC), 3),), floor=None)
    assert future.within(5, T0) == Ledger()
    restarted = future.within(5, T0).record(5, T0)
    assert restarted.cut(T0 + 2 * DAY, DAY) == 5
    # A clock that went back an hour is no time passing, as before.
    behind = Ledger((Served(T0 + timedelta(hours=1), 3),), floor=None)
    assert behind.within(5, T0) == behind


@pytest.mark.parametrize("text", ["36501d", "876001h", "0d"])
def test_a_grace_out_of_range_is_refused_saying_the_range(text: str) -> None:
    from repo_tool.publish.superseded import parse_grace

    with pytest.raises(ConfigurationError) as raised:
        parse_grace(text)
    assert str(raised.value) == (
        f"--keep-superseded: found {text!r}, expected a number of hours or days such as 24h "
        "or 7d (1h to 36500d), or forever"
    )


def test_a_client_mid_refresh_through_a_burst_of_publishes_finds_what_it_read(
    tmp_path: Path,
) -> None:
    """A client reads timestamp.json after days of quiet, then a bulk intake publishes several
    times within seconds: the snapshot that timestamp named, and every role version it lists,
    are still there when the client asks for them (default grace)."""
    factory, images = one_maker_library(tmp_path, 5, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    read = _served(factory.out)  # the client has read timestamp.json, five days later
    for n in (2, 3, 4):
        deposit_published_at(factory, images[n - 1], n, NOW + 5 * DAY + timedelta(seconds=n))
    assert _served(factory.out) > read
    metadata = factory.out / "metadata"
    listed = json.loads((metadata / f"{read}.snapshot.json").read_bytes())["signed"]["meta"]
    for name, meta in listed.items():
        assert (metadata / f"{meta['version']}.{name}").is_file(), name
    assert _snapshots(factory.out)[0] == read  # and what was older than it went


def test_a_root_in_another_case_is_never_a_name_to_delete() -> None:
    """On a case-insensitive file system 1.Root.json is 1.root.json: never deleted, whatever
    role name a snapshot lists."""
    from repo_tool.publish.superseded import expired_between, expired_in

    cut_roles = {"Root.json": 3, "ROOT.json": 3, "mfr-121D.json": 2}
    assert expired_between(1, {}, 1, cut_roles) == ["1.mfr-121D.json"]
    names = ["1.Root.json", "2.ROOT.json", "1.mfr-121D.json"]
    assert expired_in(names, 1, cut_roles) == ["1.mfr-121D.json"]
