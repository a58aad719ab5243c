"""Where a manufacturer's images live in the repository's state when it is split into hash bins.

One place for the provider's commands that look an image up or report on a manufacturer's roles
(withdraw, status, key inventory), so each asks the same question the same way: the bin an image
path goes to is ``naming.bin_for_target`` under the staged manufacturer role's bit length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from metadata_templates import naming
from metadata_templates.bin_rule import AUTO_BINS
from repo_tool.gateway.bins import split_bit_length

if TYPE_CHECKING:
    from repo_tool.state.repository import Repository


def image_role(repo: Repository, target: str) -> str | None:
    """The staged role that holds the image ``target`` (the manufacturer role or its bin), or None
    when the path names no manufacturer with a staged role."""
    manufacturer = naming.manufacturer_of_target(target)
    if manufacturer is None:
        return None
    role = naming.role_name(manufacturer)
    if role not in repo.head.roles:
        return None
    bits = split_bit_length(repo.role(role))
    if bits is None:
        return role
    holder = naming.bin_for_target(manufacturer, target, bits)
    return holder if holder in repo.head.roles else None


@dataclass(frozen=True)
class BinsSummary:
    """A split manufacturer's bins: how many, the largest, and when the first one expires."""

    bit_length: int
    bins: int
    largest_bin: int
    first_expiry: datetime
    # What the contract's bin rule (metadata_templates/bin_rule.py) gives for the bins' bytes: the
    # count the manufacturer's next deposits grow them to by themselves.
    suggested_bit_length: int

    @property
    def grow(self) -> bool:
        """Its bins have passed the rule's growth size: the next deposit doubles them."""
        return self.suggested_bit_length > self.bit_length

    def to_dict(self) -> dict[str, object]:
        return {
            "bit_length": self.bit_length,
            "bins": self.bins,
            "largest_bin": self.largest_bin,
            "first_expiry": self.first_expiry.isoformat(),
            "suggested_bit_length": self.suggested_bit_length,
            "grow": self.grow,
        }


def bins_summary(repo: Repository, manufacturer_id: str) -> BinsSummary | None:
    """The bins of a split manufacturer, or None when it is not split."""
    role = naming.role_name(manufacturer_id)
    if role not in repo.head.roles:
        return None
    md = repo.role(role)
    bits = split_bit_length(md)
    if bits is None:
        return None
    sizes: list[int] = []
    total_bytes = 0
    expiry = md.signed.expires
    for name in naming.bin_roles(manufacturer_id, bits):
        if name in repo.head.roles:
            bin_md = repo.role(name)
            sizes.append(len(bin_md.signed.targets))
            total_bytes += len(repo.metadata_bytes(name, repo.head.roles[name]))
            expiry = min(expiry, bin_md.signed.expires)
    suggested = AUTO_BINS.bit_length_for(total_bytes, at_least=bits)
    return BinsSummary(bits, len(sizes), max(sizes, default=0), expiry, suggested)
