"""A thief of the online `cfl-provider` key cannot drop a withdrawal (issue 25).

The thief here is what a stolen online key allows: a copy of the provider's state with the online
keys only (cfl-provider, snapshot, timestamp, log; the offline root and targets keys deleted),
which signs a new withdrawal list through the repository tool's own path
(`Repository.put_provider_targets`, as every provider document is staged) and publishes it with
`ops.publish` to the host the supplier reads. The client is the real `cfl` script (for the named
refusals) or its library (`refresh_library`, for the rest), on a library built by `tests/factory.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kill_points import KILLED, strace_killing_at

from client.log.withdrawal_events import home_log_withdrawals
from client.trust.home import ClientConfig, ClientHome
from client.trust.library import open_session
from client.trust.refresh import refresh_library
from client.trust.withdrawal_history import (
    LoggedWithdrawal,
    LoggedWithdrawals,
    WithdrawalHistory,
)
from conftest import require_system
from factory import LibraryFactory, standard_library
from metadata_templates import naming
from metadata_templates.errors import ConfigurationError, VerificationError
from metadata_templates.withdrawals import Withdrawal, WithdrawalList
from repo_tool.ops.publish import publish
from repo_tool.ops.withdraw import withdraw as withdraw_op
from repo_tool.state.repository import Repository

CFL = Path(sys.executable).with_name("cfl")
NOW = datetime(2026, 3, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- the pure rule


def _list(*pairs: tuple[str, str]) -> WithdrawalList:
    return WithdrawalList(tuple(Withdrawal(t, "0" * 64, w, "bad") for t, w in pairs))


A = ("121D/ESME-0001-00000002-aaaaaaaaaaaaaaaa.ota", "2026-01-01T00:00:00Z")
B = ("121D/ESME-0001-00000003-bbbbbbbbbbbbbbbb.ota", "2026-02-01T00:00:00Z")


def test_a_first_history_starts_from_the_verified_document() -> None:
    history = WithdrawalHistory.empty().check(_list(A, B))
    assert dict(history.withdrawn) == dict([A, B])
    assert history.log_size == 0


def test_a_list_that_keeps_every_entry_and_adds_one_is_accepted_and_remembered() -> None:
    history = WithdrawalHistory.empty().check(_list(A)).check(_list(A, B))
    assert dict(history.withdrawn) == dict([A, B])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_list(B), f"found no withdrawal of {A[0]}, expected the withdrawal this home saw before"),
        (_list(), f"found no withdrawal of {A[0]}"),
        (
            _list((A[0], "2026-06-01T00:00:00Z"), B),
            f"{A[0]} withdrawn: found '2026-06-01T00:00:00Z', expected '{A[1]}'",
        ),
    ],
    ids=["entry-dropped", "document-emptied", "withdrawn-time-changed"],
)
def test_a_list_that_loses_or_changes_a_remembered_entry_is_refused(
    document: WithdrawalList, message: str
) -> None:
    history = WithdrawalHistory.empty().check(_list(A, B))
    with pytest.raises(VerificationError) as raised:
        history.check(document)
    assert str(raised.value).startswith(f"{naming.WITHDRAWALS_TARGET_PATH}: ")
    assert message in str(raised.value)
    assert raised.value.hint is not None and "never removed" in raised.value.hint


def test_a_withdrawal_in_the_log_must_be_in_the_document_even_for_a_new_home() -> None:
    logged = LoggedWithdrawals(0, 9, (LoggedWithdrawal(7, *A),))
    with pytest.raises(VerificationError, match=f"found no withdrawal of {A[0]}.*index 7"):
        WithdrawalHistory.empty().check(_list(B), logged)
    accepted = WithdrawalHistory.empty().check(_list(A, B), logged)
    assert accepted.log_size == 9


def test_a_logged_withdrawal_with_another_time_is_refused() -> None:
    logged = LoggedWithdrawals(0, 3, (LoggedWithdrawal(2, A[0], "2025-12-31T00:00:00Z"),))
    with pytest.raises(VerificationError, match="found '2026-01-01T00:00:00Z'"):
        WithdrawalHistory.empty().check(_list(A), logged)


def test_many_refusals_name_three_and_count_the_rest() -> None:
    many = [(f"121D/ESME-0001-0000000{n}-{n:016x}.ota", "2026-01-01T00:00:00Z") for n in range(5)]
    history = WithdrawalHistory.empty().check(_list(*many))
    with pytest.raises(VerificationError, match=r"\(and 2 more\)$"):
        history.check(_list())


def test_the_log_must_be_read_on_from_where_the_home_stopped() -> None:
    history = WithdrawalHistory({}, 5)
    with pytest.raises(ValueError, match="do not continue"):
        history.check(_list(), LoggedWithdrawals(6, 9))


def test_the_history_file_round_trips_and_a_damaged_one_is_a_configuration_error() -> None:
    history = WithdrawalHistory(dict([A, B]), 12)
    assert WithdrawalHistory.from_bytes(history.to_bytes(), "h") == history
    for bad in (
        b"{",
        b'{"schema_version": 1}',
        b'{"schema_version":1,"log_size":-1,"withdrawals":[]}',
    ):
        with pytest.raises(ConfigurationError, match=r"^h: malformed"):
            WithdrawalHistory.from_bytes(bad, "h")


# ---------------------------------------------------------------------- library and thief


def _target(factory: LibraryFactory, image: bytes) -> str:
    digest = hashlib.sha256(image).hexdigest()
    [blob] = factory.out.glob(f"targets/*/{digest}.*")
    return f"{blob.parent.name}/{blob.name.removeprefix(digest + '.')}"


def _withdraw(factory: LibraryFactory, target: str, reason: str = "bricks meters") -> None:
    with factory.repo.locked():
        withdraw_op(factory.repo, target, reason, now=factory.tick())
    factory.publish()


def _published_withdrawals(factory: LibraryFactory) -> WithdrawalList:
    data = factory.repo.provider_document(naming.WITHDRAWALS_TARGET_PATH)
    return WithdrawalList() if data is None else WithdrawalList.from_bytes(data)


def thief_publishes(factory: LibraryFactory, tmp: Path, document: bytes | None) -> None:
    """With the online keys only, sign ``document`` as the next withdrawal list (None: remove it)
    in a new cfl-provider version, and publish it to the host."""
    stolen = tmp / f"thief-{factory.tick().timestamp():.0f}"
    shutil.copytree(factory.repo.path, stolen)
    for offline in [*stolen.glob("keys/DEV-ONLY-root-*"), *stolen.glob("keys/DEV-ONLY-targets-*")]:
        offline.unlink()
    thief = Repository.open(stolen)
    with thief.locked():
        if document is None:
            head = thief.stage_provider_change(
                lambda targets: targets.targets.pop(naming.WITHDRAWALS_TARGET_PATH), factory.now
            )
            thief.commit(head, event={"event": "snapshot"})  # not a lodged event: nothing logged
        else:
            thief.put_provider_targets(
                {naming.WITHDRAWALS_TARGET_PATH: document},
                now=factory.now,
                event={"event": "snapshot"},
            )
    publish(thief, factory.out, now=factory.tick())


def _home(factory: LibraryFactory, path: Path) -> ClientHome:
    home = ClientHome(path)
    with home.lock():
        home.initialise(ClientConfig(repository_url=factory.out.as_uri()), factory.root_bytes)
    return home


def _refresh(home: ClientHome) -> None:
    refresh_library(home, read_log=home_log_withdrawals(home, now=NOW))


def _trusted_files(home: ClientHome) -> dict[str, bytes]:
    names = ["timestamp.json", "snapshot.json", "targets.json", "cfl-provider.json"]
    files = {n: (home.metadata_dir / n).read_bytes() for n in names}
    files["log/checkpoint"] = (home.log_dir / "checkpoint").read_bytes()
    files["withdrawals-seen.json"] = home.withdrawal_history_path.read_bytes()
    return files


def cfl(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"}
    return subprocess.run(
        [str(CFL), "--home", str(home), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture
def library(tmp_path: Path) -> tuple[LibraryFactory, dict[str, str]]:
    """The standard library with the cfl-provider role; a2 withdrawn, then b5."""
    factory, images = standard_library(tmp_path / "lib", provider=True)
    targets = {key: _target(factory, image) for key, image in images.items()}
    _withdraw(factory, targets["a2"])
    _withdraw(factory, targets["b5"], "drains batteries")
    return factory, targets


def test_cfl_refresh_refuses_a_list_signed_with_the_online_key_that_drops_an_entry(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    factory, targets = library
    home = _home(factory, tmp_path / "home")
    result = cfl("refresh", home=home.path)
    assert result.returncode == 0, result.stderr
    before = _trusted_files(home)

    kept = [w for w in _published_withdrawals(factory).withdrawals if w.target != targets["a2"]]
    thief_publishes(factory, tmp_path, WithdrawalList(tuple(kept)).to_bytes())

    refused = cfl("refresh", home=home.path)
    assert refused.returncode == 1
    [error] = _errors(refused)
    assert error.startswith(f"error: {naming.WITHDRAWALS_TARGET_PATH}: found no withdrawal of ")
    assert targets["a2"] in error and targets["b5"] not in error
    assert "hint: a withdrawal is never removed or edited" in refused.stderr
    assert "Traceback" not in refused.stderr
    # The previous trusted state stays: the thief's timestamp, snapshot and cfl-provider are gone.
    assert _trusted_files(home) == before
    # Commands that read the library online refuse it as well; offline, a2 is still withdrawn.
    listed = cfl("list", "--json", home=home.path)
    assert listed.returncode == 1 and targets["a2"] in _errors(listed)[0]
    offline_run = cfl("list", "--offline", "--json", home=home.path)
    assert offline_run.returncode == 0, offline_run.stderr
    offline = json.loads(offline_run.stdout)
    withdrawn = {i["target"] for i in offline["images"] if i["withdrawn"] is not None}
    assert withdrawn == {targets["a2"], targets["b5"]}
    refused_download = cfl("download", targets["a2"], "--out", tmp_path / "fw", home=home.path)
    assert refused_download.returncode == 1
    assert not (tmp_path / "fw").exists() or not any((tmp_path / "fw").iterdir())


def test_rolling_back_to_an_older_withdrawal_list_is_refused(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    factory, targets = library
    home = _home(factory, tmp_path / "home")
    _refresh(home)
    # The list as it was before b5 was withdrawn: a genuine, once-published document.
    older = WithdrawalList(_published_withdrawals(factory).withdrawals[:1])
    assert [w.target for w in older.withdrawals] == [targets["a2"]]
    published_older = factory.out / "targets" / "cfl"
    assert any(
        p.read_bytes() == older.to_bytes() for p in published_older.glob("*.withdrawals.json")
    )
    thief_publishes(factory, tmp_path, older.to_bytes())

    refused = cfl("refresh", home=home.path)
    assert refused.returncode == 1
    assert f"found no withdrawal of {targets['b5']}" in _errors(refused)[0]


@pytest.mark.parametrize("how", ["time-changed", "document-removed"])
def test_a_changed_or_removed_withdrawal_list_is_refused(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path, how: str
) -> None:
    factory, targets = library
    home = _home(factory, tmp_path / "home")
    _refresh(home)
    current = _published_withdrawals(factory)
    if how == "time-changed":
        first, *rest = current.withdrawals
        moved = Withdrawal(first.target, first.sha256, "2099-01-01T00:00:00Z", first.reason)
        thief_publishes(factory, tmp_path, WithdrawalList((moved, *rest)).to_bytes())
        expected = f"{targets['a2']} withdrawn: found '2099-01-01T00:00:00Z'"
    else:
        thief_publishes(factory, tmp_path, None)
        expected = f"found no withdrawal of {targets['a2']}"
    with pytest.raises(VerificationError, match=expected):
        _refresh(home)


def test_the_log_catches_a_dropped_withdrawal_a_new_home_never_saw(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    """History cannot help a home that starts after the thief: the log's withdraw event does."""
    factory, targets = library
    kept = [w for w in _published_withdrawals(factory).withdrawals if w.target != targets["b5"]]
    thief_publishes(factory, tmp_path, WithdrawalList(tuple(kept)).to_bytes())

    home = _home(factory, tmp_path / "new-home")
    refused = cfl("refresh", home=home.path)
    assert refused.returncode == 1
    [error] = _errors(refused)
    assert f"found no withdrawal of {targets['b5']}" in error
    assert "the transparency log records at index" in error
    # Nothing was trusted: no history, and the log checkpoint is not kept either.
    assert not home.withdrawal_history_path.exists()
    assert not (home.log_dir / "checkpoint").exists()
    # Without the log (e.g. --offline has nothing to read) the same document would have passed the
    # history alone: it is consistent with it, which is what the log cross-check is for.
    assert WithdrawalHistory.empty().check(WithdrawalList(tuple(kept))).withdrawn


def test_the_log_catches_a_withdrawal_dropped_between_two_refreshes(tmp_path: Path) -> None:
    factory, images = standard_library(tmp_path / "lib", provider=True)
    a2 = _target(factory, images["a2"])
    home = _home(factory, tmp_path / "home")
    _refresh(home)
    searched = home.withdrawal_history().log_size
    assert searched > 0

    _withdraw(factory, a2)  # logged, then hidden from the list in the same publish cycle
    thief_publishes(factory, tmp_path, WithdrawalList().to_bytes())
    with pytest.raises(VerificationError, match=f"found no withdrawal of {a2}.*log records"):
        _refresh(home)
    assert home.withdrawal_history().log_size == searched  # nothing moved


def test_cfl_download_cross_checks_the_log_too(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    """A home that downloads without refreshing first: the thief re-recommends a2."""
    factory, targets = library
    kept = [w for w in _published_withdrawals(factory).withdrawals if w.target != targets["a2"]]
    thief_publishes(factory, tmp_path, WithdrawalList(tuple(kept)).to_bytes())
    home = _home(factory, tmp_path / "home")
    out = tmp_path / "firmware"
    refused = cfl("download", targets["a2"], "--out", out, home=home.path)
    assert refused.returncode == 1
    assert f"found no withdrawal of {targets['a2']}" in _errors(refused)[0]
    assert not out.exists() or not any(out.iterdir())


def test_after_a_refusal_the_genuine_library_is_accepted_again(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    factory, targets = library
    home = _home(factory, tmp_path / "home")
    _refresh(home)
    genuine = tmp_path / "genuine-host"
    shutil.copytree(factory.out, genuine)
    thief_publishes(factory, tmp_path, WithdrawalList().to_bytes())
    with pytest.raises(VerificationError):
        _refresh(home)
    # The host is cleaned up; the provider withdraws one more image and publishes.
    shutil.rmtree(factory.out)
    shutil.copytree(genuine, factory.out)
    _withdraw(factory, targets["a3"])
    _refresh(home)
    assert set(home.withdrawal_history().withdrawn) == {targets[k] for k in ("a2", "b5", "a3")}


def test_a_genuine_new_withdrawal_is_remembered_through_any_command(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    factory, targets = library
    home = _home(factory, tmp_path / "home")
    _refresh(home)
    _withdraw(factory, targets["a3"])
    with home.lock():
        open_session(home, offline=False).withdrawals()  # what list, check and download read
    assert targets["a3"] in home.withdrawal_history().withdrawn
    thief_publishes(factory, tmp_path, _withdrawals_without(factory, targets["a3"]))
    with pytest.raises(VerificationError, match=f"found no withdrawal of {targets['a3']}"):
        _refresh(home)


def _withdrawals_without(factory: LibraryFactory, target: str) -> bytes:
    kept = [w for w in _published_withdrawals(factory).withdrawals if w.target != target]
    return WithdrawalList(tuple(kept)).to_bytes()


def test_a_damaged_history_file_is_one_error_line_and_exit_2(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    factory, _ = library
    home = _home(factory, tmp_path / "home")
    home.withdrawal_history_path.write_text("{not json")
    result = cfl("refresh", home=home.path)
    assert result.returncode == 2
    [error] = _errors(result)
    assert error.startswith(f"error: {home.withdrawal_history_path}: malformed")


def test_init_force_starts_again_without_the_history(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    factory, _ = library
    home = _home(factory, tmp_path / "home")
    _refresh(home)
    assert home.withdrawal_history_path.exists()
    with home.lock():
        config = home.load_config()
        home.initialise(config, factory.root_bytes, force=True)
    assert not home.withdrawal_history_path.exists()


# --------------------------------------------------------------------------------- kill -9


def _killed_at(point: int, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CFL_HOME"}
    return subprocess.run(
        [*strace_killing_at(point), str(CFL), "--home", str(home), "refresh"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_a_refresh_killed_at_any_write_is_completed_by_the_next(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    """Kill -9 the first refresh at each rename and fsync in turn: the re-run succeeds and the home
    remembers both withdrawals and the whole log searched."""
    require_system("strace")
    factory, targets = library
    point = 1
    while True:
        home = _home(factory, tmp_path / f"home-{point}")
        killed = _killed_at(point, home.path)
        if killed.returncode == 0:
            break  # past the last write: the command finished
        assert killed.returncode in KILLED, killed.stderr
        rerun = cfl("refresh", home=home.path)
        assert rerun.returncode == 0, (point, rerun.stderr)
        history = home.withdrawal_history()
        assert set(history.withdrawn) == {targets["a2"], targets["b5"]}, point
        assert history.log_size == factory.repo.log_state().size, point
        point += 1
    assert point > 5  # the loop really killed it at several writes


def test_a_refused_refresh_killed_while_restoring_is_refused_again(
    library: tuple[LibraryFactory, dict[str, str]], tmp_path: Path
) -> None:
    """Wherever a kill -9 lands in a refused refresh (ngclient's writes, the restore), the forged
    list is refused again by the next run, and the remembered withdrawals are intact."""
    require_system("strace")
    factory, targets = library
    trusted = _home(factory, tmp_path / "trusted")
    _refresh(trusted)
    thief_publishes(factory, tmp_path, _withdrawals_without(factory, targets["a2"]))
    point = 1
    while True:
        home = tmp_path / f"home-{point}"
        shutil.copytree(trusted.path, home)
        killed = _killed_at(point, home)
        if killed.returncode == 1:
            assert targets["a2"] in killed.stderr
            break  # ran to its refusal
        assert killed.returncode in KILLED, killed.stderr
        rerun = cfl("refresh", home=home)
        assert rerun.returncode == 1 and targets["a2"] in _errors(rerun)[0], (point, rerun.stderr)
        assert ClientHome(home).withdrawal_history() == trusted.withdrawal_history(), point
        point += 1
    assert point > 3
