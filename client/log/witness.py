"""`cfl witness`: an independent witness of a library's transparency log (C2SP tlog-cosignature).

A witness keeps the last checkpoint it cosigned. Given a newer one it checks the log's signature,
proves consistency from its own checkpoint with the served tiles, and only then cosigns
(``cosignature/v1``, Ed25519). It never cosigns two different trees of the same size, so a provider
showing different logs to different clients is caught by any client that requires its cosignature.

State folder: ``witness.json`` (name, the log's vkey), ``witness.pem`` (0600), ``checkpoint`` (the
last checkpoint cosigned), ``evidence/`` (kept when the log is inconsistent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client.log.transparency import REPORT_TO, Fetch, consistency
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import ConfigurationError, VerificationError
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.note import (
    TYPE_COSIGNATURE_V1,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_note,
    parse_vkey,
)

CONFIG = "witness.json"
KEY = "witness.pem"


@dataclass(frozen=True)
class CosignResult:
    """One cosigning: the checkpoint and the note with the witness's line added."""

    checkpoint: Checkpoint
    previous_size: int | None
    cosigned: bytes


class Witness:
    """A witness's state folder."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def init(self, name: str, log_vkey: str) -> NoteVerifier:
        """Create the witness key and remember which log it witnesses. Returns its vkey.

        Raises:
            ConfigurationError: the folder holds a witness already, or a bad name or vkey.
        """
        if (self.state / CONFIG).exists():
            raise ConfigurationError(
                f"{self.state}: a witness already; refusing to replace its key"
            )
        try:
            log = parse_vkey(log_vkey)
            signer = NoteSigner(name, Ed25519PrivateKey.generate(), TYPE_COSIGNATURE_V1)
        except ValueError as e:
            raise ConfigurationError(str(e)) from e
        if log.sig_type != 0x01:
            raise ConfigurationError(
                f"--log-vkey: found type 0x{log.sig_type:02x}, expected a log's Ed25519 (0x01) vkey"
            )
        pem = signer.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write_bytes(self.state / KEY, pem, mode=0o600)
        doc = {"schema_version": 1, "name": name, "log_vkey": log.vkey}
        atomic_write_bytes(self.state / CONFIG, json.dumps(doc, indent=1).encode() + b"\n")
        return signer.verifier

    def _load(self) -> tuple[NoteSigner, NoteVerifier]:
        try:
            doc = json.loads((self.state / CONFIG).read_bytes())
            private = serialization.load_pem_private_key((self.state / KEY).read_bytes(), None)
            log = parse_vkey(str(doc["log_vkey"]))
            name = str(doc["name"])
        except FileNotFoundError as e:
            raise ConfigurationError(
                f"{self.state}: not a witness ({e.filename} missing); run `cfl witness init` first"
            ) from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(f"{self.state}: unreadable witness state ({e})") from e
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigurationError(f"{self.state / KEY}: expected an Ed25519 key")
        return NoteSigner(name, private, TYPE_COSIGNATURE_V1), log

    def vkey(self) -> str:
        return self._load()[0].verifier.vkey

    def cosign(self, fetch: Fetch, *, now: datetime) -> CosignResult:
        """Verify the served checkpoint against the last one cosigned, then cosign it.

        Raises:
            VerificationError: bad log signature or an inconsistent log (evidence is kept).
            UnavailableError: the checkpoint or a tile could not be fetched.
        """
        signer, log = self._load()
        data = fetch("log/checkpoint")
        note = open_note(data, log)
        new = Checkpoint.from_text(note.text)
        previous_size = None
        stored = self.state / "checkpoint"
        if stored.exists():
            old = Checkpoint.from_text(parse_note(stored.read_bytes()).text)
            previous_size = old.size
            try:
                consistency(old, new, fetch)
            except VerificationError as e:
                folder = self.state / "evidence" / now.strftime("%Y%m%dT%H%M%SZ")
                atomic_write_bytes(folder / "trusted-checkpoint", stored.read_bytes())
                atomic_write_bytes(folder / "offered-checkpoint", data)
                raise VerificationError(
                    f"transparency log is INCONSISTENT: {e}; not cosigning",
                    hint=f"report it to {REPORT_TO}: {folder}",
                ) from e
        line = signer.signature_line(note.text, timestamp=int(now.timestamp()))
        cosigned = note.with_lines(parse_note(note.text + b"\n" + line.encode() + b"\n").signatures)
        if previous_size is None or new.size >= previous_size:
            atomic_write_bytes(stored, note.to_bytes())
        return CosignResult(new, previous_size, cosigned.to_bytes())
