"""The entitlement policy: the ``"entitlements"`` section of cfl-repo.json (optional).

``cos_grace_days``: how long a supplier that lost a device by Change of Supplier keeps the rights
it gave (default 28 days; docs/operator.md, "Entitlements by estate", says why).
``estate_device_types``: the device types whose images `host nginx --access estate` restricts to
the estate (default: every type); other types stay by User Role only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from repo_tool.entitle.change import DEFAULT_GRACE_DAYS

MAX_GRACE_DAYS = 3650
_TYPE = re.compile(r"[A-Z0-9]{1,16}")


@dataclass(frozen=True)
class EntitlementPolicy:
    """What the operator chose (the defaults when cfl-repo.json has no ``"entitlements"``)."""

    cos_grace_days: int = DEFAULT_GRACE_DAYS
    estate_device_types: tuple[str, ...] | None = None  # None: every device type

    def covers(self, device_type: str) -> bool:
        """Whether images of ``device_type`` are restricted to the estate."""
        return self.estate_device_types is None or device_type in self.estate_device_types

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cos_grace_days": self.cos_grace_days}
        if self.estate_device_types is not None:
            doc["estate_device_types"] = list(self.estate_device_types)
        return doc

    @classmethod
    def from_dict(cls, data: object) -> EntitlementPolicy:
        """Read the section, refusing unknown fields and wrong values.

        Raises:
            ValueError: the message names the field, the value found and the value expected.
        """
        if not isinstance(data, dict):
            raise ValueError(f"entitlements: found {data!r}, expected an object")
        unknown = set(data) - {"cos_grace_days", "estate_device_types"}
        if unknown:
            raise ValueError(
                f"entitlements: found unknown field(s) {sorted(unknown)}, expected "
                "cos_grace_days, estate_device_types"
            )
        grace = data.get("cos_grace_days", DEFAULT_GRACE_DAYS)
        if type(grace) is not int or not 0 <= grace <= MAX_GRACE_DAYS:
            raise ValueError(
                f"entitlements.cos_grace_days: found {grace!r}, expected a whole number of days "
                f"from 0 to {MAX_GRACE_DAYS}"
            )
        types = data.get("estate_device_types")
        if types is not None and (
            not isinstance(types, list)
            or not types
            or not all(isinstance(t, str) and _TYPE.fullmatch(t) for t in types)
        ):
            raise ValueError(
                f"entitlements.estate_device_types: found {types!r}, expected a non-empty list "
                'of device types such as ["ESME", "GSME"], or no field (every type)'
            )
        return cls(grace, tuple(types) if types is not None else None)
