"""Superseded metadata versions leave the published tree a grace period after they stop being
served (repo_tool/publish/superseded.py, issue 26): what goes, what always stays, when, and that a
client, warm or cold, still refreshes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory import (
    LibraryFactory,
    deposit_published_at,
    one_maker_library,
    updater_for,
)
from metadata_templates.errors import ConfigurationError
from repo_tool.ops.publish import publish
from repo_tool.publish.folder import expire_superseded
from repo_tool.publish.superseded import (
    LEDGER_NAME,
    Ledger,
    Served,
    expired_between,
    expired_in,
    parse_grace,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
# The published library's clock: near the real one, which ngclient checks expiry against.
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


# --- the pure rule ---------------------------------------------------------------------------


def test_grace_forms() -> None:
    assert parse_grace("24h") == timedelta(hours=24)
    assert parse_grace("7d") == timedelta(days=7)
    assert parse_grace("forever") is None


@pytest.mark.parametrize("text", ["0h", "30m", "1", "-1d", "1.5d", "", "never", "1d ", "01d"])
def test_a_grace_that_is_not_one_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_grace(text)
    assert str(raised.value).startswith(f"--keep-superseded: found {text!r}, expected ")


def test_the_cut_is_the_snapshot_served_grace_ago() -> None:
    ledger = Ledger().record(5, T0).record(6, T0 + timedelta(hours=10)).record(7, T0 + DAY)
    assert ledger.cut(T0 + DAY - timedelta(seconds=1), DAY) is None  # nothing a day old yet
    assert ledger.cut(T0 + DAY, DAY) == 5
    assert ledger.cut(T0 + DAY + timedelta(hours=10), DAY) == 6
    assert ledger.cut(T0 + 5 * DAY, DAY) == 7
    # Once expired to 6, a cut at 6 or below is nothing new to do.
    assert ledger.expired_to(6).cut(T0 + DAY + timedelta(hours=10), DAY) is None
    assert ledger.expired_to(6).served == ledger.served[1:]


def test_a_clock_that_went_back_only_delays() -> None:
    ledger = Ledger().record(5, T0 + DAY).record(6, T0)  # the clock went back a day
    assert ledger.served[-1] == Served(T0 + DAY, 6)
    assert ledger.cut(T0 + DAY + DAY, DAY) == 6
    assert ledger.record(6, T0 + 3 * DAY) == ledger  # the same snapshot is no new entry


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"served": []}',
        b'{"floor": "3", "served": []}',
        b'{"floor": 0, "served": []}',
        b'{"floor": null, "served": [["2026-06-01T12:00:00", 4]]}',  # no time zone
        b'{"floor": null, "served": [["2026-06-01T12:00:00+00:00", 5], '
        b'["2026-06-01T13:00:00+00:00", 5]]}',  # not rising
        b'{"floor": null, "served": [["2026-06-02T12:00:00+00:00", 5], '
        b'["2026-06-01T13:00:00+00:00", 6]]}',  # time going back
        b'{"floor": null, "served": [[1, 2]]}',
        b'{"floor": null, "served": [["2026-06-01T12:00:00+00:00"]]}',
    ],
)
def test_a_ledger_that_does_not_read_is_an_empty_one(data: bytes) -> None:
    assert Ledger.from_bytes(data) == Ledger()


def test_the_ledger_round_trips() -> None:
    ledger = Ledger().record(5, T0).record(9, T0 + DAY).expired_to(5)
    assert Ledger.from_bytes(ledger.to_bytes()) == ledger


def test_between_floor_and_cut_names_exactly_what_was_superseded() -> None:
    floor_roles = {"targets.json": 2, "mfr-121D.json": 4}
    cut_roles = {"targets.json": 3, "mfr-121D.json": 6, "mfr-3F01.json": 2}
    assert expired_between(10, floor_roles, 12, cut_roles) == [
        "10.snapshot.json",
        "11.snapshot.json",
        "4.mfr-121D.json",
        "5.mfr-121D.json",
        "1.mfr-3F01.json",  # new since the floor
        "2.targets.json",
    ]


def test_a_first_expiry_never_takes_roots_the_timestamp_dotfiles_or_unknown_roles() -> None:
    names = [
        "1.root.json",
        "2.root.json",
        "timestamp.json",
        LEDGER_NAME,
        "3.snapshot.json",
        "4.snapshot.json",
        "1.targets.json",
        "2.targets.json",
        "7.mfr-121D.json",
        "8.mfr-121D.json",
        "1.mfr-gone.json",
        "01.targets.json",
        "x.snapshot.json",
    ]
    assert expired_in(names, 4, {"targets.json": 2, "mfr-121D.json": 8}) == [
        "1.targets.json",
        "3.snapshot.json",
        "7.mfr-121D.json",
    ]


# --- a published folder ----------------------------------------------------------------------


def _versions(out: Path, role: str) -> list[int]:
    return sorted(
        int(name.split(".", 1)[0])
        for name in os.listdir(out / "metadata")
        if name.endswith(f".{role}.json") and name.split(".", 1)[0].isdigit()
    )


def _served_snapshot(out: Path) -> int:
    doc = json.loads((out / "metadata" / "timestamp.json").read_bytes())
    return int(doc["signed"]["meta"]["snapshot.json"]["version"])


def test_versions_superseded_for_a_day_go_and_the_rest_stays(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 6, now=NOW)
    out = factory.out
    for n in (1, 2, 3):  # three publishes in the first hours
        deposit_published_at(factory, images[n - 1], n, NOW + timedelta(hours=n))
    before = _versions(out, "snapshot")
    served_at_hour_3 = _served_snapshot(out)
    # Not a day yet since anything was superseded: nothing goes, however many publishes.
    assert len(before) > 3 and before == list(range(1, served_at_hour_3 + 1))

    deposit_published_at(factory, images[3], 4, NOW + timedelta(hours=2) + DAY)
    # The snapshot served a day ago (hour 2's) stays with what it lists, and so does the one
    # served just before this publish; everything older is gone.
    snapshots = _versions(out, "snapshot")
    served_at_hour_2 = served_at_hour_3 - 1
    assert snapshots[0] == served_at_hour_2
    assert snapshots == list(range(served_at_hour_2, _served_snapshot(out) + 1))
    cut = json.loads((out / "metadata" / f"{served_at_hour_2}.snapshot.json").read_bytes())
    for name, meta in cut["signed"]["meta"].items():
        role = name.removesuffix(".json")
        assert _versions(out, role)[0] == meta["version"], role
    # Roots are never deleted: the chain from version 1 is what a new client walks.
    assert _versions(out, "root") == list(range(1, factory.repo.head.root_version + 1))
    # Blobs and the log are untouched.
    assert len(list((out / "targets" / "121D").iterdir())) == 4


def test_a_cold_and_a_warm_client_refresh_after_an_expiry(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 4, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    warm, _fetcher = updater_for(factory, tmp_path / "warm")
    warm.refresh()  # caches today's snapshot and role versions
    deposit_published_at(factory, images[1], 2, NOW + timedelta(hours=2))
    deposit_published_at(factory, images[2], 3, NOW + 3 * DAY)
    deposit_published_at(factory, images[3], 4, NOW + 5 * DAY)
    assert _versions(factory.out, "snapshot")[0] > 1  # what the warm client cached is gone
    for workdir in ("warm", "cold"):
        updater, _ = updater_for(factory, tmp_path / workdir)
        updater.refresh()
        for n in range(1, 5):
            info = updater.get_targetinfo(_image_path(factory, n))
            assert info is not None, (workdir, n)


def _image_path(factory: LibraryFactory, n: int) -> str:
    role = factory.repo.role("mfr-121D").signed
    paths = sorted(p for p in role.targets if f"-{n:08d}-" in p)
    assert paths, n
    return paths[0]


def test_forever_keeps_every_version(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 3, now=NOW)
    for n in (1, 2, 3):
        factory.ingest(factory.submit(images[n - 1], [f"CPL-{n:04d}"]), name=f"d{n}")
        publish(factory.repo, factory.out, now=NOW + n * 3 * DAY, keep_superseded=None)
    assert _versions(factory.out, "snapshot") == list(range(1, _served_snapshot(factory.out) + 1))


def test_a_kill_between_the_deletes_and_the_ledger_is_finished_by_the_next_run(
    tmp_path: Path,
) -> None:
    factory, images = one_maker_library(tmp_path, 3, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    deposit_published_at(factory, images[1], 2, NOW + timedelta(hours=2))
    ledger_path = factory.out / "metadata" / LEDGER_NAME
    kept = ledger_path.read_bytes()
    when = NOW + 2 * DAY
    first = expire_superseded(factory.repo, factory.out, now=when, grace=DAY)
    assert first > 0
    after = ledger_path.read_bytes()
    ledger_path.write_bytes(kept)  # as if killed after the deletes, before the ledger's write
    assert expire_superseded(factory.repo, factory.out, now=when, grace=DAY) == 0
    assert ledger_path.read_bytes() == after
    ledger_path.unlink()  # lost altogether: the next expiry waits a grace again, then lists
    assert expire_superseded(factory.repo, factory.out, now=when, grace=DAY) == 0
    later = when + 2 * DAY
    assert expire_superseded(factory.repo, factory.out, now=later, grace=DAY) == 0
    assert Ledger.from_bytes(ledger_path.read_bytes()).floor == factory.repo.head.snapshot_version


def test_a_tampered_ledger_cannot_reach_beyond_the_repository(tmp_path: Path) -> None:
    """The destination's ledger is only a clock: which versions a cut lists is read from the
    repository, so a ledger naming snapshots the repository never signed deletes nothing."""
    factory, images = one_maker_library(tmp_path, 2, now=NOW)
    deposit_published_at(factory, images[0], 1, NOW + timedelta(hours=1))
    ledger_path = factory.out / "metadata" / LEDGER_NAME
    forged = Ledger((Served(NOW - 9 * DAY, 10_000),), floor=None)
    ledger_path.write_bytes(forged.to_bytes())
    before = sorted(os.listdir(factory.out / "metadata"))
    assert expire_superseded(factory.repo, factory.out, now=NOW + DAY, grace=DAY) == 0
    assert sorted(os.listdir(factory.out / "metadata")) == before
    # ... and it is replaced by a true one, from which the next expiry starts.
    head = factory.repo.head.snapshot_version
    assert Ledger.from_bytes(ledger_path.read_bytes()).served == (Served(NOW + DAY, head),)


# --- the command -----------------------------------------------------------------------------


def _cli(args: list[str], clock: datetime | None = None) -> Any:
    from click.testing import CliRunner

    from repo_tool.cli.console import CLOCK
    from repo_tool.cli.main import cli

    obj = {CLOCK: lambda: clock} if clock is not None else None
    return CliRunner().invoke(cli, args, obj=obj)


def test_publish_refuses_a_grace_that_is_not_one_and_changes_nothing(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 2, now=NOW)
    factory.ingest(factory.submit(images[0], ["CPL-0001"]), name="d1")
    head = factory.repo.head.snapshot_version
    cfl_repo = Path(sys.executable).parent / "cfl-repo"
    args = ["--repo", str(factory.repo.path), "publish", "--keep-superseded", "2 days"]
    done = subprocess.run([cfl_repo, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "error: --keep-superseded: found '2 days', expected a number of hours or days"
    )
    assert "Traceback" not in done.stderr
    assert _served_snapshot(factory.out) == head  # nothing was signed or written


def test_publish_deletes_by_the_clock_it_is_given_and_says_so(tmp_path: Path) -> None:
    factory, images = one_maker_library(tmp_path, 3, now=NOW)
    repo = str(factory.repo.path)
    for n, hours in ((1, 1), (2, 2)):
        factory.ingest(factory.submit(images[n - 1], [f"CPL-{n:04d}"]), name=f"d{n}")
        done = _cli(["--repo", repo, "publish", "--no-site"], NOW + timedelta(hours=hours))
        assert done.exit_code == 0, done.output
    factory.ingest(factory.submit(images[2], ["CPL-0003"]), name="d3")
    done = _cli(["--repo", repo, "publish", "--no-site", "--json"], NOW + 3 * DAY)
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["superseded_deleted"] > 0
    assert f"deleted {doc['superseded_deleted']} superseded metadata version(s)" in done.stderr
    ledger = Ledger.from_bytes((factory.out / "metadata" / LEDGER_NAME).read_bytes())
    assert ledger.served[-1] == Served(NOW + 3 * DAY, doc["snapshot_version"])


def test_a_role_name_that_is_a_path_is_never_a_name_to_delete() -> None:
    """Defence in depth: role names come from the repository's own snapshots, but a name with a
    separator or a dot-dot would reach outside metadata/ in the folder's unlink."""
    cut_roles = {"../../etc/x.json": 9, "a/b.json": 4, "root.json": 3, "mfr-121D.json": 2}
    assert expired_between(1, {}, 1, cut_roles) == ["1.mfr-121D.json"]
