"""Every key rotation command run again after it committed succeeds and changes nothing
(``repo_tool.signing.keys.rotation_done``): a crash between the commit and the command's last line, or an
operator unsure it ran, must not meet a refusal of the --remove of a key that is gone. A rotation
that differs in any way (another URI, another threshold, a key still to remove) is not "done" and
gets the usual checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_provider_cli import run

from repo_tool.signing.keys import removed_by_last_commit, rotation_done

CURRENT = {"aa11": "file:a", "bb22": "file:b"}


REMOVED = frozenset({"cc33ff", "dd44ee"})  # what the last rotation removed


@pytest.mark.parametrize(
    ("add", "remove", "threshold", "removed", "done"),
    [
        ({"bb22": "file:b"}, ["cc33"], None, REMOVED, True),  # added, the removed one gone
        ({"bb22": "file:b"}, ["CC3"], 1, REMOVED, True),  # prefixes, any case; same threshold
        ({}, ["cc33"], None, REMOVED, True),  # a plain removal, run again
        ({"bb22": "file:b"}, ["cc33"], None, frozenset(), False),  # gone, but not by the last
        ({"bb22": "file:b"}, ["deadbeef"], None, REMOVED, False),  # a typo: nothing was removed
        ({"bb22": "file:b"}, [""], None, REMOVED, False),  # an empty prefix matches nothing
        ({"bb22": "file:b"}, ["d"], None, REMOVED | {"d0"}, False),  # ambiguous among removed
        ({"bb22": "file:b"}, ["aa"], None, REMOVED | {"aa11"}, False),  # still there
        ({"bb22": "file:other"}, [], None, REMOVED, False),  # same key, another signer URI
        ({"dd44": "file:d"}, [], None, REMOVED, False),  # a key not added yet
        ({"bb22": "file:b"}, [], 2, REMOVED, False),  # another threshold
        ({}, [], None, REMOVED, False),  # nothing asked
    ],
)
def test_rotation_done_only_when_the_keys_are_exactly_as_asked(
    add: dict[str, str],
    remove: list[str],
    threshold: int | None,
    removed: frozenset[str],
    done: bool,
) -> None:
    assert (
        rotation_done(CURRENT, 1, add=add, remove=remove, threshold=threshold, removed=removed)
        is done
    )


def test_only_the_last_commits_rotation_of_that_role_counts_as_removed() -> None:
    events = [
        {"event": "rotate-keys", "role": "timestamp", "removed": ["aa11"]},
        {"event": "rotate-keys", "role": "snapshot", "removed": ["bb22"]},
        {"event": "ingest", "removed": ["cc33"]},
    ]
    assert removed_by_last_commit(events, "rotate-keys", role="timestamp") == {"aa11"}
    assert removed_by_last_commit(events, "manufacturer-rotate-key", manufacturer="121D") == set()
    assert removed_by_last_commit([], "rotate-keys", role="timestamp") == set()


def _ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run(*args)
    assert done.returncode == 0, (args, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def test_manufacturer_and_top_level_rotations_run_twice_succeed_and_change_nothing(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "R"
    _ok("--repo", repo, "init", "--dev-keys")
    for name in ("m1", "m2", "t2"):
        _ok("keygen", tmp_path / f"{name}.pem", "--no-encrypt")
    _ok(
        "--repo",
        repo,
        "manufacturer",
        "add",
        "121D",
        "--name",
        "M",
        "--key",
        tmp_path / "m1.pub.pem",
    )
    head = json.loads((repo / "state" / "head.json").read_bytes())
    (old,) = head["manufacturers"]["121D"]["keys"]
    rotate = ("--repo", repo, "manufacturer", "rotate-key", "121D", "--add", tmp_path / "m2.pub.pem",
              "--remove", old[:8])  # fmt: skip
    _ok(*rotate)
    before = (repo / "state" / "head.json").read_bytes()
    again = _ok(*rotate, "--json")
    assert json.loads(again.stdout)["done"] == "already"
    # It names the keys it holds, so the operator sees the one meant to go is not among them.
    assert old not in json.loads(again.stdout)["keyids"]
    assert "threshold 1); nothing to do" in again.stderr
    assert (repo / "state" / "head.json").read_bytes() == before
    other = run(*rotate, "--threshold", "2")
    assert other.returncode == 1 and "matching 0 key(s) of 121D" in other.stderr

    config = json.loads((repo / "cfl-repo.json").read_bytes())
    timestamp_old = config["signers"]["timestamp"][0]["keyid"]
    top = ("--repo", repo, "rotate-keys", "timestamp", "--add", tmp_path / "t2.pub.pem",
           f"file2:{tmp_path / 't2.pem'}", "--remove", timestamp_old[:8])  # fmt: skip
    _ok(*top)
    before = (repo / "state" / "head.json").read_bytes()
    again = _ok(*top)
    assert "as asked already (root version 2)" in again.stderr
    assert (repo / "state" / "head.json").read_bytes() == before
