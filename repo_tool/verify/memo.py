"""The verified-role memo: what the verification walk learnt from a delegated role file, kept so
the next walk of the same file under the same delegation does not verify it again.

Every `cfl-repo publish` re-verifies the whole published tree before it builds the website
(``repo_tool.publish.site_step.build_published_site``), and at 100,000 images that walk is seconds, most of
it the JSON Schema of every target's ``custom.cfl`` and the rest python-tuf's parsing and signature
checks of roles that have not changed since the last publish. The memo remembers, for each delegated
role the walk verified with no problem, what the walk takes from it (``RoleFacts``: version, expiry,
targets, images, release-notes references, the hash-bin delegation it makes), keyed by everything
that result depends on:

- the SHA-256 of the role file's exact bytes (always read and hashed: no trusting names or versions),
- the delegation it was verified under: the role's name, the delegation's own fields (keyids,
  threshold, terminating, paths, or the succinct hash-bin parameters), the delegator's public keys
  for those keyids, and the manufacturer delegation whose paths its targets must match,
- the verifier itself: this format, python-tuf's version and the ``custom.cfl`` schema's digest, so
  a change to any of them turns every entry into a miss.

A different key (a rotation), a different file (a new version, or bytes swapped on disk) or a
different verifier is therefore a miss and gets the full verification. What a hit does not skip:
the snapshot's length/hash/version checks of the file, expiry against ``now`` (from the stored
value; an expired role is never "known fine"), blob checks when asked, and every cross-role check.
Only roles that verified with no problem are written; the provider's own role is never memoised.

Where it lives: ``R/cache/verify-memo/``, one file per key, with the provider's other derived data
(``R/cache/``: private, never in the served tree). Each file is written atomically
(metadata_templates/atomic.py) and is JSON lines: a header ``{"magic", "format", "key", "role",
"body_sha256", "summary"}`` and the body; the summary (``summary_of``) is what a flat walk reads
instead of the body (repo_tool/verify/lazy.py), and decoding checks it says what the body says. A file that is
missing, torn, garbage, of another format or of the wrong shape is a miss (never an error, never
trusted), and the walk rewrites it. After a clean complete walk, files that walk did not use are
deleted, so the memo holds one entry per role of the current tree, and the kept entries' summaries
are written into one index file beside the folder (repo_tool/verify/memo_index.py), which a flat
walk reads instead of 2,600 header lines while each entry file is the one indexed. Deleting the folder is always
safe: the next publish verifies everything and rebuilds it.

Trust assumption: the memo is as trusted as the rest of the repository directory ``R``.
Someone who can write to it can plant an entry saying tampered bytes verified under the real
delegation, and the website would then list them; but the same person can already change the
staged metadata, the head and the configuration that names the signing keys. The site lists
what the provider publishes; suppliers never trust it: their clients verify every file with
python-tuf, and the auditor's checks (`cfl-repo verify`, `cfl log verify`) never read a memo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import tuf
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, SuccinctRoles, Targets

from metadata_templates import custom
from metadata_templates.advisory import is_advisory_target_path
from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.custom import CflTargetInfo
from repo_tool.verify.memo_index import ENTRY_SUFFIX, HeaderIndex
from repo_tool.verify.published import PublishedImage

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MEMO_DIR_NAME",
    "RoleFacts",
    "VerifiedRoleMetadata",
    "VerifyMemo",
    "decode_entry",
    "encode_entry",
    "memo_key",
    "read_header",
    "summary_of",
]

logger = logging.getLogger(__name__)

MAGIC = "cfl-verify-memo"
FORMAT_VERSION = 2  # 2: the header carries the role's summary (repo_tool/verify/lazy.py)
MEMO_DIR_NAME = "verify-memo"  # under R/cache
_SUFFIX = ENTRY_SUFFIX


@dataclass(frozen=True)
class RoleFacts:
    """What the walk takes from one delegated role that verified with no problem.

    Attributes:
        version: the role's signed version.
        expires: the role's signed expiry (re-checked against ``now`` on every walk).
        targets: (path, length, sha256) of every target, by path: the blobs a walk may check.
        images: the image targets with their ``custom.cfl``, by path (no withdrawal: the walk
            applies the published withdrawal list afterwards).
        notes_refs: (image path, notes target) for each image with encrypted release notes.
        delegations: the succinct delegation to hash bins the role makes, or None.
    """

    version: int
    expires: datetime
    targets: tuple[tuple[str, int, str], ...]
    images: tuple[PublishedImage, ...]
    notes_refs: tuple[tuple[str, str], ...]
    delegations: Delegations | None

    @property
    def paths(self) -> frozenset[str]:
        """Every target path the role holds."""
        return frozenset(path for path, _length, _sha256 in self.targets)

    def as_delegator(self) -> Targets:
        """A ``Targets`` carrying only the role's delegations, to verify its bins against: all
        ``verify_delegate`` reads of a delegator is its delegations."""
        return Targets(version=self.version, expires=self.expires, delegations=self.delegations)


@cache
def _verifier_digest() -> str:
    """What else a verification result depends on: this format, python-tuf, the custom schema."""
    material = json.dumps(
        {"format": FORMAT_VERSION, "tuf": tuf.__version__, "custom.cfl": custom.schema()},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def memo_key(
    name: str,
    role: DelegatedRole | SuccinctRoles,
    delegator: Targets,
    prefix: DelegatedRole,
    role_sha256: str,
) -> str:
    """The key of one role file verified under one delegation.

    Args:
        name: the role's name.
        role: the delegation it is verified under (a manufacturer's, or the succinct one to bins).
        delegator: the role that makes the delegation (its public keys are part of the key).
        prefix: the manufacturer delegation whose paths the role's targets must match.
        role_sha256: the SHA-256 of the role file's exact bytes.

    Returns:
        A hex SHA-256 naming exactly these inputs.
    """
    delegation = _delegation_digest(role, delegator, prefix)
    return hashlib.sha256(f"{delegation}\n{name}\n{role_sha256}".encode()).hexdigest()


def _delegation_digest(
    role: DelegatedRole | SuccinctRoles, delegator: Targets, prefix: DelegatedRole
) -> str:
    """The SHA-256 of everything a key depends on but the role's name and bytes: the verifier,
    the delegation, the delegator's keys for it and the manufacturer's delegation. Kept for the
    last delegation asked: every bin of a manufacturer shares one."""
    cached = _last_delegation.get("value")
    if cached is not None and cached[0] is role and cached[1] is delegator and cached[2] is prefix:
        return cached[3]
    keys: dict[str, Any] = {}
    for keyid in sorted(role.keyids):
        try:
            keys[keyid] = delegator.get_key(keyid).to_dict()
        except ValueError:
            keys[keyid] = None  # not in the delegator: a different delegation from one that has it
    material = json.dumps(
        {
            "verifier": _verifier_digest(),
            "kind": type(role).__name__,
            "delegation": role.to_dict(),
            "keys": keys,
            "prefix": prefix.to_dict(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(material.encode()).hexdigest()
    # The objects themselves are kept (not their ids), so an id is never reused while cached.
    _last_delegation["value"] = (role, delegator, prefix, digest)
    return digest


_last_delegation: dict[str, tuple[Any, Any, Any, str]] = {}


# ------------------------------------------------------------------------------------ encoding


def encode_entry(key: str, name: str, facts: RoleFacts) -> bytes:
    """The memo file for ``facts`` of role ``name`` under ``key``: a header line and a body line."""
    body = json.dumps(
        {
            "version": facts.version,
            "expires": facts.expires.isoformat(),
            "targets": [list(target) for target in facts.targets],
            "images": [
                [image.target_path, image.cfl.to_dict(validate_schema=False)]
                for image in facts.images
            ],
            "notes": [list(ref) for ref in facts.notes_refs],
            "delegations": facts.delegations.to_dict() if facts.delegations else None,
        },
        separators=(",", ":"),
    ).encode()
    header = json.dumps(
        {
            "magic": MAGIC,
            "format": FORMAT_VERSION,
            "key": key,
            "role": name,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "summary": summary_of(facts),
        },
        separators=(",", ":"),
    ).encode()
    return header + b"\n" + body + b"\n"


def summary_of(facts: RoleFacts) -> dict[str, Any]:
    """What a flat walk (repo_tool/verify/lazy.py) takes from an entry without decoding its body:
    the role's version, expiry and bin delegation, how many images it holds, whether any is in
    a pilot, its manufacturers (ID -> name, last image wins, as the walk takes them) and its
    advisory targets. JSON values, so a decoded entry's header can be compared with its body."""
    manufacturers: dict[str, str] = {}
    for image in facts.images:
        manufacturers[image.cfl.manufacturer_id] = image.cfl.manufacturer_name
    return {
        "version": facts.version,
        "expires": facts.expires.isoformat(),
        "images": len(facts.images),
        "pilots": any(image.cfl.pilot is not None for image in facts.images),
        "manufacturers": manufacturers,
        "advisories": [list(t) for t in facts.targets if is_advisory_target_path(t[0])],
        "delegations": facts.delegations.to_dict() if facts.delegations else None,
    }


def _json_text(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Unusable(ValueError):
    """A memo file that is not a well-formed entry for the key asked."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise _Unusable(what)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# The JSON types of a ``custom.cfl`` value (metadata_templates/schema/cfl-custom.schema.json), to
# check a remembered value's shape without the schema's cost; its patterns were checked when the
# role was verified, and the digest catches any later change of the bytes.
_CFL_TEXT = (
    "device_type",
    "manufacturer_id",
    "manufacturer_name",
    "image_type",
    "firmware_version",
    "stack_version",
    "header_string",
    "manufacturer_image_sha256",
    "reason",
    "published",
)
_CFL_OPTIONAL_TEXT = ("hardware_version_min", "hardware_version_max", "release_notes_sha256")
_ENTRY_TEXT = ("id", "model_id", "model_name", "hardware_version", "status")


def _texts(value: object) -> bool:
    return type(value) is list and all(type(item) is str for item in value)


def _cfl_shape_ok(cfl: object) -> bool:
    """Whether ``cfl`` has the JSON types a ``custom.cfl`` value has (plain loops: this runs for
    every remembered image of every walk)."""
    if type(cfl) is not dict:
        return False
    get = cfl.get
    for name in _CFL_TEXT:
        if type(get(name)) is not str:
            return False
    for name in _CFL_OPTIONAL_TEXT:
        value = get(name, 0)
        if value is not None and type(value) is not str:
            return False
    if type(get("manufacturer_image_length")) is not int or not _texts(get("advisories")):
        return False
    entries = get("cpl_entries")
    if type(entries) is not list:
        return False
    for entry in entries:
        if type(entry) is not dict or not _texts(entry.get("upgrade_from")):
            return False
        for name in _ENTRY_TEXT:
            if type(entry.get(name)) is not str:
                return False
    pilot = cfl.get("pilot", {"suppliers": [], "release_at": ""})  # issue 22
    if type(pilot) is not dict or not _texts(pilot.get("suppliers")):
        return False
    if type(pilot.get("release_at")) is not str:
        return False
    if "release_notes" not in cfl:
        return True
    notes = cfl["release_notes"]
    if type(notes) is not dict or type(notes.get("target")) is not str:
        return False
    readers = notes.get("readers")
    if type(readers) is not list:
        return False
    for reader in readers:
        if type(reader) is not dict:
            return False
        if type(reader.get("entity_id")) is not str or type(reader.get("name")) is not str:
            return False
    return True


def decode_entry(data: bytes, key: str, name: str) -> RoleFacts | None:
    """The facts a memo file holds for ``key`` and role ``name``; None when the file is anything
    but a well-formed entry of this format for exactly that key (torn, garbage, another format,
    another key, a body that does not match its digest, a field of the wrong shape)."""
    try:
        return _decode(data, key, name)
    except Exception as e:  # whatever a damaged file raises, it is only a miss
        logger.debug("verify memo %s: unusable (%s)", key[:12], e)
        return None


def _decode(data: bytes, key: str, name: str) -> RoleFacts:
    header_line, sep, rest = data.partition(b"\n")
    _expect(sep == b"\n" and rest.endswith(b"\n") and rest.count(b"\n") == 1, "two lines")
    header = json.loads(header_line)
    _expect(isinstance(header, dict), "header object")
    _expect(header.get("magic") == MAGIC, "magic")
    _expect(header.get("format") == FORMAT_VERSION, "format")
    _expect(header.get("key") == key and header.get("role") == name, "key and role")
    body_bytes = rest[:-1]
    _expect(header.get("body_sha256") == hashlib.sha256(body_bytes).hexdigest(), "body digest")
    body = json.loads(body_bytes)
    _expect(isinstance(body, dict), "body object")
    version, expires_text = body["version"], body["expires"]
    _expect(_is_int(version) and _is_str(expires_text), "version and expires")
    expires = datetime.fromisoformat(expires_text)
    _expect(expires.tzinfo is not None, "expires with a time zone")
    targets: list[tuple[str, int, str]] = []
    for item in body["targets"]:
        path, length, sha256 = item
        _expect(_is_str(path) and _is_int(length) and _is_str(sha256), "target")
        targets.append((path, length, sha256))
    by_path = {path: (length, sha256) for path, length, sha256 in targets}
    images: list[PublishedImage] = []
    for path, cfl in body["images"]:
        _expect(_is_str(path) and path in by_path and _cfl_shape_ok(cfl), "image")
        length, sha256 = by_path[path]
        info = CflTargetInfo.from_validated_dict(cfl)
        images.append(PublishedImage(path, length, sha256, info, name))
    notes: list[tuple[str, str]] = []
    for path, notes_target in body["notes"]:
        _expect(_is_str(path) and _is_str(notes_target), "notes reference")
        notes.append((path, notes_target))
    raw = body["delegations"]
    delegations = None if raw is None else Delegations.from_dict(dict(raw))
    _expect(
        delegations is None or (delegations.succinct_roles is not None and not delegations.roles),
        "delegations: a succinct delegation or none",
    )
    facts = RoleFacts(version, expires, tuple(targets), tuple(images), tuple(notes), delegations)
    # The header's summary stands for the body in a flat walk: it must say what the body says.
    _expect(header.get("summary") == summary_of(facts), "summary matches the body")
    return facts


def read_header(data: bytes, key: str, name: str) -> dict[str, Any] | None:
    """The summary in a memo file's header line for ``key`` and role ``name``, or None when the
    line is not a well-formed header of this format for exactly that key (its body is not read)."""
    try:
        header = json.loads(data)
        _expect(isinstance(header, dict), "header object")
        _expect(header.get("magic") == MAGIC and header.get("format") == FORMAT_VERSION, "format")
        _expect(header.get("key") == key and header.get("role") == name, "key and role")
        summary = header["summary"]
        _expect(isinstance(summary, dict), "summary object")
        return dict(summary)
    except Exception as e:  # whatever a damaged file raises, it is only a miss
        logger.debug("verify memo %s: header unusable (%s)", key[:12], e)
        return None


# --------------------------------------------------------------------------------------- store


@dataclass
class VerifyMemo:
    """The memo folder (``R/cache/verify-memo``), used by one walk.

    Reads and writes are best effort: the memo only saves work, so a file it cannot read is a miss
    and a file it cannot write is logged and skipped. Counts what the walk did for reports.
    """

    directory: Path
    hits: int = 0
    misses: int = 0
    written: int = 0
    _used: set[str] = field(default_factory=set, init=False, repr=False)
    # key -> (role, summary as JSON text) of every entry this walk used: what the header index
    # keeps (text, not the dict handed out, which python-tuf's from_dict empties)
    _summaries: dict[str, tuple[str, str]] = field(default_factory=dict, init=False, repr=False)
    _index: HeaderIndex | None = field(default=None, init=False, repr=False)

    @classmethod
    def of_repository(cls, repo_path: Path) -> VerifyMemo:
        """The memo of the repository at ``repo_path``: derived data, beside the CPL index."""
        return cls(repo_path / "cache" / MEMO_DIR_NAME)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{_SUFFIX}"

    def recall(self, key: str, name: str) -> RoleFacts | None:
        """The facts remembered for ``key`` (role ``name``), or None (a miss)."""
        try:
            data = self._path(key).read_bytes()
        except OSError:
            data = None
        facts = None if data is None else decode_entry(data, key, name)
        if facts is None:
            self.misses += 1
        else:
            self.hits += 1
            self._used.add(key)
            self._summaries[key] = (name, _json_text(summary_of(facts)))
        return facts

    def load(self, key: str, name: str) -> RoleFacts | None:
        """The facts of an entry whose header a flat walk recalled (not counted again)."""
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        return decode_entry(data, key, name)

    def recall_header(self, key: str, name: str) -> dict[str, Any] | None:
        """The summary in the header of the entry for ``key`` (role ``name``), reading only the
        header line (or only the header index, repo_tool/verify/memo_index.py, while the entry's
        file is the one indexed); None (a miss) when there is no well-formed one. See
        repo_tool/verify/lazy.py."""
        if self._index is None:
            self._index = HeaderIndex(self.directory)
        indexed = self._index.summary(key, name, f"{self.directory}{os.sep}{key}{_SUFFIX}")
        summary, text = indexed if indexed is not None else (None, None)
        if summary is None:
            try:
                with self._path(key).open("rb") as f:
                    line = f.readline(1 << 20)
            except OSError:
                line = b""
            summary = read_header(line, key, name) if line.endswith(b"\n") else None
        if summary is None:
            self.misses += 1
        else:
            self.hits += 1
            self._used.add(key)
            self._summaries[key] = (name, text if text is not None else _json_text(summary))
        return summary

    def remember(self, key: str, name: str, facts: RoleFacts) -> None:
        """Keep ``facts`` of a role that verified with no problem (atomically; best effort)."""
        try:
            atomic_write_bytes(self._path(key), encode_entry(key, name, facts), mode=0o600)
        except OSError as e:
            logger.warning(
                "verify memo: cannot write %s (%s); the next walk verifies it again", key[:12], e
            )
            return
        self.written += 1
        self._used.add(key)
        self._summaries[key] = (name, _json_text(summary_of(facts)))

    def prune(self) -> int:
        """Delete every file the walk did not use (old versions, old keys, a killed write's
        temporary files). Call only after a clean, complete walk. Returns how many went."""
        try:
            present = list(self.directory.iterdir())
        except OSError:
            return 0
        removed = 0
        for path in present:
            if path.name.endswith(_SUFFIX) and path.name[: -len(_SUFFIX)] in self._used:
                continue
            try:
                path.unlink()
                removed += 1
            except OSError as e:
                logger.debug("verify memo: cannot remove %s (%s)", path.name, e)
        HeaderIndex.save_in(
            self.directory, {k: self._summaries[k] for k in self._used if k in self._summaries}
        )
        return removed


class VerifiedRoleMetadata(Mapping[str, Metadata[Targets]]):
    """Role name -> verified role metadata, where roles recalled from the memo are kept as their
    (hashed) bytes and parsed on first use: a website build never looks at them, a `submit`
    looks at one or two. Equal to the plain mapping a memo-free walk returns."""

    def __init__(
        self, roles: Mapping[str, Metadata[Targets] | bytes | Callable[[], bytes]]
    ) -> None:
        self._roles = dict(roles)

    def __getitem__(self, name: str) -> Metadata[Targets]:
        value = self._roles[name]
        if not isinstance(value, Metadata):
            # bytes checked against the snapshot's pin, or a function reading and checking them
            value = Metadata[Targets].from_bytes(value if isinstance(value, bytes) else value())
            self._roles[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._roles)

    def __len__(self) -> int:
        return len(self._roles)

    def __repr__(self) -> str:
        return f"VerifiedRoleMetadata({list(self._roles)})"
