"""No tracebacks on the provider command line: every mistake is one `error:` line and an honest code.

One named case per mistake an operator or a manufacturer makes with an output path, a key file, a
threshold, a source library or a listening address. Each asserts the exit code (1 rejected or
unavailable, 2 usage or configuration), an error line naming the path or option, and no traceback.
Click's own usage errors print ``Error:``; ours print ``error:``; both are one line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_repo_cli import CFL_REPO, PASSPHRASE, Lib, run
from test_repo_cli import built as built  # the module's library, built once (a fixture)

EXIT_FAILURE, EXIT_USAGE = 1, 2


@dataclass(frozen=True)
class Case:
    args: Callable[[Lib, Path], list[str | Path]]
    exit_code: int
    names: Callable[[Lib, Path], str]  # what the error line must name


def submit_args(lib: Lib, source: str | Path, out: str | Path) -> list[str | Path]:
    return [
        "submit",
        lib.base / "images" / "a3.ota",
        "--manufacturer",
        "121D",
        "--key",
        lib.key,
        "--cpl-entry",
        "CPL-0003",
        "--reason",
        "compliance",
        "--from",
        source,
        "--root",
        lib.root,
        "--out",
        out,
    ]


def repo(lib: Lib, *args: str | Path) -> list[str | Path]:
    return ["--repo", lib.repo, *args]


CASES: dict[str, Case] = {
    "demo-data-under-a-file": Case(
        lambda lib, f: ["demo-data", f / "demo"], EXIT_USAGE, lambda lib, f: str(f)
    ),
    "demo-data-onto-a-file": Case(
        lambda lib, f: ["demo-data", f], EXIT_USAGE, lambda lib, f: str(f)
    ),
    "keygen-under-a-file": Case(
        lambda lib, f: ["keygen", f / "k.pem", "--no-encrypt"], EXIT_USAGE, lambda lib, f: str(f)
    ),
    "keygen-onto-an-existing-file": Case(
        lambda lib, f: ["keygen", f, "--no-encrypt"], EXIT_USAGE, lambda lib, f: str(f)
    ),
    # found by the hunt below: "new/.." does not exist until "new" is made, then is a folder
    "keygen-onto-a-parent-reference": Case(
        lambda lib, f: ["keygen", f.parent / "new" / "..", "--no-encrypt"],
        EXIT_USAGE,
        lambda lib, f: "is a folder, expected a file path",
    ),
    "init-under-a-file": Case(
        lambda lib, f: ["--repo", f / "R", "init", "--dev-keys"], EXIT_USAGE, lambda lib, f: str(f)
    ),
    "init-onto-a-file": Case(
        lambda lib, f: ["--repo", f, "init", "--dev-keys"], EXIT_USAGE, lambda lib, f: str(f)
    ),
    "init-on-an-existing-repository": Case(
        lambda lib, f: repo(lib, "init", "--dev-keys"),
        EXIT_USAGE,
        lambda lib, f: "already initialised",
    ),
    "init-key-that-is-not-a-key": Case(
        lambda lib, f: [
            "--repo",
            f.parent / "new",
            "init",
            *("--key", "root", f, "file2:x"),
            *("--key", "targets", f, "file2:x"),
            *("--key", "snapshot", f, "file2:x"),
            *("--key", "timestamp", f, "file2:x"),
            *("--root-threshold", "1"),
        ],
        EXIT_USAGE,
        lambda lib, f: f"{f}: found no PEM public key",
    ),
    "manufacturer-add-threshold-above-keys": Case(
        lambda lib, f: repo(
            lib,
            *("manufacturer", "add", "3F01", "--name", "Maker"),
            *("--key", lib.key.with_name("mfr-121D.pub.pem"), "--threshold", "2"),
        ),
        EXIT_USAGE,
        lambda lib, f: "--threshold: found 2",
    ),
    "manufacturer-add-key-that-is-not-a-key": Case(
        lambda lib, f: repo(lib, "manufacturer", "add", "3F01", "--name", "Maker", "--key", f),
        EXIT_USAGE,
        lambda lib, f: str(f),
    ),
    "publish-out-under-a-file": Case(
        lambda lib, f: repo(lib, "publish", "--out", f / "public"),
        EXIT_USAGE,
        lambda lib, f: str(f),
    ),
    "publish-out-onto-a-file": Case(
        lambda lib, f: repo(lib, "publish", "--out", f), EXIT_USAGE, lambda lib, f: str(f)
    ),
    "submit-out-under-a-file": Case(
        lambda lib, f: submit_args(lib, lib.out, f / "a3.cflb"), EXIT_USAGE, lambda lib, f: str(f)
    ),
    "submit-out-onto-a-folder": Case(
        lambda lib, f: submit_args(lib, lib.out, f.parent / "folder.cflb"),
        EXIT_USAGE,
        lambda lib, f: "folder.cflb",
    ),
    "submit-from-a-missing-folder": Case(
        lambda lib, f: submit_args(lib, f.parent / "no-such-library", f.parent / "a3.cflb"),
        EXIT_USAGE,
        lambda lib, f: str(f.parent / "no-such-library"),
    ),
    "submit-from-a-folder-that-is-not-a-library": Case(
        lambda lib, f: submit_args(lib, lib.base / "images", f.parent / "a3.cflb"),
        EXIT_USAGE,
        lambda lib, f: str(lib.base / "images"),
    ),
    "submit-from-a-url-nothing-serves": Case(
        lambda lib, f: submit_args(lib, "http://127.0.0.1:9/cfl/", f.parent / "a3.cflb"),
        EXIT_FAILURE,
        lambda lib, f: "http://127.0.0.1:9/cfl/",
    ),
    "serve-on-an-address-not-of-this-machine": Case(
        lambda lib, f: ["serve", lib.out, "--bind", "192.0.2.1", "--port", "0"],
        EXIT_USAGE,
        lambda lib, f: "--bind: found '192.0.2.1'",
    ),
    "serve-on-a-name-that-does-not-resolve": Case(
        lambda lib, f: ["serve", lib.out, "--bind", "no-such-host.invalid", "--port", "0"],
        EXIT_USAGE,
        lambda lib, f: "--bind: found 'no-such-host.invalid'",
    ),
}


def assert_one_error_line(stderr: str, names: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, stderr
    assert names in errors[0], (names, stderr)


@pytest.fixture
def lib(built: Any, tmp_path: Path) -> Lib:
    shutil.copytree(built.base, tmp_path / "lib", symlinks=True)
    return Lib(tmp_path / "lib")


@pytest.fixture
def a_file(lib: Lib) -> Path:
    path = lib.base / "work" / "notes.txt"
    path.parent.mkdir()
    path.write_text("a regular file, not a folder or a key\n")
    (path.parent / "folder.cflb").mkdir()
    return path


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_mistake_is_one_error_line_and_an_honest_exit_code(
    lib: Lib, a_file: Path, case: Case
) -> None:
    done = run(*case.args(lib, a_file), env={"CFL_KEY_PASSPHRASE": PASSPHRASE})

    assert done.returncode == case.exit_code, done.stderr
    assert_one_error_line(done.stderr, case.names(lib, a_file))


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_serve_on_a_port_in_use_is_unavailable(lib: Lib, busy_port: int) -> None:
    done = run("serve", lib.out, "--port", str(busy_port))

    assert done.returncode == EXIT_FAILURE
    assert_one_error_line(done.stderr, f"--port: found {busy_port} in use")


def test_init_on_an_existing_repository_writes_no_key(lib: Lib) -> None:
    before = sorted(p.name for p in (lib.repo / "keys").iterdir())

    run("--repo", lib.repo, "init", "--dev-keys")

    assert sorted(p.name for p in (lib.repo / "keys").iterdir()) == before


# Hunting for more: hostile path values on the commands that take paths. Writers get the value
# under a scratch folder (run there), so "/" or ".." cannot make a test write outside it.
PATHISH = st.one_of(
    st.sampled_from(["", ".", "..", "-", "--", "x" * 300, "a/../../b", "a:b", " "]),
    st.text(alphabet="ab/.:-\\ \t", max_size=12),
)
READS_ANY = ["/dev/null", "/proc/self/environ", "/", "/etc"]


def hunt_args(command: str, value: str, scratch: Path) -> list[str]:
    written = str(scratch / "sub" / value)
    return {
        "demo-data": ["demo-data", written],
        "keygen": ["keygen", "--no-encrypt", written],
        "verify": ["verify", value or ".", "--root", value or "."],
        "status": ["--repo", value, "status", "--json"],
        "ingest": ["--repo", written, "ingest", value or "."],
    }[command]


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    command=st.sampled_from(["demo-data", "keygen", "verify", "status", "ingest"]),
    value=st.one_of(PATHISH, st.sampled_from(READS_ANY)),
)
def test_hostile_path_arguments_never_print_a_traceback(command: str, value: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        args = hunt_args(command, value, Path(scratch))
        done = subprocess.run(
            [str(CFL_REPO), *args],
            capture_output=True,
            text=True,
            cwd=scratch,
            timeout=120,
            check=False,
            env={
                k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_KEY_PASSPHRASE")
            },
        )

    assert "Traceback" not in done.stderr, (args, done.stderr)
    assert done.returncode in (0, EXIT_FAILURE, EXIT_USAGE), (args, done.stderr)


def test_a_scheduled_ingest_of_the_same_inbox_exits_0_and_says_already_accepted(lib: Lib) -> None:
    inbox = lib.base / "inbox"
    inbox.mkdir()
    shutil.copy(lib.submit("a3.ota", "CPL-0003", "a3.cflb"), inbox / "a3.cflb")
    first = lib.cli("ingest", "--json", inbox)
    assert first.returncode == 0, first.stderr

    again = lib.cli("ingest", "--json", inbox)

    assert again.returncode == 0, again.stderr
    (result,) = json.loads(again.stdout)["results"]
    assert (result["status"], result["reasons"]) == ("accepted", [])
    assert result["target"] == json.loads(first.stdout)["results"][0]["target"]
    assert result["messages"][0].startswith("already accepted: ")
    assert "already accepted" in again.stderr
    assert not (lib.repo / "rejected").exists()


def test_an_unforeseen_os_error_is_one_error_line_naming_the_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import click

    from repo_tool.cli.console import run

    @click.command()
    def command() -> None:
        raise OSError(28, "No space left on device", "/srv/cfl/R/blobs/ab/cd")

    with pytest.raises(SystemExit) as exited:
        run(command, interrupted="", args=[])

    assert exited.value.code == EXIT_FAILURE
    assert_one_error_line(capsys.readouterr().err, "/srv/cfl/R/blobs/ab/cd: No space left")
