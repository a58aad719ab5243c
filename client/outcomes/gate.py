"""The local rollout gate of ``cfl check --devices-out F --phases 1,10,100`` (issue 24), in the manner
of hawkBit's error threshold: a phase after the first is ``gated`` until the supplier's own recorded
outcomes (the home's ledger) for the devices of the previous phase are in and their failure rate is
at or under the policy's ``max_failure_rate`` (the published ``cfl/outcomes.json`` policy, else the
default).

A device of a phase is "in" when the ledger has an outcome for every hop of its path, or a failure
for one hop (a device that failed is not sent the next hop). Its outcome is that failure, else its
last hop's. The failure rate is failures over delivered devices (``Figures``: ``not-retrieved`` and
``timeout`` count as in, but not against the firmware). Phases come from the same stable hash as the
``--devices-out`` file (``Phases.phase_of``), so the gate speaks of exactly the devices listed there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.estate.reader import GroupKey, iter_estate_devices, open_estate
from client.estate.rollout import Phases
from client.outcomes.ledger import Ledger, load_ledger
from client.trust.catalogue import CatalogueImage
from client.trust.home import ClientHome
from metadata_templates.outcomes import FAILURE, OUTCOME_CODES, Figures, OutcomePolicy

OPEN = "open"
GATED = "gated"


@dataclass
class _Tally:
    devices: int = 0
    reported: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseGate:
    """One phase: its devices and whether it may start."""

    phase: int
    percent: str
    devices: int
    reported: int
    state: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "percent": self.percent,
            "devices": self.devices,
            "reported": self.reported,
            "gate": {"state": self.state, "reason": self.reason},
        }


def device_outcome(ledger: Ledger, device_id: str, hops: Sequence[CatalogueImage]) -> str | None:
    """The device's outcome over its path, or None while one is still to come."""
    last = None
    for hop in hops:
        last = ledger.outcome(device_id, hop.target_path)
        if last is None:
            return None
        if OUTCOME_CODES[last].kind == FAILURE:
            return last
    return last


def phase_gates(
    devices: Iterable[tuple[str, GroupKey]],
    paths: Mapping[GroupKey, Sequence[CatalogueImage]],
    phases: Phases,
    ledger: Ledger,
    policy: OutcomePolicy,
) -> list[PhaseGate]:
    """Every phase's gate. Pure: one pass over the estate's devices."""
    tallies = [_Tally() for _ in phases.percentages]
    single = len(phases.percentages) == 1
    for device_id, key in devices:
        hops = paths.get(key, ())
        if not hops:
            continue
        phase = 1 if single else phases.phase_of(device_id, hops[-1].target_path)
        tally = tallies[phase - 1]
        tally.devices += 1
        outcome = device_outcome(ledger, device_id, hops)
        if outcome is not None:
            tally.reported += 1
            tally.outcomes[outcome] = tally.outcomes.get(outcome, 0) + 1
    gates = []
    for index, (percent, tally) in enumerate(zip(phases.percentages, tallies, strict=True)):
        phase = index + 1
        state, reason = OPEN, "the first phase is never gated"
        if index:
            state, reason = _gate(phase - 1, tallies[index - 1], policy)
        gates.append(PhaseGate(phase, str(percent), tally.devices, tally.reported, state, reason))
    return gates


def _gate(previous: int, tally: _Tally, policy: OutcomePolicy) -> tuple[str, str]:
    limit = f"{policy.max_failure_rate:.1%}"
    if not tally.devices:
        return OPEN, f"phase {previous} has no devices"
    missing = tally.devices - tally.reported
    if missing:
        return GATED, (
            f"waiting for the outcomes of {missing} of the {tally.devices} devices of phase "
            f"{previous} (cfl outcomes record)"
        )
    figures = Figures(tally.outcomes)
    said = (
        f"phase {previous}: {figures.failures} of {figures.delivered} delivered devices failed "
        f"({figures.failure_rate:.1%})"
    )
    if figures.failure_rate > policy.max_failure_rate:
        return GATED, f"{said}, over the policy's {limit}"
    return OPEN, f"{said}, at or under the policy's {limit}"


def run_gates(
    home: ClientHome,
    estate: Path,
    paths: Mapping[GroupKey, Sequence[CatalogueImage]],
    phases: Phases,
    policy: OutcomePolicy,
) -> list[PhaseGate]:
    """The gates of a check's phases, from the estate file and the home's ledger.

    Raises:
        UnavailableError: the estate or the ledger cannot be read.
        VerificationError: the ledger is damaged.
    """
    with home.lock():
        ledger = load_ledger(home.path)
    with open_estate(estate) as source:
        return phase_gates(
            iter_estate_devices(source, where=str(estate)), paths, phases, ledger, policy
        )
