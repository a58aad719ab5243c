"""The output folder: only complete verified files under final names, fragments, the manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_factories import cpl_entry, device_id, image
from hypothesis import given, settings
from hypothesis import strategies as st

from client.fetch import download
from client.fetch.download import (
    HAN_FRAGMENT_SIZE,
    MANIFEST_NAME,
    PARTIAL_PREFIX,
    OutputFolder,
    fragment_name,
    output_name,
)
from client.trust.catalogue import CatalogueImage
from metadata_templates.errors import RejectedInputError, VerificationError


def verified_image(data: bytes, fw: str = "00000002") -> CatalogueImage:
    """A catalogue entry whose verified hash and length are those of ``data``."""
    base = image([cpl_entry("CPL-2", fw=fw)], salt=str(len(data)))
    return dataclasses.replace(base, sha256=hashlib.sha256(data).hexdigest(), length=len(data))


DATA = os.urandom(1_900_000)
IMG = verified_image(DATA)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "file"])
def test_place_writes_the_file_under_its_hash_name(tmp_path: Path, as_path: bool) -> None:
    source: Path | bytes = DATA
    if as_path:
        source = tmp_path / "verified.bin"
        source.write_bytes(DATA)
    out = OutputFolder(tmp_path / "out")
    placed = out.place(IMG, source, device_count=3, device_ids=[device_id(1)])
    name = output_name(IMG.target_path, IMG.sha256)
    assert name == f"{IMG.sha256}.{IMG.target_path.split('/')[1]}"
    assert names(tmp_path / "out") == [name]
    assert (tmp_path / "out" / name).read_bytes() == DATA
    assert (placed.file, placed.reused, placed.device_count) == (name, False, 3)


def test_already_present_verified_files_are_reused_and_tampered_ones_replaced(
    tmp_path: Path,
) -> None:
    out = OutputFolder(tmp_path)
    out.place(IMG, DATA)
    final = tmp_path / output_name(IMG.target_path, IMG.sha256)
    before = final.stat().st_mtime_ns
    assert out.is_present(IMG)
    assert out.place(IMG, None).reused
    assert final.stat().st_mtime_ns == before
    final.write_bytes(b"\x00" * len(DATA))  # same length, wrong bytes
    assert not out.is_present(IMG)
    assert not out.place(IMG, DATA).reused
    assert final.read_bytes() == DATA


@pytest.mark.parametrize(
    "bad",
    [DATA[:-1], DATA[:-1] + b"\x00", b""],
    ids=["truncated", "altered", "empty"],
)
def test_a_source_that_does_not_match_is_refused_and_leaves_nothing(
    tmp_path: Path, bad: bytes
) -> None:
    out = OutputFolder(tmp_path / "out", fragment_size=1000)
    with pytest.raises(VerificationError, match="changed after verification"):
        out.place(IMG, bad)
    assert names(tmp_path / "out") == []


def test_nothing_to_reuse_and_no_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VerificationError, match="no verified copy present"):
        OutputFolder(tmp_path).place(IMG, None)


def test_ctrl_c_during_the_copy_leaves_no_file_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_chunks = download._chunks

    def chunks_then_ctrl_c(source: Path | bytes) -> Iterator[bytes]:
        for n, chunk in enumerate(real_chunks(source)):
            if n == 1:
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(download, "_chunks", chunks_then_ctrl_c)
    out = OutputFolder(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt):
        out.place(IMG, DATA)
    assert names(tmp_path / "out") == []


def test_leftover_partials_from_a_crash_can_be_removed(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path)
    (tmp_path / f"{PARTIAL_PREFIX}abc").write_bytes(b"half")
    out.place(IMG, DATA)
    assert [p.name for p in out.remove_partials()] == [f"{PARTIAL_PREFIX}abc"]
    assert names(tmp_path) == [output_name(IMG.target_path, IMG.sha256)]


def test_fragments_cover_the_image_in_order_with_their_own_hashes(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path, fragment_size=HAN_FRAGMENT_SIZE)
    placed = out.place(IMG, DATA)
    name = output_name(IMG.target_path, IMG.sha256)
    assert [f.file for f in placed.fragments] == [f"{name}.part0001", f"{name}.part0002",
                                                   f"{name}.part0003"]  # fmt: skip
    assert [f.length for f in placed.fragments] == [750_000, 750_000, 400_000]
    assert b"".join((tmp_path / f.file).read_bytes() for f in placed.fragments) == DATA
    for fragment in placed.fragments:
        piece = (tmp_path / fragment.file).read_bytes()
        assert hashlib.sha256(piece).hexdigest() == fragment.sha256
        assert DATA[fragment.offset : fragment.offset + fragment.length] == piece
    # A second run finds them all verified and rewrites nothing.
    mtimes = {f.file: (tmp_path / f.file).stat().st_mtime_ns for f in placed.fragments}
    again = out.place(IMG, None)
    assert again.fragments == placed.fragments
    assert {f.file: (tmp_path / f.file).stat().st_mtime_ns for f in again.fragments} == mtimes


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 3000), fragment=st.integers(100, 1200))
def test_fragments_always_reassemble(tmp_path_factory: pytest.TempPathFactory, size: int,
                                     fragment: int) -> None:  # fmt: skip
    folder = tmp_path_factory.mktemp("frag")
    data = os.urandom(size)
    img = verified_image(data)
    placed = OutputFolder(folder, fragment_size=fragment).place(img, data)
    assert b"".join((folder / f.file).read_bytes() for f in placed.fragments) == data
    assert all(f.length <= fragment for f in placed.fragments)
    assert [f.index for f in placed.fragments] == list(range(1, len(placed.fragments) + 1))


def test_fragment_numbers_widen_beyond_9999() -> None:
    assert fragment_name("x", 7, 12) == "x.part0007"
    assert fragment_name("x", 7, 10_000) == "x.part00007"


def test_fragment_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(RejectedInputError, match="--fragment-size: found 0"):
        OutputFolder(tmp_path, fragment_size=0)


def test_manifest_lists_files_devices_and_fragments_and_keeps_earlier_runs(
    tmp_path: Path,
) -> None:
    other_data = os.urandom(1000)
    other = verified_image(other_data, fw="00000003")
    first = OutputFolder(tmp_path)
    first.write_manifest([first.place(other, other_data, device_count=2)])
    out = OutputFolder(tmp_path, fragment_size=HAN_FRAGMENT_SIZE)
    placed = out.place(IMG, DATA, device_count=2, device_ids=[device_id(1), device_id(2)])
    doc = json.loads(out.write_manifest([placed]).read_text())
    assert doc["schema_version"] == 1
    assert [f["target"] for f in doc["files"]] == sorted([IMG.target_path, other.target_path])
    entry = next(f for f in doc["files"] if f["target"] == IMG.target_path)
    assert entry["sha256"] == IMG.sha256
    assert entry["length"] == len(DATA)
    assert entry["manufacturer_image_sha256"] == IMG.cfl.manufacturer_image_sha256
    assert entry["devices"] == {"count": 2, "ids": [device_id(1), device_id(2)]}
    assert entry["fragment_size"] == HAN_FRAGMENT_SIZE
    assert [f["index"] for f in entry["fragments"]] == [1, 2, 3]
    earlier = next(f for f in doc["files"] if f["target"] == other.target_path)
    assert earlier["devices"] == {"count": 2}
    assert "fragments" not in earlier


def test_manifest_drops_entries_whose_files_are_gone_and_survives_garbage(tmp_path: Path) -> None:
    out = OutputFolder(tmp_path)
    out.write_manifest([out.place(IMG, DATA)])
    (tmp_path / output_name(IMG.target_path, IMG.sha256)).unlink()
    assert json.loads(out.write_manifest([]).read_text())["files"] == []
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    assert json.loads(out.write_manifest([]).read_text()) == {"schema_version": 1, "files": []}
