"""The fuzzer's starting points: one valid bundle of each kind, made by the real submit code.

Each is what `cfl-repo submit`, `submit --renew`, `bins split` and `advisory submit` write, built
with the test factories against a real library, so every member, every manifest field and every
ZIP header the parser reads appears in at least one seed. The keys are fresh on every build: a
finding is reproduced from the corpus the run saved (``--corpus``), not from a rebuilt one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # the factories are top-level modules of tests/, as pytest sees them
    sys.path.insert(0, str(TESTS))

from advisory_factory import authored  # noqa: E402
from advisory_factory import submit as advisory_submit  # noqa: E402
from notes_factory import publish_custodian  # noqa: E402

from factory import LibraryFactory, make_entry, make_image, mi_sha  # noqa: E402
from repo_tool.intake.bundle import Bundle, parse_bundle, write_bundle  # noqa: E402
from repo_tool.submit.bins import build_split  # noqa: E402
from repo_tool.submit.deposit import build_renewal  # noqa: E402
from repo_tool.verify.sources import folder_reader  # noqa: E402
from repo_tool.verify.walk import verified_library  # noqa: E402

MFR = "121D"
SUFFIX = ".cflb"


def _bytes(bundle: Bundle, folder: Path, name: str) -> bytes:
    path = folder / f"{name}{SUFFIX}"
    write_bundle(path, bundle)
    return path.read_bytes()


def build_corpus(tmp: Path) -> dict[str, bytes]:
    """Valid bundles by name: a deposit with encrypted notes, one with the old plaintext notes, a
    renewal, an advisory, a hash-bin split and a deposit into bins.

    Every one parses (asserted): a seed the parser rejects would only test the rejection path.
    """
    images = {fw: make_image(MFR, fw) for fw in (2, 3, 4)}
    factory = LibraryFactory(tmp / "library")
    factory.import_cpl(
        [
            make_entry(f"CPL-000{fw}", fw=f"0000000{fw}", image_sha=mi_sha(image))
            for fw, image in images.items()
        ]
    )
    factory.add_manufacturer(MFR)
    factory.publish()
    factory.deposit(images[2], ["CPL-0002"])
    publish_custodian(factory)
    out = tmp / "bundles"
    corpus: dict[str, bytes] = {}
    deposit = factory.submit(
        images[3], ["CPL-0003"], reason="security", advisories=("CFL-121D-2026-0001",)
    )
    corpus["deposit"] = _bytes(deposit, out, "deposit")
    notes = factory.submit(images[3], ["CPL-0003"], release_notes=b"release notes")
    corpus["deposit-notes"] = _bytes(notes, out, "deposit-notes")
    corpus["deposit-plain-notes"] = _bytes(
        dataclasses.replace(deposit, release_notes=b"plain notes"), out, "deposit-plain-notes"
    )
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    renewal = build_renewal(
        manufacturer_id=MFR, signers=[factory.mfr_signers[MFR]], library=library, now=factory.now
    )
    corpus["renewal"] = _bytes(renewal.bundle, out, "renewal")  # type: ignore[arg-type]
    corpus["advisory"] = _bytes(advisory_submit(factory, authored()), out, "advisory")
    split, _ = build_split(
        manufacturer_id=MFR,
        bit_length=2,
        signers=[factory.mfr_signers[MFR]],
        library=library,
        now=factory.now,
    )
    corpus["split-bins"] = _bytes(split, out, "split-bins")
    assert factory.ingest(split, "split").status == "accepted"
    factory.publish()
    into_bins = factory.submit(images[4], ["CPL-0004"], release_notes=b"notes in a bin")
    corpus["deposit-into-bins"] = _bytes(into_bins, out, "deposit-into-bins")
    for name, data in corpus.items():
        parse_bundle(data, source=f"{name}{SUFFIX}")  # raises if a seed is not a valid bundle
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.namelist(), name
    return corpus


def save_corpus(corpus: dict[str, bytes], folder: Path) -> None:
    """Write each seed as ``NAME.cflb`` (and an index), so a run can be repeated on the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in corpus.items():
        (folder / f"{name}{SUFFIX}").write_bytes(data)
    (folder / "corpus.json").write_text(json.dumps(sorted(corpus), indent=2) + "\n")


def load_corpus(folder: Path) -> dict[str, bytes]:
    """The seeds saved by `save_corpus`, by name (the mutator sorts them itself).

    Raises:
        ValueError: the folder holds no ``*.cflb`` file.
    """
    corpus = {path.stem: path.read_bytes() for path in sorted(folder.glob(f"*{SUFFIX}"))}
    if not corpus:
        raise ValueError(f"{folder}: found no *{SUFFIX} file, expected a corpus saved by a run")
    return corpus


def fresh_corpus() -> dict[str, bytes]:
    """`build_corpus` in a temporary folder that is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cfl-fuzz-corpus-") as tmp:
        return build_corpus(Path(tmp))
