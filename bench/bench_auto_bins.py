"""Benchmark of automatic hash bins (issue 26) through the commands a manufacturer, the provider and
a supplier run, with nobody ever passing ``--split-bins``.

One manufacturer deposits image after image: ``cfl-repo submit IMAGE ... --out OUTBOX/N/X.cflb``
(which writes the split bundle beside it when the bin rule says so,
metadata_templates/bin_rule.py), ``cfl-repo ingest OUTBOX/N`` and ``cfl-repo publish --no-site``.
A supplier serves itself from the published tree over HTTP with ``cfl init`` and ``cfl
refresh``, the real client: behind a real nginx when one is installed (repo_tool/dev/static_nginx.py,
docs/hosting.md's policy; the bytes are the access log's ``body_bytes_sent``, so the log's tiles are
read by Range as a supplier's host serves them), else behind Python's http.server, which answers
every request whole (what a host without Range support costs). At each milestone of the
library (10, 100, ``LARGE`` images) the last ``ROUNDS`` deposits and refreshes run as real
processes (the console scripts), and the figures are:

1. **warm refresh bytes after one deposit**: what ``cfl refresh`` downloads, having refreshed
   before the deposit (mean of the rounds, fewest and most beside it);
2. **published metadata bytes**: every file under ``metadata/`` once that many deposits are
   published (what the host keeps: superseded snapshot and role versions are deleted a day after
   they stop being served, repo_tool/publish/superseded.py), and under ``log/`` beside it; beside
   them, the bytes of every metadata file ever published (what keeping every version, as before,
   costs: the baseline of the same run).

Deposits are published one every ``CADENCE`` minutes of the publish's clock (default 60: a busy
library's day is 24 deposits), which starts at the real time and runs ahead of it: in-process
publishes are handed it (``repo_tool.cli.console.CLOCK``), process publishes run under
``faketime`` (Debian's libfaketime) when it is installed. Submit, ingest and the supplier keep
the real clock; metadata signed ahead of it only expires later.

The deposits between milestones run the same command code in this process (click's ``main``), to
keep the 10,000-image run within an hour; the bytes they leave are those a process leaves. The
baseline, in the same run: the same deposits with ``--no-auto-bins`` (one role re-signed whole, what
a manufacturer got before), up to 100 images.

Knobs: ``CFL_BENCH_AUTO_LARGE`` (default 1,000 for ``make bench``; 10,000 is the issue's case,
about 30-60 minutes on two cores), ``CFL_BENCH_AUTO_ROUNDS`` (3) and
``CFL_BENCH_AUTO_CADENCE_MINUTES`` (60).
Run: ``python -m bench.bench_auto_bins``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.bench_ingest import BENCH_DIR, cpl_entry, ota
from metadata_templates import naming
from repo_tool.dev import static_nginx
from repo_tool.dev.demo_data import render_cpl_csv

MFR = "1D00"
LARGE = int(os.environ.get("CFL_BENCH_AUTO_LARGE", "1000"))
ROUNDS = int(os.environ.get("CFL_BENCH_AUTO_ROUNDS", "3"))
CADENCE = timedelta(minutes=int(os.environ.get("CFL_BENCH_AUTO_CADENCE_MINUTES", "60")))
FAKETIME = shutil.which("faketime")
BASELINE_UP_TO = 100
BODY_OCTETS = 2_000
TARGETS = {"refresh": 2.0, "metadata": 15.0}
BIN = Path(sys.executable).parent


class CountingHost:
    """The published tree over HTTP on 127.0.0.1, adding up the bytes of every response body.

    Python's server answers every request whole (it ignores Range): the fallback where nginx is
    not installed, and what a host without Range support costs a client."""

    name = "Python http.server (no Range support)"

    def __init__(self, root: Path) -> None:
        host = self

        class Handler(SimpleHTTPRequestHandler):
            def copyfile(self, source: Any, outputfile: Any) -> None:
                data = source.read()
                host.add(self.path, len(data))
                outputfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.bytes = 0
        self.by_folder: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, octets: int) -> None:
        self.bytes += octets
        folder = path.lstrip("/").split("/", 1)[0]
        self.by_folder[folder] = self.by_folder.get(folder, 0) + octets

    def reset(self) -> None:
        self.bytes, self.by_folder = 0, {}

    def settle(self) -> None:
        return None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_COMBINED = re.compile(rb'"[A-Z]+ (\S+) [^"]*" (\d{3}) (\d+) ')


class NginxHost(CountingHost):
    """The published tree behind a real nginx (docs/hosting.md's policy, repo_tool/dev/
    static_nginx.py), counting ``body_bytes_sent`` from its access log: Range requests are
    answered as a supplier's host answers them."""

    name = "nginx (Range requests answered with 206)"

    def __init__(self, root: Path, binary: str, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.running, self._url = static_nginx.start(binary, root.resolve(), state)
        self.log = state / "access.log"
        self.bytes = 0
        self.by_folder = {}
        self._read_to = 0

    def settle(self) -> None:
        """Add what the access log gained since the last call."""
        with self.log.open("rb") as handle:
            handle.seek(self._read_to)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._read_to += len(complete)
        for line in complete.splitlines():
            found = _COMBINED.search(line)
            if found is not None:
                self.add(found.group(1).decode(), int(found.group(3)))

    def reset(self) -> None:
        self.settle()
        super().reset()

    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        static_nginx.stop(self.running)


def _host(root: Path, state: Path) -> CountingHost:
    binary = static_nginx.nginx_binary()
    if shutil.which(binary) is None:
        return CountingHost(root)
    return NginxHost(root, binary, state)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


class Library:
    """A repository, a manufacturer and its images, driven through ``cfl-repo``."""

    def __init__(self, base: Path, images: int, *, auto: bool) -> None:
        self.base = base
        self.auto = auto
        self.repo = base / "R"
        self.key = base / "maker.pem"
        self.deposits = 0
        self.times: dict[str, list[float]] = {"submit": [], "ingest": [], "publish": []}
        # The publishes' clock (module docstring), and every metadata file ever published.
        self.clock = datetime.now(UTC).replace(microsecond=0)
        self.ever: dict[str, int] = {}
        (base / "images").mkdir(parents=True)
        entries = []
        for n in range(1, images + 1):
            image = ota(MFR, n, os.urandom(BODY_OCTETS))
            (base / "images" / f"{n}.ota").write_bytes(image)
            entries.append(cpl_entry(f"CPL-{n:06d}", MFR, n, image, model=f"{n % 0xFFFF:04X}"))
        (base / "cpl.csv").write_bytes(render_cpl_csv(entries))
        self.cfl_repo("--repo", self.repo, "init", "--dev-keys", process=True)
        self.cfl_repo("keygen", self.key, "--no-encrypt", process=True)
        self.cfl_repo("--repo", self.repo, "cpl", "import", base / "cpl.csv", process=True)
        pub = base / "maker.pub.pem"
        add = ("manufacturer", "add", MFR, "--name", "Maker", "--key", pub)
        self.cfl_repo("--repo", self.repo, *add, process=True)
        self.cfl_repo("--repo", self.repo, "publish", "--no-site", process=True)

    @property
    def out(self) -> Path:
        return self.repo / "public"

    def cfl_repo(self, *args: str | Path, process: bool, at: datetime | None = None) -> float:
        """Run one ``cfl-repo`` command (on the clock ``at`` when given); its wall time in
        seconds."""
        argv = [str(a) for a in args]
        began = time.perf_counter()
        if process:
            fake: list[str] = []
            if at is not None and FAKETIME is not None:
                fake = [FAKETIME, at.strftime("%Y-%m-%d %H:%M:%S")]
            done = subprocess.run(
                [*fake, str(BIN / "cfl-repo"), *argv],
                capture_output=True,
                text=True,
                check=False,
                env=os.environ | {"TZ": "UTC"},
            )
            if done.returncode != 0:
                raise RuntimeError(f"cfl-repo {' '.join(argv)}: {done.stderr}")
        else:
            from repo_tool.cli.console import CLOCK
            from repo_tool.cli.main import cli

            obj = {CLOCK: lambda: at} if at is not None else None
            with _quiet():
                cli.main(args=argv, prog_name="cfl-repo", standalone_mode=False, obj=obj)
        return time.perf_counter() - began

    def note_published(self) -> None:
        """Add the metadata files this publish wrote to ``ever`` (each name is written once)."""
        folder = self.out / "metadata"
        for name in os.listdir(folder):
            if name not in self.ever and not name.startswith(".") and name != "timestamp.json":
                with contextlib.suppress(FileNotFoundError):
                    self.ever[name] = (folder / name).stat().st_size

    def deposit(self, *, process: bool) -> None:
        """The next image: submit into its own outbox, ingest the outbox, publish."""
        n = self.deposits + 1
        outbox = self.base / "outbox" / str(n)
        submit = [
            "submit",
            self.base / "images" / f"{n}.ota",
            "--manufacturer",
            MFR,
            "--key",
            self.key,
            "--cpl-entry",
            f"CPL-{n:06d}",
            "--reason",
            "compliance",
            "--from",
            self.out,
            "--root",
            self.out / "metadata" / "1.root.json",
            "--out",
            outbox / f"{MFR}-{n}.cflb",
            *(() if self.auto else ("--no-auto-bins",)),
        ]
        self.clock += CADENCE
        publish = ("--repo", self.repo, "publish", "--no-site")
        times = [
            self.cfl_repo(*submit, process=process),
            self.cfl_repo("--repo", self.repo, "ingest", outbox, process=process),
            self.cfl_repo(*publish, process=process, at=self.clock),
        ]
        self.note_published()
        if process:
            for name, took in zip(("submit", "ingest", "publish"), times, strict=True):
                self.times[name].append(took)
        shutil.rmtree(outbox)  # kept only until ingested, as an inbox is
        self.deposits = n

    def bins(self) -> int:
        names = (p.name for p in (self.repo / "state" / "metadata").iterdir())
        return sum(1 for name in names if naming.manufacturer_of_bin(name) == MFR)

    def tree_bytes(self, folder: str) -> int:
        return sum(p.stat().st_size for p in (self.out / folder).rglob("*") if p.is_file())


def _cfl(home: Path, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "cfl"), "--home", str(home), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"cfl {' '.join(args)}: {done.stderr}")


def grow(
    lib: Library, host: CountingHost, home: Path, milestones: list[int]
) -> list[dict[str, float]]:
    """Deposit up to each milestone; the last ``ROUNDS`` deposits of each as processes, each
    followed by a counted ``cfl refresh``."""
    rows: list[dict[str, float]] = []
    for milestone in milestones:
        began = time.perf_counter()
        while lib.deposits < milestone - ROUNDS:
            lib.deposit(process=False)
        seeded_s = time.perf_counter() - began
        _cfl(home, "refresh")  # warm: up to date before the measured deposits
        refreshes: list[int] = []
        parts: dict[str, list[int]] = {"metadata": [], "log": []}
        for _ in range(ROUNDS):
            lib.deposit(process=True)
            host.reset()
            _cfl(home, "refresh")
            host.settle()
            refreshes.append(host.bytes)
            for folder, got in parts.items():
                got.append(host.by_folder.get(folder, 0))
        rows.append(
            {
                "images": lib.deposits,
                "bins": lib.bins(),
                "refresh": statistics.mean(refreshes),
                "refresh_min": min(refreshes),
                "refresh_max": max(refreshes),
                # What the bins decide (metadata/: timestamp, snapshot, the changed bin) and what
                # they do not (log/: the transparency log's entries since the last refresh, whose
                # partial tile of up to 256 entries is fetched whole).
                "refresh_metadata": statistics.mean(parts["metadata"]),
                "refresh_log": statistics.mean(parts["log"]),
                "metadata": lib.tree_bytes("metadata"),
                "metadata_ever": sum(lib.ever.values()),
                "log": lib.tree_bytes("log"),
                "seeded_s": seeded_s,
                **{f"{k}_s": statistics.median(v[-ROUNDS:]) for k, v in lib.times.items()},
            }
        )
    return rows


def run(base: Path, *, auto: bool, milestones: list[int]) -> list[dict[str, float]]:
    lib = Library(base / ("auto" if auto else "one-role"), milestones[-1], auto=auto)
    host = _host(lib.out, lib.base / "nginx")
    print(f"  {'baseline' if not auto else 'automatic bins'}: served by {host.name}")
    try:
        home = lib.base / "supplier"
        _cfl(home, "init", host.url, "--root", str(lib.out / "metadata" / "1.root.json"))
        return grow(lib, host, home, milestones)
    finally:
        host.close()


def main() -> None:
    """Print both runs' figures and the ratios beside their targets."""
    # Every power of ten up to LARGE, and LARGE: the ratios are between neighbours.
    milestones = sorted({10**k for k in range(1, 6) if 10**k <= LARGE} | {LARGE})
    load = os.getloadavg()
    print(
        f"automatic hash bins through the commands: milestones {milestones}, {ROUNDS} measured "
        f"deposits each; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start"
    )
    print(
        f"  one publish every {CADENCE} of the publishes' clock; process publishes "
        + (f"under {FAKETIME}" if FAKETIME else "on the real clock (faketime is not installed)")
    )
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    env = {"CFL_REPO_CACHE": os.environ.get("CFL_REPO_CACHE")}
    with tempfile.TemporaryDirectory(prefix="cfl-bench-auto-", dir=BENCH_DIR) as tmp:
        os.environ["CFL_REPO_CACHE"] = str(Path(tmp) / "submit-cache")
        try:
            baseline = run(
                Path(tmp), auto=False, milestones=[m for m in milestones if m <= BASELINE_UP_TO]
            )
            auto = run(Path(tmp), auto=True, milestones=milestones)
        finally:
            if env["CFL_REPO_CACHE"] is None:
                os.environ.pop("CFL_REPO_CACHE", None)
            else:
                os.environ["CFL_REPO_CACHE"] = env["CFL_REPO_CACHE"]
    report(baseline, auto)
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at end")


def report(baseline: list[dict[str, float]], auto: list[dict[str, float]]) -> None:
    rows = (
        ("images", "images", "{:,.0f}"),
        ("bins", "bins", "{:,.0f}"),
        ("warm refresh bytes, mean", "refresh", "{:,.0f}"),
        ("  fewest", "refresh_min", "{:,.0f}"),
        ("  most", "refresh_max", "{:,.0f}"),
        ("  of it metadata/, mean", "refresh_metadata", "{:,.0f}"),
        ("  of it log/, mean", "refresh_log", "{:,.0f}"),
        ("metadata/ bytes", "metadata", "{:,.0f}"),
        ("  every version kept", "metadata_ever", "{:,.0f}"),
        ("log/ bytes", "log", "{:,.0f}"),
        ("submit, process (s)", "submit_s", "{:.2f}"),
        ("ingest, process (s)", "ingest_s", "{:.2f}"),
        ("publish, process (s)", "publish_s", "{:.2f}"),
        ("seeding deposits (s)", "seeded_s", "{:.1f}"),
    )
    for title, run_rows in (
        ("one role (--no-auto-bins), baseline", baseline),
        ("automatic bins", auto),
    ):
        print(f"  {title}:")
        for label, key, form in rows:
            print(f"    {label:<26}" + "".join(f"{form.format(r[key]):>14}" for r in run_rows))
    by = {int(r["images"]): r for r in auto}
    base = {int(r["images"]): r for r in baseline}
    pairs = [(10, 100), (100, 1_000), (100, 10_000), (1_000, 10_000)]
    for small, large in pairs:
        if small in by and large in by and large > small:
            for key, what in (("refresh", "warm refresh"), ("refresh_metadata", "  its metadata/")):
                ratio = by[large][key] / by[small][key]
                print(
                    f"  {what} {large:,} / {small:,} images: {ratio:.2f} "
                    f"(target <= {TARGETS['refresh']})"
                    + (
                        f"; one role: {base[large][key] / base[small][key]:.2f}"
                        if small in base and large in base
                        else ""
                    )
                )
    for small in sorted(by):
        large = small * 10
        if large in by:
            ratio = by[large]["metadata"] / by[small]["metadata"]
            ever = by[large]["metadata_ever"] / by[small]["metadata_ever"]
            print(
                f"  metadata after {large:,} / {small:,} deposits: {ratio:.2f} "
                f"(target <= {TARGETS['metadata']}); every version kept: {ever:.2f}"
                + (
                    f"; one role: {base[large]['metadata'] / base[small]['metadata']:.2f}"
                    if small in base and large in base
                    else ""
                )
            )
    # The floor (metadata_templates/bin_rule.py): a refresh carries the snapshot's entry for every
    # bin and one bin, so with B bins for the bytes S of all bins it is at least ~141 B + S / B.
    top = by[max(by)]
    per_image = 821
    floor = 2 * (141 * per_image * top["images"]) ** 0.5
    print(
        f"  least any bin count gives at {top['images']:,.0f} images (snapshot entry 141 B, "
        f"{per_image} B an image): {floor:,.0f} B beside the fixed part; "
        f"{top['refresh']:,.0f} B measured"
    )


if __name__ == "__main__":
    main()
