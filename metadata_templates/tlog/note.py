"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and Ed25519 checkpoint cosignatures
(c2sp.org/tlog-cosignature, ``cosignature/v1``).

A note is a UTF-8 text ending in a newline, a blank line, and signature lines
``— <key name> base64(key ID || signature)``. A verifier key ("vkey") is
``<name>+<hex key ID>+base64(type || public key)``; the key ID is the first four bytes of
SHA-256(name || 0x0A || type || public key). Signatures by keys a verifier does not know are
ignored; a signature by a known key that does not verify rejects the note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from metadata_templates.errors import VerificationError

TYPE_ED25519 = 0x01
TYPE_COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "
_MAX_SIGNATURES = 100
_COSIGNATURE_HEADER = b"cosignature/v1\n"


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValueError(f"key name: found {name!r}, expected non-empty, no spaces and no '+'")


def _raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """A public key that verifies one kind of signature line (log note or cosignature)."""

    name: str
    sig_type: int
    public_key: bytes  # 32-byte Ed25519 key

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, self.public_key)

    @property
    def vkey(self) -> str:
        """The C2SP verifier key text."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verifies(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without key ID) is this key's over ``text``."""
        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        if self.sig_type == TYPE_COSIGNATURE_V1:
            if len(signature) != 8 + 64:
                return False
            message = cosigned_message(text, int.from_bytes(signature[:8], "big"))
            signature = signature[8:]
        else:
            message = text
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_vkey(text: str) -> NoteVerifier:
    """Parse ``name+keyid+base64`` (signature types 0x01 and 0x04, Ed25519).

    Raises:
        ValueError: malformed, unsupported type, or the key ID does not match the key.
    """
    parts = text.strip().split("+", 2)  # base64 may contain "+", the name may not
    if len(parts) != 3:
        raise ValueError(f"vkey: found {text!r}, expected <name>+<hex key id>+<base64 key>")
    name, hex_id, material = parts
    _check_name(name)
    try:
        raw = base64.b64decode(material, validate=True)
        wanted = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"vkey {text!r}: not hex and base64 ({e})") from e
    if len(raw) != 33 or raw[0] not in (TYPE_ED25519, TYPE_COSIGNATURE_V1):
        raise ValueError(
            f"vkey {name}: found type 0x{raw[:1].hex() or '??'} with {len(raw) - 1} key bytes, "
            "expected 0x01 (Ed25519 note) or 0x04 (Ed25519 cosignature) with 32"
        )
    verifier = NoteVerifier(name, raw[0], raw[1:])
    if len(wanted) != 4 or verifier.key_id != wanted:
        raise ValueError(
            f"vkey {name}: key ID found {hex_id!r}, expected {verifier.key_id.hex()!r} for this key"
        )
    return verifier


@dataclass(frozen=True)
class NoteSigner:
    """An Ed25519 private key that signs notes (0x01) or cosignatures (0x04) under ``name``."""

    name: str
    private_key: Ed25519PrivateKey
    sig_type: int = TYPE_ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.sig_type, _raw_public(self.private_key.public_key()))

    def signature_line(self, text: bytes, *, timestamp: int = 0) -> str:
        """One ``— name base64(keyid || sig)`` line (without its newline). ``timestamp`` (POSIX
        seconds) is only used by cosignatures."""
        if self.sig_type == TYPE_COSIGNATURE_V1:
            body = timestamp.to_bytes(8, "big") + self.private_key.sign(
                cosigned_message(text, timestamp)
            )
        else:
            body = self.private_key.sign(text)
        blob = base64.b64encode(self.verifier.key_id + body).decode()
        return f"{_DASH}{self.name} {blob}"


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header, ``time <T>`` and the whole checkpoint text."""
    return _COSIGNATURE_HEADER + f"time {timestamp}\n".encode() + text


@dataclass(frozen=True)
class SignatureLine:
    """One parsed signature line."""

    name: str
    key_id: bytes
    signature: bytes
    line: str


@dataclass(frozen=True)
class Note:
    """A parsed (not yet verified) signed note."""

    text: bytes
    signatures: tuple[SignatureLine, ...]

    def to_bytes(self) -> bytes:
        lines = "".join(s.line + "\n" for s in self.signatures)
        return self.text + b"\n" + lines.encode()

    def with_lines(self, lines: Iterable[SignatureLine]) -> Note:
        """This note with extra signature lines (a line already present is not repeated)."""
        merged = list(self.signatures)
        for line in lines:
            if all(line.line != s.line for s in merged):
                merged.append(line)
        return Note(self.text, tuple(merged))


def sign_note(text: bytes, signers: Sequence[NoteSigner], *, timestamp: int = 0) -> Note:
    """Sign ``text`` (which must end in a newline) with each signer."""
    if not text.endswith(b"\n"):
        raise ValueError("note text must end with a newline")
    return parse_note(
        text
        + b"\n"
        + "".join(s.signature_line(text, timestamp=timestamp) + "\n" for s in signers).encode()
    )


def parse_note(data: bytes) -> Note:
    """Split a signed note into its text and signature lines.

    Raises:
        VerificationError: not UTF-8, no blank line before the signatures, or a malformed line.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VerificationError(f"signed note: not UTF-8 ({e.reason} at byte {e.start})") from e
    split = data.rfind(b"\n\n")
    if split < 0 or not data.endswith(b"\n"):
        raise VerificationError(
            "signed note: found no blank line before the signature lines, expected "
            "text, a blank line, then '— name signature' lines"
        )
    text, block = data[: split + 1], data[split + 2 :]
    lines = block.decode().split("\n")[:-1]
    if not lines or len(lines) > _MAX_SIGNATURES:
        raise VerificationError(
            f"signed note: found {len(lines)} signature lines, expected 1..{_MAX_SIGNATURES}"
        )
    parsed = []
    for line in lines:
        if not line.startswith(_DASH) or line.count(" ") != 2:
            raise VerificationError(f"signed note: malformed signature line {line[:60]!r}")
        name, blob = line[len(_DASH) :].split(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error as e:
            raise VerificationError(f"signed note: signature by {name!r} is not base64") from e
        if len(raw) < 5 or not name:
            raise VerificationError(f"signed note: signature by {name!r} is too short")
        parsed.append(SignatureLine(name, raw[:4], raw[4:], line))
    return Note(text, tuple(parsed))


def verified_by(note: Note, verifiers: Iterable[NoteVerifier]) -> list[NoteVerifier]:
    """The verifiers whose signatures on ``note`` are present and valid.

    Raises:
        VerificationError: a line matches a known verifier's name and key ID but its signature is
            invalid (C2SP: such a note must be rejected, not merely have the line ignored).
    """
    known = {(v.name, v.key_id): v for v in verifiers}
    good: list[NoteVerifier] = []
    for line in note.signatures:
        verifier = known.get((line.name, line.key_id))
        if verifier is None:
            continue
        if not verifier.verifies(note.text, line.signature):
            raise VerificationError(
                f"signed note: the signature by {line.name} (key ID {line.key_id.hex()}) does not "
                "verify over the note text"
            )
        if verifier not in good:
            good.append(verifier)
    return good


def open_note(data: bytes, verifier: NoteVerifier) -> Note:
    """Parse a note and require a valid signature by ``verifier``.

    Raises:
        VerificationError: malformed, or not signed by ``verifier``.
    """
    note = parse_note(data)
    if verifier not in verified_by(note, [verifier]):
        names = sorted({s.name for s in note.signatures})
        raise VerificationError(
            f"signed note: found signatures by {names}, expected one by {verifier.vkey}"
        )
    return note


def cosignature_time(line: SignatureLine) -> int:
    """The POSIX timestamp a cosignature line carries."""
    return int.from_bytes(line.signature[:8], "big")
