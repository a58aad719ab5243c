"""Phased, hop-by-hop SR 11.1 batches: who gets which image in which phase and batch.

A campaign sends each device the images of its group's upgrade path in order (hop 1, hop 2, ...),
and rolls each image out in cumulative phases (``--phases 1,10,100``: 1% of the devices first, then
up to 10%, then everyone). A device's phase comes from a stable hash of its ID and its group's final
target, never from file order or a random draw, so a re-run on an estate that gained or lost meters
(a Change of Supplier) keeps every remaining device in the phase it had, and all hops of one device
fall in the same phase.

Batches never mix images, phases or hops, and hold at most 50,000 devices (DUIS, SR 11.1). They are
numbered from 1 in the order they are to be sent: by phase, then hop, then target path.
"""

from __future__ import annotations

import csv
import hashlib
import io
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from client.estate.reader import GroupKey
from client.trust.catalogue import CatalogueImage
from metadata_templates.atomic import atomic_writer
from metadata_templates.errors import ConfigurationError, RejectedInputError

MAX_BATCH_DEVICES = 50_000
ROLLOUT_CSV_COLUMNS = (
    "Device ID",
    "Recommended Target",
    "Manufacturer Image SHA-256",
    "Batch",
    "Hop",
    "Phase",
)
_HASH_SPACE = 1 << 64
_PHASES_EXPECTED = "increasing percentages above 0 ending at 100, e.g. 1,10,100"

# One batch: (phase, hop, target path); sorting these gives the sending order.
BatchKey = tuple[int, int, str]


@dataclass(frozen=True)
class Phases:
    """Cumulative rollout cohorts.

    Attributes:
        percentages: the cumulative percentages, increasing, the last 100.
    """

    percentages: tuple[Decimal, ...] = (Decimal(100),)

    @property
    def _cutoffs(self) -> tuple[int, ...]:
        return tuple(int(p * _HASH_SPACE / 100) for p in self.percentages)

    def phase_of(self, device_id: str, target: str) -> int:
        """The phase (from 1) of one device bound for ``target`` (its group's final target)."""
        digest = hashlib.blake2b(
            f"{device_id}\n{target}".encode(), digest_size=8, person=b"cfl-phase"
        ).digest()
        return bisect_right(self._cutoffs, int.from_bytes(digest, "big")) + 1


def parse_phases(text: str) -> Phases:
    """Read ``--phases`` (``1,10,100``).

    Raises:
        ConfigurationError: not a comma-separated list of increasing percentages ending at 100.
    """
    values: list[Decimal] = []
    for part in text.split(","):
        try:
            value = Decimal(part.strip())
        except InvalidOperation:
            raise ConfigurationError(
                f"--phases: found {part.strip()!r} in {text!r}, expected {_PHASES_EXPECTED}"
            ) from None
        if not value.is_finite() or not 0 < value <= 100 or (values and value <= values[-1]):
            raise ConfigurationError(
                f"--phases: found {part.strip()!r} in {text!r}, expected {_PHASES_EXPECTED}"
            )
        values.append(value)
    if values[-1] != 100:
        raise ConfigurationError(
            f"--phases: found last phase {values[-1]} in {text!r}, expected {_PHASES_EXPECTED}"
        )
    return Phases(tuple(values))


@dataclass(frozen=True)
class BatchRange:
    """The batches of one (phase, hop, target).

    Attributes:
        first: number of the first batch (batches count from 1).
        count: how many batches.
        devices: how many devices they hold in all.
    """

    first: int
    count: int
    devices: int


def plan_rollout(
    counts: Mapping[BatchKey, int], limit: int = MAX_BATCH_DEVICES
) -> dict[BatchKey, BatchRange]:
    """Number the batches: each (phase, hop, target) gets the fewest that keep under ``limit``.

    Raises:
        ValueError: ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError(f"batch limit: found {limit}, expected at least 1")
    plan: dict[BatchKey, BatchRange] = {}
    next_batch = 1
    for key in sorted(counts):
        devices = counts[key]
        if devices < 1:
            continue
        count = -(-devices // limit)
        plan[key] = BatchRange(next_batch, count, devices)
        next_batch += count
    return plan


def count_devices(
    devices: Iterable[tuple[str, GroupKey]],
    paths: Mapping[GroupKey, Sequence[CatalogueImage]],
    phases: Phases,
    expected: Mapping[GroupKey, int] | None = None,
) -> dict[BatchKey, int]:
    """Devices per (phase, hop, target), from one pass over the estate.

    Args:
        devices: a pass over the estate.
        paths: each group's path.
        phases: the rollout phases.
        expected: devices per group the check counted; the pass must find exactly as many.

    Raises:
        RejectedInputError: a device's group was not in the check, or a group has a different
            number of devices than the check counted (the estate changed).
    """
    per_group_phase: dict[tuple[GroupKey, int], int] = {}
    per_group: dict[GroupKey, int] = {}
    for device_id, key in devices:
        path = _path_of(paths, device_id, key)
        per_group[key] = per_group.get(key, 0) + 1
        if path:
            at = (key, phases.phase_of(device_id, path[-1].target_path))
            per_group_phase[at] = per_group_phase.get(at, 0) + 1
    for key, count in (expected or {}).items():
        if per_group.get(key, 0) != count:
            raise RejectedInputError(
                f"estate changed while it was being read: group {'/'.join(key)} has "
                f"{per_group.get(key, 0)} devices on this pass, expected {count} as the check "
                "counted",
                hint="run the check again on a file nobody is writing to",
            )
    return _expand(per_group_phase, paths)


def count_groups(
    groups: Mapping[GroupKey, int], paths: Mapping[GroupKey, Sequence[CatalogueImage]]
) -> dict[BatchKey, int]:
    """Devices per (phase 1, hop, target) when there is a single phase: no pass needed."""
    return _expand({(key, 1): n for key, n in groups.items()}, paths)


def _expand(
    per_group_phase: Mapping[tuple[GroupKey, int], int],
    paths: Mapping[GroupKey, Sequence[CatalogueImage]],
) -> dict[BatchKey, int]:
    counts: dict[BatchKey, int] = {}
    for (key, phase), n in per_group_phase.items():
        for hop, image in enumerate(paths.get(key, ()), start=1):
            at = (phase, hop, image.target_path)
            counts[at] = counts.get(at, 0) + n
    return counts


def _path_of(
    paths: Mapping[GroupKey, Sequence[CatalogueImage]], device_id: str, key: GroupKey
) -> Sequence[CatalogueImage]:
    path = paths.get(key)
    if path is None:
        raise RejectedInputError(
            f"estate changed while it was being read: device {device_id} is in group "
            f"{'/'.join(key)}, which the first pass did not see",
            hint="run the check again on a file nobody is writing to",
        )
    return path


class _Assigner:
    """Spreads streaming devices evenly over each key's planned batches, in file order."""

    def __init__(self, plan: Mapping[BatchKey, BatchRange]) -> None:
        self._plan = plan
        self._seen: dict[BatchKey, int] = dict.fromkeys(plan, 0)

    def assign(self, key: BatchKey) -> int:
        batch = self._plan.get(key)
        index = self._seen.get(key, 0)
        if batch is None or index >= batch.devices:
            expected = 0 if batch is None else batch.devices
            raise RejectedInputError(
                f"estate changed while it was being read: more than {expected} devices for "
                f"{key[2]} (phase {key[0]}, hop {key[1]}) on the second pass, expected exactly "
                f"{expected}",
                hint="run the check again on a file nobody is writing to",
            )
        self._seen[key] = index + 1
        return batch.first + index * batch.count // batch.devices


def write_rollout_csv(
    path: Path,
    devices: Iterable[tuple[str, GroupKey]],
    paths: Mapping[GroupKey, Sequence[CatalogueImage]],
    plan: Mapping[BatchKey, BatchRange],
    phases: Phases,
) -> None:
    """One row per device and hop (ID, target, SR 11.3 hash, batch, hop, phase), atomically.

    A device with nothing to install gets one row with empty cells, so the file lists every
    device; the file appears under its final name only once complete.

    Raises:
        RejectedInputError: the estate changed since ``plan`` was made.
        OSError: the file cannot be written.
    """
    single = len(phases.percentages) == 1
    assigner = _Assigner(plan)
    with atomic_writer(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(ROLLOUT_CSV_COLUMNS)
        for device_id, key in devices:
            hops = _path_of(paths, device_id, key)
            if not hops:
                writer.writerow((device_id, "", "", "", "", ""))
                continue
            phase = 1 if single else phases.phase_of(device_id, hops[-1].target_path)
            for hop, image in enumerate(hops, start=1):
                batch = assigner.assign((phase, hop, image.target_path))
                writer.writerow(
                    (
                        device_id,
                        image.target_path,
                        image.cfl.manufacturer_image_sha256,
                        batch,
                        hop,
                        phase,
                    )
                )
        text.flush()
        text.detach()  # leave the binary handle open for atomic_writer's fsync and rename
