"""The provider's side of the transparency log: appending lodged events inside the repository's
commit, signing checkpoints with the log key, and publishing the tiles.

Layout under ``R/state/log/`` (the same as the published ``log/``)::

    tile/<L>/<N>[.p/<W>]         hash tiles (C2SP tlog-tiles)
    tile/entries/<N>[.p/<W>]     entry bundles: one canonical JSON event per entry
    checkpoints/<size>           the signed checkpoint (and any cosignatures) for that size

Crash safety: the head (``state/head.json``) records the committed size and root. A tile or index
file for a size beyond it is an orphan of an interrupted command; the next append writes the same
paths again (atomically), and publishing copies only what the committed size refers to (the
published ``cfl-index/<sha256>`` files, each deposit's log index, are derived from committed entries). A file the
committed size refers to is never written again, because an append only writes tiles that lie
beyond the current size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    UnavailableError,
    VerificationError,
)
from metadata_templates.tlog import events
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.binding import LogBinding, read_binding
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.merkle import EMPTY_ROOT
from metadata_templates.tlog.note import (
    NoteSigner,
    NoteVerifier,
    parse_note,
    sign_note,
    verified_by,
)
from metadata_templates.tlog.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileId,
    decode_bundle,
    tiles_added,
)
from repo_tool.tlog.partial_tiles import prune_after_publish

LOG_DIR = Path("state") / "log"
INDEX_DIR = "cfl-index"
CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class LogState:
    """What the head records about the log: its size and root hash."""

    size: int = 0
    root_hash: bytes = EMPTY_ROOT


@dataclass(frozen=True)
class LogKeyConfig:
    """The ``"log"`` section of cfl-repo.json: the log's origin and its note key (PEM file)."""

    origin: str
    key: str  # PEM path, relative to the repository or absolute (encrypted: asks for a passphrase)
    vkey: str

    def to_dict(self) -> dict[str, str]:
        return {"origin": self.origin, "key": self.key, "vkey": self.vkey}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> LogKeyConfig:
        """Raises:
        ConfigurationError: a field is missing or not a string."""
        try:
            values = {name: doc[name] for name in ("origin", "key", "vkey")}
        except (KeyError, TypeError) as e:
            raise ConfigurationError(
                f"{where}: log: found {doc!r}, expected origin, key and vkey"
            ) from e
        for name, value in values.items():
            if not isinstance(value, str) or not value:
                raise ConfigurationError(
                    f"{where}: log.{name}: found {value!r}, expected a non-empty string"
                )
        return cls(**values)


def tile_reader(log_dir: Path) -> Callable[[TileId], bytes]:
    """Read tiles from a directory laid out as tlog-tiles."""

    def read(tile: TileId) -> bytes:
        try:
            return (log_dir / tile.path).read_bytes()
        except OSError as e:
            raise UnavailableError(
                f"log: {log_dir / tile.path}: cannot read ({e.strerror}); the log is incomplete"
            ) from e

    return read


def append(log_dir: Path, current: LogState, entries: Sequence[bytes]) -> LogState:
    """Write the tiles of ``current`` plus ``entries`` and return the new state. Nothing is committed
    until the caller records the returned state in the head.

    Raises:
        UnavailableError: an edge tile cannot be read.
        VerificationError: an edge tile is malformed.
    """
    result = append_entries(current.size, tile_reader(log_dir), entries)
    for tile, data in sorted(result.tiles.items()):
        atomic_write_bytes(log_dir / tile.path, data)
    return LogState(result.size, result.root_hash)


def append_events(
    log_dir: Path, current: LogState, lodged: Sequence[Mapping[str, Any]]
) -> LogState:
    """Append the lodged ones of ``lodged`` in order (re-signing is not lodged), writing each
    tile once: a group commit's hundreds of events cost one pass over the tiles they touch."""
    entries = [events.encode_event(e) for e in lodged if events.is_logged(e)]
    return append(log_dir, current, entries) if entries else current


# ---------------------------------------------------------------------------------- the log key


def new_log_key(
    repo: Path,
    *,
    origin: str | None,
    passphrase: str | None,
    label: str | None,
    file_name: str,
    overwrite: bool = False,
) -> LogKeyConfig:
    """Generate the log's Ed25519 note key under ``R/keys/``; the origin defaults to a name derived
    from the key, which is unique to this log.

    Raises:
        ConfigurationError: the key file exists already (``overwrite`` is only for a key that
            nothing can have trusted yet: one left by an init killed before its commit).
    """
    path = repo / "keys" / file_name
    if path.exists() and not overwrite:
        raise ConfigurationError(f"{path}: exists already; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    if label:
        pem = b"".join(f"# {line}\n".encode() for line in label.splitlines()) + pem
    atomic_write_bytes(path, pem, mode=0o600)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    name = origin or f"cfl.invalid/log/{hashlib.sha256(raw).hexdigest()[:16]}"
    signer = NoteSigner(name, private)
    return LogKeyConfig(name, f"keys/{file_name}", signer.verifier.vkey)


def existing_log_key(
    pem_path: Path, *, origin: str | None, secrets_handler: Callable[[str], str] | None
) -> LogKeyConfig:
    """Use an Ed25519 PEM key the operator made (``init --log-key``), kept where it is.

    Raises:
        ConfigurationError: unreadable, wrong passphrase, or not Ed25519.
    """
    private = _load_private(pem_path, secrets_handler)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    name = origin or f"cfl.invalid/log/{hashlib.sha256(raw).hexdigest()[:16]}"
    return LogKeyConfig(name, str(pem_path.resolve()), NoteSigner(name, private).verifier.vkey)


def _load_private(path: Path, secrets_handler: Callable[[str], str] | None) -> Ed25519PrivateKey:
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"log key {path}: cannot read ({e.strerror})") from e
    password = None
    if b"ENCRYPTED" in pem:
        if secrets_handler is None:
            raise ConfigurationError(f"log key {path}: encrypted, and no passphrase source")
        password = secrets_handler("passphrase").encode()
    try:
        private = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(f"log key {path}: cannot load ({e})") from e
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigurationError(
            f"log key {path}: found {type(private).__name__}, expected an Ed25519 key"
        )
    return private


def load_log_signer(
    repo: Path, config: LogKeyConfig, secrets_handler: Callable[[str], str] | None
) -> NoteSigner:
    """The note signer of the log key.

    Raises:
        ConfigurationError: unreadable key, wrong passphrase, not Ed25519, or it does not match the
            configured vkey.
    """
    path = repo / config.key
    signer = NoteSigner(config.origin, _load_private(path, secrets_handler))
    if signer.verifier.vkey != config.vkey:
        raise ConfigurationError(
            f"log key {path}: its vkey {signer.verifier.vkey} differs from the configured "
            f"{config.vkey}",
            hint="the log key identifies the log to every witness; restore the original key file",
        )
    return signer


# ------------------------------------------------------------------------------- checkpoints


def checkpoint_path(log_dir: Path, size: int) -> Path:
    return log_dir / CHECKPOINTS_DIR / str(size)


def sign_checkpoint(log_dir: Path, state: LogState, signer: NoteSigner) -> bytes:
    """Sign the checkpoint of ``state`` and keep it under ``checkpoints/<size>``. Ed25519 is
    deterministic, so re-signing the same state gives the same bytes; cosignatures already collected
    for this size are kept.
    """
    text = Checkpoint(signer.name, state.size, state.root_hash).to_text()
    note = sign_note(text, [signer])
    path = checkpoint_path(log_dir, state.size)
    if path.exists():
        try:
            kept = parse_note(path.read_bytes())
        except (OSError, VerificationError):  # an unreadable leftover gets a fresh signature
            kept = None
        if kept is not None and kept.text == text:
            note = note.with_lines(kept.signatures)
    data = note.to_bytes()
    atomic_write_bytes(path, data)
    return data


def timestamp_binding(log_dir: Path, state: LogState, signer: NoteSigner) -> dict[str, Any]:
    """Sign the checkpoint and return the timestamp field that binds it into TUF metadata."""
    sign_checkpoint(log_dir, state, signer)
    return LogBinding(signer.name, state.size, state.root_hash, signer.verifier.vkey).to_field()


def bound_size(unrecognized_fields: Mapping[str, Any] | None) -> int | None:
    """The log size a signed timestamp binds, or None when it binds none."""
    try:
        binding = read_binding(unrecognized_fields)
    except VerificationError:
        return None  # re-sign: a malformed binding is replaced
    return binding.size if binding else None


# -------------------------------------------------------------------------------- publishing


def publish_log(log_dir: Path, out_log: Path, state: LogState) -> int:
    """Bring ``out_log`` up to ``state``: tiles and index files first (immutable, written once),
    then ``checkpoint`` (the only mutable file). Call it before writing ``timestamp.json``.

    Returns the number of files written.

    Raises:
        UnavailableError: a tile or the checkpoint of the committed size is missing.
    """
    written = 0
    read = tile_reader(log_dir)
    published = _published_size(out_log)
    start = published if published is not None and published <= state.size else 0
    for tile in tiles_added(start, state.size):
        destination = out_log / tile.path
        if not destination.exists():
            atomic_write_bytes(destination, read(tile))
            written += 1
    written += _publish_index(read, out_log, start, state.size)
    if state.size:
        checkpoint = signed_checkpoint(log_dir, state.size)
        current = out_log / "checkpoint"
        if not current.exists() or current.read_bytes() != checkpoint:
            atomic_write_bytes(current, checkpoint)
            written += 1
    if start < state.size:
        # Superseded partial tiles (repo_tool/tlog/partial_tiles.py): the state's at once, the
        # host's with one publish of grace (a client may hold the previous checkpoint). Only a
        # publish that grows the log counts: one with nothing new changes nothing.
        prune_after_publish(log_dir, since=start, size=state.size, keep_from=state.size)
        served = _served_size(out_log.parent / "metadata" / "timestamp.json")
        prune_after_publish(out_log, since=start, size=state.size, keep_from=min(start, served))
    return written


def _publish_index(read: Callable[[TileId], bytes], out_log: Path, start: int, size: int) -> int:
    """Write ``cfl-index/<sha256>`` for every deposit among entries [start, size), derived from the
    committed entries themselves (so no orphan of an interrupted ingest can ever be indexed)."""
    written = 0
    for relative, data in _index_files(read, start, size):
        atomic_write_bytes(out_log / relative, data)
        written += 1
    return written


def _index_files(
    read: Callable[[TileId], bytes], start: int, size: int
) -> Iterator[tuple[str, bytes]]:
    """(``cfl-index/<sha256>``, its bytes) for every deposit among entries [start, size)."""
    for tile in tiles_added(start, size):
        if tile.level != ENTRIES_LEVEL:
            continue
        bundle = decode_bundle(read(tile), expected=tile.width, where=tile.path)
        for offset, entry in enumerate(bundle):
            index = tile.index * TILE_WIDTH + offset
            if index < start:
                continue
            event = events.decode_event(entry, index=index)
            sha = event.get("sha256")
            if event["event"] == events.DEPOSIT and isinstance(sha, str) and len(sha) == 64:
                yield f"{INDEX_DIR}/{sha}", f"{index}\n".encode()


def log_files_added(log_dir: Path, start: int, size: int) -> Iterator[tuple[str, bytes]]:
    """(path under ``log/``, bytes) of every immutable file a log of ``size`` entries publishes
    beyond one of ``start``: the tiles ``tiles_added`` names (at their width in ``size``) and the
    ``cfl-index`` files of the deposits among entries [start, size). Reads only those tiles, so a
    destination that already holds the log of ``start`` entries costs what was added since.

    Raises:
        UnavailableError: a tile of the committed size is missing.
        VerificationError: an entry bundle is malformed.
    """
    read = tile_reader(log_dir)
    for tile in tiles_added(start, size):
        yield tile.path, read(tile)
    yield from _index_files(read, start, size)


def signed_checkpoint(log_dir: Path, size: int) -> bytes:
    """The signed checkpoint kept for ``size`` entries (``checkpoints/<size>``).

    Raises:
        UnavailableError: there is none (or it cannot be read).
    """
    try:
        return checkpoint_path(log_dir, size).read_bytes()
    except OSError as e:
        raise UnavailableError(f"log: no signed checkpoint for size {size} ({e.strerror})") from e


def _served_size(timestamp: Path) -> int:
    """The log size the timestamp a host serves binds (0 when unreadable: then nothing of the
    host's log is deleted). Clients follow the timestamp, and a publish killed after its log step
    leaves a checkpoint ahead of it: the grace counts from what they can be reading."""
    try:
        return served_size(timestamp.read_bytes())
    except OSError:
        return 0


def served_size(timestamp: bytes | None) -> int:
    """The log size the bytes of a ``timestamp.json`` bind (0 when there are none or they do not
    read: then nothing of a destination's log is deleted)."""
    try:
        signed = json.loads(timestamp or b"")["signed"]
        return bound_size(signed) or 0
    except (ValueError, KeyError, TypeError, RecursionError):
        return 0


def _published_size(out_log: Path) -> int | None:
    """The size of the checkpoint already published (every tile it needs was written before it),
    so a publish writes only the tiles added since; None when there is none or it is unreadable."""
    try:
        return Checkpoint.from_text(parse_note((out_log / "checkpoint").read_bytes()).text).size
    except (OSError, VerificationError):
        return None


def own_checkpoint_size(log_dir: Path, published: bytes | None) -> int | None:
    """The size of a destination's ``log/checkpoint`` when it is one this log signed: its text
    (origin, size, root hash) is that of the checkpoint kept for that size. None otherwise (no
    checkpoint, unreadable, another log's, or a size this log has no checkpoint for), so a
    publish onto a destination that another log wrote checks every tile of its own again."""
    if published is None:
        return None
    try:
        text = parse_note(published).text
        size = Checkpoint.from_text(text).size
        kept = parse_note(checkpoint_path(log_dir, size).read_bytes()).text
    except (OSError, VerificationError):
        return None
    return size if kept == text else None


def log_summary(state: LogState, config: LogKeyConfig | None) -> dict[str, Any]:
    """What `status`-like commands show about the log."""
    return {
        "size": state.size,
        "root_hash": state.root_hash.hex(),
        "origin": config.origin if config else None,
        "vkey": config.vkey if config else None,
    }


def add_cosignatures(
    log_dir: Path, state: LogState, cosigned: bytes, witnesses: Sequence[NoteVerifier]
) -> int:
    """Merge the cosignatures by ``witnesses`` on a cosigned checkpoint into the stored checkpoint
    of the same size and root. Only lines that verify are kept: one bad line under a witness's name
    would make every client that trusts that witness reject the checkpoint. Returns how many lines
    were new.

    Raises:
        RejectedInputError: not a signed note, another size or root, or no valid cosignature.
    """
    try:
        incoming = parse_note(cosigned)
        checkpoint = Checkpoint.from_text(incoming.text)
    except VerificationError as e:
        raise RejectedInputError(f"COSIGNED: {e}") from e
    if (checkpoint.size, checkpoint.root_hash) != (state.size, state.root_hash):
        raise RejectedInputError(
            f"COSIGNED: found a checkpoint of size {checkpoint.size} "
            f"(root {checkpoint.root_hash.hex()[:16]}...), expected the current size {state.size} "
            f"(root {state.root_hash.hex()[:16]}...)"
        )
    path = checkpoint_path(log_dir, state.size)
    try:
        kept = parse_note(path.read_bytes())
    except (OSError, VerificationError) as e:
        raise RejectedInputError(
            f"log: no signed checkpoint for size {state.size} yet; run publish first"
        ) from e
    if kept.text != incoming.text:
        raise RejectedInputError("COSIGNED: its checkpoint text differs from the log's")
    try:
        good = {(v.name, v.key_id) for v in verified_by(incoming, witnesses)}
    except VerificationError as e:
        raise RejectedInputError(f"COSIGNED: {e}") from e
    lines = [line for line in incoming.signatures if (line.name, line.key_id) in good]
    if not lines:
        raise RejectedInputError(
            f"COSIGNED: found signatures by {sorted({s.name for s in incoming.signatures})}, "
            f"expected a cosignature by one of {[w.vkey for w in witnesses]}"
        )
    merged = kept.with_lines(lines)
    atomic_write_bytes(path, merged.to_bytes())
    return len(merged.signatures) - len(kept.signatures)
