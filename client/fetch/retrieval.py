"""``cfl download``: fetch the chosen verified images into the supplier's output folder.

Selection is client/fetch/selection.py's; verification is ngclient's (through the session); placing the
files and the manifest is client/fetch/download.py's. Images of a manufacturer whose role did not verify
are not downloaded; the others are, and the result says what was left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from client.estate.check import check_with_session
from client.fetch.download import OutputFolder, PlacedFile
from client.fetch.selection import Wanted, manufacturers_of_targets, select_paths, select_targets
from client.log.transparency import verify_images_logged
from client.log.withdrawal_events import cross_check
from client.trust.catalogue import CatalogueImage
from client.trust.home import ClientHome
from client.trust.library import load_catalogue, open_guarded_session
from client.trust.session import Session, UnverifiedRole
from metadata_templates.errors import ConfigurationError, field_error

Progress = Callable[[Sequence[Wanted]], Iterable[Wanted]]


@dataclass(frozen=True)
class DownloadResult:
    """What a download placed, and what it could not verify.

    Attributes:
        out_dir: the output folder.
        manifest: the manifest written beside the files.
        placed: every file placed (fetched now or already present).
        unverified: roles of manufacturers asked for that did not verify; nothing of theirs was
            downloaded.
        notes: the release notes decrypted beside their images.
        notes_skipped: why an image's notes were not written (not addressed to this organisation);
            the command line shows each as a warning.
    """

    out_dir: Path
    manifest: Path
    placed: tuple[PlacedFile, ...]
    unverified: tuple[UnverifiedRole, ...]
    notes: tuple[dict[str, Any], ...] = ()
    notes_skipped: tuple[str, ...] = ()

    @property
    def fetched(self) -> int:
        """Files downloaded by this run (the rest were already in the folder)."""
        return sum(not p.reused for p in self.placed)


def _no_progress(items: Sequence[Wanted]) -> Iterable[Wanted]:
    return items


def check_output_folder(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder that cannot be one.

    Raises:
        ConfigurationError: the path, or the nearest existing folder above it, is not a folder.
    """
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a regular file)"
        raise ConfigurationError(
            field_error(option, str(path), "a folder, or a path where one can be made") + where
        )


def download_images(
    home: ClientHome,
    *,
    out_dir: Path,
    targets: Sequence[str] = (),
    estate: Path | None = None,
    fragment_size: int | None = None,
    offline: bool = False,
    progress: Progress = _no_progress,
    notes_key: Any | None = None,
    now: datetime | None = None,
) -> DownloadResult:
    """Download ``targets`` (or every image on the upgrade paths of ``estate``) into ``out_dir``.

    Online, each image's deposit must be included in the transparency log the timestamp binds,
    consistent with the checkpoint the home trusts (client/log/transparency.py). With ``notes_key``, each
    image's release notes addressed to this organisation are decrypted beside it.

    Raises:
        ConfigurationError: neither or both of ``targets`` and ``estate``; a bad fragment size; the
            home is not initialised; the host refused the home's credentials.
        VerificationError: a named target is not in the verified library or was withdrawn, or a
            file failed verification.
        UnavailableError: the library could not be reached, or the home is locked.
    """
    if bool(targets) == (estate is not None):
        raise ConfigurationError("give TARGET... or --estate ESTATE.csv (one of them)")
    check_output_folder(out_dir, "--out")
    if fragment_size is not None and fragment_size < 1:
        raise ConfigurationError(
            f"--fragment-size: found {fragment_size}, expected a positive number of bytes"
        )
    home.load_config()
    with home.lock():
        session, guard = open_guarded_session(home, offline=offline, deferred=True)
        if estate is not None:
            report, catalogue, _advisories = check_with_session(session, estate, strict=False)
            wanted = select_paths(report)
            unverified = catalogue.unverified
        else:
            asked = manufacturers_of_targets(targets)
            catalogue = load_catalogue(session, asked)
            unverified = catalogue.unverified_among(asked)
            lost = {u.manufacturer_id for u in unverified}
            reachable = [t for t in targets if manufacturers_of_targets([t]).isdisjoint(lost)]
            wanted = select_targets(reachable, catalogue.images)
        if not offline and now is not None:
            # Every withdrawal logged since the home last searched the log must be in the
            # withdrawal list the selection above used (client/log/withdrawal_events.py).
            verify_images_logged(
                home,
                [item.image for item in wanted],
                now=now,
                also=lambda checkpoint, fetch: cross_check(guard, checkpoint, fetch),
            )
        guard.commit()
        # The folder is made only once there is something verified to put in it; under the lock,
        # any partial file already there is from a crashed earlier run.
        folder = OutputFolder(out_dir, fragment_size=fragment_size)
        folder.remove_partials()
        placed: list[PlacedFile] = []
        for item in progress(wanted):
            source = (
                None if folder.is_present(item.image) else session.download(item.image.target_path)
            )
            placed.append(folder.place(item.image, source, device_count=item.device_count))
        manifest = folder.write_manifest(placed)
        notes, skipped = (
            _download_notes(session, [item.image for item in wanted], out_dir, notes_key)
            if notes_key is not None
            else ([], [])
        )
    return DownloadResult(
        out_dir, manifest, tuple(placed), unverified, tuple(notes), tuple(skipped)
    )


def _download_notes(
    session: Session, images: list[CatalogueImage], out_dir: Path, key: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each image's notes beside it, and why any were skipped (not addressed to this organisation)."""
    from client.notes.release_notes import notes_file_name, read_notes, write_notes
    from metadata_templates.notes import NotRecipientError

    written: list[dict[str, Any]] = []
    skipped: list[str] = []
    for image in images:
        if image.cfl.release_notes is None:
            continue
        try:
            notes = read_notes(session, image.target_path, key)
        except NotRecipientError as e:
            skipped.append(str(e))
            continue
        path = out_dir / notes_file_name(image.target_path)
        write_notes(path, notes)
        written.append(notes.to_json(path))
    return written, skipped
