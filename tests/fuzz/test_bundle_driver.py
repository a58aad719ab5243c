"""The bundle fuzz driver: a short seeded run finds nothing, and every kind of planted bug is found.

The planted bugs go in through ``Driver(parse=...)``: the driver feeds inputs to whatever parser it
is given, so a test hands it the inbox's parser wrapped to fail on chosen inputs, nothing patched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repo_tool.intake.bundle import BundleError
from tests.fuzz.bundle_corpus import fresh_corpus, load_corpus, save_corpus
from tests.fuzz.bundle_mutator import Mutator
from tests.fuzz.driver import SOURCE, Driver, Outcome, Parse, inbox_parse

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return fresh_corpus()


def _run(corpus: dict[str, bytes], tmp: Path, parse: Parse, n: int, **kwargs: object) -> Outcome:
    return Driver(
        corpus=corpus, seed=5, executions=n, findings_dir=tmp / "findings", parse=parse, **kwargs
    ).run()  # type: ignore[arg-type]


def _on(corpus: dict[str, bytes], index: int, seed: int = 5) -> bytes:
    return Mutator(corpus).mutant(seed, index).data


def test_a_seeded_run_of_3000_inputs_finds_nothing(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    outcome = Driver(corpus=corpus, seed=1, executions=3000, findings_dir=tmp_path / "f").run()
    assert outcome.findings == [], [f.detail for f in outcome.findings[:3]]
    assert outcome.complete and outcome.executions == 3000
    # Both ends of the contract are exercised: a mutator whose inputs all fail the ZIP check
    # would pass this run and test nothing.
    assert outcome.parsed > 300 and outcome.rejected > 1500
    assert not (tmp_path / "f").exists()


def test_a_planted_key_error_is_a_finding_saved_with_its_seed_and_number(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    mutator = Mutator(corpus)
    planted = [i for i in range(400) if len(mutator.mutant(5, i).data) % 13 == 0]
    assert planted, "the planted condition must hold for some inputs"

    def parse(data: bytes) -> object:
        if len(data) % 13 == 0:
            raise KeyError("planted")
        return inbox_parse(data)

    outcome = _run(corpus, tmp_path, parse, 400)
    assert [f.index for f in outcome.findings] == planted
    assert {f.kind for f in outcome.findings} == {"exception"}
    assert all("KeyError" in f.signature for f in outcome.findings)
    assert outcome.complete and outcome.restarts == 0
    # The first three inputs of one failure are kept, byte for byte, with what replays them.
    folder = tmp_path / "findings"
    kept = sorted(folder.glob("*.cflb"))
    assert len(kept) == min(3, len(planted))
    first = json.loads((folder / f"seed5-{planted[0]}-exception.json").read_text())
    assert (folder / f"seed5-{planted[0]}-exception.cflb").read_bytes() == mutator.mutant(
        5, planted[0]
    ).data
    assert first["seed"] == 5 and first["index"] == planted[0]
    assert "KeyError: 'planted'" in first["detail"]
    assert f"--seed 5 --replay {planted[0]}" in first["replay"]
    assert load_corpus(folder / "corpus") == corpus


def test_a_cpu_hang_is_a_finding_and_the_run_goes_on_after_it(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    stuck = _on(corpus, 7)

    def parse(data: bytes) -> object:
        while data == stuck:
            pass
        return inbox_parse(data)

    outcome = _run(corpus, tmp_path, parse, 40, timeout=0.3)
    assert [(f.index, f.kind) for f in outcome.findings] == [(7, "hang")]
    assert outcome.complete and outcome.executions == 40 and outcome.restarts == 1


def test_a_stall_without_cpu_is_a_finding_by_wall_time(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    stuck = _on(corpus, 3)

    def parse(data: bytes) -> object:
        if data == stuck:
            time.sleep(120)
        return inbox_parse(data)

    began = time.monotonic()
    outcome = _run(corpus, tmp_path, parse, 10, timeout=0.05)
    assert [(f.index, f.kind) for f in outcome.findings] == [(3, "hang")]
    assert time.monotonic() - began < 30


def test_a_memory_blow_up_is_a_finding(corpus: dict[str, bytes], tmp_path: Path) -> None:
    greedy = _on(corpus, 2)

    def parse(data: bytes) -> object:
        if data == greedy:
            return bytearray(4 * 1024**3)
        return inbox_parse(data)

    outcome = _run(corpus, tmp_path, parse, 10, memory_mb=256)
    assert [(f.index, f.kind) for f in outcome.findings] == [(2, "memory")]


def test_a_child_killed_by_a_signal_is_a_finding_and_the_run_goes_on(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    fatal = _on(corpus, 4)

    def parse(data: bytes) -> object:
        if data == fatal:
            os.kill(os.getpid(), signal.SIGTERM)
        return inbox_parse(data)

    outcome = _run(corpus, tmp_path, parse, 12)
    assert [(f.index, f.kind) for f in outcome.findings] == [(4, "died")]
    assert "exit code -15" in outcome.findings[0].detail
    assert outcome.complete and outcome.executions == 12


@pytest.mark.parametrize(
    ("message", "shape"),
    [
        ("other.cflb: kind: found x, expected deposit", "does not name the bundle"),
        (f"{SOURCE}: kind: found x\nerror: forged", "spans lines"),
        (f"{SOURCE}: kind: found {'x' * 3000}", "longer than 2000"),
    ],
    ids=["names-another-file", "two-lines", "too-long"],
)
def test_a_rejection_the_manufacturer_cannot_read_is_a_finding(
    corpus: dict[str, bytes], tmp_path: Path, message: str, shape: str
) -> None:
    def parse(data: bytes) -> object:
        raise BundleError(message)

    outcome = _run(corpus, tmp_path, parse, 3)
    assert [f.signature for f in outcome.findings] == [f"message: {shape}"] * 3


def test_a_result_that_is_not_a_bundle_is_a_finding(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    outcome = _run(corpus, tmp_path, lambda data: None, 2)
    assert [f.signature for f in outcome.findings] == ["result: NoneType"] * 2


def test_an_input_is_its_seed_and_number_alone(corpus: dict[str, bytes]) -> None:
    forward, backward = Mutator(corpus), Mutator(corpus)
    ahead = [forward.mutant(11, i) for i in range(50)]
    behind = [backward.mutant(11, i) for i in reversed(range(50))][::-1]
    assert ahead == behind
    assert [m.data for m in ahead] != [Mutator(corpus).mutant(12, i).data for i in range(50)]


def test_every_mutation_family_is_drawn(corpus: dict[str, bytes]) -> None:
    mutator = Mutator(corpus)
    steps = [s for i in range(1500) for s in mutator.mutant(3, i).steps]
    families = {s.split(":")[0] for s in steps}
    assert {"bytes", "zip", "json", "text", "members"} <= families
    assert any("<- raw" in s for s in steps) and any("<- []" in s for s in steps)
    assert any("inflates to" in s for s in steps) and any("ZIP64" in s for s in steps)
    assert {m.seed for m in map(lambda i: mutator.mutant(3, i), range(200))} == set(corpus)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run_bundle", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def test_the_command_runs_seeded_and_writes_its_result(
    corpus: dict[str, bytes], tmp_path: Path
) -> None:
    save_corpus(corpus, tmp_path / "corpus")
    out = tmp_path / "result.json"
    log = tmp_path / "progress.log"
    done = _cli(
        *("--executions", "1_000", "--seed", "4", "--out", str(out), "--corpus"),
        *(str(tmp_path / "corpus"), "--progress-every", "500", "--log", str(log)),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["schema_version"] == 1
    assert (result["executions"], result["findings"], result["complete"]) == (1000, 0, True)
    assert result["seed"] == 4 and result["executions_per_second"] > 0
    assert sorted(result["corpus"]) == sorted(corpus)
    assert len(result["commit"]) >= 40
    # Progress comes "about every" 500 inputs: the parent polls the child, and a quick child can
    # pass 500 and 1,000 between two polls. So one or two progress lines, then the last one.
    lines = log.read_text().splitlines()
    progress = [line for line in lines if "executions " in line]
    assert 2 <= len(progress) <= 3 and progress[-1].startswith("done: "), lines


def test_the_command_replays_one_input(corpus: dict[str, bytes], tmp_path: Path) -> None:
    save_corpus(corpus, tmp_path / "corpus")
    done = _cli("--corpus", str(tmp_path / "corpus"), "--seed", "4", "--replay", "17")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    mutant = Mutator(corpus).mutant(4, 17)
    assert report["steps"] == list(mutant.steps) and report["bytes"] == len(mutant.data)
    assert report["outcome"] in ("parsed", "rejected")


def test_the_command_teaches_and_refuses_a_half_command() -> None:
    shown = _cli("--help")
    assert shown.returncode == 0
    assert "--executions 10000000" in shown.stdout and "--replay" in shown.stdout
    refused = _cli("--executions", "10")
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith("error: --executions and --out are required (or --replay N)")
    )
