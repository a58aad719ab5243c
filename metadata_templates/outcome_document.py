"""Delivery outcomes (issue 24): the provider's published ``cfl/outcomes.json``, the hold policy
and the one rule that holds failing firmware. See ``metadata_templates/outcomes.py``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metadata_templates import SCHEMA_VERSION
from metadata_templates.custom import format_timestamp
from metadata_templates.errors import field_error
from metadata_templates.naming import is_image_target_path
from metadata_templates.outcome_report import (
    SHA256_PATTERN,
    Figures,
    OutcomeReport,
    checked_counts,
    only_fields,
    timestamp_field,
)

# --- the policy and the provider's document -----------------------------------------------------


@dataclass(frozen=True)
class OutcomePolicy:
    """When the provider's ingest holds an image by itself.

    More than ``max_failure_rate`` of at least ``min_devices`` delivered devices, reported by at
    least ``min_suppliers`` suppliers. Two suppliers, because one supplier's broken head-end (or
    one dishonest report) must not take an image from every other supplier; 500 devices because
    2% of a pilot of 50 is one unlucky meter.
    """

    max_failure_rate: float = 0.02
    min_devices: int = 500
    min_suppliers: int = 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_failure_rate": self.max_failure_rate,
            "min_devices": self.min_devices,
            "min_suppliers": self.min_suppliers,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str = "outcomes policy") -> OutcomePolicy:
        """Raises: ValueError naming the field."""
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, doc, "an object"))
        only_fields(doc, {"max_failure_rate", "min_devices", "min_suppliers"}, where)
        rate = doc.get("max_failure_rate", cls.max_failure_rate)
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate < 1:
            raise ValueError(field_error(f"{where}.max_failure_rate", rate, "a number in (0, 1)"))
        values = {}
        for name, default in (("min_devices", cls.min_devices), ("min_suppliers", 2)):
            value = doc.get(name, default)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10**8:
                raise ValueError(field_error(f"{where}.{name}", value, "a whole number >= 1"))
            values[name] = value
        return cls(float(rate), values["min_devices"], values["min_suppliers"])

    def exceeded(self, figures: Figures, suppliers: int) -> bool:
        return (
            suppliers >= self.min_suppliers
            and figures.delivered >= self.min_devices
            and figures.failure_rate > self.max_failure_rate
        )

    def describe(self) -> str:
        return (
            f"more than {self.max_failure_rate:.1%} failures over at least {self.min_devices} "
            f"delivered devices from at least {self.min_suppliers} suppliers"
        )


DEFAULT_OUTCOME_POLICY = OutcomePolicy()

ACTION_HOLD = "hold"
ACTION_RELEASE = "release"
BY_POLICY = "policy"
BY_PROVIDER = "provider"


@dataclass(frozen=True)
class ImageOutcomes:
    """The combined figures of one image in the published document."""

    target: str
    sha256: str
    figures: Figures
    suppliers: int  # how many distinct suppliers reported it
    reports: int

    def to_dict(self) -> dict[str, Any]:
        f = self.figures
        return {
            "target": self.target,
            "sha256": self.sha256,
            "attempted": f.attempted,
            "delivered": f.delivered,
            "failures": f.failures,
            "failure_rate": round(f.failure_rate, 6),
            "outcomes": dict(sorted(f.outcomes.items())),
            "suppliers": self.suppliers,
            "reports": self.reports,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> ImageOutcomes:
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, type(doc).__name__, "an object"))
        target, sha = doc.get("target"), doc.get("sha256")
        if not isinstance(target, str) or not is_image_target_path(target):
            raise ValueError(field_error(f"{where}.target", target, "an image target path"))
        if not isinstance(sha, str) or not SHA256_PATTERN.fullmatch(sha):
            raise ValueError(field_error(f"{where}.sha256", sha, "64 lower-case hex digits"))
        counts = checked_counts(doc.get("outcomes"), f"{where}.outcomes")
        whole = {}
        for name in ("suppliers", "reports"):
            value = doc.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(field_error(f"{where}.{name}", value, "a whole number >= 1"))
            whole[name] = value
        return cls(target, sha, Figures(counts), whole["suppliers"], whole["reports"])


@dataclass(frozen=True)
class HoldEvent:
    """A hold (by the policy or the provider) or a release of one, with the figures it saw."""

    target: str
    sha256: str
    action: str  # ACTION_HOLD | ACTION_RELEASE
    by: str  # BY_POLICY | BY_PROVIDER
    at: str
    reason: str
    outcomes: Mapping[str, int] = field(default_factory=dict)  # the image's counts at the time

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sha256": self.sha256,
            "action": self.action,
            "by": self.by,
            "at": self.at,
            "reason": self.reason,
            "outcomes": dict(sorted(self.outcomes.items())),
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> HoldEvent:
        if not isinstance(doc, dict):
            raise ValueError(field_error(where, type(doc).__name__, "an object"))
        texts = {}
        for name in ("target", "sha256", "action", "by", "at", "reason"):
            value = doc.get(name)
            if not isinstance(value, str):
                raise ValueError(field_error(f"{where}.{name}", value, "a string"))
            texts[name] = value
        if texts["action"] not in (ACTION_HOLD, ACTION_RELEASE):
            raise ValueError(field_error(f"{where}.action", texts["action"], "hold or release"))
        if texts["by"] not in (BY_POLICY, BY_PROVIDER):
            raise ValueError(field_error(f"{where}.by", texts["by"], "policy or provider"))
        timestamp_field(texts["at"], f"{where}.at")
        raw = doc.get("outcomes", {})
        counts = checked_counts(raw, f"{where}.outcomes") if raw else {}
        return cls(outcomes=counts, **texts)

    @property
    def figures(self) -> Figures:
        return Figures(self.outcomes)


@dataclass(frozen=True)
class OutcomesDocument:
    """``cfl/outcomes.json``: combined figures per image and every hold and release, oldest first."""

    updated: str
    policy: OutcomePolicy = DEFAULT_OUTCOME_POLICY
    images: tuple[ImageOutcomes, ...] = ()
    events: tuple[HoldEvent, ...] = ()

    def image(self, target: str) -> ImageOutcomes | None:
        return next((i for i in self.images if i.target == target), None)

    def holds(self) -> dict[str, HoldEvent]:
        """Target -> the hold in force (an image whose last event is a hold)."""
        last: dict[str, HoldEvent] = {}
        for event in self.events:
            last[event.target] = event
        return {t: e for t, e in last.items() if e.action == ACTION_HOLD}

    def last_release(self, target: str) -> HoldEvent | None:
        found = [e for e in self.events if e.target == target and e.action == ACTION_RELEASE]
        return found[-1] if found else None

    def to_bytes(self) -> bytes:
        doc = {
            "schema_version": SCHEMA_VERSION,
            "updated": self.updated,
            "policy": self.policy.to_dict(),
            "images": [i.to_dict() for i in sorted(self.images, key=lambda i: i.target)],
            "events": [e.to_dict() for e in self.events],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> OutcomesDocument:
        """Parse a published document. Unknown top-level fields are tolerated (a later provider
        may add some; this reader ignores them), wrong known ones are not.

        Raises:
            ValueError: naming the field, the value found and the value expected.
        """
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"outcomes.json: not JSON ({e})") from e
        if not isinstance(doc, dict) or doc.get("schema_version") != SCHEMA_VERSION:
            found = doc.get("schema_version") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(field_error("outcomes.schema_version", found, str(SCHEMA_VERSION)))
        updated = timestamp_field(doc.get("updated"), "outcomes.updated")
        policy = OutcomePolicy.from_dict(doc.get("policy"), "outcomes.policy")
        images, events = doc.get("images"), doc.get("events")
        if not isinstance(images, list):
            raise ValueError(field_error("outcomes.images", images, "a list"))
        if not isinstance(events, list):
            raise ValueError(field_error("outcomes.events", events, "a list"))
        return cls(
            updated,
            policy,
            tuple(
                ImageOutcomes.from_dict(x, f"outcomes.images[{i}]") for i, x in enumerate(images)
            ),
            tuple(HoldEvent.from_dict(x, f"outcomes.events[{i}]") for i, x in enumerate(events)),
        )


def combine(reports: Iterable[OutcomeReport]) -> dict[str, ImageOutcomes]:
    """Target -> the combined figures of every report that lists it."""
    figures: dict[str, Figures] = {}
    shas: dict[str, str] = {}
    suppliers: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for report in reports:
        for image in report.images:
            figures[image.target] = figures.get(image.target, Figures({})).plus(image.outcomes)
            shas[image.target] = image.sha256
            suppliers.setdefault(image.target, set()).add(report.entity_id)
            counts[image.target] = counts.get(image.target, 0) + 1
    return {
        t: ImageOutcomes(t, shas[t], f, len(suppliers[t]), counts[t]) for t, f in figures.items()
    }


def due_holds(
    images: Mapping[str, ImageOutcomes],
    document: OutcomesDocument,
    policy: OutcomePolicy,
    supplier_counts_since: Mapping[str, int] | None = None,
) -> list[ImageOutcomes]:
    """The images the policy puts on hold now: not held already, and over the threshold on the
    evidence since the provider last released them (all of it when never released). A release
    answers the evidence it saw; only new failures bring the image back on hold.

    ``supplier_counts_since`` gives, per target, how many suppliers reported after its last
    release (the caller knows which reports came later); without it the image's total is used.
    """
    held = document.holds()
    due = []
    for target, image in sorted(images.items()):
        if target in held:
            continue
        released = document.last_release(target)
        figures = image.figures if released is None else image.figures.minus(released.figures)
        suppliers = image.suppliers
        if released is not None and supplier_counts_since is not None:
            suppliers = supplier_counts_since.get(target, 0)
        if policy.exceeded(figures, suppliers):
            due.append(image)
    return due


def hold_reason(image: ImageOutcomes, policy: OutcomePolicy) -> str:
    """The recorded reason of a policy hold: the figures and the rule they broke."""
    f = image.figures
    return (
        f"{f.failures} of {f.delivered} delivered devices failed ({f.failure_rate:.1%}) across "
        f"{image.suppliers} suppliers; the policy holds an image at {policy.describe()}"
    )


def new_event(
    image: ImageOutcomes | None,
    target: str,
    sha256: str,
    action: str,
    by: str,
    *,
    now: datetime,
    reason: str,
) -> HoldEvent:
    outcomes = dict(image.figures.outcomes) if image is not None else {}
    return HoldEvent(target, sha256, action, by, format_timestamp(now), reason, outcomes)
