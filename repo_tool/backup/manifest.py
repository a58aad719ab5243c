"""The backup manifest: one dated JSON document per backup run, listing every file it holds with its
SHA-256, size and mode. Pure: bytes and values in, values out.

A backup target holds::

    cfl-backup.json                 marks the folder or prefix as a backup (a new one is refused
                                    unless empty, so a backup never lands on someone else's files)
    objects/<ab>/<sha256>           every file's bytes, named by their hash, each stored once
    backups/<UTC time>.json         one manifest per run, e.g. backups/20260506T221500Z.json

Because objects are named by content, an image is copied once for all backups, and a file whose
name stays but whose bytes change (``state/head.json``, ``cfl-repo.json``) gets a new object each
time it changes, so every manifest stays restorable on its own. The append-only event log is held
as parts (what earlier runs stored, then the new tail), so a long log is not copied whole every
night. A manifest is written last, after every object it names: a killed backup leaves objects
nobody names (reused by the next run) and no manifest that refers to a missing file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.custom import parse_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError, field_error
from repo_tool.backup.holdings import HEAD_PATH, check_path

FORMAT = "cfl-repo-backup"
MARKER = "cfl-backup.json"
MANIFEST_DIR = "backups"
OBJECTS_DIR = "objects"
MAX_PARTS = 64  # then the event log is stored whole once more, so a manifest stays small
MAX_MANIFEST_BYTES = 1 << 30  # about five million files' worth; more is not one of ours
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"([0-9]{8}T[0-9]{6}Z)(?:-([1-9][0-9]{0,5}))?\.json")
NAME_FORM = "a manifest name such as 20260506T221500Z or 20260506T221500Z.json (BACKUP/backups/)"


def object_key(sha256: str) -> str:
    """Where an object lives in a target, relative to its root (a two-level fan-out, as blobs/)."""
    return f"{OBJECTS_DIR}/{sha256[:2]}/{sha256}"


def marker_bytes() -> bytes:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "layout": "objects/<ab>/<sha256> (content-addressed), backups/<UTC time>.json (manifests)",
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class Part:
    """One stored object: the SHA-256 and size of its bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class FileEntry:
    """One file a backup holds. Its bytes are the object ``sha256`` or, for the event log, the
    concatenation of ``parts``; either way they hash to ``sha256``."""

    sha256: str
    size: int
    mode: int
    parts: tuple[Part, ...] = ()

    def objects(self) -> tuple[Part, ...]:
        return self.parts or (Part(self.sha256, self.size),)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"sha256": self.sha256, "size": self.size, "mode": f"{self.mode:04o}"}
        if self.parts:
            doc["parts"] = [{"sha256": p.sha256, "size": p.size} for p in self.parts]
        return doc


@dataclass(frozen=True)
class Manifest:
    """What one backup run holds: every file, the head it is consistent with, what it left out."""

    created: str
    files: Mapping[str, FileEntry]
    event_seq: int
    left_out: Mapping[str, str] = field(default_factory=dict)

    @property
    def head_sha256(self) -> str:
        return self.files[HEAD_PATH].sha256

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "format": FORMAT,
            "created": self.created,
            # The recovery point: the commit this backup restores to.
            "head": {"sha256": self.head_sha256, "event_seq": self.event_seq},
            "files": {path: self.files[path].to_dict() for path in sorted(self.files)},
            "left_out": dict(sorted(self.left_out.items())),
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> Manifest:
        """Parse and check a manifest; ``source`` names it in errors.

        Raises:
            RejectedInputError: too large, not JSON, or a field is missing or wrong (a path outside
                what a backup holds, a hash not in its form, parts that do not add up, no head).
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise RejectedInputError(
                f"{source}: size: found more than {MAX_MANIFEST_BYTES} bytes, expected a manifest"
            )
        try:
            doc = json.loads(data, object_pairs_hook=_no_duplicates)
        except (ValueError, UnicodeDecodeError) as e:
            raise RejectedInputError(f"{source}: found no JSON manifest ({e})") from e
        return _manifest_from(doc, source)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            # json keeps the last of two equal keys; a manifest whose reader and writer could
            # disagree on a file's hash is refused instead.
            raise ValueError(f"key {key!r} appears twice")
        doc[key] = value
    return doc


def _expect(condition: bool, source: str, where: str, found: object, expected: str) -> None:
    if not condition:
        shown = repr(found)
        if len(shown) > 80:  # one line, even for a hostile manifest's megabyte value
            found = f"a {type(found).__name__} of {len(shown)} characters"
        raise RejectedInputError(f"{source}: {field_error(where, found, expected)}")


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _part(doc: object, source: str, where: str) -> Part:
    _expect(isinstance(doc, dict), source, where, doc, "an object with sha256 and size")
    assert isinstance(doc, dict)
    sha, size = doc.get("sha256"), doc.get("size")
    _expect(
        isinstance(sha, str) and bool(_SHA256.fullmatch(sha)),
        source,
        f"{where}.sha256",
        sha,
        "64 lower-case hex digits",
    )
    _expect(_int(size), source, f"{where}.size", size, "a non-negative integer")
    return Part(str(sha), int(size))  # type: ignore[arg-type]


def _entry(doc: object, source: str, where: str) -> FileEntry:
    whole = _part(doc, source, where)
    assert isinstance(doc, dict)
    mode = doc.get("mode")
    _expect(
        isinstance(mode, str) and re.fullmatch(r"0[0-7]{3}", mode) is not None,
        source,
        f"{where}.mode",
        mode,
        "four octal digits such as '0644'",
    )
    parts: tuple[Part, ...] = ()
    if "parts" in doc:
        raw = doc["parts"]
        _expect(
            isinstance(raw, list) and 0 < len(raw) <= MAX_PARTS,
            source,
            f"{where}.parts",
            raw if not isinstance(raw, list) else f"{len(raw)} parts",
            f"a list of 1 to {MAX_PARTS} parts",
        )
        parts = tuple(_part(p, source, f"{where}.parts[{i}]") for i, p in enumerate(raw))
        total = sum(p.size for p in parts)
        _expect(
            total == whole.size,
            source,
            f"{where}.parts",
            f"sizes adding up to {total}",
            f"sizes adding up to the file's size {whole.size}",
        )
    return FileEntry(whole.sha256, whole.size, int(str(mode), 8), parts)


def _manifest_from(doc: Any, source: str) -> Manifest:
    _expect(isinstance(doc, dict), source, "manifest", type(doc).__name__, "an object")
    _expect(doc.get("format") == FORMAT, source, "format", doc.get("format"), repr(FORMAT))
    _expect(
        doc.get("schema_version") == SCHEMA_VERSION,
        source,
        "schema_version",
        doc.get("schema_version"),
        str(SCHEMA_VERSION),
    )
    created = doc.get("created")
    try:
        parse_timestamp(str(created))
    except ValueError:
        _expect(False, source, "created", created, "a UTC time such as 2026-05-06T22:15:00Z")
    files_doc = doc.get("files")
    _expect(
        isinstance(files_doc, dict) and bool(files_doc),
        source,
        "files",
        files_doc if not isinstance(files_doc, dict) else "no files",
        "an object of path -> {sha256, size, mode}",
    )
    files: dict[str, FileEntry] = {}
    for path, entry in files_doc.items():
        try:
            check_path(path)
        except ValueError as e:
            raise RejectedInputError(f"{source}: files: path {e}") from e
        files[path] = _entry(entry, source, f"files.{path}")
    folders = {
        "/".join(path.split("/")[:i]) for path in files for i in range(1, path.count("/") + 1)
    }
    clash = sorted(folders & files.keys())
    _expect(not clash, source, "files", clash[:1], "no path that is also the folder of another")
    head = doc.get("head")
    _expect(isinstance(head, dict), source, "head", head, "an object with sha256 and event_seq")
    _expect(HEAD_PATH in files, source, "files", f"no {HEAD_PATH}", f"{HEAD_PATH} among the files")
    _expect(
        head.get("sha256") == files[HEAD_PATH].sha256,
        source,
        "head.sha256",
        head.get("sha256"),
        f"files.{HEAD_PATH}.sha256 {files[HEAD_PATH].sha256}",
    )
    event_seq = head.get("event_seq")
    _expect(_int(event_seq), source, "head.event_seq", event_seq, "a non-negative integer")
    left_out = doc.get("left_out", {})
    _expect(
        isinstance(left_out, dict) and all(isinstance(v, str) for v in left_out.values()),
        source,
        "left_out",
        left_out,
        "an object of path -> reason",
    )
    return Manifest(str(created), files, int(event_seq), dict(left_out))


# ---------------------------------------------------------------------------------------- names


def _sort_key(name: str) -> tuple[str, int]:
    found = _NAME.fullmatch(name)
    assert found is not None
    return found.group(1), int(found.group(2) or 1)


def is_manifest_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def new_manifest_name(now: datetime, taken: Collection[str]) -> str:
    """``backups/`` name for a run at ``now``: its UTC time, with ``-2``, ``-3`` ... when a run in the
    same second took it."""
    base = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name, number = f"{base}.json", 1
    while name in taken:
        number += 1
        name = f"{base}-{number}.json"
    return name


def latest(names: Collection[str]) -> str | None:
    """The newest manifest among ``names`` (the recovery point), None if there is none."""
    ours = [name for name in names if is_manifest_name(name)]
    return max(ours, key=_sort_key) if ours else None


def check_manifest_name(given: str) -> str:
    """``--manifest`` as the operator may write it (``NAME``, ``NAME.json``, ``backups/NAME.json``)
    -> the file name in ``backups/``.

    Raises:
        ConfigurationError: not in the form a backup writes (so it can name no other file).
    """
    name = given.removeprefix(f"{MANIFEST_DIR}/")
    name = name if name.endswith(".json") else f"{name}.json"
    if not is_manifest_name(name):
        raise ConfigurationError(field_error("--manifest", given, NAME_FORM))
    return name
