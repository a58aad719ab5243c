"""Benchmark of the commands as people run them (issue 26, "Fast commands"): each a new process.

Targets: `cfl-repo --help` no slower than ``import tuf.ngclient``; `cfl-repo publish` with nothing
new at most 0.3 s wall; `cfl-repo submit` at most 0.5 s into a 10,000-image library. Beside them,
in the same run: a bare ``python -c pass`` and ``python -c 'import tuf.ngclient'``, and `publish`
with nothing new the full way (its stamp removed, repo_tool/publish/unchanged.py), i.e. before.

Every figure is the best wall time of ``RUNS`` processes. The processes may write and use
bytecode caches (PYTHONDONTWRITEBYTECODE is removed from their environment), as an installed
tool does. The load average is printed with the figures: on a shared machine it matters.

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_commands``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import bench_publish
from bench.bench_ingest import BENCH_DIR
from repo_tool.publish.unchanged import STAMP

RUNS = 5
LIBRARIES = (100, 10_000)
HELP_RATIO = 1.0  # --help at most as slow as importing tuf.ngclient
PUBLISH_TARGET_S = 0.3
SUBMIT_TARGET_S = 0.5
ROOT = Path(__file__).resolve().parents[1]
CFL_REPO = "from repo_tool.cli.main import main; main()"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def wall(args: Sequence[str], *, runs: int = RUNS, before: object = None) -> float:
    """The best wall time of ``runs`` processes (``before``, if callable, runs untimed first)."""
    best = float("inf")
    for _ in range(runs):
        if callable(before):
            before()
        began = time.perf_counter()
        subprocess.run(args, env=_env(), check=True, capture_output=True)
        best = min(best, time.perf_counter() - began)
    return best


def python(*code: str) -> list[str]:
    return [sys.executable, "-c", *code]


def import_ms(code: str, module: str) -> float:
    """The cumulative import time of ``module`` by ``-X importtime`` (best of ``RUNS``), in ms."""
    pattern = re.compile(rf"^import time:\s+\d+ \|\s+(\d+) \| {re.escape(module)}$", re.M)
    best = float("inf")
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        found = pattern.search(done.stderr)
        assert found is not None, module
        best = min(best, int(found.group(1)) / 1000)
    return best


def start_up() -> dict[str, float]:
    help_code = "import sys; sys.argv[1:] = ['--help']; " + CFL_REPO
    # Help exits through SystemExit(0); -X importtime still reports every import before it.
    return {
        "pass_s": wall(python("pass")),
        "ngclient_s": wall(python("import tuf.ngclient")),
        "help_s": wall(python(CFL_REPO, "--help")),
        "ngclient_import_ms": import_ms("import tuf.ngclient", "tuf.ngclient"),
        "help_import_ms": import_ms(help_code, "repo_tool.cli.main"),
    }


def library_commands(count: int) -> dict[str, float]:
    """Publish with nothing new (replayed, and the full way) and one submit, into ``count``."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cfl-bench-commands-", dir=BENCH_DIR) as tmp:
        began = time.perf_counter()
        lib = bench_publish.build(count, Path(tmp))
        build_s = time.perf_counter() - began
        repo = str(lib.repo.path)
        publish = python(CFL_REPO, "--repo", repo, "publish")
        subprocess.run(publish, env=_env(), check=True, capture_output=True)  # the site, a stamp
        replayed = wall(publish)
        full = wall(publish, runs=3, before=lambda: (lib.repo.path / STAMP).unlink())
        mfr = bench_publish._manufacturer(0)
        key = Path(tmp) / "mfr.pem"
        key.write_bytes(lib.signers[mfr].private_bytes)
        image, entry = lib.spare[mfr][0]
        image_file = Path(tmp) / "next.ota"
        image_file.write_bytes(image)
        submit = python(
            CFL_REPO,
            "submit",
            str(image_file),
            "--manufacturer",
            mfr,
            "--key",
            str(key),
            "--cpl-entry",
            entry,
            "--reason",
            "compliance",
            "--from",
            str(lib.out),
            "--root",
            str(lib.out / "metadata" / "1.root.json"),
            "--cache-dir",
            str(Path(tmp) / "cache"),
            "--out",
            str(Path(tmp) / "next.cflb"),
        )
        subprocess.run(submit, env=_env(), check=True, capture_output=True)  # warms the CPL cache
        return {
            "images": count,
            "build_s": build_s,
            "publish_unchanged_s": replayed,
            "publish_full_s": full,
            "submit_s": wall(submit, runs=3),
        }


def main() -> None:
    """Print the start-up, publish and submit figures beside their baselines."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"commands benchmark: best wall of {RUNS} processes; load average {load}")
    s = start_up()
    print(
        f"  python -c pass {s['pass_s']:.3f} s; import tuf.ngclient {s['ngclient_s']:.3f} s "
        f"({s['ngclient_import_ms']:.0f} ms by -X importtime)"
    )
    verdict = "ok" if s["help_s"] <= s["ngclient_s"] * HELP_RATIO else "OVER"
    print(
        f"  cfl-repo --help {s['help_s']:.3f} s ({s['help_import_ms']:.0f} ms importing "
        f"repo_tool.cli.main): {s['help_s'] / s['ngclient_s']:.2f}x tuf.ngclient [{verdict}]"
    )
    for count in LIBRARIES:
        r = library_commands(count)
        publish_ok = "ok" if r["publish_unchanged_s"] <= PUBLISH_TARGET_S else "OVER"
        submit_ok = "ok" if r["submit_s"] <= SUBMIT_TARGET_S else "OVER"
        print(
            f"  {count:>6} images (built in {r['build_s']:.0f} s): publish, nothing new "
            f"{r['publish_unchanged_s']:.3f} s [{publish_ok}] (the full way "
            f"{r['publish_full_s']:.3f} s); submit {r['submit_s']:.3f} s [{submit_ok}]"
        )
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
