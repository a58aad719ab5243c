"""Which files of a repository working directory R a backup holds, which it leaves out, and which
of them can change. Pure: paths, the head and the configuration in, answers out.

A backup holds what cannot be made again: ``cfl-repo.json`` (policy, public keys, signer URIs; no
private key), ``events.jsonl``, and the folders ``state/`` (the head, every signed metadata version,
the duplicate index, the transparency log), ``blobs/`` (images and provider documents) and
``rejected/`` (refused bundles and their reports, the evidence behind each ``ingest-rejected``
event).

It leaves out, by design:

- private keys: ``keys/`` and any file the configuration names as a private key (a ``file2:`` or
  ``encfile:`` signer, the log key), wherever it lies. Each key is backed up by its custodian (an
  HSM's own backup, an offline copy held by the key holder); nothing here copies one.
- the published tree (``public/``): a publish from the restored repository writes it again, byte
  for byte, and the static host holds a copy.
- derived caches (``cache/``, ``site-cache/``), the lock, temporary files of atomic writes and
  blob staging, and anything else cfl-repo does not write (reported, never copied).

The consistency rule: a backup is the files R held while one command held the repository lock,
so its head and everything the head names belong together. Only what may change is read under the
lock (the head, the configuration, orphan metadata versions, the transparency log, the size of the
append-only event log); everything else is immutable by the repository's own rules (a blob is
named by its hash and never rewritten, a committed metadata version is never replaced, a rejected
bundle's folder is written once) and is read after the lock is released, so an ingest waits only
for the short part.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from repo_tool.signing.keys import EncryptedFileSigner, resolve_uri
from repo_tool.state.config import CONFIG_FILE, RepoConfig
from repo_tool.state.head import Head

EVENT_LOG = "events.jsonl"
HEAD_PATH = "state/head.json"
HELD_FILES = (CONFIG_FILE, EVENT_LOG)
HELD_FOLDERS = ("blobs", "rejected", "state")
PRIVATE_FOLDERS = ("rejected",)  # restored 0700, as `ingest` makes them

LEFT_OUT = {
    "keys": "private keys: each custodian backs up its own (HSM backup, offline copy); never copied",
    "public": "the published tree: a publish from the restored repository writes it again",
    "cache": "derived data (the verified-role memo, backup memos), rebuilt on demand",
    "site-cache": "derived data (website builds for object storage), rebuilt on demand",
    "release-notes": "plaintext release notes kept by older versions: sensitive, never copied",
}
LOCK_FILE = ".lock"  # the repository lock: never held, and not worth reporting
UNKNOWN = "not written by cfl-repo: never copied"
KEY_FILE = "a private key file named by cfl-repo.json: never copied"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_METADATA = re.compile(r"state/metadata/([^/]+)/([1-9][0-9]*)(?:\.added)?\.json")
_KEY_SCHEMES = (CryptoSigner.SCHEME, "file", EncryptedFileSigner.SCHEME)
MAX_PATH = 1024


class Kind(Enum):
    """How a held file may change, which decides when it is read and whether it is hashed again."""

    CONTENT_NAMED = "content-named"  # its name is the SHA-256 of its bytes: never hashed to list it
    IMMUTABLE = "immutable"  # never rewritten once the head read under the lock names it
    APPEND_ONLY = "append-only"  # the event log: its first N bytes never change once written
    MUTABLE = "mutable"  # may be replaced by the next command: read under the lock


def top_level(name: str) -> str | None:
    """Why an entry directly under R is left out, or None when the backup holds it."""
    if name in HELD_FILES or name in HELD_FOLDERS:
        return None
    return LEFT_OUT.get(name, UNKNOWN)


def is_temporary(relative: str) -> bool:
    """The lock, or a file an atomic write or a blob staging is in the middle of (or a crash left):
    never held, never reported."""
    name = relative.rsplit("/", 1)[-1]
    return (
        relative == LOCK_FILE
        or (name.startswith(".") and name.endswith(".tmp"))
        or (relative.startswith("blobs/") and name.startswith(".staging-"))
    )


def content_sha(relative: str) -> str | None:
    """The SHA-256 a file's name gives for its bytes (a blob, a duplicate-index document), else None."""
    parts = relative.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        sha = parts[2]
        if _SHA256.fullmatch(sha) and parts[1] == sha[:2]:
            return sha
    if len(parts) == 3 and parts[:2] == ["state", "index"] and parts[2].endswith(".json"):
        sha = parts[2].removesuffix(".json")
        if _SHA256.fullmatch(sha):
            return sha
    return None


def kind_of(relative: str, head: Head) -> Kind:
    """How ``relative`` (a held file) may change while ``head`` is current."""
    if content_sha(relative) is not None:
        return Kind.CONTENT_NAMED
    if relative == EVENT_LOG:
        return Kind.APPEND_ONLY
    if relative.startswith("rejected/"):
        return Kind.IMMUTABLE
    found = _METADATA.fullmatch(relative)
    # A version above the committed one is an orphan of a killed command, which the next command
    # replaces (Repository.write_staged): it may change, so it is read under the lock.
    if found is not None and int(found.group(2)) <= head.committed_version(found.group(1)):
        return Kind.IMMUTABLE
    return Kind.MUTABLE


def is_private(relative: str) -> bool:
    """Whether ``relative`` lies in a folder restored readable by the provider's account only."""
    return relative.split("/", 1)[0] in PRIVATE_FOLDERS


def check_path(relative: object) -> str:
    """A manifest's file path, checked before anything is written under it.

    Raises:
        ValueError: not a plain relative path under one of the held files and folders (absolute,
            ``..``, empty segments, a backslash or NUL, or outside what a backup holds).
    """
    if (
        not isinstance(relative, str)
        or not relative
        or len(relative) > MAX_PATH
        or "\\" in relative
        or "\x00" in relative
    ):
        raise ValueError(f"found {relative!r}, expected a relative path of at most {MAX_PATH}")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"found {relative!r}, expected no empty, '.' or '..' segment")
    if (len(parts) == 1 and parts[0] in HELD_FILES) or (
        len(parts) > 1 and parts[0] in HELD_FOLDERS
    ):
        return relative
    raise ValueError(
        f"found {relative!r}, expected {' or '.join(HELD_FILES)}, or a path under "
        f"{', '.join(f'{folder}/' for folder in HELD_FOLDERS)}"
    )


def metadata_path(role: str, version: int) -> str:
    return f"state/metadata/{role}/{version}.json"


def head_references(head: Head) -> list[str]:
    """The files ``head`` names directly: a manifest lacking one cannot be a whole repository."""
    refs = [CONFIG_FILE, HEAD_PATH]
    if head.event_seq:
        refs.append(EVENT_LOG)
    refs += [metadata_path("root", version) for version in range(1, head.root_version + 1)]
    versions = {"targets": head.targets_version, **head.roles}
    versions |= {"snapshot": head.snapshot_version, "timestamp": head.timestamp_version}
    refs += [metadata_path(role, version) for role, version in versions.items() if version]
    for sha in (head.cpl_sha256, head.withdrawals_sha256, head.suppliers_sha256):
        if sha:
            refs.append(f"blobs/{sha[:2]}/{sha}")
    if head.index_sha256:
        refs.append(f"state/index/{head.index_sha256}.json")
    return refs


def private_key_paths(config: RepoConfig, repo: Path) -> list[Path]:
    """Every private key file ``config`` names (file-based signer URIs, the log key), absolute.

    HSM, KMS and ``offline:`` keys name no file here; their custodians hold them.
    """
    found: list[Path] = []
    for refs in config.signers.values():
        for ref in refs:
            scheme, _, rest = resolve_uri(ref.uri, repo).partition(":")
            if scheme in _KEY_SCHEMES and rest:
                path = Path(rest)
                found.append(path if path.is_absolute() else (repo / path).resolve())
    if config.log is not None:
        found.append((repo / config.log.key).resolve())
    return sorted(set(found))
