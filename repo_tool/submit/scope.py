"""What ``cfl-repo submit`` reads of the published library: only what it signs on top of.

A manufacturer's submit verifies the published tree from its trusted root before it signs (so a
hostile host cannot make it sign a rollback or a foreign target), but it needs only part of it: the
root chain, timestamp, snapshot and top-level targets with the provider's documents (CPL, notes
keys and grants), which `repo_tool.verify` always checks, then its own manufacturer role and, once
that role is split into hash bins, the bins it re-signs. Walking every bin of every manufacturer
made a deposit's cost grow with the library (17.5 s at 10,000 images against 0.08 s at 100).

- renewal and ``--split-bins``: the manufacturer's role and all its bins (a renewal decides from
  every bin's expiry which to re-sign; a split redistributes every image);
- deposit: the manufacturer's role, then, when it is split, only the bin(s) the new targets go to
  (``naming.bin_for_target``, the rule python-tuf's SuccinctRoles applies for every client).

Roles no manufacturer owns (provider roles) are always walked. Each role that is walked is verified
in full, exactly as ``cfl-repo verify`` does; ``cfl-repo verify`` and publish still walk everything.

The provider's CPL is one signed document that grows with the library, and a deposit needs only the
entries it declares: with a ``CplCache`` (repo_tool/intake/cpl_cache.py) a CPL an earlier deposit verified
is not downloaded again, and only the declared entries are parsed from the kept copy.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from metadata_templates import naming
from metadata_templates.cpl_document import CplDocument
from metadata_templates.notes_paths import notes_target_path
from repo_tool.gateway.bins import succinct_of
from repo_tool.intake.cpl_cache import CplCache
from repo_tool.intake.describe import digest_image, target_path_for
from repo_tool.intake.image import parse_image
from repo_tool.submit.deposit import load_source_library
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import NotFound, Reader
from repo_tool.verify.walk import CplLoader

RoleFilter = Callable[[str], bool]


def manufacturer_roles(manufacturer_id: str, bins: Collection[str] | None = None) -> RoleFilter:
    """A ``wanted`` filter for the verify walk: roles no manufacturer owns, this manufacturer's role
    and its bins (all of them when ``bins`` is None, else only those named)."""

    def wanted(role: str) -> bool:
        owner = naming.owner_of_role(role)
        if owner is None:
            return True
        if owner != manufacturer_id:
            return False
        return bins is None or naming.manufacturer_of_role(role) is not None or role in bins

    return wanted


def deposit_target_paths(
    image: bytes, cpl_entry_ids: Collection[str], with_notes: bool, library: PublishedLibrary
) -> list[str]:
    """The target paths a deposit of ``image`` adds (the image, and its notes target when notes are
    given), derived as ``build_submission`` derives them. Empty when the first CPL entry is not on
    the published CPL: ``build_submission`` then refuses the deposit with its own message.

    Raises:
        RejectedInputError: the image is malformed (the same error ``build_submission`` gives).
    """
    first = next(iter(cpl_entry_ids), None)
    entry = None if library.cpl is None or first is None else library.cpl.by_id().get(first)
    if entry is None:
        return []
    header = parse_image(image)
    path = target_path_for(header, entry.device_type, digest_image(image, header).file_sha256)
    return [path, notes_target_path(path)] if with_notes else [path]


def caching_reader(read: Reader) -> Reader:
    """Remember what ``read`` returned, so a second walk sees the very same files as the first
    (one consistent snapshot of the source) without fetching them again."""
    cache: dict[str, bytes | NotFound] = {}

    def cached(relative: str) -> bytes:
        if relative not in cache:
            try:
                cache[relative] = read(relative)
            except NotFound as e:
                cache[relative] = e
        found = cache[relative]
        if isinstance(found, NotFound):
            raise NotFound(relative)
        return found

    return cached


def indexed_cpl(cache: CplCache | None, entry_ids: Collection[str]) -> CplLoader:
    """A ``CplLoader`` for a deposit declaring ``entry_ids``: those entries of the cache's copy of
    the signed CPL when it holds one that lists them all, else the CPL read and parsed whole (then
    kept for the next deposit). It remembers what it returned, so a second walk of the same source
    parses nothing again."""
    loaded: dict[str, CplDocument] = {}

    def load(sha256: str, fetch: Callable[[], bytes | None]) -> CplDocument | None:
        if sha256 in loaded:
            return loaded[sha256]
        document = None if cache is None else cache.lookup(sha256, entry_ids)
        if document is None:
            data = fetch()
            if data is None:
                return None
            document = CplDocument.from_bytes(data)  # ValueError: the walk reports it
            if cache is not None:
                cache.store(sha256, data)  # only a CPL that parsed whole is kept
        loaded[sha256] = document
        return document

    return load


def load_for_deposit(
    source: str,
    read: Reader,
    root_bytes: bytes,
    *,
    now: datetime,
    manufacturer_id: str,
    image: bytes,
    cpl_entry_ids: Collection[str],
    with_notes: bool,
    cpl_cache: CplCache | None = None,
) -> PublishedLibrary:
    """The verified part of the library at ``source`` a deposit signs on top of.

    First everything but bins (the CPL gives the image's path, the manufacturer role says whether it
    is split), then, when it is split, again with only the bins the new targets go to. The CPL is
    read through ``cpl_cache`` when given: the library's ``cpl`` then may hold only the entries
    in ``cpl_entry_ids`` (all the deposit looks up).

    Raises:
        ConfigurationError: the source holds no published CFL.
        VerificationError: what the deposit needs fails verification.
        UnavailableError: the source cannot be reached.
        RejectedInputError: the image is malformed.
    """
    read = caching_reader(read)
    cpl_loader = indexed_cpl(cpl_cache, cpl_entry_ids)
    library = load_source_library(
        source,
        read,
        root_bytes,
        now=now,
        wanted=manufacturer_roles(manufacturer_id, bins=()),
        cpl_loader=cpl_loader,
    )
    succinct = succinct_of(library.role_metadata.get(naming.role_name(manufacturer_id)))
    paths = deposit_target_paths(image, cpl_entry_ids, with_notes, library)
    if succinct is None or not paths:
        return library
    bins = {succinct.get_role_for_target(path) for path in paths}
    return load_source_library(
        source,
        read,
        root_bytes,
        now=now,
        wanted=manufacturer_roles(manufacturer_id, bins),
        cpl_loader=cpl_loader,
    )
