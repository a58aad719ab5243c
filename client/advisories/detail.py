"""``cfl advisories --detail ID``: an advisory's technical detail, for the entitled suppliers before
its disclosure and for anyone after it.

The newest revision of the advisory is read and checked as ``cfl advisories`` reads it (a target
of its manufacturer's own role, verified by ngclient). Public detail is the signed text itself.
Encrypted detail (``<advisory target>.detail.jwe``, the release-notes envelope) is fetched through
ngclient too, opened with the organisation's key exactly as ``cfl notes`` opens release notes
(client/notes/release_notes.py: the key says which registered organisation it is), and its
plaintext must hash to the ``detail_sha256`` the manufacturer signed into the advisory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk

from client.advisories.documents import newest_paths
from client.notes.release_notes import NotesSource, published_registry
from client.trust.catalogue import VerifiedTarget
from client.trust.home import ClientHome
from client.trust.library import load_catalogue, open_session
from metadata_templates.advisory import (
    ID_PATTERN,
    Advisory,
    AdvisoryError,
    parse_advisory_target_path,
)
from metadata_templates.errors import (
    ConfigurationError,
    RejectedInputError,
    VerificationError,
    field_error,
)
from metadata_templates.notes import (
    NotRecipientError,
    decrypt_notes,
    parse_envelope,
    supplier_for_key,
)

VIA_PUBLIC = "public"
VIA_RECIPIENT = "recipient"


@dataclass(frozen=True)
class AdvisoryDetail:
    """An advisory's detail, read and checked against the signed revision."""

    advisory: Advisory
    text: str
    via: str  # VIA_PUBLIC or VIA_RECIPIENT
    entity_id: str | None  # the organisation that decrypted it; None for public detail

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        a = self.advisory
        return {
            "advisory": a.id,
            "revision": a.revision,
            "target": a.target_path,
            "detail": a.detail_state,
            "detail_target": a.detail_target,
            "disclosure": a.disclosure,
            "via": self.via,
            "entity_id": self.entity_id,
            "sha256": self.sha256,
            "length": len(self.text.encode()),
            "text": self.text,
        }


def advisory_detail(
    home: ClientHome, advisory_id: str, key: Callable[[], jwk.JWK], *, offline: bool
) -> AdvisoryDetail:
    """Refresh (unless ``offline``), verify the advisory's manufacturer and read the detail.

    Raises:
        ConfigurationError: ``advisory_id`` is not an advisory ID, or the home is unusable.
        RejectedInputError, VerificationError: as ``find_advisory`` and ``read_detail``.
        UnavailableError: the library could not be reached, or the home is locked.
    """
    match = ID_PATTERN.fullmatch(advisory_id)
    if match is None:
        raise ConfigurationError(
            field_error("--detail", advisory_id, "an advisory ID CFL-<MFR>-<YYYY>-<NNNN>")
        )
    with home.lock():
        session = open_session(home, offline=offline)
        catalogue = load_catalogue(session, [match.group(1)])
        for role in catalogue.unverified:
            raise VerificationError(f"{role.manufacturer_id}: {role.message}")
        advisory = find_advisory(session, catalogue.advisories, advisory_id)
        return read_detail(session, advisory, key)


def find_advisory(
    source: NotesSource, targets: Iterable[VerifiedTarget], advisory_id: str
) -> Advisory:
    """The newest revision of ``advisory_id`` among the verified advisory targets.

    Raises:
        RejectedInputError: no such advisory in the library.
        VerificationError: its document does not verify or parse.
    """
    path = next(
        (
            p
            for p in newest_paths(targets)
            if (parse_advisory_target_path(p) or ("", ""))[1] == advisory_id
        ),
        None,
    )
    if path is None:
        raise RejectedInputError(
            field_error("--detail", advisory_id, "the ID of an advisory in the library")
            + " (`cfl advisories` lists them)"
        )
    try:
        advisory = Advisory.from_bytes(source.download(path).read_bytes(), path)
    except AdvisoryError as e:
        raise VerificationError(str(e)) from e
    if advisory.target_path != path:
        raise VerificationError(
            f"{path}: found {advisory.id} revision {advisory.revision} inside, expected the ID "
            "and revision of its path"
        )
    return advisory


def read_detail(
    source: NotesSource, advisory: Advisory, key: Callable[[], jwk.JWK]
) -> AdvisoryDetail:
    """The advisory's detail: public as signed, or decrypted with the organisation's ``key`` (asked
    for only then) and checked against the signed ``detail_sha256``.

    Raises:
        RejectedInputError: the advisory has no detail.
        NotRecipientError: the key matches no registered organisation, or the organisation is not
            among the detail's recipients, or the key is not the one it was encrypted to.
        NotesError: the detail does not decrypt or is bound to another revision.
        VerificationError: TUF verification failed, or the plaintext differs from the signed hash.
        ConfigurationError: the home names no usable key.
    """
    if advisory.detail_state is None:
        raise RejectedInputError(
            field_error(f"{advisory.id} revision {advisory.revision} detail", None, "detail")
            + " (this advisory publishes no technical detail)"
        )
    if advisory.detail is not None:
        return AdvisoryDetail(advisory, advisory.detail, VIA_PUBLIC, None)
    assert advisory.detail_target is not None and advisory.detail_sha256 is not None
    me_key = key()
    me = supplier_for_key(published_registry(source), me_key)
    when = f"; it becomes public on {advisory.disclosure}" if advisory.disclosure else ""
    if me is None:
        raise NotRecipientError(
            f"advisory detail of {advisory.id}: not a recipient: your notes key (thumbprint "
            f"{me_key.thumbprint()}) matches no certificate in the published supplier registry",
            hint="give the key of your registered SMKI Organisation Certificate with `cfl init "
            f"--notes-key`{when}",
        )
    ciphertext = source.download(advisory.detail_target).read_bytes()
    envelope = parse_envelope(ciphertext)
    if me.entity_id not in envelope.kids:
        raise NotRecipientError(
            f"advisory detail of {advisory.id}: {me.entity_id} ({me.name}) is not a recipient "
            "(the detail is encrypted to the organisations entitled to the affected device types "
            "when the revision was signed)",
            hint=f"wait for its disclosure{when}, or ask the manufacturer",
        )
    plaintext = decrypt_notes(ciphertext, me_key, me.entity_id, image_target=advisory.target_path)
    actual = hashlib.sha256(plaintext).hexdigest()
    if actual != advisory.detail_sha256:
        raise VerificationError(
            field_error(
                f"advisory detail of {advisory.id}: plaintext SHA-256",
                actual,
                f"{advisory.detail_sha256} (detail_sha256, signed by the manufacturer)",
            )
        )
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VerificationError(
            f"advisory detail of {advisory.id}: found bytes that are not UTF-8, expected text"
        ) from e
    return AdvisoryDetail(advisory, text, VIA_RECIPIENT, me.entity_id)
