"""The ceremony's two files: the proposal (what is to be signed) and a detached signature.

Both are plain JSON. A proposal carries the metadata it was built from as well as the new metadata, so
a key holder with no repository can see exactly what changes, and the repository can refuse a
proposal that no longer applies (another change was committed since it was started).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from securesystemslib.signer import Signature
from tuf.api.metadata import Metadata, Root, Targets

from metadata_templates import SCHEMA_VERSION
from metadata_templates.errors import RejectedInputError

PROPOSAL_KIND = "cfl-ceremony-proposal"
SIGNATURE_KIND = "cfl-ceremony-signature"
CEREMONY_ROLES = (Root.type, Targets.type)


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class OnlineSigner:
    """Where the repository will find the private half of a key a root ceremony adds for an online
    role (a URI such as ``hsm:...`` or ``encfile:...``; never a secret)."""

    role: str
    keyid: str
    uri: str


@dataclass(frozen=True)
class Proposal:
    """A proposed new version of root or targets, unsigned, with the state it was built from.

    Attributes:
        role: ``root`` or ``targets``.
        trusted_root: the root the repository held when the proposal was made (signed).
        previous: the role's current metadata (signed); for root the same as ``trusted_root``.
        proposed: the new metadata; its signatures are empty until ``finish``.
        created: when ``start`` ran (ISO 8601).
        online_signers: signer URIs for keys a root ceremony adds to online roles.
        enrolments: manufacturers' signed empty role version 1 (role name, the exact bytes as
            text) that `finish` stages with the delegations this targets version adds (issue 13).
            Not covered by the holders' signatures: `finish` verifies each against the new
            delegation itself.
    """

    role: str
    trusted_root: Metadata[Root]
    previous: Metadata[Any]
    proposed: Metadata[Any]
    created: str
    online_signers: tuple[OnlineSigner, ...] = field(default=())
    enrolments: tuple[tuple[str, str], ...] = field(default=())

    @property
    def signed_sha256(self) -> str:
        """The SHA-256 of the canonical bytes every signature covers: it names what was signed."""
        return sha256_hex(self.proposed.signed_bytes)

    @property
    def version(self) -> int:
        return int(self.proposed.signed.version)

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "kind": PROPOSAL_KIND,
            "role": self.role,
            "created": self.created,
            "signed_sha256": self.signed_sha256,
            "trusted_root": self.trusted_root.to_dict(),
            "previous": self.previous.to_dict(),
            "proposed": self.proposed.to_dict(),
            "online_signers": [
                {"role": s.role, "keyid": s.keyid, "uri": s.uri} for s in self.online_signers
            ],
        }
        if self.enrolments:  # absent otherwise, so older proposals read back byte for byte
            doc["enrolments"] = dict(self.enrolments)
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> Proposal:
        """Read and check a proposal file.

        Raises:
            RejectedInputError: not JSON, not a proposal, or metadata that python-tuf cannot read or
                that does not fit together (wrong types, version not one above the previous).
        """
        doc = _json_object(data, source)
        _expect(doc, "kind", PROPOSAL_KIND, source)
        _expect(doc, "schema_version", SCHEMA_VERSION, source)
        role = doc.get("role")
        if role not in CEREMONY_ROLES:
            raise RejectedInputError(
                f"{source}: role: found {role!r}, expected one of {', '.join(CEREMONY_ROLES)}"
            )
        trusted_root = _metadata(doc, "trusted_root", Root, source)
        role_type = Root if role == Root.type else Targets
        previous = _metadata(doc, "previous", role_type, source)
        proposed = _metadata(doc, "proposed", role_type, source)
        if proposed.signatures:
            raise RejectedInputError(
                f"{source}: proposed.signatures: found {len(proposed.signatures)}, expected none "
                "(signatures travel in detached signature files)"
            )
        if proposed.signed.version != previous.signed.version + 1:
            raise RejectedInputError(
                f"{source}: proposed.signed.version: found {proposed.signed.version}, expected "
                f"{previous.signed.version + 1} (one above the previous {role})"
            )
        created = doc.get("created")
        signers_doc = doc.get("online_signers", [])
        if not isinstance(created, str) or not isinstance(signers_doc, list):
            raise RejectedInputError(
                f"{source}: created/online_signers: found {type(created).__name__}/"
                f"{type(signers_doc).__name__}, expected a timestamp and a list"
            )
        try:
            online = tuple(
                OnlineSigner(str(s["role"]), str(s["keyid"]), str(s["uri"])) for s in signers_doc
            )
        except (KeyError, TypeError) as e:
            raise RejectedInputError(
                f"{source}: online_signers: found {signers_doc!r}, expected "
                '[{"role", "keyid", "uri"}, ...]'
            ) from e
        enrolments_doc = doc.get("enrolments", {})
        if not isinstance(enrolments_doc, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in enrolments_doc.items()
        ):
            raise RejectedInputError(
                f"{source}: enrolments: found {type(enrolments_doc).__name__}, expected an object "
                "of role name -> signed role metadata text"
            )
        proposal = cls(
            role, trusted_root, previous, proposed, created, online, tuple(enrolments_doc.items())
        )
        recorded = doc.get("signed_sha256")
        if recorded != proposal.signed_sha256:
            raise RejectedInputError(
                f"{source}: signed_sha256: found {recorded!r}, expected {proposal.signed_sha256} "
                "(the proposal was edited after it was made)"
            )
        return proposal


@dataclass(frozen=True)
class SignatureFile:
    """One key holder's detached signature over a proposal's new metadata."""

    role: str
    version: int
    signed_sha256: str
    signature: Signature

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "kind": SIGNATURE_KIND,
            "role": self.role,
            "version": self.version,
            "signed_sha256": self.signed_sha256,
            "signature": self.signature.to_dict(),
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> SignatureFile:
        """Read and check a signature file (the signature itself is verified by ``finish``).

        Raises:
            RejectedInputError: not JSON, not a signature file, or a malformed field.
        """
        doc = _json_object(data, source)
        _expect(doc, "kind", SIGNATURE_KIND, source)
        _expect(doc, "schema_version", SCHEMA_VERSION, source)
        role, version, digest = doc.get("role"), doc.get("version"), doc.get("signed_sha256")
        if (
            role not in CEREMONY_ROLES
            or not isinstance(version, int)
            or isinstance(version, bool)
            or not isinstance(digest, str)
        ):
            raise RejectedInputError(
                f"{source}: role/version/signed_sha256: found {role!r}/{version!r}/{digest!r}, "
                "expected root|targets, an integer and a SHA-256"
            )
        try:
            signature = Signature.from_dict(dict(doc["signature"]))
        except (KeyError, TypeError, ValueError) as e:
            raise RejectedInputError(
                f"{source}: signature: found {doc.get('signature')!r}, expected "
                '{"keyid": ..., "sig": ...}'
            ) from e
        return cls(role, version, digest, signature)


def _json_object(data: bytes, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise RejectedInputError(f"{source}: found no JSON ({e}), expected a ceremony file") from e
    if not isinstance(doc, dict):
        raise RejectedInputError(
            f"{source}: found a JSON {type(doc).__name__}, expected a JSON object"
        )
    return doc


def _expect(doc: dict[str, Any], key: str, value: object, source: str) -> None:
    if doc.get(key) != value:
        raise RejectedInputError(f"{source}: {key}: found {doc.get(key)!r}, expected {value!r}")


def _metadata(doc: dict[str, Any], key: str, signed_type: type[Any], source: str) -> Metadata[Any]:
    raw = doc.get(key)
    if not isinstance(raw, dict):
        raise RejectedInputError(
            f"{source}: {key}: found {type(raw).__name__}, expected TUF {signed_type.type} metadata"
        )
    try:
        md: Metadata[Any] = Metadata.from_dict(json.loads(json.dumps(raw)))
    except Exception as e:  # python-tuf raises several types for malformed metadata
        raise RejectedInputError(
            f"{source}: {key}: found unreadable metadata ({e}), expected TUF {signed_type.type} metadata"
        ) from e
    if not isinstance(md.signed, signed_type):
        raise RejectedInputError(
            f"{source}: {key}.signed._type: found {md.signed.type!r}, expected {signed_type.type!r}"
        )
    return md
