"""What the host enforced beside what the entitlement history says (`cfl-repo audit` with a history).

For every image request the audit already has the host's answer (the logged status) and its own
verdict against the record in force at that moment. They should agree: a refused request (403) is
one the record gives no right to, a served one (2xx) is one it does. Disagreements are reported,
never fatal, and name their cause's usual suspects: a host configuration not regenerated after an
import (or not on the day a grace period ended), or a host still in ``--access role`` mode.

Bounded: counts per caller and the first few disagreements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from metadata_templates.custom import format_timestamp
from repo_tool.access.audit import Judged, Summary
from repo_tool.entitle.record import GRACE, HistoryEntry

MAX_DISAGREEMENTS = 20


@dataclass
class HostCheck:
    """Refusals at the host, and where host and history disagree."""

    refused: dict[str, int] = field(default_factory=dict)  # caller -> 403s
    grace: dict[str, int] = field(default_factory=dict)  # caller -> 2xx under a grace right
    refused_while_entitled: int = 0
    served_while_not_entitled: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, judged: Judged) -> None:
        caller = Summary.caller(judged)
        status = judged.record.status
        served = 200 <= status < 300
        if status == 403:
            self.refused[caller] = self.refused.get(caller, 0) + 1
        if served and judged.basis == GRACE:
            self.grace[caller] = self.grace.get(caller, 0) + 1
        if judged.entitled is None:
            return  # no record in force yet: nothing to compare with
        if status == 403 and judged.entitled:
            self.refused_while_entitled += 1
            self._example(judged, "refused at the host, entitled by the record in force")
        elif served and not judged.entitled:
            self.served_while_not_entitled += 1
            self._example(judged, "served by the host, not entitled by the record in force")

    def _example(self, judged: Judged, what: str) -> None:
        if len(self.examples) < MAX_DISAGREEMENTS:
            r = judged.record
            who = Summary.caller(judged)
            self.examples.append(
                f"{format_timestamp(r.time)} {who} {judged.target or r.path} status {r.status}: "
                f"{what}"
            )

    def to_dict(self, used: Mapping[str, HistoryEntry]) -> dict[str, Any]:
        """The ``entitlements`` part of `audit --json` (present only with a history)."""
        return {
            "records": [entry.to_dict() for entry in sorted(used.values(), key=_imported)],
            "refused_at_host": sum(self.refused.values()),
            "refused_by_caller": dict(sorted(self.refused.items())),
            "grace_downloads": dict(sorted(self.grace.items())),
            "refused_while_entitled": self.refused_while_entitled,
            "served_while_not_entitled": self.served_while_not_entitled,
            "disagreements": list(self.examples),
        }

    def lines(self, used: Mapping[str, HistoryEntry]) -> list[str]:
        """The readable part of the report."""
        records = sorted(used.values(), key=_imported)
        lines = [
            "",
            f"entitlements: judged against {len(records)} record(s) in force "
            + (
                f"(inventories of {', '.join(e.inventory_date.isoformat() for e in records)})"
                if records
                else "(none in force at the time of any request)"
            ),
            f"  refused at the host: {sum(self.refused.values())} request(s)",
        ]
        lines.extend(f"    {caller}: {count}" for caller, count in sorted(self.refused.items()))
        lines.extend(
            f"  {caller}: {count} download(s) under a Change of Supplier grace period"
            for caller, count in sorted(self.grace.items())
        )
        if self.refused_while_entitled or self.served_while_not_entitled:
            lines.append(
                f"  host and history disagree: {self.refused_while_entitled} refused though "
                f"entitled, {self.served_while_not_entitled} served though not entitled (was "
                "the host configuration regenerated with --access estate after each import, "
                "and daily?)"
            )
            lines.extend(f"    {example}" for example in self.examples)
        else:
            lines.append("  host and history agree on every request judged")
        return lines


def _imported(entry: HistoryEntry) -> Any:
    return entry.imported
