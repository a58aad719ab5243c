"""What the mutation fuzzer (tests/fuzz, docs/testing.md "The long bundle fuzz run") found in
``parse_bundle``, one named case each: a clear one-line rejection naming the member or field.

Before the fixes a corrupt LZMA member escaped as ``LZMAError`` (a traceback in ``ingest``), one
whose stream claimed a 4 GiB dictionary had the decompressor allocate it (``MemoryError`` under the
fuzzer's 1 GiB cap), and hostile values were echoed whole into the rejection the manufacturer reads (32 KB for a ZIP name
length of 0x7FFF, 10 KB for a long ``kind``).
"""

from __future__ import annotations

import io
import json
import lzma
import struct
import warnings
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from repo_tool.intake.bundle import (
    IMAGE,
    MANIFEST,
    ROLE,
    BundleError,
    Declaration,
    parse_bundle,
)

SOURCE = "finding.cflb"
LONG = "x" * 10_000
NOT_STORED = "compression: found method %d (%s), expected stored (0) or deflate (8)"


def _manifest(**changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "kind": "deposit",
        "manufacturer_id": "121D",
        "target": "121D/image.ota",
        "declaration": {"cpl_entries": ["CPL-0003"], "reason": "compliance", "advisories": []},
    }
    return manifest | changes


def _members() -> list[tuple[str, bytes]]:
    return [(MANIFEST, json.dumps(_manifest()).encode()), (IMAGE, b"i"), (ROLE, b"{}")]


def _zip(members: list[tuple[str, bytes]], methods: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns on a duplicate name: one case wants it
        for name, content in members:
            method = (methods or {}).get(name, zipfile.ZIP_STORED)
            archive.writestr(name, content, compress_type=method)
    return buffer.getvalue()


def _bundle(manifest: dict[str, Any] | None = None, *extra: tuple[str, bytes]) -> bytes:
    return _zip(
        [
            (MANIFEST, json.dumps(manifest or _manifest()).encode()),
            (IMAGE, b"image"),
            (ROLE, b'{"signed": {}}'),
            *extra,
        ]
    )


def _corrupt_lzma_role() -> bytes:
    role = json.dumps({"signed": {"targets": {f"t{i}": i for i in range(200)}}}).encode()
    data = bytearray(_zip([*_members()[:2], (ROLE, role)], {ROLE: zipfile.ZIP_LZMA}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(ROLE)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    middle = start + info.compress_size // 2
    data[middle : middle + 16] = b"\xff" * 16
    # The case is the one found: zipfile itself lets lzma.LZMAError out of the read.
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive, pytest.raises(lzma.LZMAError):
        archive.read(ROLE)
    return bytes(data)


def _lzma_dictionary(size: int) -> bytes:
    """An LZMA role whose stream header (inside the member, not the ZIP headers) claims a
    ``size``-byte dictionary: zipfile's decompressor allocates it before reading a byte."""
    data = bytearray(_zip(_members(), {ROLE: zipfile.ZIP_LZMA}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(ROLE)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    # version (2 bytes), properties length (2), then lc/lp/pb (1) and the dictionary size (4)
    struct.pack_into("<I", data, start + 5, size)
    return bytes(data)


def _manifest_name_length(value: int) -> bytes:
    """The manifest's local header claims a ``value``-byte name (zipfile quotes what it read)."""
    # a large member after it, so the header read takes in all those bytes as in the finding
    data = bytearray(_bundle(None, ("release-notes.txt", b"n" * 40_000)))
    struct.pack_into("<H", data, 26, value)  # the manifest is the first local header
    return bytes(data)


CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "lzma-member-corrupt": (_corrupt_lzma_role, f"{SOURCE}: {ROLE}: {NOT_STORED % (14, 'lzma')}"),
    "lzma-dictionary-4-gib": (
        lambda: _lzma_dictionary(0xFFFF_FFFF),
        f"{SOURCE}: {ROLE}: {NOT_STORED % (14, 'lzma')}",
    ),
    "bzip2-member": (
        lambda: _zip(_members(), {IMAGE: zipfile.ZIP_BZIP2}),
        f"{SOURCE}: {IMAGE}: {NOT_STORED % (12, 'bzip2')}",
    ),
    "kind-10000-characters": (
        lambda: _bundle(_manifest(kind=LONG)),
        f"{MANIFEST}: kind: found 'xxx",
    ),
    "schema-version-10000-characters": (
        lambda: _bundle(_manifest(schema_version=LONG)),
        f"{MANIFEST}: schema_version: found 'xxx",
    ),
    "manufacturer-id-10000-characters-with-a-bin-role": (
        lambda: _bundle(_manifest(manufacturer_id=LONG, role="mfr-121D-bin-2")),
        f"{MANIFEST}: role: found 'mfr-121D-bin-2', expected a bin role of XXX",
    ),
    "local-name-length-0x7fff": (
        lambda: _manifest_name_length(0x7FFF),
        f"{SOURCE}: {MANIFEST}: unreadable (File name in directory",
    ),
    "unexpected-member-5000-characters": (
        lambda: _bundle(None, ("y" * 5000, b"")),
        f"{SOURCE}: members: found unexpected ['yyy",
    ),
    # Not found by the fuzzer (it adds a few members, not hundreds) but the same echo, read beside it.
    "duplicate-member-names-among-300-bins": (
        lambda: _bundle(
            None, (IMAGE, b"again"), *[(f"bins/mfr-121D-bin-{i:x}.json", b"{}") for i in range(300)]
        ),
        f"{SOURCE}: members: found duplicate names in [",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_fuzz_finding_is_one_short_line_naming_the_member_or_field(case: str) -> None:
    make, expected = CASES[case]
    with pytest.raises(BundleError) as raised:
        parse_bundle(make(), source=SOURCE)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: ")
    assert expected in message
    assert "\n" not in message and len(message) < 1200, len(message)


def test_a_long_declared_reason_is_cut_short_in_the_gateway_s_line() -> None:
    problems = Declaration(("CPL-0003",), LONG, ()).problems()
    assert problems == [
        f"declaration.reason: found '{'x' * 79}... (10002 characters), expected one of "
        "compliance, security"
    ]
