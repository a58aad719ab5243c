"""Libraries with manufacturers split into hash bins (TAP 15), for tests on both sides."""

from __future__ import annotations

from pathlib import Path

from factory import LibraryFactory
from metadata_templates import naming
from repo_tool.intake.bundle import Bundle
from repo_tool.submit.bins import build_split
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library


def notes_split_library(tmp_path: Path) -> tuple[LibraryFactory, Bundle]:
    """Notes deposited before the split move into bins; a deposit after it signs the image's bin and
    its notes' bin (another bin when the notes path hashes elsewhere)."""
    from notes_factory import PLAINTEXT, notes_library

    notes_lib = notes_library(tmp_path / "lib")
    factory = notes_lib.factory
    factory.deposit(notes_lib.images["esme"], ["CPL-0002"], release_notes=PLAINTEXT)
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=4,
        signers=[factory.mfr_signers["121D"]],
        library=library,
        now=factory.now,
    )
    assert factory.ingest(split, "split").status == "accepted"
    factory.publish()
    bundle = factory.submit(notes_lib.images["esme3"], ["CPL-0003"], release_notes=PLAINTEXT)
    notes_path = f"{bundle.target}.notes.jwe"
    notes_bin = naming.bin_for_target("121D", notes_path, 4)
    assert [name for name, _ in bundle.bins] == ([] if notes_bin == bundle.role else [notes_bin])
    result = factory.ingest(bundle, "notes")
    assert result.status == "accepted", result.messages
    factory.publish()
    return factory, bundle
