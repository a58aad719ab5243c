"""How the signed TUF timestamp binds the log's checkpoint: an unrecognised field of its signed part,
``"x-cfl-log": {"origin", "size", "root_hash" (hex), "vkey"}``. TUF gives the binding freshness
and rollback protection; the checkpoint itself stays a plain C2SP note any tool can verify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metadata_templates.errors import VerificationError
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.note import NoteVerifier, parse_vkey

TIMESTAMP_FIELD = "x-cfl-log"


@dataclass(frozen=True)
class LogBinding:
    """What a verified timestamp says the log's current checkpoint is."""

    origin: str
    size: int
    root_hash: bytes
    vkey: str

    def to_field(self) -> dict[str, Any]:
        return {
            TIMESTAMP_FIELD: {
                "origin": self.origin,
                "size": self.size,
                "root_hash": self.root_hash.hex(),
                "vkey": self.vkey,
            }
        }

    @property
    def verifier(self) -> NoteVerifier:
        return parse_vkey(self.vkey)

    def check(self, checkpoint: Checkpoint) -> None:
        """Raises:
        VerificationError: the checkpoint is not the one the timestamp binds."""
        found = (checkpoint.origin, checkpoint.size, checkpoint.root_hash.hex())
        wanted = (self.origin, self.size, self.root_hash.hex())
        if found != wanted:
            raise VerificationError(
                f"log/checkpoint: found (origin, size, root) {found}, expected {wanted} as bound "
                "by the signed timestamp"
            )


def read_binding(unrecognized_fields: Mapping[str, Any] | None) -> LogBinding | None:
    """The binding in a timestamp's unrecognised fields, or None when it has none.

    Raises:
        VerificationError: the field is present but malformed.
    """
    field = (unrecognized_fields or {}).get(TIMESTAMP_FIELD)
    if field is None:
        return None
    try:
        binding = LogBinding(
            origin=str(field["origin"]),
            size=int(field["size"]),
            root_hash=bytes.fromhex(str(field["root_hash"])),
            vkey=str(field["vkey"]),
        )
        binding.verifier  # noqa: B018  (fail here on a malformed vkey)
    except (KeyError, TypeError, ValueError) as e:
        raise VerificationError(
            f"timestamp {TIMESTAMP_FIELD}: found {field!r}, expected origin, size, root_hash, vkey"
        ) from e
    return binding
