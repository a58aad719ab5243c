"""Benchmark of ``cfl check``: a 1,000,000-device estate against one stdlib ``csv.DictReader`` pass.

The target (issue 3): the whole check (read, group, match, build the JSON report) takes no longer than
a plain ``csv.DictReader`` pass over the same file, measured side by side in the same run, with peak
RSS under 600 MB. Both are timed alternately, best of ``--repeat``; peak RSS is measured in a child
process so the parent's own allocations do not count. ``--devices-out`` time (the second, per-device
pass) is reported too, beside the target rather than in it.

``--huge`` adds a 20,000,000-device estate (the whole GB fleet, ~1 GB of CSV, a few minutes) to show
memory stays bounded: the child's peak RSS should be about the same as for 1,000,000.

Run: ``python -m bench`` (all benchmarks) or ``python -m bench.bench_client_check [--huge]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from client.estate.check import check_estate, plan_estate, write_estate_devices, write_estate_report
from client.estate.history import History
from client.estate.reader import EstateSummary, GroupKey, iter_estate_devices, open_estate
from client.estate.report import CheckReport, report_json
from client.trust.catalogue import CatalogueImage
from metadata_templates.cpl_document import CplDocument, CplEntry
from metadata_templates.custom import CflTargetInfo, CplEntryRef
from metadata_templates.naming import image_target_path

OUT = Path(__file__).resolve().parent / "out"
HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version"
)
MANUFACTURERS = 30
MODELS_PER_MANUFACTURER = 4
HARDWARE_VERSIONS = ("0100", "0200")
FIRMWARE_VERSIONS = 6  # per model and hardware version; the newest two have images
RSS_TARGET_MB = 600
REPORT_SECONDS_TARGET = 10
REPORT_BYTES_TARGET = 5_000_000


def _sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _models() -> list[tuple[str, str, str, str]]:
    """(device type, manufacturer, model, hardware version) for every product line."""
    lines = []
    for m in range(MANUFACTURERS):
        mfr = f"{0x1200 + m:04X}"
        for k in range(MODELS_PER_MANUFACTURER):
            device_type = "ESME" if k % 2 == 0 else "GSME"
            model = f"{0x0A000000 + m * 16 + k:08X}" if k < 2 else f"{0x0100 + k:04X}"
            for hw in HARDWARE_VERSIONS:
                lines.append((device_type, mfr, model, hw))
    return lines


def synthetic_library() -> tuple[list[CatalogueImage], CplDocument]:
    """A CPL with firmware 1..N per product line and images for the two newest versions.

    Version N lists N-1 as its upgrade pathway; N-1 says N/A, so both rules are exercised.
    """
    entries: list[CplEntry] = []
    images: list[CatalogueImage] = []
    for n, (device_type, mfr, model, hw) in enumerate(_models()):
        for v in range(1, FIRMWARE_VERSIONS + 1):
            fw = f"{v:08X}"
            entry_id = f"CPL-{n:04d}-{v}"
            pathway = (f"CPL-{n:04d}-{v - 1}",) if v == FIRMWARE_VERSIONS else ()
            entry = CplEntry(
                id=entry_id,
                device_type=device_type,
                manufacturer_id=mfr,
                manufacturer_name=f"Maker {mfr}",
                model_id=model,
                model_name=f"Model {model}",
                hardware_version=hw,
                firmware_version=fw,
                smets_version="SMETS V5.0",
                gbcs_version="4.2",
                manufacturer_image_sha256=_sha(f"mi {entry_id}"),
                cpa_certificate="CPA",
                cpa_expiry=None,
                status="Active",
                upgrade_from=pathway,
            )
            entries.append(entry)
            if v < FIRMWARE_VERSIONS - 1:
                continue
            sha = _sha(f"file {entry_id}")
            security = v == FIRMWARE_VERSIONS
            cfl = CflTargetInfo(
                device_type=device_type,
                manufacturer_id=mfr,
                manufacturer_name=entry.manufacturer_name,
                image_type="0001",
                firmware_version=fw,
                stack_version="0002",
                header_string="bench",
                hardware_version_min=None,
                hardware_version_max=None,
                manufacturer_image_sha256=entry.manufacturer_image_sha256,
                manufacturer_image_length=200_000,
                cpl_entries=(
                    CplEntryRef(entry_id, model, entry.model_name, hw, "Active", pathway),
                ),
                reason="security" if security else "compliance",
                advisories=(f"CVE-2026-{n:04d}",) if security else (),
                published="2026-01-01T00:00:00Z",
            )
            target = image_target_path(mfr, device_type, "0001", fw, sha)
            images.append(CatalogueImage(target, 200_156, sha, cfl))
    return images, CplDocument.of(entries, "0" * 64, "2026-01-01T00:00:00Z")


def generate_estate(path: Path, devices: int, seed: int = 2026) -> None:
    """A deterministic estate; half the device IDs hyphenated, as exports from different systems are."""
    rng = random.Random(seed)
    suffixes = [
        f",{t},{m},{model},{hw},{v:08X}\n"
        for (t, m, model, hw) in _models()
        for v in range(1, FIRMWARE_VERSIONS + 1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    base = 0x000D6F0000000000
    with tmp.open("w", newline="", encoding="utf-8", buffering=1 << 20) as handle:
        handle.write(HEADER + "\n")
        choice = rng.choices
        for start in range(0, devices, 100_000):
            count = min(100_000, devices - start)
            picks = choice(suffixes, k=count)
            lines = []
            for offset, suffix in enumerate(picks):
                raw = f"{base + start + offset:016X}"
                if offset & 1:
                    raw = "-".join(raw[i : i + 2] for i in range(0, 16, 2))
                lines.append(raw + suffix)
            handle.write("".join(lines))
    tmp.replace(path)


def estate_file(devices: int) -> Path:
    """The cached estate of ``devices`` devices, generated on first use."""
    path = OUT / f"estate-{devices}.csv"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr)
        generate_estate(path, devices)
    return path


def dictreader_pass(path: Path) -> int:
    """The baseline: one stdlib csv.DictReader pass, touching every row."""
    n = 0
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for _row in csv.DictReader(handle):
            n += 1
    return n


def check_pipeline(path: Path, images: list[CatalogueImage], cpl: CplDocument) -> int:
    """Read, group, match and render the JSON report: everything ``cfl check --json`` computes."""
    report = check_estate(path, images, cpl)
    text = json.dumps(report_json(report))
    return len(text)


def _timed(fn: Callable[[], object], times: list[float]) -> None:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


def child(path: Path, devices_out: Path | None, history: Path | None) -> None:
    """What the RSS measurement runs: the check, and the second pass or the history when asked."""
    images, cpl = synthetic_library()
    report = check_estate(path, images, cpl)
    text = json.dumps(report_json(report))
    if devices_out is not None:
        write_estate_devices(path, report, devices_out)
    if history is not None:
        applicable = {i.target_path for g in report.groups for i in g.applicable}
        with History(history) as db, open_estate(path) as source:
            db.record(
                now=datetime(2026, 1, 1, tzinfo=UTC),
                devices=report.devices,
                catalogue_targets=[i.target_path for i in images],
                applicable_targets=applicable,
                device_ids=(device for device, _ in iter_estate_devices(source)),
            )
    print(json.dumps({"devices": report.devices, "groups": len(report.groups), "bytes": len(text)}))


def peak_rss_mb(path: Path, *, devices_out: bool, history: bool = False) -> tuple[float, float]:
    """Run the check in a child process; return (seconds, peak RSS in MB) of that child.

    RUSAGE_CHILDREN reports the largest child so far, so runs go from the lightest to the heaviest.
    """
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        cmd = [sys.executable, "-m", "bench.bench_client_check", "--child", str(path)]
        if devices_out:
            cmd += ["--devices-out", str(Path(tmp) / "devices.csv")]
        if history:
            cmd += ["--history", str(Path(tmp) / "history.sqlite")]
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).parents[1])
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        elapsed = time.perf_counter() - start
    # ru_maxrss of children is the maximum over all children so far (KiB on Linux).
    return elapsed, max(before, after) / 1024


def run(devices: int, repeat: int) -> None:
    """Time and measure one estate size, printing a short report."""
    path = estate_file(devices)
    images, cpl = synthetic_library()
    size_mb = path.stat().st_size / 1e6
    print(f"\nestate: {devices:,} devices, {size_mb:,.0f} MB, catalogue {len(images)} images, "
          f"CPL {len(cpl.entries)} entries")  # fmt: skip
    if repeat:
        base: list[float] = []
        ours: list[float] = []
        for _ in range(repeat):  # alternate, so drift in machine load hits both alike
            _timed(lambda: dictreader_pass(path), base)
            _timed(lambda: check_pipeline(path, images, cpl), ours)
        ratio = min(ours) / min(base)
        verdict = "OK" if ratio <= 1.0 else "SLOWER THAN TARGET"
        print(f"  csv.DictReader pass      best {min(base):7.2f} s  (runs {_fmt(base)})")
        print(f"  cfl check pipeline       best {min(ours):7.2f} s  (runs {_fmt(ours)})")
        print(f"  ratio check / DictReader {ratio:7.2f}    target <= 1.00: {verdict}")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            report = check_estate(path, images, cpl)
            write_estate_devices(path, report, Path(tmp) / "devices.csv")
        print(
            f"  --devices-out pass       {time.perf_counter() - start:7.2f} s  (check + 2nd pass)"
        )
    seconds, rss = peak_rss_mb(path, devices_out=False)
    verdict = "OK" if rss < RSS_TARGET_MB else "OVER TARGET"
    print(f"  child check              {seconds:7.2f} s  peak RSS {rss:6.0f} MB "
          f"(target < {RSS_TARGET_MB}: {verdict})")  # fmt: skip
    seconds, rss = peak_rss_mb(path, devices_out=True)
    print(f"  child check+devices-out  {seconds:7.2f} s  peak RSS {rss:6.0f} MB")
    seconds, rss = peak_rss_mb(path, devices_out=False, history=True)
    print(f"  child check+history      {seconds:7.2f} s  peak RSS {rss:6.0f} MB (first --changes)")


def real_library(tmp: Path) -> tuple[Path, Path]:
    """A real published library (repo_tool's own code, the test factory) with the synthetic CPL.

    Every manufacturer of the synthetic estate is delegated; each deposits the two newest firmware
    versions of its first product line (the newest lists the one before as its pathway, a security
    fix), so the check fetches 30 roles and plans two-hop paths. Returns (published folder, root).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from factory import LibraryFactory, make_image, mi_sha

    _, synthetic_cpl = synthetic_library()
    factory = LibraryFactory(tmp / "lib")
    first_lines = {}
    for device_type, mfr, model, hw in _models():
        first_lines.setdefault(mfr, (device_type, model, hw))
    images: dict[str, bytes] = {}
    entries = []
    for entry in synthetic_cpl.entries:
        line = first_lines[entry.manufacturer_id]
        fw = int(entry.firmware_version, 16)
        if (entry.device_type, entry.model_id, entry.hardware_version) == line and fw >= 5:
            data = make_image(entry.manufacturer_id, fw, hw=(0x0100, 0x0200))
            images[entry.id] = data
            entry = dataclasses.replace(entry, manufacturer_image_sha256=mi_sha(data))
        entries.append(entry)
    factory.import_cpl(entries)
    for mfr in first_lines:
        factory.add_manufacturer(mfr)
    factory.publish()
    for newest in (False, True):  # one publish per round: a role's next version builds on it
        for entry_id, data in sorted(images.items()):
            if entry_id.endswith(f"-{FIRMWARE_VERSIONS}") != newest:
                continue
            mfr = next(e.manufacturer_id for e in entries if e.id == entry_id)
            bundle = factory.submit(
                data,
                [entry_id],
                mfr=mfr,
                reason="security" if newest else "compliance",
                advisories=("CVE-2026-0001",) if newest else (),
            )
            result = factory.ingest(bundle)
            assert result.status == "accepted", result.messages
        factory.publish()
    root = tmp / "root.json"
    root.write_bytes(factory.root_bytes)
    return factory.out, root


def end_to_end(devices: int, repeat: int) -> None:
    """``cfl check ESTATE --json`` as a user runs it (a new process: start-up, trust loading from
    the home, the check and the paths), beside one csv.DictReader pass in the same run."""
    path = estate_file(devices)
    cfl = Path(sys.executable).with_name("cfl")
    with tempfile.TemporaryDirectory(dir=OUT) as name:
        tmp = Path(name)
        print(f"\nend to end: building a real library of {MANUFACTURERS} manufacturers ...",
              file=sys.stderr)  # fmt: skip
        published, root = real_library(tmp)
        home = tmp / "home"
        env = {**os.environ, "CFL_HOME": str(home)}
        subprocess.run([str(cfl), "init", published.as_uri(), "--root", str(root)], check=True,
                       env=env, capture_output=True)  # fmt: skip
        command = [str(cfl), "check", str(path), "--json"]
        first = subprocess.run(command, check=True, env=env, capture_output=True)  # warms the home
        doc = json.loads(first.stdout)
        hops = max(len(g["path"]) for g in doc["groups"])
        startup: list[float] = []
        base: list[float] = []
        ours: list[float] = []
        base_cpu: list[float] = []
        ours_cpu: list[float] = []
        for _ in range(max(repeat, 1)):  # alternate, so drift in machine load hits both alike
            cpu = time.process_time()
            _timed(lambda: dictreader_pass(path), base)
            base_cpu.append(time.process_time() - cpu)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            _timed(lambda: subprocess.run(command, check=True, env=env, capture_output=True), ours)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            ours_cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            _timed(lambda: subprocess.run([str(cfl), "--version"], check=True,
                                          capture_output=True), startup)  # fmt: skip
    ratio = min(ours) / min(base)
    cpu_ratio = min(ours_cpu) / min(base_cpu)
    verdict = "OK" if ratio <= 1.0 else "SLOWER THAN TARGET"
    print(f"\nend to end: `cfl check {path.name} --json` in a new process, {devices:,} devices, "
          f"longest path {hops} hops")  # fmt: skip
    print(f"  csv.DictReader pass      best {min(base):7.2f} s  (runs {_fmt(base)})  "
          f"CPU {min(base_cpu):.2f} s")  # fmt: skip
    print(f"  cfl check (subprocess)   best {min(ours):7.2f} s  (runs {_fmt(ours)})  "
          f"CPU {min(ours_cpu):.2f} s")  # fmt: skip
    print(f"  cfl --version start-up   best {min(startup):7.2f} s")
    print(f"  ratio check / DictReader {ratio:7.2f}    target <= 1.00: {verdict}")
    # On a shared machine wall time depends on the neighbours; CPU time much less so.
    print(f"  CPU ratio                {cpu_ratio:7.2f}")


def report_aggregates(devices: int) -> CheckReport:
    """A check report for ``devices`` devices spread over the synthetic product lines: the report
    page is built from these group aggregates, never from per-device rows."""
    images, cpl = synthetic_library()
    keys = [
        GroupKey(t, m, model, hw, f"{v:08X}")
        for (t, m, model, hw) in _models()
        for v in range(1, FIRMWARE_VERSIONS + 1)
    ]
    share, rest = divmod(devices, len(keys))
    groups = {key: share + (1 if n < rest else 0) for n, key in enumerate(keys)}
    summary = EstateSummary(groups, devices, 0, (), 0)
    return plan_estate(summary, images, cpl)


def report_render(devices: int, repeat: int) -> None:
    """Time ``--report`` for an estate of ``devices`` devices; print the time and the page size."""
    images, _ = synthetic_library()
    report = report_aggregates(devices)
    changes = {
        "devices_since": "2026-01-01T00:00:00Z", "gained_devices": 250_000,
        "gained_sample": [f"00-0D-6F-00-00-00-{n:02X}-00" for n in range(20)], "lost_devices": 0,
        "lost_sample": [], "images_since": "2026-01-01T00:00:00Z",
        "new_images": [i.target_path for i in images[:40]],
    }  # fmt: skip
    times: list[float] = []
    size = 0
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        out = Path(tmp) / "report.html"
        for _ in range(max(repeat, 1)):
            start = time.perf_counter()
            write_estate_report(
                out, report, images, changes, devices_compared=True,
                now=datetime(2026, 1, 2, tzinfo=UTC),
            )  # fmt: skip
            times.append(time.perf_counter() - start)
            size = out.stat().st_size
    seconds_ok = "OK" if min(times) < REPORT_SECONDS_TARGET else "OVER TARGET"
    size_ok = "OK" if size < REPORT_BYTES_TARGET else "OVER TARGET"
    print(f"\n--report for {devices:,} devices ({len(report.groups):,} groups)")
    print(f"  render + write           best {min(times):7.2f} s  (runs {_fmt(times)}) "
          f"target < {REPORT_SECONDS_TARGET} s: {seconds_ok}")  # fmt: skip
    print(f"  page size                {size / 1e6:7.2f} MB  target < "
          f"{REPORT_BYTES_TARGET / 1e6:.0f} MB: {size_ok}")  # fmt: skip


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main(argv: list[str] | None = None) -> None:
    """Entry point; with no arguments, the 1,000,000-device benchmark only."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_client_check")
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--huge", action="store_true", help="also run 20,000,000 devices")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--devices-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--history", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child is not None:
        child(args.child, args.devices_out, args.history)
        return
    print(f"cfl check benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    run(args.devices, args.repeat)
    end_to_end(args.devices, args.repeat)
    report_render(20_000_000, args.repeat)
    if args.huge:
        # One timed repeat is plenty at this size; the point is the memory bound.
        run(20_000_000, 0)


if __name__ == "__main__":
    main(sys.argv[1:])
