"""Benchmark of a flat publish as `cfl-repo publish` runs it: each publish in a new process.

``bench_site`` times its flat rounds in one process, where the interpreter, its imports and every
in-process cache are already warm. An operator runs one `cfl-repo publish` per change, so each
publish pays its first call. This benchmark builds a library of each size once (as ``bench_site``
builds them: ``bench_publish.build``, every manufacturer split into hash bins by ``bench_bulk``,
the site built and the verified-role memo warm), keeps it under ``bench/out`` with the
manufacturers' keys, then runs rounds in new processes, alternating the sizes: each round signs one
more image as its manufacturer would and ingests it (not timed), then times the metadata publish
and the website step twice in that process (the first is what one command pays; the second is
what ``bench_site`` sees). Then, as an operator runs them, the console scripts themselves: one
bundle signed beforehand (not timed), ``cfl-repo ingest BUNDLE`` and ``cfl-repo publish --json``,
each timed as a whole process (interpreter start-up and imports included). Target (issue 26): at
most 1.5x the 1,000-image case.

Knobs: ``CFL_BENCH_FLAT_SIZES`` (default ``1000,10000``; ``1000,100000`` for the issue's figure,
whose build takes 5 to 15 minutes), ``CFL_BENCH_FLAT_ROUNDS`` (default 3). Delete
``bench/out/flat-cli-*`` to build afresh (a library only grows by the rounds' images).

Run: ``python -m bench.bench_flat_cli``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
SIZES = tuple(int(n) for n in os.environ.get("CFL_BENCH_FLAT_SIZES", "1000,10000").split(","))
ROUNDS = int(os.environ.get("CFL_BENCH_FLAT_ROUNDS", "3"))
TARGET_RATIO = 1.5


def _build(count: int, base: Path) -> None:
    from cryptography.hazmat.primitives import serialization as s

    from bench import bench_publish
    from bench.bench_bulk import _split_all
    from repo_tool.publish.site_step import build_published_site

    shutil.rmtree(base, ignore_errors=True)  # a build killed before its pickle: start again
    work = base
    lib = bench_publish.build(count, work)
    _split_all(lib, work / "split-inbox")
    build_published_site(lib.out, lib.repo.metadata_bytes("root", 1), now=lib.tick(), hint=None)
    for _ in range(2):  # two flat publishes: the memo, its index and the stamps are warm
        _round(work, lib)
    keys = {
        mfr: signer._private_key.private_bytes(
            s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()
        )
        for mfr, signer in lib.signers.items()
    }
    state = {"keys": keys, "spare": lib.spare, "now": lib.now, "round": 2}
    (work / "library.pickle").write_bytes(pickle.dumps(state))  # last: a finished build


def _library(base: Path) -> Any:
    from cryptography.hazmat.primitives import serialization as s
    from securesystemslib.signer import CryptoSigner

    from bench import bench_publish
    from repo_tool.state.repository import Repository

    state = pickle.loads((base / "library.pickle").read_bytes())
    # The console scripts publish at the real time: never sign behind what they published.
    state["now"] = max(state["now"], datetime.now(UTC).replace(microsecond=0))
    repo = Repository.open(base / "repo")
    signers = {m: CryptoSigner(s.load_pem_private_key(k, None)) for m, k in state["keys"].items()}
    lib = bench_publish.Library(repo, repo.default_out, signers, state["spare"], state["now"])
    return lib, state


def _round(base: Path, lib: Any, number: int | None = None) -> dict[str, Any]:
    """One image ingested (not timed), then publish + website step timed, as the CLI runs them."""
    from bench import bench_site
    from repo_tool.ops.publish import publish
    from repo_tool.publish.site_step import build_published_site, publish_hint, tree_state
    from repo_tool.verify.memo import VerifyMemo

    bench_site._ingest_one(lib, number or 0, base / "inbox")
    began = time.perf_counter()
    before = tree_state(lib.out)
    publish(lib.repo, lib.out, now=lib.tick())
    hint = publish_hint(lib.repo, before)
    published = time.perf_counter()
    site = build_published_site(
        lib.out,
        lib.repo.metadata_bytes("root", 1),
        now=lib.now,
        hint=hint,
        memo=VerifyMemo.of_repository(lib.repo.path),
    )
    done = time.perf_counter()
    assert site.result.appended and site.memo is not None, site
    return {
        "publish_s": published - began,
        "site_s": done - published,
        "total_s": done - began,
        "verified": site.memo.verified,  # roles verified in full: 1 once the memo is warm
    }


def _child(base: Path) -> None:
    """Two publishes in this (new) process; prints them as JSON."""
    lib, state = _library(base)
    timed = []
    for _ in range(2):
        state["round"] += 1
        timed.append(_round(base, lib, state["round"]))
    state["spare"], state["now"] = lib.spare, lib.now
    (base / "library.pickle").write_bytes(pickle.dumps(state))
    print(json.dumps(timed))


def _sign_child(base: Path) -> None:
    """Sign one more image's bundle into a new inbox folder (the manufacturer's side); print it."""
    from bench.bench_site import sign_one

    lib, state = _library(base)
    state["round"] += 1
    path = sign_one(lib, state["round"], base / f"command-inbox-{state['round']}")
    state["spare"], state["now"] = lib.spare, lib.now
    (base / "library.pickle").write_bytes(pickle.dumps(state))
    print(path)


def _timed(*argv: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return took, done.stdout


def _command_round(base: Path) -> dict[str, Any]:
    """One deposit through the console scripts: ingest, then publish with its website."""
    here = Path(__file__).resolve().parent.parent
    signed = subprocess.run(
        [sys.executable, "-m", "bench.bench_flat_cli", "--sign", str(base)],
        capture_output=True,
        text=True,
        check=True,
        cwd=here,
    )
    bundle = signed.stdout.splitlines()[-1]
    script = str(Path(sys.executable).with_name("cfl-repo"))
    repo = str(base / "repo")
    ingest_s, _ = _timed(script, "--repo", repo, "ingest", bundle)
    publish_s, out = _timed(script, "--repo", repo, "publish", "--json")
    site = json.loads(out).get("site_build") or {}
    return {"ingest_s": ingest_s, "publish_s": publish_s, "appended": site.get("appended")}


def _report_commands(results: dict[int, list[dict[str, Any]]]) -> None:
    print("  the console scripts, each a whole process (start-up and imports included):")
    for count, runs in results.items():
        print(
            f"  {count:>9,} images: cfl-repo publish "
            + ", ".join(f"{r['publish_s']:.3f}" for r in runs)
            + " s (site appended: "
            + ", ".join(str(r["appended"]) for r in runs)
            + "); cfl-repo ingest "
            + ", ".join(f"{r['ingest_s']:.3f}" for r in runs)
            + " s"
        )
    small, large = SIZES[0], SIZES[-1]
    for key, label in (("publish_s", "cfl-repo publish"), ("ingest_s", "cfl-repo ingest")):
        ratio = statistics.median(r[key] for r in results[large]) / statistics.median(
            r[key] for r in results[small]
        )
        print(f"  {label}, {large:,} vs {small:,} images (medians): {ratio:.2f}x")


def main() -> None:
    """Build (or reuse) each library, then time publishes in new processes, sizes alternating."""
    OUT.mkdir(parents=True, exist_ok=True)
    bases = {n: OUT / f"flat-cli-{n}" for n in SIZES}
    for count, base in bases.items():
        if not (base / "library.pickle").is_file():
            began = time.perf_counter()
            _build(count, base)
            print(f"built {count:,} images in {time.perf_counter() - began:.0f} s (not timed)")
    results: dict[int, list[list[dict[str, Any]]]] = {n: [] for n in SIZES}
    for _ in range(ROUNDS):
        for count, base in bases.items():
            done = subprocess.run(
                [sys.executable, "-m", "bench.bench_flat_cli", "--child", str(base)],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            results[count].append(json.loads(done.stdout.splitlines()[-1]))
    print(f"flat publish, each in a new process (load average {os.getloadavg()[0]:.2f})")
    medians: dict[tuple[int, int], float] = {}
    for count in SIZES:
        for which, label in ((0, "first"), (1, "second")):
            runs = [r[which] for r in results[count]]
            medians[count, which] = statistics.median(r["total_s"] for r in runs)
            print(
                f"  {count:>9,} images, {label} publish of the process: total "
                + ", ".join(f"{r['total_s']:.3f}" for r in runs)
                + " s (publish "
                + ", ".join(f"{r['publish_s']:.3f}" for r in runs)
                + "; website step "
                + ", ".join(f"{r['site_s']:.3f}" for r in runs)
                + "; roles verified in full "
                + ", ".join(str(r["verified"]) for r in runs)
                + ")"
            )
    small, large = SIZES[0], SIZES[-1]
    for which, label in ((0, "first"), (1, "second")):
        ratio = medians[large, which] / medians[small, which]
        print(
            f"  {label} publish, {large:,} vs {small:,} images (medians): {ratio:.2f}x "
            f"(target <= {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'not met'})"
        )
    commands: dict[int, list[dict[str, Any]]] = {n: [] for n in SIZES}
    for _ in range(ROUNDS):
        for count, base in bases.items():
            commands[count].append(_command_round(base))
    _report_commands(commands)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(Path(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--sign":
        _sign_child(Path(sys.argv[2]))
    else:
        main()
