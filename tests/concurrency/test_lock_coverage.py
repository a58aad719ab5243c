"""Every state-changing `cfl-repo` command takes the repository lock before it reads what it changes.

The test walks click's command tree, so a new command fails here until it is classified. Each
state-changing command is run as a real process, with inputs that would make it change the
repository, while this test holds ``R/.lock``: it must exit 1 at once with the one busy line naming
the holder, and leave every file of the repository as it was. The read-only commands keep working
while the lock is held (readers never wait: every file they read but ``head.json`` is immutable, and
``head.json`` is replaced atomically).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import click
import pytest

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.locking import LockPolicy, exclusive_lock
from metadata_templates.tlog.note import TYPE_COSIGNATURE_V1, NoteVerifier
from repo_tool.cli.main import cli
from repo_tool.dev.demo_data import render_cpl_csv

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
HOLDER = "cfl-repo --repo R publish"  # what the test's own record says
BUSY = re.compile(
    rf"error: the repository is busy: {re.escape(HOLDER)} \(PID {os.getpid()} on \S+, "
    r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"
)


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_LOCK_WAIT")}
    env.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_EC2_METADATA_DISABLED="true"
    )
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run(*args)
    assert done.returncode == 0, (args, done.stderr)
    return done


def digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` but the lock file (whose record is the holder's)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@dataclass(frozen=True)
class World:
    """A published library and, beside it, inputs each command would act on."""

    factory: LibraryFactory
    base: Path

    @property
    def repo(self) -> Path:
        return self.factory.repo.path

    def file(self, name: str) -> Path:
        return self.base / name


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("coverage")
    factory, _ = standard_library(base / "lib")
    image = make_image("121D", 4)
    entries = [*factory.entries, make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(image))]
    factory.import_cpl(entries)
    factory.publish()
    factory.write(factory.submit(image, ["CPL-0004"]), "new-image")  # an acceptable bundle
    factory.publish()
    # The CSV a provider would import next: every entry with a hash, as the CPL's own rules ask.
    filled = [
        replace(e, manufacturer_image_sha256=e.manufacturer_image_sha256 or "ab" * 32)
        for e in entries
    ]
    extra = make_entry("CPL-0005", fw="00000005", image_sha="cd" * 32)
    (base / "cpl.csv").write_bytes(render_cpl_csv([*filled, extra]))
    ok("keygen", base / "maker.pem", "--no-encrypt")
    ok("keygen", base / "custodian.pem", "--no-encrypt", "--type", "ecdsa")
    (base / "supplier.crt.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\n"
    )  # parsed under the lock
    (base / "enrol.json").write_bytes(b"{}")  # checked under the lock
    (base / "cosigned.txt").write_bytes(b"")
    (base / "inventory.csv").write_text(  # parsed before the lock, imported under it
        "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
        "Firmware Version,Responsible Supplier,Since\n"
        "00000000000000D1,ESME,121D,010A030B,1111,00000001,90B3D51F30010000,2026-01-01\n"
    )
    ok("--repo", factory.repo.path, "ceremony", "start", "targets", "--out", base / "proposal.json")
    return World(factory, base)


# The command tree, classified. A command missing here fails `test_every_command_is_classified`.
Args = Callable[[World], list[str | Path]]
STATE_CHANGING: dict[str, Args] = {
    "ceremony finish": lambda w: [w.file("proposal.json")],
    "ceremony start": lambda w: ["root", "--out", w.file("never-written.json")],
    # backup commits nothing, but surveys R under the lock (one head): refused like the rest.
    "backup": lambda w: ["--to", w.file("backup")],
    "cpl import": lambda w: [w.file("cpl.csv")],
    "entitlements import": lambda w: [w.file("inventory.csv")],
    # issue 24: an ingest takes the lock before it reads a report (a folder of none here).
    "outcomes ingest": lambda w: ["--from", str(w.base)],
    "ingest": lambda w: [w.factory.tmp / "inbox"],
    "log add-cosignatures": lambda w: [
        w.file("cosigned.txt"),
        "--witness",
        NoteVerifier("witness.test", TYPE_COSIGNATURE_V1, bytes(32)).vkey,
    ],
    "manufacturer add": lambda w: ["7E11", "--name", "New Maker", "--key", w.file("maker.pub.pem")],
    "manufacturer enrol": lambda w: ["121D", w.file("enrol.json")],
    "manufacturer resume": lambda w: ["121D", "--reason", "audit passed"],
    "manufacturer retire-keys": lambda w: ["121D"],
    "manufacturer rotate-key": lambda w: ["121D", "--add", w.file("maker.pub.pem")],
    "manufacturer suspend": lambda w: ["121D", "--reason", "audit"],
    "notes custodian": lambda w: ["--public-key", w.file("custodian.pub.pem"), "--yes"],
    "notes grant": lambda w: ["90B3D51F30010000", "--custodian-key", w.file("custodian.pem")],
    "provider adopt": lambda w: ["--dev-key"],
    "provider rotate-key": lambda w: ["--add", w.file("maker.pub.pem"), "--uri", "file2:k.pem"],
    "publish": lambda w: [],
    "publish --to": lambda w: [
        "--to",
        "s3://cfl-never/lib",
        "--endpoint-url",
        "http://127.0.0.1:9",
    ],
    "refresh": lambda w: ["--force"],
    # Pilots (issue 22): the lock is taken before the target is looked up.
    "release": lambda w: [
        sorted(w.factory.repo.role("mfr-121D").signed.targets)[0],
        "--reason",
        "ok",
    ],
    "hold": lambda w: [
        sorted(w.factory.repo.role("mfr-121D").signed.targets)[0],
        "--reason",
        "wait",
    ],
    "rotate-keys": lambda w: ["timestamp", "--add", w.file("maker.pub.pem"), "file2:k.pem"],
    "site build": lambda w: [],
    "supplier add": lambda w: [
        "90B3D51F30010000",
        "--name",
        "Acme Energy",
        "--role",
        "IS",
        "--cert",
        w.file("supplier.crt.pem"),
    ],
    "supplier revoke": lambda w: ["90B3D51F30010000", "--reason", "left the market"],
    "withdraw": lambda w: [
        sorted(w.factory.repo.role("mfr-121D").signed.targets)[0],
        "--reason",
        "bricks hardware 1112",
    ],
    # `init` is run on a folder of its own (test_init_takes_the_lock_before_it_writes_a_key).
    "init": lambda w: [],
}
# Commands that change nothing under R (they read it, or work elsewhere: a manufacturer's bundle,
# a key holder's signature, a host configuration, a demo folder, a new repository folder, a bucket).
READ_ONLY = {
    "advisory disclose",
    "advisory submit",
    "audit",
    "ceremony sign",
    "demo-data",
    "enrol",
    "entitlements show",
    "host nginx",
    "keygen",
    "log key",
    "outcomes show",
    "restore",
    "serve",
    "status",
    "submit",
    "supplier list",
    "verify",
    "verify-bucket",
}


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    # list_commands/get_command, not `.commands`: the root group loads its commands lazily, so
    # `.commands` holds only what this process happened to import already.
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def test_every_command_is_classified() -> None:
    leaves = set(leaf_commands(cli))
    classified = {name.removesuffix(" --to") for name in STATE_CHANGING} | READ_ONLY
    assert leaves == classified, (
        f"unclassified: {sorted(leaves - classified)}; gone: {sorted(classified - leaves)}"
    )


def held(repo: Path) -> contextlib.AbstractContextManager[object]:
    """This test holds the repository lock, recording itself as a publish would."""
    return exclusive_lock(
        repo / ".lock", subject="the repository", policy=LockPolicy(command=HOLDER)
    )


def assert_refused_at_once(done: subprocess.CompletedProcess[str], took: float) -> None:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert BUSY.fullmatch(lines[0]), done.stderr
    assert lines[1].startswith("hint: the lock (") and "--wait SECONDS" in lines[1]
    assert "Traceback" not in done.stderr
    assert took < 30, f"took {took:.1f}s: it waited instead of failing at once"


@pytest.mark.parametrize("command", sorted(c for c in STATE_CHANGING if c != "init"), ids=str)
def test_a_state_changing_command_is_refused_while_the_lock_is_held_and_changes_nothing(
    world: World, command: str
) -> None:
    words = command.removesuffix(" --to").split()
    args = STATE_CHANGING[command](world)
    before = digest(world.repo)
    with held(world.repo):
        start = time.monotonic()
        done = run("--repo", world.repo, *words, *args)
        took = time.monotonic() - start
    assert_refused_at_once(done, took)
    assert digest(world.repo) == before
    assert not world.file("never-written.json").exists()


def test_init_takes_the_lock_before_it_writes_a_key(tmp_path: Path) -> None:
    """Two inits at once must not write each other's development keys: the second is refused
    before it writes any, and finds no half-made repository."""
    new = tmp_path / "R"
    with held(new):
        start = time.monotonic()
        done = run("--repo", new, "init", "--dev-keys")
        took = time.monotonic() - start
    assert_refused_at_once(done, took)
    assert [p.name for p in new.iterdir()] == [".lock"]
    ok("--repo", new, "init", "--dev-keys")  # released: it runs


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--json"],
        ["supplier", "list", "--json"],
        ["log", "key"],
        ["verify", "{repo}/public", "--root", "{repo}/public/metadata/1.root.json"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_readers_do_not_wait_for_the_lock(world: World, args: list[str]) -> None:
    with held(world.repo):
        done = run("--repo", world.repo, *[a.format(repo=world.repo) for a in args])
    assert done.returncode == 0, done.stderr
