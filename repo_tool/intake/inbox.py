"""The inbox: which files are bundles, reading them safely, keeping rejected ones, knowing old ones.

An inbox folder is written by others (an upload area, a shared drive), so everything in it is hostile:

- Listing never follows a symbolic link, and reading opens the file with ``O_NOFOLLOW`` and checks it
  is a regular file, so a link to a provider key file or ``/proc/self/environ`` is never read or
  copied, not even when it is swapped in between listing and reading.
- A rejected bundle is kept privately (0700 folders, 0600 files) and bounded: at most a prefix as
  large as any acceptable bundle, with the SHA-256 and length of the whole file in the report, so a
  3 GiB junk file costs no more disk than a real bundle. A file already kept is not kept again.
- A scheduled ``ingest`` sees the bundles it accepted on its last run still in the inbox; they are
  recognised (the role version they carry is the one the repository holds, byte for byte) and
  reported as accepted again, changing nothing.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import Metadata, Targets

from metadata_templates import naming
from metadata_templates.atomic import atomic_write_bytes, errors_name
from repo_tool.intake.bundle import (
    BUNDLE_SUFFIX,
    KIND_ADVISORY,
    KIND_DEPOSIT,
    KIND_SPLIT_BINS,
    MANIFEST,
    RELEASE_NOTES,
    ROLE,
    Bundle,
    BundleError,
    bundle_size_limit,
    member_limits,
    parse_bundle,
)

logger = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_CHUNK = 1024 * 1024
# O_NONBLOCK: opening a FIFO planted in the inbox must not hang a cron job waiting for a writer.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
)


@dataclass(frozen=True)
class KeptCopy:
    """What was kept of a rejected file: its length, and the size and SHA-256 of the kept copy.

    When the file was larger than the cap only a prefix is kept and ``kept_sha256`` is the prefix's:
    hashing the rest would cost as much time as copying it, which is what the cap prevents.
    """

    length: int
    kept_bytes: int
    kept_sha256: str

    @property
    def truncated(self) -> bool:
        return self.kept_bytes < self.length

    def to_dict(self) -> dict[str, object]:
        return {
            "length": self.length,
            "kept_bytes": self.kept_bytes,
            "kept_sha256": self.kept_sha256,
            "truncated": self.truncated,
        }


def list_inbox(sources: Iterable[Path]) -> list[Path]:
    """The bundles named by ``sources``: files as given, and the ``*.cflb`` entries of folders.

    A folder's entries are listed by name only, never followed or opened here: a link or a special
    file named ``*.cflb`` is listed like any other and then rejected by ``read_bundle_file``,
    which opens without following links and reads only regular files.
    """
    found: list[Path] = []
    for source in sources:
        if not source.is_dir():  # the operator's own folder argument may be a link; entries not
            found.append(source)
            continue
        with os.scandir(source) as entries:
            found.extend(sorted(Path(e.path) for e in entries if e.name.endswith(BUNDLE_SUFFIX)))
    return found


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _open_regular(path: Path) -> int:
    """Open ``path`` for reading without following a final link; only a regular file.

    Raises:
        BundleError: a link, not a regular file, or unreadable.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BundleError(
                f"{path.name}: found a symbolic link, expected a regular file (links are never followed)"
            ) from e
        raise BundleError(f"{path.name}: cannot read ({e.strerror})") from e
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BundleError(f"{path.name}: found {_kind(mode)}, expected a regular file")
    os.set_blocking(fd, True)
    return fd


def read_bundle_file(path: Path, *, role_size_cap: int) -> Bundle:
    """Read and parse one bundle from the inbox, refusing links, special files and oversized files
    before any byte is parsed.

    Raises:
        BundleError: a link or special file, too large, unreadable, or malformed.
    """
    limit = bundle_size_limit(role_size_cap)
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise BundleError(f"{path.name}: size: found {size} bytes, expected at most {limit}")
        # One read into private memory, then views: a mapping would let whoever can still write the
        # inbox file change the bytes between the gateway's hashing and the blob store's write. The
        # file may grow after fstat: read no more than it had, plus one byte to notice.
        try:
            data = handle.read(size + 1)
        except OSError as e:
            raise BundleError(f"{path.name}: cannot read ({e.strerror})") from e
    if len(data) > size:
        raise BundleError(
            f"{path.name}: size: found it growing while read (more than {size} bytes), expected a "
            "complete bundle"
        )
    # Messages name the bundle by its file name: reports travel back to the manufacturer, who has
    # no business seeing the provider's inbox layout.
    return parse_bundle(data, source=path.name, role_size_cap=role_size_cap)


def rejected_copy_cap(*, image_size_cap: int, role_size_cap: int) -> int:
    """How much of a rejected file is kept: all of any bundle the gateway could have accepted
    (the largest image and role, the manifest, release notes and ZIP overhead), no more."""
    limits = member_limits(role_size_cap)
    return image_size_cap + limits[ROLE] + limits[MANIFEST] + limits[RELEASE_NOTES] + 64 * 1024


def keep_rejected_copy(source: Path, destination: Path, *, cap: int) -> KeptCopy | None:
    """Copy at most ``cap`` bytes of ``source`` to a new private (0600) file.

    Returns None, copying nothing, when ``source`` is a link, not a regular file or unreadable: a
    rejected link's target is never read.

    Raises:
        OSError: the destination cannot be written (the rejected/ folder is the provider's own).
    """
    try:
        fd = _open_regular(source)
    except BundleError:
        return None
    digest = hashlib.sha256()
    kept = 0
    out = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    with errors_name(destination), os.fdopen(fd, "rb") as handle, os.fdopen(out, "wb") as copy:
        length = os.fstat(handle.fileno()).st_size
        while kept < cap and (chunk := handle.read(min(_CHUNK, cap - kept))):
            digest.update(chunk)
            copy.write(chunk)
            kept += len(chunk)
        copy.flush()
        os.fsync(copy.fileno())
    return KeptCopy(max(length, kept), kept, digest.hexdigest())


def share_earlier_copy(rejected_root: Path, copy: Path, kept: KeptCopy, kept_at: str) -> str | None:
    """Drop ``copy`` if an identical file was kept before, and say where; else remember this one.

    A rejected bundle left in the inbox is rejected again by every scheduled run; its report is
    written each time, but its bytes are kept once. Identical means the same length and the same
    SHA-256 of the kept bytes. The record is written after the copy, so a crash in between only
    costs a second copy.

    Returns:
        Where the earlier copy is (relative to the repository), or None if this is the first.
    """
    index = rejected_root / ".kept"
    make_private_dir(index)
    record = index / f"{kept.kept_sha256}-{kept.length}"
    try:
        earlier = record.read_text().strip()
    except OSError:
        earlier = ""
    if earlier and (rejected_root.parent / earlier).is_file():
        copy.unlink(missing_ok=True)
        return earlier
    atomic_write_bytes(record, f"{kept_at}\n".encode(), mode=PRIVATE_FILE)
    return None


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by the provider's account only."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)  # mkdir's mode is masked by the umask


def already_accepted(
    bundle: Bundle,
    roles: Mapping[str, int],
    stored_role: Callable[[str, int], bytes | None],
) -> str | None:
    """Why ``bundle`` is one the repository accepted before, or None if it is not.

    A bundle was accepted exactly when the role version it carries is in the repository's current
    head and the stored metadata of that version is byte for byte the bundle's role: a role
    version is admitted once, so nothing else can match. Nothing but the committed head counts, so
    a bundle whose ingest was interrupted before its commit is judged again.
    """
    role_name = bundle.role_name  # the manufacturer role, or the bin a deposit goes to
    try:
        version = Metadata[Targets].from_bytes(bundle.role_bytes).signed.version
    except (
        Exception
    ):  # python-tuf raises several types for malformed metadata; the gateway names it
        return None
    if not isinstance(version, int) or version < 1 or version > roles.get(role_name, 0):
        return None
    stored = stored_role(role_name, version)
    if stored != bundle.role_bytes:
        return None
    if bundle.kind == KIND_DEPOSIT:
        # The role alone does not make the bundle the one accepted: its manifest must name a
        # target of that role whose bytes are the bundle's image, or the gateway judges it (a
        # replayed role with an edited manifest is then rejected, and nothing of it is echoed).
        lodged = Metadata[Targets].from_bytes(stored).signed.targets.get(bundle.target)
        if (
            not naming.is_image_target_path(bundle.target)
            or lodged is None
            or lodged.hashes.get("sha256") != hashlib.sha256(bundle.image).hexdigest()
        ):
            return None
    if bundle.kind == KIND_ADVISORY:
        lodged = Metadata[Targets].from_bytes(stored).signed.targets.get(bundle.target)
        if (
            lodged is None
            or lodged.hashes.get("sha256") != hashlib.sha256(bundle.advisory or b"").hexdigest()
        ):
            return None
    if not _bins_as_stored(bundle, stored, roles, stored_role):
        return None
    what = f"deposit of {bundle.target}" if bundle.kind == KIND_DEPOSIT else bundle.kind
    return (
        f"already accepted: this {what} is {role_name} version {version} in the repository; "
        "nothing changed"
    )


def _bins_as_stored(
    bundle: Bundle,
    stored: bytes,
    roles: Mapping[str, int],
    stored_role: Callable[[str, int], bytes | None],
) -> bool:
    """Whether every bin the bundle carries is a stored version byte for byte, and a split carries
    every bin its role delegates: a replay with a bin dropped, renamed, re-signed or borrowed from
    another manufacturer is then judged by the gateway, not reported accepted."""
    for name, data in bundle.bins:
        try:
            version = Metadata[Targets].from_bytes(data).signed.version
        except Exception:  # python-tuf raises several types; the gateway names it
            return False
        if not 1 <= version <= roles.get(name, 0) or stored_role(name, version) != data:
            return False
    if bundle.kind == KIND_SPLIT_BINS:
        delegations = Metadata[Targets].from_bytes(stored).signed.delegations
        succinct = None if delegations is None else delegations.succinct_roles
        if succinct is None or len(bundle.bins) != succinct.number_of_bins:
            return False
    return True
