"""The role policy template: thresholds and expiry periods per role.

`cfl-repo init` copies these defaults into the repository configuration, where an operator may change
them. Short-lived online roles (timestamp, snapshot) bound how long a freeze attack can go unnoticed;
offline roles live longer because signing them is a ceremony.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from metadata_templates.naming import MAX_BIN_BIT_LENGTH


@dataclass(frozen=True)
class RolePolicy:
    """Expiry periods (days) and default thresholds."""

    root_expiry_days: int = 365
    targets_expiry_days: int = 90
    manufacturer_expiry_days: int = 365
    snapshot_expiry_days: int = 7
    timestamp_expiry_days: int = 1
    # The online cfl-provider role (issue 13): short, because `refresh` re-signs it by cron.
    provider_expiry_days: int = 30
    root_threshold: int = 2
    root_keys: int = 3
    manufacturer_threshold: int = 1
    # A manufacturer's role must stay valid at least this long after the gateway admits it (a role
    # that expires in a minute strands its images for every supplier) and at most this long (a role
    # valid for a century outlives any key it is signed with).
    manufacturer_min_validity_days: int = 30
    manufacturer_max_validity_days: int = 730
    # `refresh` re-signs snapshot/timestamp when less than this fraction of their period is left.
    refresh_margin_fraction: float = 0.5
    # Hash bins (TAP 15): the fewest bits a split uses (2 bins), and the most targets a bin should
    # hold on average before the count doubles (`status` advises it; `bin_bit_length_for`). A warm
    # refresh after one new image downloads one bin plus a snapshot listing every bin, so bins of
    # similar fill keep that cost flat as a manufacturer grows: 64 targets is ~100 kB of bin.
    manufacturer_bin_bit_length: int = 1
    manufacturer_bin_max_targets: int = 64
    # `submit --release-notes` refuses to encrypt to an organisation registered fewer days ago than
    # this (issue 25), unless it is named with --allow-recent. A new registration is the one thing
    # a thief of the online cfl-provider key can add to the audience of future notes; two weeks
    # gives the provider, witnesses and auditors time to see a registration nobody asked for (each
    # is a logged event) and rotate the key, and a genuine newcomer loses little: the notes
    # custodian grants it older notes anyway. The manufacturer's `submit` uses the contract's
    # default: a value the provider published would be one the thief could change.
    min_recipient_age_days: int = 14

    def expiry(self, role: str) -> timedelta:
        """The validity period of a role (``root``, ``targets``, ``snapshot``, ``timestamp``,
        ``cfl-provider`` or a manufacturer role)."""
        days = {
            "root": self.root_expiry_days,
            "targets": self.targets_expiry_days,
            "snapshot": self.snapshot_expiry_days,
            "timestamp": self.timestamp_expiry_days,
            "cfl-provider": self.provider_expiry_days,
        }.get(role, self.manufacturer_expiry_days)
        return timedelta(days=days)

    def manufacturer_validity(self) -> tuple[timedelta, timedelta]:
        """The least and the most remaining validity the gateway admits for a manufacturer role."""
        return (
            timedelta(days=self.manufacturer_min_validity_days),
            timedelta(days=self.manufacturer_max_validity_days),
        )

    def bin_bit_length_for(self, targets: int) -> int:
        """The fewest bits (at least ``manufacturer_bin_bit_length``) whose bins hold at most
        ``manufacturer_bin_max_targets`` of ``targets`` on average."""
        bits = self.manufacturer_bin_bit_length
        while targets > self.manufacturer_bin_max_targets << bits and bits < MAX_BIN_BIT_LENGTH:
            bits += 1
        return bits

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolePolicy:
        """Read a policy, rejecting unknown fields so a typo is not silently ignored.

        Raises:
            ValueError: unknown field or a value of the wrong type.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"policy: unknown field(s) {sorted(unknown)}, expected some of {sorted(known)}"
            )
        policy = cls(**data)
        for name in known - {"refresh_margin_fraction"}:
            value = getattr(policy, name)
            # A century is the longest any validity may be; beyond it dates leave the calendar.
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 36500:
                raise ValueError(
                    f"policy.{name}: found {value!r}, expected a whole number from 1 to 36500"
                )
        if not policy.manufacturer_bin_bit_length <= MAX_BIN_BIT_LENGTH:
            raise ValueError(
                f"policy.manufacturer_bin_bit_length: found {policy.manufacturer_bin_bit_length}, "
                f"expected a whole number from 1 to {MAX_BIN_BIT_LENGTH}"
            )
        margin = policy.refresh_margin_fraction
        if not isinstance(margin, int | float) or isinstance(margin, bool) or not 0 < margin < 1:
            raise ValueError(
                f"policy.refresh_margin_fraction: found {margin!r}, expected a number between 0 and 1"
            )
        if policy.manufacturer_min_validity_days > policy.manufacturer_max_validity_days:
            raise ValueError(
                f"policy.manufacturer_min_validity_days: found {policy.manufacturer_min_validity_days}, "
                f"expected <= manufacturer_max_validity_days ({policy.manufacturer_max_validity_days})"
            )
        if policy.root_threshold > policy.root_keys:
            raise ValueError(
                f"policy.root_threshold: found {policy.root_threshold}, expected <= root_keys "
                f"({policy.root_keys})"
            )
        return policy


# Targets' validity in a repository whose routine documents cfl-provider signs (issue 13): it is
# re-signed only at the yearly ceremony with root.
PROVIDER_TARGETS_EXPIRY_DAYS = 365

DEFAULT_POLICY = RolePolicy()
