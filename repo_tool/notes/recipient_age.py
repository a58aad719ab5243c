"""How old a release-note recipient's registration must be before ``submit`` encrypts to it.

A thief of the provider's online ``cfl-provider`` key cannot read a note, forge an image or change
a manufacturer's keys, but can sign a supplier registry with one more organisation in it: their
own. Every later ``submit --release-notes`` would then encrypt to them. The one mark such an entry
cannot avoid is that it is new, so the manufacturer's side refuses any recipient registered fewer
than ``policy.min_recipient_age_days`` days before now, naming it, unless the manufacturer names it
on purpose (``--allow-recent``) or accepts it at a prompt. Pure: ``now`` and the prompt are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from metadata_templates.custom import format_timestamp, parse_timestamp
from metadata_templates.errors import RejectedInputError
from metadata_templates.policy import DEFAULT_POLICY
from metadata_templates.suppliers import Supplier


@dataclass(frozen=True)
class RecentRecipient:
    """An entitled organisation registered too recently to be trusted without a second look.

    Attributes:
        supplier: its registry entry.
        registered: when the signed registry says it registered (None: the date is unreadable).
    """

    supplier: Supplier
    registered: datetime | None

    def describe(self, now: datetime) -> str:
        """``0011223344556677 'Volt Energy', registered 2026-02-26T00:00:00Z (3 days ago)``."""
        s = self.supplier
        if self.registered is None:
            return f"{s.entity_id} {s.name!r}, registered {s.registered!r} (not a UTC timestamp)"
        days = (now - self.registered) / timedelta(days=1)
        when = "in the future" if days < 0 else f"{days:.0f} days ago" if days >= 1 else "today"
        return f"{s.entity_id} {s.name!r}, registered {s.registered} ({when})"


@dataclass(frozen=True)
class RecipientAgeRule:
    """What ``submit`` accepts.

    Attributes:
        min_age: the least time since registration (``policy.min_recipient_age_days``).
        allowed: Entity IDs accepted however recent (``--allow-recent``).
        confirm: asks a person about one recent recipient (a terminal); None refuses them all.
    """

    min_age: timedelta = timedelta(days=DEFAULT_POLICY.min_recipient_age_days)
    allowed: frozenset[str] = field(default_factory=frozenset)
    confirm: Callable[[RecentRecipient], bool] | None = None


def recent_recipients(
    suppliers: Iterable[Supplier], *, now: datetime, min_age: timedelta
) -> tuple[RecentRecipient, ...]:
    """The organisations among ``suppliers`` registered less than ``min_age`` before ``now`` (or at
    a time that cannot be read, or in the future: neither can be shown to be old)."""
    recent = []
    for supplier in suppliers:
        try:
            registered: datetime | None = parse_timestamp(supplier.registered)
        except ValueError:
            registered = None
        if registered is None or registered > now or now - registered < min_age:
            recent.append(RecentRecipient(supplier, registered))
    return tuple(recent)


def check_recipient_ages(
    suppliers: Iterable[Supplier], rule: RecipientAgeRule, *, now: datetime
) -> tuple[RecentRecipient, ...]:
    """Refuse to encrypt to a recent recipient the manufacturer did not accept; return the recent
    ones it did accept (so the caller can say so).

    Raises:
        RejectedInputError: one or more recent recipients were not accepted; the message names each
            (Entity ID, name, registration date) and the hint says how to accept one.
    """
    recent = recent_recipients(suppliers, now=now, min_age=rule.min_age)
    refused = [
        r
        for r in recent
        if r.supplier.entity_id not in rule.allowed
        and (rule.confirm is None or not rule.confirm(r))
    ]
    if refused:
        days = rule.min_age / timedelta(days=1)
        names = "; ".join(r.describe(now) for r in refused)
        first = refused[0].supplier.entity_id
        dated = [r.registered for r in refused if r.registered is not None and r.registered <= now]
        wait = (
            f"; or submit after {format_timestamp(max(dated) + rule.min_age)}"
            if len(dated) == len(refused)
            else ""
        )
        raise RejectedInputError(
            f"--release-notes recipient(s): found {names}, expected registrations at least "
            f"{days:g} days old (policy.min_recipient_age_days; registered before "
            f"{format_timestamp(now - rule.min_age)}): a new registration is what a stolen provider "
            "key would add to read your notes",
            hint=f"confirm the organisation with the CFL provider by another channel, then add "
            f"--allow-recent {first} (once per organisation){wait}. If the provider registered "
            "no such organisation, tell it: its online key may be in a thief's hands",
        )
    return recent
