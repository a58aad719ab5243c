"""GBCS firmware images in the ZigBee OTA upgrade file format: a header parser and a writer.

The parser reads the header only. Images reach 10 MB (the DUIS cap is 10,240,000 octets), so the
body is never copied: callers keep the buffer and use the offsets in :class:`OtaHeader`, and
:func:`manufacturer_image_sha256` hashes a ``memoryview`` slice of it.

Layout (all integers little-endian)::

    0  4  magic 0x0BEEF11E             20 32 header string, NUL-padded
    4  2  header version 0x0100        52  4 total image size, header included
    6  2  header length                56 ..  optional fields, in this order, when their
    8  2  field control                         field-control bit is set:
    10 2  manufacturer code                     bit0 security credential version (1)
    12 2  image type                            bit1 upgrade file destination (8)
    14 4  file version                          bit2 min then max hardware version (2+2)
    18 2  stack version

After the header comes the Manufacturer Image. A supplier-signed image (what a supplier sends to an
ESME/GSME) ends with ``00 40`` and a 64-byte ECDSA P-256 signature (r||s); the CPL hash covers the
Manufacturer Image alone, so that trailer is excluded from it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from metadata_templates.errors import RejectedInputError
from metadata_templates.identifiers import fmt_u16, fmt_u32

MAGIC = 0x0BEEF11E
HEADER_VERSION = 0x0100
FIXED_HEADER_LENGTH = 56
HEADER_STRING_LENGTH = 32

FIELD_SECURITY_CREDENTIAL_VERSION = 0x0001
FIELD_UPGRADE_FILE_DESTINATION = 0x0002
FIELD_HARDWARE_VERSIONS = 0x0004
KNOWN_FIELD_CONTROL_BITS = (
    FIELD_SECURITY_CREDENTIAL_VERSION | FIELD_UPGRADE_FILE_DESTINATION | FIELD_HARDWARE_VERSIONS
)

# ZigBee reserves 0xFFC0-0xFFFF for client security credentials, configuration, logs and the
# wildcard; a firmware image must use a manufacturer-specific type.
MAX_MANUFACTURER_IMAGE_TYPE = 0xFFBF

SIGNATURE_TRAILER_TAG = b"\x00\x40"
SIGNATURE_LENGTH = 64
SIGNATURE_TRAILER_LENGTH = len(SIGNATURE_TRAILER_TAG) + SIGNATURE_LENGTH

# magic, header version, header length, field control, manufacturer code, image type,
# file version, stack version, header string, total image size
_FIXED = struct.Struct("<IHHHHHIH32sI")
assert _FIXED.size == FIXED_HEADER_LENGTH

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_UPGRADE_FILE_DESTINATION_LENGTH = 8

Buffer = bytes | bytearray | memoryview


class ImageFormatError(RejectedInputError):
    """The file is not a well-formed OTA image (the gateway's ``malformed-image``).

    Attributes:
        field: the header field that is wrong, e.g. ``"header total size"``.
        found: the value found, as text.
        expected: the value expected, as text.
    """

    def __init__(self, field: str, found: str, expected: str) -> None:
        super().__init__(f"{field}: found {found}, expected {expected}")
        self.field = field
        self.found = found
        self.expected = expected


@dataclass(frozen=True)
class OtaHeader:
    """A parsed OTA header and where the Manufacturer Image lies in the file.

    ``manufacturer_image_start`` and ``manufacturer_image_end`` are offsets into the file (end
    exclusive), so ``data[start:end]`` is the Manufacturer Image that the CPL hash covers.
    """

    header_version: int
    header_length: int
    field_control: int
    manufacturer_code: int
    image_type: int
    file_version: int
    stack_version: int
    header_string: str
    total_size: int
    security_credential_version: int | None
    upgrade_file_destination: bytes | None
    hardware_version_min: int | None
    hardware_version_max: int | None
    manufacturer_image_start: int
    manufacturer_image_end: int
    supplier_signed: bool = False

    @property
    def manufacturer_id(self) -> str:
        """Manufacturer code as 4 upper-case hex digits (the CPL Manufacturer Identifier)."""
        return fmt_u16(self.manufacturer_code)

    @property
    def image_type_hex(self) -> str:
        """Image type as 4 upper-case hex digits."""
        return fmt_u16(self.image_type)

    @property
    def firmware_version(self) -> str:
        """File version as 8 upper-case hex digits (the CPL Firmware Version)."""
        return fmt_u32(self.file_version)

    @property
    def stack_version_hex(self) -> str:
        """Stack version as 4 upper-case hex digits."""
        return fmt_u16(self.stack_version)

    @property
    def hardware_version_min_hex(self) -> str | None:
        """Minimum hardware version as 4 upper-case hex digits, or None when absent."""
        return None if self.hardware_version_min is None else fmt_u16(self.hardware_version_min)

    @property
    def hardware_version_max_hex(self) -> str | None:
        """Maximum hardware version as 4 upper-case hex digits, or None when absent."""
        return None if self.hardware_version_max is None else fmt_u16(self.hardware_version_max)

    @property
    def manufacturer_image_length(self) -> int:
        """Length in octets of the Manufacturer Image."""
        return self.manufacturer_image_end - self.manufacturer_image_start


def optional_fields_length(field_control: int) -> int:
    """Octets of optional header fields that the (known) field-control bits announce."""
    length = 0
    if field_control & FIELD_SECURITY_CREDENTIAL_VERSION:
        length += _U8.size
    if field_control & FIELD_UPGRADE_FILE_DESTINATION:
        length += _UPGRADE_FILE_DESTINATION_LENGTH
    if field_control & FIELD_HARDWARE_VERSIONS:
        length += 2 * _U16.size
    return length


def _byte_view(data: Buffer) -> memoryview:
    # A memoryview of a typed array would make len() and slicing count items, not octets.
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def parse_image(data: Buffer, *, supplier_signed: bool = False) -> OtaHeader:
    """Parse and check the OTA header of a complete image file.

    Only the header (and, when ``supplier_signed``, the 66-byte trailer) is read; the body is not
    copied.

    Args:
        data: the whole file.
        supplier_signed: the file ends with ``00 40`` and a supplier's 64-byte signature, which is
            checked for and excluded from the Manufacturer Image.

    Returns:
        The header values and the offsets of the Manufacturer Image.

    Raises:
        ImageFormatError: truncation, wrong magic or header version, unknown field-control bits,
            header length disagreeing with field control or exceeding the file, total image size
            differing from the file length, minimum hardware version above the maximum, an image
            type outside ``0x0000-0xFFBF``, or a missing supplier signature trailer.
    """
    view = _byte_view(data)
    file_length = len(view)
    if file_length < FIXED_HEADER_LENGTH:
        raise ImageFormatError(
            "file length",
            str(file_length),
            f"at least {FIXED_HEADER_LENGTH} (the fixed OTA header; the file is truncated)",
        )
    (
        magic,
        header_version,
        header_length,
        field_control,
        manufacturer_code,
        image_type,
        file_version,
        stack_version,
        raw_string,
        total_size,
    ) = _FIXED.unpack_from(view, 0)

    if magic != MAGIC:
        raise ImageFormatError(
            "magic",
            bytes(view[:4]).hex(" ").upper(),
            "1E F1 EE 0B (0x0BEEF11E, an OTA upgrade file)",
        )
    if header_version != HEADER_VERSION:
        raise ImageFormatError("header version", f"0x{header_version:04X}", "0x0100")
    unknown_bits = field_control & ~KNOWN_FIELD_CONTROL_BITS
    if unknown_bits:
        raise ImageFormatError(
            "header field control",
            f"0x{field_control:04X} (unknown bits 0x{unknown_bits:04X})",
            f"only bits 0x{KNOWN_FIELD_CONTROL_BITS:04X}",
        )
    expected_header_length = FIXED_HEADER_LENGTH + optional_fields_length(field_control)
    if header_length != expected_header_length:
        raise ImageFormatError(
            "header length",
            str(header_length),
            f"{expected_header_length} (56 + the optional fields field control "
            f"0x{field_control:04X} announces)",
        )
    if header_length > file_length:
        raise ImageFormatError(
            "header length",
            str(header_length),
            f"at most {file_length} (the file length; the file is truncated)",
        )
    if total_size != file_length:
        raise ImageFormatError(
            "header total size", str(total_size), f"{file_length} (the file length)"
        )

    offset = FIXED_HEADER_LENGTH
    security_credential_version: int | None = None
    if field_control & FIELD_SECURITY_CREDENTIAL_VERSION:
        (security_credential_version,) = _U8.unpack_from(view, offset)
        offset += _U8.size
    upgrade_file_destination: bytes | None = None
    if field_control & FIELD_UPGRADE_FILE_DESTINATION:
        upgrade_file_destination = bytes(view[offset : offset + _UPGRADE_FILE_DESTINATION_LENGTH])
        offset += _UPGRADE_FILE_DESTINATION_LENGTH
    hardware_version_min: int | None = None
    hardware_version_max: int | None = None
    if field_control & FIELD_HARDWARE_VERSIONS:
        (hardware_version_min,) = _U16.unpack_from(view, offset)
        (hardware_version_max,) = _U16.unpack_from(view, offset + _U16.size)
        offset += 2 * _U16.size
        if hardware_version_min > hardware_version_max:
            raise ImageFormatError(
                "header minimum hardware version",
                f"{hardware_version_min:04X}",
                f"at most the maximum hardware version {hardware_version_max:04X}",
            )

    if image_type > MAX_MANUFACTURER_IMAGE_TYPE:
        raise ImageFormatError(
            "header image type",
            f"{image_type:04X}",
            "a manufacturer-specific type 0000-FFBF",
        )

    end = file_length
    if supplier_signed:
        if file_length - header_length < SIGNATURE_TRAILER_LENGTH:
            raise ImageFormatError(
                "supplier signature trailer",
                f"{file_length - header_length} octets after the header",
                f"at least {SIGNATURE_TRAILER_LENGTH} (00 40 and a 64-byte signature)",
            )
        end = file_length - SIGNATURE_TRAILER_LENGTH
        tag = bytes(view[end : end + len(SIGNATURE_TRAILER_TAG)])
        if tag != SIGNATURE_TRAILER_TAG:
            raise ImageFormatError(
                "supplier signature trailer tag",
                tag.hex(" ").upper(),
                "00 40 (at 66 octets from the end of the file)",
            )

    return OtaHeader(
        header_version=header_version,
        header_length=header_length,
        field_control=field_control,
        manufacturer_code=manufacturer_code,
        image_type=image_type,
        file_version=file_version,
        stack_version=stack_version,
        # latin-1 maps every octet to one character, so no header string is unreadable and the
        # result never exceeds 32 characters.
        header_string=raw_string.rstrip(b"\x00").decode("latin-1"),
        total_size=total_size,
        security_credential_version=security_credential_version,
        upgrade_file_destination=upgrade_file_destination,
        hardware_version_min=hardware_version_min,
        hardware_version_max=hardware_version_max,
        manufacturer_image_start=header_length,
        manufacturer_image_end=end,
        supplier_signed=supplier_signed,
    )


def manufacturer_image_sha256(data: Buffer, header: OtaHeader) -> str:
    """SHA-256 of the Manufacturer Image: the CPL's hash and the one a supplier sends in SR 11.3.

    Hashes a ``memoryview`` slice, so a 10 MB image is not copied.

    Args:
        data: the same file ``header`` was parsed from.
        header: the result of :func:`parse_image` on ``data``.

    Returns:
        64 lower-case hex digits.

    Raises:
        ImageFormatError: ``data`` is not the file ``header`` was parsed from (its length differs).
    """
    view = _byte_view(data)
    if len(view) != header.total_size:
        raise ImageFormatError(
            "file length", str(len(view)), f"{header.total_size} (the parsed header's total size)"
        )
    digest = hashlib.sha256(view[header.manufacturer_image_start : header.manufacturer_image_end])
    return digest.hexdigest()


def _check_range(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name}: found {value}, expected 0..0x{maximum:X}")


def build_image(
    *,
    manufacturer_code: int,
    image_type: int,
    file_version: int,
    body: bytes,
    stack_version: int = 2,
    header_string: str = "",
    hardware_versions: tuple[int, int] | None = (0x0000, 0xFFFF),
    security_credential_version: int | None = None,
    upgrade_file_destination: bytes | None = None,
    supplier_signature: bytes | None = None,
) -> bytes:
    """Write an OTA image that :func:`parse_image` accepts (for tests, benchmarks and the demo).

    Args:
        manufacturer_code: ZigBee manufacturer code, 0..0xFFFF.
        image_type: manufacturer-specific image type, 0..0xFFBF.
        file_version: the firmware version, 0..0xFFFFFFFF.
        body: the Manufacturer Image.
        stack_version: ZigBee stack version (2 is ZigBee PRO).
        header_string: at most 32 latin-1 characters, not ending in NUL (padding would eat it).
        hardware_versions: (minimum, maximum), or None to leave the optional field out.
        security_credential_version: one octet, or None to leave the optional field out.
        upgrade_file_destination: 8 octets (an EUI-64), or None to leave the optional field out.
        supplier_signature: a 64-byte signature to append after ``00 40``, as a supplier would;
            parse the result with ``supplier_signed=True``.

    Returns:
        The complete file.

    Raises:
        ValueError: a value does not fit its field.
    """
    _check_range("manufacturer code", manufacturer_code, 0xFFFF)
    _check_range("image type", image_type, MAX_MANUFACTURER_IMAGE_TYPE)
    _check_range("file version", file_version, 0xFFFFFFFF)
    _check_range("stack version", stack_version, 0xFFFF)
    try:
        raw_string = header_string.encode("latin-1")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"header string: found {header_string!r}, expected latin-1 characters"
        ) from e
    if len(raw_string) > HEADER_STRING_LENGTH or raw_string.endswith(b"\x00"):
        raise ValueError(
            f"header string: found {header_string!r}, "
            "expected at most 32 characters and no trailing NUL"
        )

    field_control = 0
    optional = bytearray()
    if security_credential_version is not None:
        _check_range("security credential version", security_credential_version, 0xFF)
        field_control |= FIELD_SECURITY_CREDENTIAL_VERSION
        optional += _U8.pack(security_credential_version)
    if upgrade_file_destination is not None:
        if len(upgrade_file_destination) != _UPGRADE_FILE_DESTINATION_LENGTH:
            raise ValueError(
                "upgrade file destination: "
                f"found {len(upgrade_file_destination)} octets, expected 8"
            )
        field_control |= FIELD_UPGRADE_FILE_DESTINATION
        optional += upgrade_file_destination
    if hardware_versions is not None:
        low, high = hardware_versions
        _check_range("minimum hardware version", low, 0xFFFF)
        _check_range("maximum hardware version", high, 0xFFFF)
        if low > high:
            raise ValueError(
                f"hardware versions: found {low:04X} > {high:04X}, expected min <= max"
            )
        field_control |= FIELD_HARDWARE_VERSIONS
        optional += _U16.pack(low) + _U16.pack(high)

    trailer = b""
    if supplier_signature is not None:
        if len(supplier_signature) != SIGNATURE_LENGTH:
            raise ValueError(
                f"supplier signature: found {len(supplier_signature)} octets, expected 64"
            )
        trailer = SIGNATURE_TRAILER_TAG + supplier_signature

    header_length = FIXED_HEADER_LENGTH + len(optional)
    total_size = header_length + len(body) + len(trailer)
    _check_range("total image size", total_size, 0xFFFFFFFF)
    fixed = _FIXED.pack(
        MAGIC,
        HEADER_VERSION,
        header_length,
        field_control,
        manufacturer_code,
        image_type,
        file_version,
        stack_version,
        raw_string,  # struct pads a short bytes value with NULs to 32
        total_size,
    )
    return b"".join((fixed, optional, body, trailer))
