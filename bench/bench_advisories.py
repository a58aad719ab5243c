"""Benchmark of advisories in ``cfl check`` (issue 23): a 1,000,000-device check with 200 advisories
costs at most 10% more than the same check without any.

Both sides run the whole pipeline ``cfl check --json`` computes on the synthetic library of
bench_client_check (30 manufacturers, 240 product lines, 480 images): read and group the estate,
match, plan paths, build the JSON. The advisory side also parses 200 signed advisory documents
(each scored again by the cvss library, as the client does), indexes them, marks fixing images,
joins every group to the advisories it runs into with its fix path, and puts them into the JSON.
Both are timed alternately, best of ``--repeat``, in the same run, in CPU time of this process
(``time.process_time``): the machine is shared, and wall time moved by a factor of two between
runs of the very same work.

Run: ``python -m bench.bench_advisories [--devices N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from bench.bench_client_check import _models, estate_file, synthetic_library
from client.advisories.matching import AdvisoryIndex
from client.estate.check import check_estate
from client.estate.report import report_json
from client.trust.catalogue import CatalogueImage
from metadata_templates.advisory import Advisory, parse_authored, with_revision
from metadata_templates.cpl_document import CplDocument

ADVISORIES = 200
TARGET_RATIO = 1.10


def vector(n: int) -> str:
    """A distinct vector per advisory, v3.1 and v4.0 alternately: the worst case for the
    client, which scores every document once per run."""
    pick = [("N", "A", "L", "P"), ("L", "H"), ("N", "L", "H"), ("N", "R"), ("H", "L", "N")]
    av, ac, pr, ui, c = (
        p[(n // 2 // w) % len(p)] for p, w in zip(pick, (1, 4, 8, 24, 48), strict=True)
    )
    if n % 2:
        return f"CVSS:3.1/AV:{av}/AC:{ac}/PR:{pr}/UI:{ui}/S:U/C:{c}/I:L/A:N"
    ui4 = "N" if ui == "N" else "P"
    return f"CVSS:4.0/AV:{av}/AC:{ac}/AT:N/PR:{pr}/UI:{ui4}/VC:{c}/VI:L/VA:N/SC:N/SI:N/SA:N"


def synthetic_advisories(images: list[CatalogueImage], cpl: CplDocument) -> list[bytes]:
    """200 signed-form advisory documents: each lists the older firmware of one product line
    (some lines get two) and, for most, the line's newest image as the fix."""
    by_line: dict[tuple[str, str, str], list[str]] = {}
    for entry in cpl.entries:
        by_line.setdefault(
            (entry.manufacturer_id, entry.model_id, entry.hardware_version), []
        ).append(entry.id)
    newest: dict[tuple[str, str, str], str] = {}
    for image in images:
        for ref in image.cfl.cpl_entries:
            line = (image.cfl.manufacturer_id, ref.model_id, ref.hardware_version)
            newest[line] = max(newest.get(line, ""), image.target_path)
    lines = [(m, model, hw) for (_t, m, model, hw) in _models()]
    documents = []
    for n in range(ADVISORIES):
        line = lines[n % len(lines)]
        mfr = line[0]
        doc = {
            "id": f"CFL-{mfr}-2026-{n:04d}",
            "title": f"Advisory {n}",
            "summary": "A synthetic vulnerability. " * 20,
            "cve": [f"CVE-2026-{10000 + n}"],
            "cvss": vector(n),
            "affected_cpl_entries": by_line[line][:4],
            "fixed_by": [newest[line]] if n % 5 else [],
            "status": "fixed" if n % 5 else "affected",
            "workaround": "None.",
            "published": "2026-03-01",
        }
        authored = parse_authored(json.dumps(doc).encode(), manufacturer_id=mfr, today="2026-03-02")
        documents.append(with_revision(authored, 1).to_bytes())
    return documents


def _timed(fn: Callable[[], object], times: list[float]) -> None:
    start = time.process_time()
    fn()
    times.append(time.process_time() - start)


def run(devices: int, repeat: int) -> None:
    path = estate_file(devices)
    images, cpl = synthetic_library()
    documents = synthetic_advisories(images, cpl)

    def without() -> int:
        return len(json.dumps(report_json(check_estate(path, images, cpl))))

    def with_advisories() -> int:
        advisories = [Advisory.from_bytes(data) for data in documents]
        index = AdvisoryIndex(advisories, images)
        report = check_estate(path, images, cpl, advisories=index)
        return len(json.dumps(report_json(report)))

    sample = check_estate(path, images, cpl, advisories=AdvisoryIndex(
        [Advisory.from_bytes(d) for d in documents], images))  # fmt: skip
    affected = sum(1 for alerts in sample.advisories or () if alerts)
    print(f"\nadvisories: {devices:,} devices in {len(sample.groups)} groups, {len(documents)} "
          f"advisories, {affected} groups affected")  # fmt: skip
    base: list[float] = []
    ours: list[float] = []
    for _ in range(repeat):  # alternate, so drift in machine load hits both alike
        _timed(without, base)
        _timed(with_advisories, ours)
    start = time.process_time()
    for _ in range(10):
        [Advisory.from_bytes(data) for data in documents]
    parse = (time.process_time() - start) / 10
    ratio = min(ours) / min(base)
    verdict = "OK" if ratio <= TARGET_RATIO else "OVER TARGET"
    print(f"  check without advisories  best {min(base):7.2f} s  (runs {_fmt(base)})")
    print(f"  check with {ADVISORIES} advisories best {min(ours):7.2f} s  (runs {_fmt(ours)})")
    print(f"  of which parsing {ADVISORIES} documents     {parse * 1000:7.1f} ms")
    print(f"  distinct vectors          {len({Advisory.from_bytes(d).cvss for d in documents}):7d}")
    print(f"  ratio                     {ratio:7.3f}    target <= {TARGET_RATIO:.2f}: {verdict}")


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    run(args.devices, args.repeat)


if __name__ == "__main__":
    main()
