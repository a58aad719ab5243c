"""The withdrawal list: the provider's signed record of images taken out of circulation.

A manufacturer signs its own role, so the provider cannot edit it; instead the provider publishes
``cfl/withdrawals.json`` as a target of the top-level ``targets`` role. Clients hide withdrawn images
from recommendations and downloads; the blob and the manufacturer's metadata stay, as the SMKI-style
"nothing silently deleted" policy requires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from metadata_templates import SCHEMA_VERSION


@dataclass(frozen=True)
class Withdrawal:
    """One recorded withdrawal event."""

    target: str
    sha256: str
    withdrawn: str  # UTC timestamp, custom.format_timestamp form
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sha256": self.sha256,
            "withdrawn": self.withdrawn,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class WithdrawalList:
    """Every withdrawal, oldest first."""

    withdrawals: tuple[Withdrawal, ...] = ()

    def by_target(self) -> dict[str, Withdrawal]:
        return {w.target: w for w in self.withdrawals}

    def with_added(self, withdrawal: Withdrawal) -> WithdrawalList:
        return WithdrawalList((*self.withdrawals, withdrawal))

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "withdrawals": [w.to_dict() for w in self.withdrawals],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> WithdrawalList:
        """Parse a published withdrawal list.

        Raises:
            ValueError: malformed document.
        """
        try:
            doc = json.loads(data)
            if doc.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(
                    f"withdrawals.schema_version: found {doc.get('schema_version')!r}, expected {SCHEMA_VERSION}"
                )
            return cls(
                tuple(
                    Withdrawal(
                        str(w["target"]), str(w["sha256"]), str(w["withdrawn"]), str(w["reason"])
                    )
                    for w in doc["withdrawals"]
                )
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"published withdrawal list is malformed: {e!r}") from e
