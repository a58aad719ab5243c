"""Fuzz the inbox's bundle parser with seeded mutations of valid bundles, and say what was found.

    python -m tests.fuzz.run_bundle --executions 1000000 --seed 7 --out /tmp/fuzz.json

Every input N of seed S is the same bytes on every run with the same corpus (tests/fuzz/
bundle_mutator.py), fed to ``parse_bundle`` as the inbox calls it, in a watched child process
(tests/fuzz/driver.py). Exit status: 0 when every input was parsed or rejected as documented, 1
when there were findings (saved under --findings with the corpus, each with a replay command), 2
for a usage mistake. docs/testing.md "The long bundle fuzz run" gives the knobs and the last result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metadata_templates.atomic import atomic_write_bytes
from tests.fuzz.bundle_corpus import fresh_corpus, load_corpus, save_corpus
from tests.fuzz.bundle_mutator import Mutator
from tests.fuzz.driver import Driver, Outcome, inbox_parse, judge

EXAMPLES = """examples:
  a short check (what CI runs, in tests/fuzz/test_bundle_driver.py):
    python -m tests.fuzz.run_bundle --executions 3000 --seed 1 --out /tmp/fuzz.json

  the long run, at low priority, progress every 100,000 inputs in a log:
    nohup nice -n 19 python -m tests.fuzz.run_bundle --executions 10000000 --seed 20261207 \\
      --out /tmp/fuzz-10M.json --log /tmp/fuzz-10M.log --corpus /tmp/fuzz-corpus &

  replay one finding (the corpus the run saved beside its findings):
    python -m tests.fuzz.run_bundle --corpus FINDINGS/corpus --seed 7 --replay 123456
"""


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz.run_bundle",
        description=(
            "Feed mutated bundles (byte flips, ZIP header fields, JSON type swaps, member games) "
            "to the inbox's parse_bundle; anything but a Bundle or a one-line BundleError, a hang "
            "or a memory blow-up is a finding."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--executions", type=_count, help="how many inputs to run")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--start", type=_count, default=0, help="first input number (resume)")
    parser.add_argument("--out", type=Path, help="the result JSON, rewritten at each progress line")
    parser.add_argument(
        "--findings", type=Path, help="where findings go (default: next to --out, NAME-findings/)"
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        help="the seed bundles: read from this folder, or built and saved there when it is empty",
    )
    parser.add_argument("--timeout", type=float, default=1.0, help="CPU seconds per input (1)")
    parser.add_argument(
        "--memory-mb", type=int, default=1024, help="address space the child may add (1024)"
    )
    parser.add_argument("--progress-every", type=_count, default=100_000, help="(100000)")
    parser.add_argument("--log", type=Path, help="append progress lines here (default: stderr)")
    parser.add_argument("--replay", type=_count, help="run input number N alone and show it")
    args = parser.parse_args(argv)
    if args.replay is None and (args.executions is None or args.out is None):
        parser.error("--executions and --out are required (or --replay N)")
    if args.corpus is not None and args.corpus.exists() and not args.corpus.is_dir():
        parser.error(f"--corpus: found a file {args.corpus}, expected a folder")
    return args


def _count(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 0:
        raise argparse.ArgumentTypeError(f"found {value}, expected 0 or more")
    return value


def _corpus(folder: Path | None) -> dict[str, bytes]:
    if folder is not None and folder.is_dir() and any(folder.glob("*.cflb")):
        return load_corpus(folder)
    corpus = fresh_corpus()
    if folder is not None:
        save_corpus(corpus, folder)
    return corpus


def _commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{'-dirty' if dirty else ''}" if head else "unknown"


def _result(
    args: argparse.Namespace, corpus: dict[str, bytes], outcome: Outcome, started: dict[str, str]
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "target": "repo_tool.intake.bundle.parse_bundle, as repo_tool.intake.inbox calls it",
        **started,
        "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "timeout_cpu_seconds": args.timeout,
        "memory_mb": args.memory_mb,
        "peak_child_rss_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "corpus": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(corpus.items())},
        "findings_dir": str(args.findings),
        **outcome.to_dict(),
    }


def _progress_line(outcome: Outcome) -> str:
    rate = outcome.executions / outcome.seconds if outcome.seconds else 0.0
    left = (outcome.requested - outcome.executions) / rate if rate else 0.0
    return (
        f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} executions {outcome.executions:,}/"
        f"{outcome.requested:,} ({outcome.parsed:,} parsed, {outcome.rejected:,} rejected) "
        f"findings {len(outcome.findings)} rate {rate:,.0f}/s elapsed {outcome.seconds:,.0f} s "
        f"left ~{left:,.0f} s"
    )


def _replay(args: argparse.Namespace) -> int:
    corpus = _corpus(args.corpus)
    mutant = Mutator(corpus).mutant(args.seed, args.replay)
    verdict = judge(inbox_parse, mutant.data)
    outcome = {True: "parsed", False: "rejected"}.get(verdict, "finding")  # type: ignore[call-overload]
    report = {
        "seed": args.seed,
        "index": args.replay,
        "from": mutant.seed,
        "steps": list(mutant.steps),
        "bytes": len(mutant.data),
        "outcome": outcome,
        "detail": None if isinstance(verdict, bool) else verdict[1],
    }
    print(json.dumps(report, indent=2))
    return 1 if outcome == "finding" else 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.replay is not None:
        return _replay(args)
    if args.findings is None:
        args.findings = args.out.with_name(f"{args.out.stem}-findings")
    corpus = _corpus(args.corpus)
    # The commit the run started from: the code in memory, whatever the tree holds later.
    started = {"started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": _commit()}
    log = args.log.open("a", buffering=1) if args.log else sys.stderr

    def progress(outcome: Outcome) -> None:
        print(_progress_line(outcome), file=log)
        write(outcome)

    def write(outcome: Outcome) -> None:
        data = json.dumps(_result(args, corpus, outcome, started), indent=2) + "\n"
        atomic_write_bytes(args.out, data.encode())

    print(
        f"fuzzing parse_bundle: {args.executions:,} inputs of seed {args.seed} from "
        f"{args.start:,}, {len(corpus)} seed bundles, findings to {args.findings}",
        file=log,
    )
    outcome = Driver(
        corpus=corpus,
        seed=args.seed,
        start=args.start,
        executions=args.executions,
        findings_dir=args.findings,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        progress_every=args.progress_every,
        progress=progress,
    ).run()
    write(outcome)
    print(f"done: {_progress_line(outcome)}", file=log)
    for signature, count in sorted(outcome.signatures.items()):
        print(f"finding: {signature} ({count} inputs)", file=log)
    if log is not sys.stderr:
        log.close()
    return 1 if outcome.findings else 0


if __name__ == "__main__":
    sys.exit(main())
