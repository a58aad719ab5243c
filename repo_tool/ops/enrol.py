"""Enrol a registered manufacturer from its enrolment bundle (repo_tool/gateway/enrolment.py): add its
delegation and stage its signed empty role version 1 in one commit (targets key present), or write
the targets ceremony proposal that carries both (targets key offline; `ceremony finish` stages them,
`enrolments_after_targets`). Its first deposit is then role version 2 and needs only online keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tuf.api.metadata import Metadata, Targets

from metadata_templates import naming
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import ConfigurationError, RejectedInputError
from repo_tool.gateway.enrolment import ENROLMENT_VERSION, check_enrolment
from repo_tool.ops.manufacturers import delegate
from repo_tool.state.repository import Repository


@dataclass(frozen=True)
class EnrolOutcome:
    """What `enrol` did: the role, the committed targets version (None with a proposal), the
    proposal (targets key offline), and whether it had been enrolled with these bytes already."""

    manufacturer_id: str
    role: str
    targets_version: int | None
    proposal: Any = None
    already: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "manufacturer": self.manufacturer_id,
            "role": self.role,
            "targets_version": self.targets_version,
            "proposal": self.proposal is not None,
            "already": self.already,
        }


def enrol(
    repo: Repository, manufacturer_id: str, data: bytes, *, now: datetime, ceremony: bool
) -> EnrolOutcome:
    """Delegate to a registered manufacturer with its enrolment role as version 1.

    Raises:
        RejectedInputError: not registered, enrolled already with other bytes, or the bundle fails
            a check (`check_enrolment`).
        ConfigurationError: the targets key is offline and no ceremony was asked for.
    """
    head = repo.head
    record = head.manufacturers.get(manufacturer_id)
    if record is None:
        raise RejectedInputError(
            f"manufacturer {manufacturer_id}: found no registration, expected a registered "
            "manufacturer",
            hint=f"cfl-repo --repo {repo.path} manufacturer add {manufacturer_id} --name NAME "
            "--key PUB.pem",
        )
    role_name = naming.role_name(manufacturer_id)
    if role_name in head.roles:
        if repo.metadata_bytes(role_name, ENROLMENT_VERSION) == data:
            return EnrolOutcome(manufacturer_id, role_name, head.targets_version, already=True)
        raise RejectedInputError(
            f"{role_name}: found it delegated already (role version {head.roles[role_name]}), "
            "expected a manufacturer not yet enrolled"
        )
    check_enrolment(
        data,
        record.as_registered(),
        now=now,
        validity=repo.config.policy.manufacturer_validity(),
        size_cap=repo.config.role_size_cap,
    )
    if ceremony:
        from repo_tool.ceremony.start import propose_targets

        proposal = propose_targets(
            repo.root(),
            repo.targets(),
            now=now,
            expires_in=repo.config.policy.expiry(Targets.type),
            change=lambda t: delegate(t, record),
        )
        proposal = replace(proposal, enrolments=((role_name, data.decode()),))
        return EnrolOutcome(manufacturer_id, role_name, None, proposal=proposal)
    if repo.held_offline(Targets.type):
        raise ConfigurationError(
            "targets: the configured keys do not meet its threshold (held offline), expected them "
            "for a direct enrolment",
            hint="add --proposal FILE to write a targets ceremony proposal instead",
        )
    repo.write_staged(role_name, ENROLMENT_VERSION, data)  # exactly the bytes it signed
    repo.write_added(role_name, ENROLMENT_VERSION, [])
    targets_version = repo.stage_targets(lambda t: delegate(t, record), now)
    repo.commit(
        replace(
            head,
            targets_version=targets_version,
            roles={**head.roles, role_name: ENROLMENT_VERSION},
        ),
        event=enrol_event(manufacturer_id, data, now=now),
    )
    return EnrolOutcome(manufacturer_id, role_name, targets_version)


def enrol_event(
    manufacturer_id: str, data: bytes, *, now: datetime, via: str | None = None
) -> dict[str, Any]:
    """The lodged event of an enrolment (direct, or carried by a targets ceremony)."""
    import hashlib

    event: dict[str, Any] = {
        "event": "manufacturer-enrol",
        "at": format_timestamp(now),
        "manufacturer": manufacturer_id,
        "role": naming.role_name(manufacturer_id),
        "role_sha256": hashlib.sha256(data).hexdigest(),
    }
    if via is not None:
        event["via"] = via
    return event


def enrolments_after_targets(
    repo: Repository,
    enrolments: tuple[tuple[str, str], ...],
    new_targets: Targets,
    *,
    now: datetime,
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """Stage the enrolment roles a targets ceremony carries, each verified against the delegation
    the holders signed. Returns the roles to add to the head and their events.

    Raises:
        RejectedInputError: an enrolment the signed targets does not delegate, or one its
            delegation does not verify (edited after the proposal was made).
    """
    roles: dict[str, int] = {}
    events: dict[str, dict[str, Any]] = {}
    for role_name, text in enrolments:
        if role_name in repo.head.roles:
            continue  # enrolled already (a finish run again)
        data = text.encode()
        manufacturer_id = naming.manufacturer_of_role(role_name)
        delegations = new_targets.delegations
        if manufacturer_id is None or role_name not in ((delegations and delegations.roles) or {}):
            raise RejectedInputError(
                f"proposal enrolments: found {role_name!r}, expected a manufacturer role the "
                "proposed targets delegates"
            )
        try:
            md = Metadata[Targets].from_bytes(data)
            new_targets.verify_delegate(role_name, md.signed_bytes, md.signatures)
        except Exception as e:
            raise RejectedInputError(
                f"proposal enrolments: {role_name}: found a role its delegation does not verify "
                f"({type(e).__name__}: {str(e)[:120]}), expected the manufacturer's signed role"
            ) from e
        if md.signed.version != ENROLMENT_VERSION or md.signed.targets:
            raise RejectedInputError(
                f"proposal enrolments: {role_name}: found version {md.signed.version} with "
                f"{len(md.signed.targets)} target(s), expected an empty version {ENROLMENT_VERSION}"
            )
        repo.write_staged(role_name, ENROLMENT_VERSION, data)
        repo.write_added(role_name, ENROLMENT_VERSION, [])
        roles[role_name] = ENROLMENT_VERSION
        events[f"enrol-{role_name}"] = enrol_event(
            manufacturer_id, data, now=now, via="ceremony-targets"
        )
    return roles, events
