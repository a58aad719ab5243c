"""Placing verified images into the supplier's output folder, with ``manifest.json`` beside them.

Verification is ngclient's (the session hands over a file it verified); this module makes sure that
only complete files ever carry a final name in the output folder: each is written to a temporary
file in the same folder, hashed on the way, checked against the verified SHA-256 and length once
more, fsynced and renamed. Ctrl-C or a crash leaves at most a ``.cfl-partial-*`` file, never a
truncated file under a final name.

Names start with the file's SHA-256 (``<sha256>.<basename of target>``), so a name says what the
bytes are and two images can never collide. ``--fragment-size`` also writes each image as numbered
fragments (``<name>.part0001`` ...) for HAN devices that take images in pieces (SECMP0007; the working
group's figure is 750,000 bytes), each listed in the manifest with its own SHA-256 and length.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from client.trust.catalogue import CatalogueImage
from metadata_templates import SCHEMA_VERSION
from metadata_templates.atomic import atomic_write_bytes, fsync_dir
from metadata_templates.errors import RejectedInputError, UnavailableError, VerificationError

MANIFEST_NAME = "manifest.json"
PARTIAL_PREFIX = ".cfl-partial-"
HAN_FRAGMENT_SIZE = 750_000
_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Fragment:
    """One numbered piece of an image.

    Attributes:
        file: its file name in the output folder.
        index: 1-based position.
        offset: where it starts in the image.
        length: its length in bytes.
        sha256: its SHA-256.
    """

    file: str
    index: int
    offset: int
    length: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "file": self.file,
            "index": self.index,
            "offset": self.offset,
            "length": self.length,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class PlacedFile:
    """An image now in the output folder, as the manifest lists it.

    Attributes:
        target: the TUF target path.
        file: its file name in the output folder.
        sha256: SHA-256 of the whole file (as TUF verified it).
        length: its length.
        manufacturer_image_sha256: the SR 11.3 hash (over the Manufacturer Image only).
        device_count: how many devices of the estate it is for (0 when named explicitly).
        device_ids: those devices' IDs, when the caller asked to list them.
        fragments: its fragments, when fragmenting.
        fragment_size: the fragment size used, or None.
        reused: True when a verified copy was already there and nothing was written.
    """

    target: str
    file: str
    sha256: str
    length: int
    manufacturer_image_sha256: str
    device_count: int = 0
    device_ids: tuple[str, ...] | None = None
    fragments: tuple[Fragment, ...] = ()
    fragment_size: int | None = None
    reused: bool = False

    def to_json(self) -> dict[str, Any]:
        """The file's manifest entry."""
        devices: dict[str, Any] = {"count": self.device_count}
        if self.device_ids is not None:
            devices["ids"] = list(self.device_ids)
        entry: dict[str, Any] = {
            "target": self.target,
            "file": self.file,
            "sha256": self.sha256,
            "length": self.length,
            "manufacturer_image_sha256": self.manufacturer_image_sha256,
            "devices": devices,
        }
        if self.fragment_size is not None:
            entry["fragment_size"] = self.fragment_size
            entry["fragments"] = [fragment.to_json() for fragment in self.fragments]
        return entry


def output_name(target_path: str, sha256: str) -> str:
    """``<sha256>.<basename of target>``: the name starts with what the bytes hash to."""
    return f"{sha256}.{target_path.rpartition('/')[2]}"


def fragment_name(file_name: str, index: int, total: int) -> str:
    """``<file>.part0001``; the number is at least four digits wide and wide enough for ``total``."""
    width = max(4, len(str(total)))
    return f"{file_name}.part{index:0{width}d}"


def _digest_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def _verifies(path: Path, sha256: str, length: int) -> bool:
    try:
        if not path.is_file() or path.stat().st_size != length:
            return False
        return _digest_file(path)[0] == sha256
    except OSError:
        return False


class OutputFolder:
    """The folder a supplier downloads into."""

    def __init__(self, path: Path, *, fragment_size: int | None = None) -> None:
        """Prepare the folder (created if missing).

        Raises:
            RejectedInputError: ``fragment_size`` is not positive.
            UnavailableError: the folder cannot be created.
        """
        if fragment_size is not None and fragment_size < 1:
            raise RejectedInputError(
                f"--fragment-size: found {fragment_size}, expected a positive number of bytes"
            )
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UnavailableError(f"output folder {path}: {e.strerror or e}") from e
        self.path = path
        self.fragment_size = fragment_size

    def is_present(self, image: CatalogueImage) -> bool:
        """True when the image is already here under its final name and still verifies."""
        return _verifies(
            self.path / output_name(image.target_path, image.sha256), image.sha256, image.length
        )

    def place(
        self,
        image: CatalogueImage,
        source: Path | bytes | None,
        *,
        device_count: int = 0,
        device_ids: Sequence[str] | None = None,
    ) -> PlacedFile:
        """Put a verified image into the folder (and its fragments, when fragmenting).

        Args:
            image: the catalogue entry, whose SHA-256 and length ngclient verified.
            source: the verified file or its bytes; None when ``is_present`` said it is here.
            device_count: how many devices it is for.
            device_ids: which devices, if they should be listed in the manifest.

        Raises:
            VerificationError: the source does not match the verified SHA-256 and length
                (it changed after verification), or ``source`` is None and no verified copy is here.
            UnavailableError: the folder cannot be written.
        """
        name = output_name(image.target_path, image.sha256)
        final = self.path / name
        reused = _verifies(final, image.sha256, image.length)
        try:
            if not reused:
                if source is None:
                    raise VerificationError(
                        f"{final}: no verified copy present and no verified source given"
                    )
                self._write_verified(final, source, image.sha256, image.length)
            fragments = self._fragments(final, name) if self.fragment_size else ()
        except OSError as e:
            raise UnavailableError(f"output folder {self.path}: {e.strerror or e}") from e
        return PlacedFile(
            target=image.target_path,
            file=name,
            sha256=image.sha256,
            length=image.length,
            manufacturer_image_sha256=image.cfl.manufacturer_image_sha256,
            device_count=device_count,
            device_ids=None if device_ids is None else tuple(device_ids),
            fragments=fragments,
            fragment_size=self.fragment_size,
            reused=reused,
        )

    def _write_verified(self, final: Path, source: Path | bytes, sha256: str, length: int) -> None:
        """Copy ``source`` under a temporary name, check it, then rename it into place."""
        fd, tmp_name = tempfile.mkstemp(prefix=PARTIAL_PREFIX, dir=self.path)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in _chunks(source):
                    digest.update(chunk)
                    written += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if (digest.hexdigest(), written) != (sha256, length):
                raise VerificationError(
                    f"{final.name}: found sha256 {digest.hexdigest()} length {written}, expected "
                    f"sha256 {sha256} length {length} (the file changed after verification)"
                )
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path)

    def _fragments(self, final: Path, name: str) -> tuple[Fragment, ...]:
        assert self.fragment_size is not None
        size = final.stat().st_size
        total = max(1, -(-size // self.fragment_size))
        fragments: list[Fragment] = []
        with final.open("rb") as whole:
            for index in range(1, total + 1):
                offset = (index - 1) * self.fragment_size
                piece = whole.read(self.fragment_size)
                sha = hashlib.sha256(piece).hexdigest()
                part = fragment_name(name, index, total)
                if not _verifies(self.path / part, sha, len(piece)):
                    self._write_verified(self.path / part, piece, sha, len(piece))
                fragments.append(Fragment(part, index, offset, len(piece), sha))
        return tuple(fragments)

    def write_manifest(self, placed: Iterable[PlacedFile]) -> Path:
        """Write ``manifest.json`` atomically, keeping entries of earlier runs whose files are
        still here, so the manifest describes the whole folder.

        Raises:
            UnavailableError: the manifest cannot be written.
        """
        path = self.path / MANIFEST_NAME
        entries = {entry["target"]: entry for entry in self._earlier_entries(path)}
        for item in placed:
            entries[item.target] = item.to_json()
        doc = {
            "schema_version": SCHEMA_VERSION,
            "files": [entries[target] for target in sorted(entries)],
        }
        try:
            atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        except OSError as e:
            raise UnavailableError(f"manifest {path}: {e.strerror or e}") from e
        return path

    def _earlier_entries(self, path: Path) -> list[dict[str, Any]]:
        # The manifest is our own output; one we cannot read is rebuilt rather than trusted.
        try:
            doc = json.loads(path.read_bytes())
            files = doc["files"] if doc.get("schema_version") == SCHEMA_VERSION else []
            return [
                entry
                for entry in files
                if isinstance(entry, dict)
                and isinstance(entry.get("target"), str)
                and isinstance(entry.get("file"), str)
                and _verifies(
                    self.path / entry["file"], entry.get("sha256", ""), entry.get("length", -1)
                )
            ]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return []

    def remove_partials(self) -> list[Path]:
        """Delete ``.cfl-partial-*`` files a crash left behind (when no other cfl writes here).

        Raises:
            UnavailableError: a leftover cannot be deleted.
        """
        removed = []
        for leftover in self.path.glob(f"{PARTIAL_PREFIX}*"):
            try:
                leftover.unlink()
            except OSError as e:
                raise UnavailableError(f"{leftover}: {e.strerror or e}") from e
            removed.append(leftover)
        return removed


def _chunks(source: Path | bytes) -> Iterable[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), _COPY_CHUNK):
            yield source[start : start + _COPY_CHUNK]
        return
    handle: BinaryIO
    with source.open("rb") as handle:
        while chunk := handle.read(_COPY_CHUNK):
            yield chunk
