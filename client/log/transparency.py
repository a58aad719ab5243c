"""The client's checks of the library's transparency log (docs/transparency.md).

On every refresh: the checkpoint the signed timestamp binds is fetched, its signature checked with
the log's vkey, the cosignatures of required witnesses counted, and a consistency proof computed
from the tiles from the last checkpoint this home trusted to the new one. On every download: the
image's deposit event is found in the log and its inclusion proved. An inconsistent log stops the
client and keeps both checkpoints as evidence.

Home layout (``H/log/``): ``checkpoint`` (last trusted), ``vkey`` (pinned log key),
``witnesses.json`` (required cosigners), ``evidence/<time>/`` (kept on a failed check).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tuf.api import exceptions as tuf_exceptions
from tuf.api.metadata import Metadata, Timestamp
from tuf.ngclient import FetcherInterface

from client.log.tile_cache import TileCache
from client.trust.home import ClientHome
from client.trust.transport import CflFetcher
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import (
    CflError,
    ConfigurationError,
    UnavailableError,
    VerificationError,
)
from metadata_templates.tlog import events
from metadata_templates.tlog.binding import LogBinding, read_binding
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.merkle import leaf_hash, verify_consistency, verify_inclusion
from metadata_templates.tlog.note import (
    Note,
    NoteVerifier,
    open_note,
    parse_note,
    parse_vkey,
    verified_by,
)
from metadata_templates.tlog.proofs import TreeHashes
from metadata_templates.tlog.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileId,
    decode_bundle,
    tile_width,
)

Fetch = Callable[[str], bytes]
"""Returns the bytes at a path relative to the library's base URL (``log/checkpoint``)."""

MAX_LOG_FILE = 1 << 20  # a checkpoint, tile or entry bundle is far smaller
INDEX_DIR = "log/cfl-index"
T = TypeVar("T")
REPORT_TO = "the CFL provider and SECAS (the SMKI and Repository Service) with the evidence folder"


@dataclass
class CountingFetch:
    """A :data:`Fetch` over an ngclient fetcher that counts requests and bytes (bench, tests).

    With ``tiles`` (a home's :class:`TileCache`) and a :class:`CflFetcher`, a partial tile whose
    narrower version the home kept is read from the byte after it (client/log/tile_cache.py).
    """

    fetcher: FetcherInterface
    base_url: str
    requests: int = 0
    received: int = 0
    paths: list[str] = field(default_factory=list)
    tiles: TileCache | None = None
    tiles_used: bool = False
    whole: bool = False

    def _url(self, relative: str) -> str:
        return self.base_url.rstrip("/") + "/" + relative

    def __call__(self, relative: str) -> bytes:
        try:
            data = self.fetcher.download_bytes(self._url(relative), MAX_LOG_FILE)
        except tuf_exceptions.DownloadError as e:
            raise UnavailableError(f"log: {relative}: cannot fetch ({e})") from e
        self.requests += 1
        self.received += len(data)
        self.paths.append(relative)
        return data

    def read_tile(self, tile: TileId) -> bytes:
        """A tile or entry bundle: its kept prefix joined to the bytes after it, or whole."""
        relative = "log/" + tile.path
        width, prefix = 0, b""
        if self.tiles is not None and not self.whole and isinstance(self.fetcher, CflFetcher):
            width, prefix = self.tiles.prefix(tile)
        if width == tile.width:
            self.tiles_used = True
            return prefix
        if not prefix:
            data = self(relative)
        else:
            assert isinstance(self.fetcher, CflFetcher)
            try:
                begins, body = self.fetcher.fetch_from(
                    self._url(relative), len(prefix), MAX_LOG_FILE
                )
            except tuf_exceptions.DownloadError as e:
                raise UnavailableError(f"log: {relative}: cannot fetch ({e})") from e
            self.requests += 1
            self.received += len(body)
            self.paths.append(f"{relative} (from byte {begins})")
            self.tiles_used = self.tiles_used or begins > 0
            data = prefix + body if begins else body
        if self.tiles is not None:
            self.tiles.keep(tile, data)
        return data

    def afresh_on_failure(self, check: Callable[[], T]) -> T:
        """Run ``check``; if it fails having read a tile through the home's kept copies, drop
        them and run it once more reading every tile whole, so a damaged copy is never reported
        as a fault of the log."""
        self.tiles_used = False
        try:
            return check()
        except VerificationError:
            if self.tiles is None or not self.tiles_used:
                raise
        self.tiles.forget()
        self.whole = True  # from now on every tile whole (and kept again for the next refresh)
        return check()


def tile_reader(fetch: Fetch) -> Callable[[TileId], bytes]:
    if isinstance(fetch, CountingFetch):
        return fetch.read_tile
    return lambda tile: fetch("log/" + tile.path)


def afresh_on_failure(fetch: Fetch, check: Callable[[], T]) -> T:
    """:meth:`CountingFetch.afresh_on_failure`, or just ``check`` for any other fetch."""
    if isinstance(fetch, CountingFetch):
        return fetch.afresh_on_failure(check)
    return check()


def consistency(old: Checkpoint, new: Checkpoint, fetch: Fetch) -> None:
    """Prove from the served tiles that ``new`` extends ``old``.

    Raises:
        VerificationError: another origin, a smaller size, or a proof that does not verify.
        UnavailableError: a tile could not be fetched.
    """
    if old.origin != new.origin:
        raise VerificationError(
            f"log origin: found {new.origin!r}, expected {old.origin!r} (the log trusted before)"
        )
    if new.size < old.size:
        raise VerificationError(
            f"log size: found {new.size}, expected at least {old.size} (the size trusted before); "
            "a log never shrinks"
        )

    def proved() -> None:
        proof = TreeHashes(new.size, tile_reader(fetch)).consistency_proof(old.size)
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)

    afresh_on_failure(fetch, proved)


def inclusion(checkpoint: Checkpoint, index: int, fetch: Fetch) -> dict[str, Any]:
    """The event at ``index``, proved to be in the log of ``checkpoint``.

    Raises:
        VerificationError: the index is beyond the log, or the proof does not verify.
        UnavailableError: a tile could not be fetched.
    """
    if not 0 <= index < checkpoint.size:
        raise VerificationError(
            f"log index: found {index}, expected below the checkpoint size {checkpoint.size}"
        )
    n, offset = divmod(index, TILE_WIDTH)
    bundle = TileId(ENTRIES_LEVEL, n, tile_width(0, n, checkpoint.size))

    def proved() -> bytes:
        read = tile_reader(fetch)
        entry = decode_bundle(read(bundle), expected=bundle.width, where=bundle.path)[offset]
        tree = TreeHashes(checkpoint.size, read)
        proof = tree.inclusion_proof(index)
        verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root_hash)
        return entry

    return events.decode_event(afresh_on_failure(fetch, proved), index=index)


def read_bound(metadata_dir: Path) -> LogBinding | None:
    """The log binding of the timestamp ngclient verified and stored in ``metadata_dir``.

    Raises:
        VerificationError: the binding is malformed.
    """
    try:
        data = (metadata_dir / f"{Timestamp.type}.json").read_bytes()
    except OSError:
        return None
    timestamp = Metadata[Timestamp].from_bytes(data)
    return read_binding(timestamp.signed.unrecognized_fields)


@dataclass(frozen=True)
class WitnessPolicy:
    """How many of which witnesses must have cosigned a checkpoint before this home trusts it."""

    witnesses: tuple[NoteVerifier, ...] = ()
    threshold: int = 0

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": 1,
            "witnesses": [w.vkey for w in self.witnesses],
            "threshold": self.threshold,
        }
        return json.dumps(doc, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> WitnessPolicy:
        """Raises:
        ConfigurationError: malformed file or a threshold outside 0..len(witnesses)."""
        try:
            doc = json.loads(data)
            policy = cls(tuple(parse_vkey(v) for v in doc["witnesses"]), int(doc["threshold"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigurationError(f"{where}: malformed ({e})") from e
        policy.check(where)
        return policy

    def check(self, where: str) -> None:
        """Raises:
        ConfigurationError: a threshold outside 0..len(witnesses), or a non-cosigner key."""
        if not 0 <= self.threshold <= len(self.witnesses):
            raise ConfigurationError(
                f"{where}: threshold: found {self.threshold}, expected 0..{len(self.witnesses)}"
            )
        for witness in self.witnesses:
            if witness.sig_type != 0x04:
                raise ConfigurationError(
                    f"{where}: witness {witness.name}: found a type 0x{witness.sig_type:02x} vkey, "
                    "expected a cosignature/v1 (0x04) vkey"
                )

    def require(self, note: Note) -> list[str]:
        """The names of required witnesses that cosigned ``note``.

        Raises:
            VerificationError: fewer than ``threshold`` of them did, or a cosignature is invalid.
        """
        good = [w.name for w in verified_by(note, self.witnesses)]
        if len(good) < self.threshold:
            raise VerificationError(
                f"log/checkpoint: found cosignatures by {good or 'no required witness'}, expected "
                f"at least {self.threshold} of {[w.name for w in self.witnesses]}",
                hint="the witnesses may not have seen this checkpoint yet; retry later",
            )
        return good


class HomeLog:
    """The log state a client home trusts, and the checks that move it forward."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "log"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint"

    @property
    def witnesses_path(self) -> Path:
        return self.dir / "witnesses.json"

    @property
    def tiles(self) -> TileCache:
        return TileCache(self.dir / "tiles")

    def trusted(self) -> Checkpoint | None:
        """The last checkpoint this home trusted.

        Raises:
            ConfigurationError: the stored file is unreadable.
        """
        try:
            data = self.checkpoint_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ConfigurationError(f"{self.checkpoint_path}: unreadable ({e.strerror})") from e
        try:
            return Checkpoint.from_text(parse_note(data).text)
        except VerificationError as e:
            raise ConfigurationError(f"{self.checkpoint_path}: {e}") from e

    def policy(self) -> WitnessPolicy:
        try:
            data = self.witnesses_path.read_bytes()
        except FileNotFoundError:
            return WitnessPolicy()
        return WitnessPolicy.from_bytes(data, str(self.witnesses_path))

    def set_policy(self, policy: WitnessPolicy) -> None:
        policy.check("--threshold")
        atomic_write_bytes(self.witnesses_path, policy.to_bytes())

    def pinned_vkey(self) -> str | None:
        try:
            return (self.dir / "vkey").read_text().strip()
        except FileNotFoundError:
            return None

    def update(
        self, binding: LogBinding | None, fetch: Fetch, *, now: datetime
    ) -> Checkpoint | None:
        """Move the trusted checkpoint to the one ``binding`` names, after every check passes.
        Returns it, or None for a library that has never had a log.

        Raises:
            VerificationError: a missing binding after one was trusted, another log key, a bad
                signature, too few cosignatures, or an inconsistent log (evidence is kept).
            UnavailableError: the checkpoint or a tile could not be fetched.
        """
        old = self.trusted()
        if binding is None:
            if old is None:
                return None
            raise VerificationError(
                "timestamp: found no transparency log binding, expected one (this home trusted "
                f"the log at size {old.size}); the library stopped logging",
                hint=f"report this to {REPORT_TO}",
            )
        pinned = self.pinned_vkey()
        if pinned is not None and pinned != binding.vkey:
            raise VerificationError(
                f"log vkey: found {binding.vkey}, expected {pinned} (pinned by this home)",
                hint="a new log key must be announced by the provider; re-run `cfl init` to accept it",
            )
        if old is not None and pinned is not None and self._still_current(old, binding):
            return old  # the signed timestamp names the checkpoint verified before: no fetch
        data = fetch("log/checkpoint")
        note = open_note(data, binding.verifier)
        new = Checkpoint.from_text(note.text)
        binding.check(new)
        self.policy().require(note)
        if old is not None:
            try:
                consistency(old, new, fetch)
            except VerificationError as e:
                evidence = self.keep_evidence(data, str(e), now=now)
                raise VerificationError(
                    f"transparency log is INCONSISTENT: {e}",
                    hint=f"stop using this library and report it to {REPORT_TO}: {evidence}",
                ) from e
        if pinned is None:
            atomic_write_bytes(self.dir / "vkey", binding.vkey.encode() + b"\n")
        atomic_write_bytes(self.checkpoint_path, data)
        return new

    def _still_current(self, old: Checkpoint, binding: LogBinding) -> bool:
        """Whether the binding names the trusted checkpoint, and that checkpoint still meets the
        witness policy (which may have been tightened since)."""
        try:
            binding.check(old)
            self.policy().require(parse_note(self.checkpoint_path.read_bytes()))
        except (VerificationError, OSError):
            return False
        return True

    def keep_evidence(self, offered: bytes, reason: str, *, now: datetime) -> Path:
        """Keep the trusted and the offered checkpoint side by side."""
        folder = self.dir / "evidence" / now.strftime("%Y%m%dT%H%M%SZ")
        atomic_write_bytes(folder / "trusted-checkpoint", self.checkpoint_path.read_bytes())
        atomic_write_bytes(folder / "offered-checkpoint", offered)
        atomic_write_bytes(folder / "reason.txt", reason.encode() + b"\n")
        return folder


def deposit_index(sha256: str, fetch: Fetch) -> int:
    """The log index the library says holds the deposit of the image with ``sha256`` (a claim the
    caller then proves with :func:`inclusion`).

    Raises:
        VerificationError: no index is served, or it is not a number.
    """
    try:
        text = fetch(f"{INDEX_DIR}/{sha256}")
    except CflError as e:
        raise VerificationError(
            f"log: no deposit entry for the image with SHA-256 {sha256} ({e}); every image must "
            "have been logged when it was lodged",
            hint=f"report this to {REPORT_TO}",
        ) from e
    try:
        return int(text.strip())
    except ValueError as e:
        raise VerificationError(
            f"{INDEX_DIR}/{sha256}: found {text[:20]!r}, expected a log index"
        ) from e


def verify_image_logged(checkpoint: Checkpoint, target: str, sha256: str, fetch: Fetch) -> int:
    """Prove that the deposit of ``target`` with ``sha256`` is in the log. Returns its index.

    Raises:
        VerificationError: not logged, or logged with other values.
    """
    index = deposit_index(sha256, fetch)
    event = inclusion(checkpoint, index, fetch)
    found = (event.get("event"), event.get("target"), event.get("sha256"))
    if found != (events.DEPOSIT, target, sha256):
        raise VerificationError(
            f"log entry {index}: found (event, target, sha256) {found}, expected "
            f"{(events.DEPOSIT, target, sha256)}",
            hint=f"report this to {REPORT_TO}",
        )
    return index


def check_home_log(home: ClientHome, *, now: datetime) -> tuple[Checkpoint | None, CountingFetch]:
    """Check the log the newly trusted timestamp binds against the home's trusted checkpoint
    (consistency proof from the tiles, witness policy). Returns (checkpoint or None for a library
    without a log, the fetch used).

    Raises:
        VerificationError: the log is inconsistent or its checkpoint is not the bound one (the
            evidence is kept in the home).
    """
    config = home.load_config()
    log = HomeLog(home.path)
    fetch = CountingFetch(
        CflFetcher(config.transport_settings()), config.repository_url, tiles=log.tiles
    )
    checkpoint = log.update(read_bound(home.metadata_dir), fetch, now=now)
    return checkpoint, fetch


def verify_images_logged(
    home: ClientHome,
    images: list[Any],
    *,
    now: datetime,
    also: Callable[[Checkpoint, Fetch], None] | None = None,
) -> None:
    """Every image about to be downloaded has its deposit event in the consistent log; ``also``
    checks more against the same checkpoint first (the withdrawals logged, for ``cfl download``).

    Raises:
        VerificationError: an image's deposit is not in the log, or ``also`` refused.
    """
    if not images:
        return
    checkpoint, fetch = check_home_log(home, now=now)
    if checkpoint is None:
        return  # a library that has never had a log
    if also is not None:
        also(checkpoint, fetch)
    for image in images:
        verify_image_logged(checkpoint, image.target_path, image.sha256, fetch)
