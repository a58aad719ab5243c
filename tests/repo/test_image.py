"""The OTA image parser: the DCC's sample layout, round trips, every rejection with its message."""

from __future__ import annotations

import contextlib
import hashlib
import struct
import tracemalloc
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metadata_templates.errors import RejectedInputError
from repo_tool.intake.image import (
    ImageFormatError,
    OtaHeader,
    build_image,
    manufacturer_image_sha256,
    parse_image,
)

SIGNATURE = bytes(range(64))


def dcc_sample(body: bytes) -> bytes:
    """The DCC's public sample layout, written out by hand rather than with build_image."""
    header = (
        bytes.fromhex("1EF1EE0B")  # magic
        + bytes.fromhex("0001")  # header version 0x0100
        + bytes.fromhex("3C00")  # header length 60
        + bytes.fromhex("0400")  # field control: hardware versions present
        + bytes.fromhex("1D12")  # manufacturer code 0x121D
        + bytes.fromhex("0A01")  # image type 0x010A
        + bytes.fromhex("DCACDCAC")  # file version 0xACDCACDC
        + bytes.fromhex("0200")  # stack version 2
        + b"GBCS sample".ljust(32, b"\x00")
        + struct.pack("<I", 60 + len(body))
        + bytes.fromhex("1111")  # min hardware version 0x1111
        + bytes.fromhex("1211")  # max hardware version 0x1112
    )
    assert len(header) == 60
    return header + body


def test_dcc_sample_layout_parses_to_the_expected_fields() -> None:
    body = b"\xaa" * 300
    data = dcc_sample(body)

    header = parse_image(data)

    assert header == OtaHeader(
        header_version=0x0100,
        header_length=60,
        field_control=0x0004,
        manufacturer_code=0x121D,
        image_type=0x010A,
        file_version=0xACDCACDC,
        stack_version=2,
        header_string="GBCS sample",
        total_size=360,
        security_credential_version=None,
        upgrade_file_destination=None,
        hardware_version_min=0x1111,
        hardware_version_max=0x1112,
        manufacturer_image_start=60,
        manufacturer_image_end=360,
    )
    assert header.manufacturer_id == "121D"
    assert header.image_type_hex == "010A"
    assert header.firmware_version == "ACDCACDC"
    assert header.stack_version_hex == "0002"
    assert header.hardware_version_min_hex == "1111"
    assert header.hardware_version_max_hex == "1112"
    assert header.manufacturer_image_length == 300
    assert manufacturer_image_sha256(data, header) == hashlib.sha256(body).hexdigest()


def test_build_image_writes_the_dcc_sample_layout_byte_for_byte() -> None:
    body = b"\xaa" * 300
    built = build_image(
        manufacturer_code=0x121D,
        image_type=0x010A,
        file_version=0xACDCACDC,
        body=body,
        header_string="GBCS sample",
        hardware_versions=(0x1111, 0x1112),
    )
    assert built == dcc_sample(body)


def test_hex_properties_are_none_without_hardware_versions() -> None:
    header = parse_image(
        build_image(
            manufacturer_code=1, image_type=2, file_version=3, body=b"x", hardware_versions=None
        )
    )
    assert header.hardware_version_min is None
    assert header.hardware_version_min_hex is None
    assert header.hardware_version_max_hex is None
    assert (header.manufacturer_id, header.image_type_hex, header.firmware_version) == (
        "0001",
        "0002",
        "00000003",
    )


def test_image_format_error_is_a_rejected_input_error_with_its_parts() -> None:
    with pytest.raises(ImageFormatError) as info:
        parse_image(b"")
    assert isinstance(info.value, RejectedInputError)
    assert info.value.field == "file length"
    assert info.value.found == "0"
    assert info.value.expected.startswith("at least 56")


@dataclass(frozen=True)
class Header:
    """What a test asks build_image for; hypothesis draws these."""

    manufacturer_code: int
    image_type: int
    file_version: int
    stack_version: int
    header_string: str
    hardware_versions: tuple[int, int] | None
    security_credential_version: int | None
    upgrade_file_destination: bytes | None
    body: bytes


u16 = st.integers(0, 0xFFFF)


@st.composite
def headers(draw: st.DrawFn) -> Header:
    hardware = draw(st.none() | st.tuples(u16, u16).map(lambda t: (min(t), max(t))))
    return Header(
        manufacturer_code=draw(u16),
        image_type=draw(st.integers(0, 0xFFBF)),
        file_version=draw(st.integers(0, 0xFFFFFFFF)),
        stack_version=draw(u16),
        # any octet but a trailing NUL survives (latin-1 maps octets to characters one to one)
        header_string=draw(
            st.binary(max_size=32)
            .filter(lambda b: not b.endswith(b"\x00"))
            .map(lambda b: b.decode("latin-1"))
        ),
        hardware_versions=hardware,
        security_credential_version=draw(st.none() | st.integers(0, 0xFF)),
        upgrade_file_destination=draw(st.none() | st.binary(min_size=8, max_size=8)),
        body=draw(st.binary(max_size=200)),
    )


def build(h: Header, **extra: bytes) -> bytes:
    return build_image(
        manufacturer_code=h.manufacturer_code,
        image_type=h.image_type,
        file_version=h.file_version,
        body=h.body,
        stack_version=h.stack_version,
        header_string=h.header_string,
        hardware_versions=h.hardware_versions,
        security_credential_version=h.security_credential_version,
        upgrade_file_destination=h.upgrade_file_destination,
        **extra,
    )


@given(headers(), st.booleans())
def test_build_then_parse_round_trips_every_field_control_combination(
    h: Header, signed: bool
) -> None:
    extra = {"supplier_signature": SIGNATURE} if signed else {}
    data = build(h, **extra)

    header = parse_image(data, supplier_signed=signed)

    expected_control = (
        (h.security_credential_version is not None) * 1
        | (h.upgrade_file_destination is not None) * 2
        | (h.hardware_versions is not None) * 4
    )
    assert header.field_control == expected_control
    assert header.header_length == 56 + (expected_control & 1) + 8 * bool(expected_control & 2) + (
        4 * bool(expected_control & 4)
    )
    assert header.manufacturer_code == h.manufacturer_code
    assert header.image_type == h.image_type
    assert header.file_version == h.file_version
    assert header.stack_version == h.stack_version
    assert header.header_string == h.header_string
    assert header.total_size == len(data)
    assert header.security_credential_version == h.security_credential_version
    assert header.upgrade_file_destination == h.upgrade_file_destination
    low, high = h.hardware_versions or (None, None)
    assert (header.hardware_version_min, header.hardware_version_max) == (low, high)
    span = data[header.manufacturer_image_start : header.manufacturer_image_end]
    assert span == h.body
    assert manufacturer_image_sha256(data, header) == hashlib.sha256(h.body).hexdigest()


@given(headers(), st.data())
def test_any_truncation_raises_image_format_error(h: Header, data: st.DataObject) -> None:
    image = build(h)
    cut = data.draw(st.integers(0, len(image) - 1), label="cut")
    with pytest.raises(ImageFormatError):
        parse_image(image[:cut])


# header length (6-7), field control (8-9), total image size (52-55)
LENGTH_FIELD_OFFSETS = [6, 7, 8, 9, 52, 53, 54, 55]


@given(headers(), st.sampled_from(LENGTH_FIELD_OFFSETS), st.integers(1, 255))
def test_any_single_byte_corruption_of_a_length_field_raises_image_format_error(
    h: Header, offset: int, xor: int
) -> None:
    image = bytearray(build(h))
    image[offset] ^= xor
    with pytest.raises(ImageFormatError):
        parse_image(bytes(image))


@given(headers(), st.integers(0, 0xFF))
def test_any_corruption_of_the_magic_raises_image_format_error(h: Header, value: int) -> None:
    image = bytearray(build(h))
    if image[0] == value:
        value ^= 1
    image[0] = value
    with pytest.raises(ImageFormatError, match="magic"):
        parse_image(bytes(image))


@settings(max_examples=500)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_raise_nothing_but_image_format_error(data: bytes, signed: bool) -> None:
    with contextlib.suppress(ImageFormatError):
        assert isinstance(parse_image(data, supplier_signed=signed), OtaHeader)


@settings(max_examples=500)
@given(
    headers(),
    st.lists(st.tuples(st.integers(0, 71), st.integers(0, 255)), min_size=1, max_size=4),
    st.booleans(),
)
def test_random_header_mutations_raise_nothing_but_image_format_error(
    h: Header, writes: list[tuple[int, int]], signed: bool
) -> None:
    # Random data almost never gets past the magic; mutating a valid header reaches every check.
    image = bytearray(build(h))
    for offset, value in writes:
        if offset < len(image):
            image[offset] = value
    with contextlib.suppress(ImageFormatError):
        assert isinstance(parse_image(bytes(image), supplier_signed=signed), OtaHeader)


def good(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "manufacturer_code": 0x121D,
        "image_type": 0x0001,
        "file_version": 0x01020304,
        "body": b"\x55" * 100,
        "hardware_versions": (0x1111, 0x1112),
    }
    fields.update(changes)
    return build_image(**fields)  # type: ignore[arg-type]


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


SIXTY = good()  # 60-byte header + 100-byte body = 160 octets

BAD_IMAGES = [
    pytest.param(SIXTY[:55], "file length", "55", "at least 56", id="shorter-than-fixed-header"),
    pytest.param(b"", "file length", "0", "at least 56", id="empty-file"),
    pytest.param(
        patched(SIXTY, 0, "<I", 0x0BEEF11F),
        "magic",
        "1F F1 EE 0B",
        "1E F1 EE 0B",
        id="bad-magic",
    ),
    pytest.param(
        patched(SIXTY, 4, "<H", 0x0200), "header version", "0x0200", "0x0100", id="header-version"
    ),
    pytest.param(
        patched(SIXTY, 8, "<H", 0x0014),
        "header field control",
        "0x0014 (unknown bits 0x0010)",
        "only bits 0x0007",
        id="unknown-field-control-bit",
    ),
    pytest.param(
        patched(SIXTY, 6, "<H", 56),
        "header length",
        "56",
        "60 (56 + the optional fields field control 0x0004 announces)",
        id="header-length-disagrees-with-field-control",
    ),
    pytest.param(
        patched(SIXTY, 8, "<H", 0x0005),
        "header length",
        "60",
        "61 (56 + the optional fields field control 0x0005 announces)",
        id="field-control-disagrees-with-header-length",
    ),
    pytest.param(
        SIXTY[:58],
        "header length",
        "60",
        "at most 58 (the file length; the file is truncated)",
        id="header-longer-than-file",
    ),
    pytest.param(
        patched(SIXTY, 52, "<I", 161),
        "header total size",
        "161",
        "160 (the file length)",
        id="total-size-above-file-length",
    ),
    pytest.param(
        SIXTY[:-1],
        "header total size",
        "160",
        "159 (the file length)",
        id="truncated-body",
    ),
    pytest.param(
        SIXTY + b"\x00",
        "header total size",
        "160",
        "161 (the file length)",
        id="trailing-garbage",
    ),
    pytest.param(
        patched(SIXTY, 56, "<H", 0x1113),
        "header minimum hardware version",
        "1113",
        "at most the maximum hardware version 1112",
        id="min-hardware-above-max",
    ),
    pytest.param(
        patched(SIXTY, 12, "<H", 0xFFC0),
        "header image type",
        "FFC0",
        "a manufacturer-specific type 0000-FFBF",
        id="reserved-image-type",
    ),
]


@pytest.mark.parametrize(("data", "field", "found", "expected"), BAD_IMAGES)
def test_bad_image_is_rejected_naming_field_found_and_expected(
    data: bytes, field: str, found: str, expected: str
) -> None:
    with pytest.raises(ImageFormatError) as info:
        parse_image(data)
    assert info.value.field == field
    assert info.value.found == found
    assert info.value.expected.startswith(expected)
    assert str(info.value).startswith(f"{field}: found {found}, expected {expected}")


def test_total_size_message_has_the_house_form() -> None:
    with pytest.raises(ImageFormatError) as info:
        parse_image(good(body=b"\x00" * 300) + b"\x00")
    assert str(info.value) == "header total size: found 360, expected 361 (the file length)"


def test_supplier_signed_trailer_is_excluded_from_the_manufacturer_image() -> None:
    body = b"firmware" * 20
    data = good(body=body, supplier_signature=SIGNATURE)
    header = parse_image(data, supplier_signed=True)
    assert header.supplier_signed
    assert header.manufacturer_image_end == len(data) - 66
    assert data[header.manufacturer_image_end :] == b"\x00\x40" + SIGNATURE
    assert manufacturer_image_sha256(data, header) == hashlib.sha256(body).hexdigest()


def test_unsigned_parse_of_a_signed_file_keeps_the_trailer_in_the_span() -> None:
    data = good(body=b"abc", supplier_signature=SIGNATURE)
    header = parse_image(data)
    assert header.manufacturer_image_end == len(data)


@pytest.mark.parametrize(
    ("data", "field", "found"),
    [
        pytest.param(
            good(body=b"\x01" * 100), "supplier signature trailer tag", "01 01", id="no-tag"
        ),
        pytest.param(
            good(body=b"\x00" * 65),
            "supplier signature trailer",
            "65 octets after the header",
            id="too-short-for-trailer",
        ),
    ],
)
def test_supplier_signed_without_trailer_is_rejected(data: bytes, field: str, found: str) -> None:
    with pytest.raises(ImageFormatError) as info:
        parse_image(data, supplier_signed=True)
    assert info.value.field == field
    assert info.value.found == found


def test_header_string_keeps_any_octet_and_strips_only_nul_padding() -> None:
    text = bytes([0x7F, 0x80, 0xFF, 0x00, 0x41]).decode("latin-1")
    header = parse_image(good(header_string=text))
    assert header.header_string == text
    assert len(parse_image(good(header_string="x" * 32)).header_string) == 32


def test_parse_accepts_a_memoryview() -> None:
    data = good()
    assert parse_image(memoryview(data)) == parse_image(data)


def test_sha256_refuses_a_buffer_the_header_was_not_parsed_from() -> None:
    header = parse_image(good())
    with pytest.raises(ImageFormatError, match="file length: found 159"):
        manufacturer_image_sha256(good()[:-1], header)


def test_ten_megabyte_image_is_parsed_and_hashed_without_copying_the_body() -> None:
    body = bytes(10_240_000 - 60)
    data = good(body=body)
    tracemalloc.start()
    try:
        header = parse_image(data)
        digest = manufacturer_image_sha256(data, header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(body).hexdigest()
    assert peak < 100_000, f"peak allocation {peak} octets: the body was copied"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"manufacturer_code": 0x10000}, "manufacturer code", id="mfr-code-too-big"),
        pytest.param({"image_type": 0xFFC0}, "image type", id="reserved-image-type"),
        pytest.param({"file_version": -1}, "file version", id="negative-file-version"),
        pytest.param({"header_string": "x" * 33}, "header string", id="header-string-too-long"),
        pytest.param({"header_string": "ab\x00"}, "header string", id="trailing-nul"),
        pytest.param({"header_string": "€"}, "header string", id="not-latin-1"),
        pytest.param({"hardware_versions": (2, 1)}, "hardware versions", id="min-above-max"),
        pytest.param(
            {"upgrade_file_destination": b"1234567"}, "upgrade file destination", id="short-eui64"
        ),
        pytest.param(
            {"security_credential_version": 256}, "security credential version", id="scv-too-big"
        ),
        pytest.param({"supplier_signature": b"x" * 63}, "supplier signature", id="short-signature"),
    ],
)
def test_build_image_refuses_values_that_do_not_fit(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        good(**changes)
