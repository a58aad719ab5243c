"""Delivery outcomes on the campaign report (issue 24): per image, a small stacked bar of devices by
kind of outcome (succeeded, failed, not delivered), drawn as inline SVG by the report's template,
with the numbers beside it. The published combined figures (``cfl/outcomes.json``, every supplier)
and, labelled apart, the supplier's own recorded ones. Pure: figures in, chart rows out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from client.estate.bars import stacked_segments
from metadata_templates.outcomes import (
    FAILURE,
    SUCCESS,
    UNDELIVERED,
    Figures,
    OutcomesDocument,
)

# Kind, label, colour: green, red and grey, as the estate chart uses them.
KINDS: tuple[tuple[str, str, str], ...] = (
    (SUCCESS, "Activated", "#2e7d32"),
    (FAILURE, "Failed", "#c62828"),
    (UNDELIVERED, "Not delivered", "#757575"),
)
BAR_WIDTH = 300
PUBLISHED = "All suppliers (published)"
OWN = "Your own (recorded in this home)"


@dataclass(frozen=True)
class OutcomeBar:
    """One bar: whose figures, the pieces to draw and the numbers to print beside them."""

    label: str
    figures: Figures
    suppliers: int | None  # reporting suppliers (published figures only)

    def segments(self) -> list[dict[str, Any]]:
        parts = ((label, colour, self.figures.of_kind(kind)) for kind, label, colour in KINDS)
        return stacked_segments(parts, BAR_WIDTH, self.figures.attempted)


@dataclass(frozen=True)
class ImageOutcomeChart:
    target: str
    held: str | None  # the hold's reason, when the image is on hold
    bars: tuple[OutcomeBar, ...]


def outcome_charts(
    targets: Iterable[str], published: OutcomesDocument, own: Mapping[str, Figures]
) -> tuple[ImageOutcomeChart, ...]:
    """A chart for each of ``targets`` that has published or own figures, sorted by target."""
    holds = published.holds()
    charts = []
    for target in sorted(set(targets)):
        bars = []
        image = published.image(target)
        if image is not None:
            bars.append(OutcomeBar(PUBLISHED, image.figures, image.suppliers))
        mine = own.get(target)
        if mine is not None and mine.attempted:
            bars.append(OutcomeBar(OWN, mine, None))
        if bars:
            hold = holds.get(target)
            charts.append(
                ImageOutcomeChart(target, None if hold is None else hold.reason, tuple(bars))
            )
    return tuple(charts)
