"""C2SP tlog-checkpoint: the note text ``<origin>\\n<size>\\n<base64 root>\\n[extension lines]``."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from metadata_templates.errors import VerificationError
from metadata_templates.tlog.merkle import HASH_SIZE


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, size, root hash (and opaque extension lines)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def to_text(self) -> bytes:
        """The note text to sign."""
        if (
            not self.origin
            or "\n" in self.origin
            or any("\n" in e or not e for e in self.extensions)
        ):
            raise ValueError(
                "checkpoint: origin and extension lines must be non-empty single lines"
            )
        if self.size < 0 or len(self.root_hash) != HASH_SIZE:
            raise ValueError("checkpoint: size must be >= 0 and the root 32 bytes")
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return ("\n".join([*lines, *self.extensions]) + "\n").encode()

    @classmethod
    def from_text(cls, text: bytes) -> Checkpoint:
        """Parse a checkpoint's note text.

        Raises:
            VerificationError: not three or more lines, a size with leading zeros or not decimal,
                or a root that is not 32 base64-encoded bytes.
        """
        lines = text.decode("utf-8", "replace").split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise VerificationError(
                f"checkpoint: found {len(lines) - 1} line(s), expected origin, size, root hash"
            )
        origin, size_text, root_text, *extensions = lines[:-1]
        if not origin:
            raise VerificationError("checkpoint: empty origin line")
        if not size_text.isdecimal() or (size_text != "0" and size_text.startswith("0")):
            raise VerificationError(
                f"checkpoint: size found {size_text!r}, expected a decimal without leading zeros"
            )
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error as e:
            raise VerificationError(f"checkpoint: root hash {root_text!r} is not base64") from e
        if len(root) != HASH_SIZE:
            raise VerificationError(
                f"checkpoint: root hash found {len(root)} bytes, expected {HASH_SIZE}"
            )
        return cls(origin, int(size_text), root, tuple(extensions))
