"""Enrolment bundles (issue 13): a manufacturer's signed, EMPTY role version 1.

A delegation must never point at a role with no metadata (every client walking the delegations would
fail), so with the targets key offline the delegation and the manufacturer's first role version
must land together, in one targets ceremony. The manufacturer signs an empty ``mfr-<ID>`` version 1
on its own machine (`build_enrolment`); the provider checks it as strictly as a deposit
(`check_enrolment`) and stages it with the delegation. Its first deposit is then version 2 and
needs only online keys.

The bundle is the role metadata file itself, byte for byte: the provider stages exactly the bytes
the manufacturer signed. Pure: bytes and values in, values out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from securesystemslib.signer import Signer
from tuf.api.metadata import Delegations, Metadata, Targets

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import RejectedInputError
from metadata_templates.naming import SPEC_VERSION
from repo_tool.gateway.model import RegisteredManufacturer
from repo_tool.gateway.roles import manufacturer_delegation

ENROLMENT_VERSION = 1


def build_enrolment(signers: Sequence[Signer], *, now: datetime, expires_in: timedelta) -> bytes:
    """The enrolment bundle: an empty targets role, version 1, signed by ``signers``.

    Raises:
        RejectedInputError: no signer.
    """
    if not signers:
        raise RejectedInputError("--key/--signer: found none, expected at least one key")
    role = Targets(version=ENROLMENT_VERSION, expires=now + expires_in)
    role.spec_version = SPEC_VERSION
    md = Metadata(role)
    for signer in signers:
        md.sign(signer, append=True)
    return md.to_bytes()


def check_enrolment(
    data: bytes,
    manufacturer: RegisteredManufacturer,
    *,
    now: datetime,
    validity: tuple[timedelta, timedelta],
    size_cap: int,
) -> Metadata[Targets]:
    """Check an enrolment bundle as the gateway checks a deposit: a targets role, version 1, no
    targets, no delegations, expiry within the policy window, signed by the manufacturer's
    registered keys up to its threshold.

    Raises:
        RejectedInputError: one line naming each problem found, the value found and expected.
    """
    where = f"enrolment for {manufacturer.id}"
    if len(data) > size_cap:
        raise RejectedInputError(
            f"{where}: size: found {len(data)} bytes, expected at most {size_cap} (role_size_cap)"
        )
    try:
        md = Metadata[Targets].from_bytes(data)
        signed_bytes = md.signed_bytes
    except Exception as e:  # python-tuf raises DeserializationError, ValueError, SerializationError
        raise RejectedInputError(
            f"{where}: found no valid TUF metadata ({type(e).__name__}: {str(e)[:120]}), "
            "expected a signed empty targets role"
        ) from e
    if not isinstance(md.signed, Targets):
        raise RejectedInputError(
            f"{where}: signed._type: found {md.signed.type!r}, expected 'targets'"
        )
    problems: list[str] = []
    signed = md.signed
    if signed.version != ENROLMENT_VERSION:
        problems.append(f"version: found {signed.version}, expected {ENROLMENT_VERSION}")
    if signed.targets:
        problems.append(
            f"targets: found {len(signed.targets)} ({sorted(signed.targets)[0]!r} ...), expected "
            "none (images come with deposits)"
        )
    if signed.delegations is not None:
        problems.append(
            "delegations: found some, expected none (manufacturer roles delegate nothing)"
        )
    least, most = validity
    if signed.expires < now + least:
        problems.append(
            f"expires: found {format_timestamp(signed.expires)}, expected at least "
            f"{format_timestamp(now + least)} ({least.days} days from now)"
        )
    elif signed.expires > now + most:
        problems.append(
            f"expires: found {format_timestamp(signed.expires)}, expected at most "
            f"{format_timestamp(now + most)} ({most.days} days from now)"
        )
    role = manufacturer_delegation(manufacturer.id, list(manufacturer.keys), manufacturer.threshold)
    delegator = Targets(
        delegations=Delegations(keys=dict(manufacturer.keys), roles={role.name: role})
    )
    result = delegator.get_verification_result(role.name, signed_bytes, md.signatures)
    bad = sorted(k[:8] for k in md.signatures if k in manufacturer.keys and k not in result.signed)
    if bad:
        problems.append(
            f"signatures: found invalid signature(s) by registered key(s) {bad}, expected valid "
            f"signatures by {manufacturer.id}'s keys"
        )
    elif not result.verified:
        strangers = sorted(k[:8] for k in md.signatures if k not in manufacturer.keys)
        problems.append(
            f"signatures: found {len(result.signed)} valid by registered keys"
            + (f" (and {len(strangers)} by unregistered keys {strangers})" if strangers else "")
            + f", expected at least {result.threshold}"
        )
    if problems:
        raise RejectedInputError(
            f"{where} ({naming.role_name(manufacturer.id)}): " + "; ".join(problems)
        )
    return md
