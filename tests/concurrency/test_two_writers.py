"""Real `cfl-repo` processes started together, round after round, on one repository.

Each round starts at once what a provider's day brings together: cron's `ingest` (twice, on the
same inbox: a cron run that overlaps the previous one) and `publish`, while a person runs
`withdraw`, `supplier add` or `ceremony finish`. With `--wait` every one of them succeeds; without
it, the ones turned away exit 1 with the one busy line naming another process of the round, and
succeed when run again (cron's next run). A further scenario kills the lock holder with SIGKILL
in the middle of its command, then runs the others and the killed command again.

After each round the published tree verifies (`cfl-repo verify`) and nothing accepted is lost or
doubled: every bundle was ingested exactly once, every withdrawal and every supplier is there, the
event log is numbered without a gap, and nothing is left unpublished.

Rounds per scenario: ``CFL_LOCK_ROUNDS`` (default 2, for CI); the kill delays come from a seeded
generator, ``CFL_LOCK_SEED`` (default 2026), printed on failure. A long run (docs/testing.md):

    CFL_LOCK_ROUNDS=50 .venv/bin/python -m pytest -q -p no:cacheprovider tests/concurrency/test_two_writers.py
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from access.pki import issue, make_ca

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from repo_tool.intake.bundle import write_bundle
from repo_tool.ops.status import status_report
from repo_tool.publish.unchanged import STAMP as PUBLISH_UNCHANGED_STAMP
from repo_tool.state.repository import Repository
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library

pytestmark = pytest.mark.slow

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
ROUNDS = int(os.environ.get("CFL_LOCK_ROUNDS", "2"))
SEED = int(os.environ.get("CFL_LOCK_SEED", "2026"))
WAIT = "300"  # long enough for anything a round holds; a hang fails on the subprocess timeout
BUSY = re.compile(
    r"error: the (?:repository|published tree \S+) is busy: (?P<command>.+) "
    r"\(PID (?P<pid>\d+) on \S+, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)"
)
PERSON = ("withdraw", "supplier add", "ceremony finish")


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("CFL_REPO", "CFL_LOCK_WAIT")}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), *map(str, args)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def ok(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run(*args)
    assert done.returncode == 0, (args, done.stderr)
    return done


@dataclass
class Started:
    """One process of a round."""

    args: list[str]
    process: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""

    @property
    def returncode(self) -> int:
        code = self.process.returncode
        assert code is not None
        return code


@dataclass
class Library:
    """The module's repository, and the ledger of what the rounds made it accept."""

    factory: LibraryFactory
    base: Path
    next_fw: int = 10
    accepted: list[str] = field(default_factory=list)  # bundle file names
    withdrawn: set[str] = field(default_factory=set)
    suppliers: set[str] = field(default_factory=set)
    rounds: int = 0

    @property
    def repo(self) -> Path:
        return self.factory.repo.path

    def cli(self, *args: str | Path) -> list[str]:
        return [str(CFL_REPO), "--repo", str(self.repo), *map(str, args)]


FIRST_FW = 10  # the firmware versions the rounds deposit start here


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    base = tmp_path_factory.mktemp("two-writers")
    # cfl-provider online: withdrawals and suppliers re-sign it, so a targets proposal made
    # before a round stays current while they run (as ARCHITECTURE.md's keys issue has it).
    factory, _ = standard_library(base / "lib", provider=True)
    images = [make_image("121D", fw) for fw in range(FIRST_FW, FIRST_FW + 4 * ROUNDS + 4)]
    factory.import_cpl(
        [
            *factory.entries,
            *(
                make_entry(f"CPL-{fw:04d}", fw=f"{fw:08X}", image_sha=mi_sha(image))
                for fw, image in enumerate(images, start=FIRST_FW)
            ),
        ]
    )
    factory.publish()
    return Library(factory, base, next_fw=FIRST_FW)


# ------------------------------------------------------------------------------------ a round


def person_command(lib: Library, kind: str, round_dir: Path) -> list[str]:
    """What the person runs this round, prepared (a proposal signed, a certificate issued) before
    anything starts, as it would be."""
    if kind == "withdraw":
        published = sorted(published_targets(lib) - lib.withdrawn)
        target = published[lib.rounds % len(published)]
        lib.withdrawn.add(target)
        return ["withdraw", target, "--reason", f"round {lib.rounds}: bricks hardware 1112"]
    if kind == "supplier add":
        entity = f"90B3D51F3001{lib.rounds:04X}"
        cert = round_dir / "supplier.crt.pem"
        cert.write_bytes(issue(make_ca(), f"supplier {entity}").cert_pem)
        lib.suppliers.add(entity)
        return [
            "supplier",
            "add",
            entity,
            "--name",
            f"Supplier {lib.rounds}",
            "--role",
            "IS",
            "--cert",
            str(cert),
        ]
    proposal = round_dir / "targets.json"
    ok("--repo", lib.repo, "ceremony", "start", "targets", "--out", proposal)
    key = lib.repo / "keys" / "DEV-ONLY-targets-1.pem"
    ok("ceremony", "sign", proposal, "--signer", f"file2:{key}", "--yes")
    return ["ceremony", "finish", str(proposal)]


def new_bundle(lib: Library, inbox: Path) -> str:
    """One more deposit of 121D, signed on the library as published now."""
    fw = lib.next_fw
    lib.next_fw += 1
    name = f"fw-{fw:04d}.cflb"
    inbox.mkdir(parents=True)
    write_bundle(inbox / name, lib.factory.submit(make_image("121D", fw), [f"CPL-{fw:04d}"]))
    return name


def start(lib: Library, commands: list[list[str]], wait: str) -> list[Started]:
    """Start the commands at once (each a real process)."""
    started = []
    for args in commands:
        full = [str(CFL_REPO), "--wait", wait, "--repo", str(lib.repo), *args]
        process = subprocess.Popen(
            full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env(),
        )
        started.append(Started(args, process))
    return started


def finish(started: list[Started]) -> None:
    for s in started:
        s.stdout, s.stderr = s.process.communicate(timeout=600)


def settle(lib: Library, started: list[Started]) -> int:
    """Check every process either succeeded or was turned away naming another process of the
    round; run the turned-away ones again (cron's next run). Returns how many were turned away."""
    pids = {s.process.pid: s for s in started}
    refused = [s for s in started if s.returncode != 0]
    for s in refused:
        first = s.stderr.splitlines()[0] if s.stderr else ""
        busy = BUSY.fullmatch(first)
        assert s.returncode == 1 and busy, (s.args, s.returncode, s.stderr)
        other = pids.get(int(busy["pid"]))
        assert other is not None and other is not s, (first, [p.args for p in started])
        assert busy["command"].endswith(shlex.join(other.args)), (first, other.args)
        assert "Traceback" not in s.stderr
    for s in refused:
        ok("--wait", WAIT, "--repo", lib.repo, *s.args)
    for s in started:
        assert s.returncode in (0, 1), (s.args, s.stderr)
    return len(refused)


# -------------------------------------------------------------------------------- invariants


def published_targets(lib: Library) -> set[str]:
    library = verified(lib)
    return {image.target_path for image in library.images}


def verified(lib: Library):  # type: ignore[no-untyped-def]
    out = lib.repo / "public"
    library, problems = load_verified_library(
        folder_reader(out),
        (out / "metadata" / "1.root.json").read_bytes(),
        now=datetime.now(UTC),
    )
    assert problems == [] and library is not None
    return library


def check_nothing_lost(lib: Library) -> None:
    ok("--wait", WAIT, "--repo", lib.repo, "publish")
    out = lib.repo / "public"
    ok("verify", out, "--root", out / "metadata" / "1.root.json")

    events = [json.loads(line) for line in (lib.repo / "events.jsonl").read_text().splitlines()]
    seqs = [e["seq"] for e in events if "seq" in e]  # a rejection carries after_seq instead
    assert seqs == list(range(1, len(seqs) + 1))  # every commit logged once, in order
    accepted = Counter(e["bundle"] for e in events if e["event"] == "ingest-accepted")
    targets = {e["bundle"]: e["target"] for e in events if e["event"] == "ingest-accepted"}
    for name in lib.accepted:
        assert accepted[name] == 1, (name, accepted[name])

    library = verified(lib)
    published = {image.target_path for image in library.images}
    assert {targets[name] for name in lib.accepted} <= published
    withdrawn = {w.target for w in library.withdrawals}
    assert lib.withdrawn <= withdrawn
    repo = Repository.open(lib.repo)  # what `supplier list` and `status` read, in this process
    assert lib.suppliers <= {s.entity_id for s in repo.suppliers().suppliers}
    assert status_report(repo, now=datetime.now(UTC))["unpublished_changes"] == []
    # No process of the round is left holding anything: the lock's record is empty.
    assert (lib.repo / ".lock").read_bytes() == b""


# -------------------------------------------------------------------------------- scenarios


def one_round(lib: Library, wait: str) -> int:
    round_dir = lib.base / f"round-{lib.rounds}"
    inbox = round_dir / "inbox"
    bundle = new_bundle(lib, inbox)
    person = person_command(lib, PERSON[lib.rounds % len(PERSON)], round_dir)
    commands = [["ingest", str(inbox)], ["ingest", str(inbox)], ["publish"], person]
    started = start(lib, commands, wait)
    finish(started)
    turned_away = settle(lib, started)
    lib.accepted.append(bundle)
    check_nothing_lost(lib)
    lib.rounds += 1
    return turned_away


def lock_holder_pid(repo: Path) -> int | None:
    try:
        return int(json.loads((repo / ".lock").read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def paused_publish(lib: Library) -> Started:
    """A real `cfl-repo publish` paused (SIGSTOP) while it holds the repository lock."""
    for _attempt in range(5):
        # Without its replay record a publish with nothing new does the whole walk (seconds, not
        # the replay's tenth of one), so there is time to catch it holding the lock.
        (lib.repo / PUBLISH_UNCHANGED_STAMP).unlink(missing_ok=True)
        [holder] = start(lib, [["publish"]], "0")
        deadline = time.monotonic() + 120
        while lock_holder_pid(lib.repo) != holder.process.pid and holder.process.poll() is None:
            assert time.monotonic() < deadline, "the publish never took the lock"
            time.sleep(0.005)
        holder.process.send_signal(signal.SIGSTOP)
        if holder.process.poll() is None and lock_holder_pid(lib.repo) == holder.process.pid:
            return holder
        holder.process.send_signal(signal.SIGCONT)  # it had finished already: try again
        finish([holder])
    pytest.fail("could not catch a publish holding the lock in 5 attempts")


def held_round(lib: Library, wait: str) -> None:
    """A publish holds the lock, paused, while the other three of the round start: each waits,
    naming it, and succeeds once it goes on (``--wait``), or is turned away naming it (no wait)."""
    round_dir = lib.base / f"round-{lib.rounds}"
    inbox = round_dir / "inbox"
    bundle = new_bundle(lib, inbox)
    person = person_command(lib, PERSON[lib.rounds % len(PERSON)], round_dir)
    holder = paused_publish(lib)
    named = rf"cfl-repo --wait 0 --repo {re.escape(str(lib.repo))} publish \(PID {holder.process.pid} on "
    try:
        others = start(lib, [["ingest", str(inbox)], ["ingest", str(inbox)], person], wait)
        if wait == "0":
            finish(others)
            for s in others:
                assert s.returncode == 1, (s.args, s.stderr)
                assert re.match(rf"error: the repository is busy: {named}", s.stderr), s.stderr
        else:
            for s in others:
                assert s.process.stderr is not None
                line = s.process.stderr.readline()
                assert re.match(rf"waiting for the repository: {named}", line), line
    finally:
        holder.process.send_signal(signal.SIGCONT)
    finish([holder])
    assert holder.returncode == 0, holder.stderr
    if wait == "0":
        for s in others:
            ok("--wait", WAIT, "--repo", lib.repo, *s.args)  # cron's next run
    else:
        finish(others)
        for s in others:
            assert s.returncode == 0, (s.args, s.stderr)
    lib.accepted.append(bundle)
    check_nothing_lost(lib)
    lib.rounds += 1


def test_commands_started_together_with_wait_all_succeed(library: Library) -> None:
    for n in range(ROUNDS):
        if n % 2 == 0:
            held_round(library, WAIT)
        else:
            assert one_round(library, WAIT) == 0


def test_commands_started_together_without_wait_are_turned_away_naming_the_holder(
    library: Library,
) -> None:
    # Held rounds turn all three away; free-for-all rounds turn away whichever lost the race.
    for n in range(ROUNDS):
        if n % 2 == 0:
            held_round(library, "0")
        else:
            one_round(library, "0")


def test_a_holder_killed_mid_command_leaves_a_repository_the_others_complete(
    library: Library,
) -> None:
    rng = random.Random(SEED)
    lib = library
    for n in range(ROUNDS):
        round_dir = lib.base / f"kill-{n}"
        inbox = round_dir / "inbox"
        bundle = new_bundle(lib, inbox)
        kind = ("publish", "ingest", "withdraw")[n % 3]
        victim_args = {
            "publish": ["publish"],
            "ingest": ["ingest", str(inbox)],
            "withdraw": person_command(lib, "withdraw", round_dir) if kind == "withdraw" else [],
        }[kind]
        [victim] = start(lib, [victim_args], "0")
        deadline = time.monotonic() + 60
        while lock_holder_pid(lib.repo) != victim.process.pid and victim.process.poll() is None:
            assert time.monotonic() < deadline, "the victim never took the lock"
            time.sleep(0.01)
        delay = rng.uniform(0, 0.6)
        time.sleep(delay)
        victim.process.send_signal(signal.SIGKILL)
        finish([victim])
        killed = victim.returncode == -signal.SIGKILL
        # The record names a process that no longer exists; the flock went with it.
        others = start(lib, [["ingest", str(inbox)], ["publish"]], WAIT)
        finish(others)
        for s in others:
            assert s.returncode == 0, (f"seed {SEED} delay {delay:.3f}", s.args, s.stderr)
        ok("--wait", WAIT, "--repo", lib.repo, *victim_args)  # the killed command, run again
        lib.accepted.append(bundle)
        check_nothing_lost(lib)
        lib.rounds += 1
        print(f"kill round {n}: {kind} after {delay:.3f}s, killed={killed}")


def test_two_publishes_at_once_into_one_tree(library: Library) -> None:
    for _ in range(ROUNDS):
        started = start(library, [["publish"], ["publish"], ["site", "build"]], WAIT)
        finish(started)
        for s in started:
            assert s.returncode == 0, (s.args, s.stderr)
        check_nothing_lost(library)


def test_a_waiting_command_reports_progress_then_gives_up_naming_the_holder(
    library: Library,
) -> None:
    from metadata_templates.locking import LockPolicy, exclusive_lock

    holder = LockPolicy(command="cfl-repo --repo R ingest inbox/")
    with exclusive_lock(library.repo / ".lock", subject="the repository", policy=holder):
        start_at = time.monotonic()
        done = run("--wait", "1.5", "--repo", library.repo, "withdraw", "x", "--reason", "y")
        took = time.monotonic() - start_at
    lines = done.stderr.splitlines()
    assert done.returncode == 1
    assert lines[0].startswith("waiting for the repository: cfl-repo --repo R ingest inbox/ (PID ")
    assert lines[0].endswith(" holds it (0s of 1.5s)")
    assert lines[1].startswith(
        "error: the repository is busy: cfl-repo --repo R ingest inbox/ (PID "
    )
    assert lines[1].endswith("; waited 1.5s")
    assert 1.5 <= took < 30


def test_an_unusable_wait_is_a_usage_error(library: Library) -> None:
    done = subprocess.run(
        [str(CFL_REPO), "--repo", str(library.repo), "status"],
        capture_output=True,
        text=True,
        env={**env(), "CFL_LOCK_WAIT": "soon"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "--wait" in done.stderr and "'soon' is not a valid float" in done.stderr
