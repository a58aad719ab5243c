"""The pieces of a stacked SVG bar, for the campaign report's estate and outcome charts: one
place that turns counts into x offsets and widths, so the two charts cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def stacked_segments(
    parts: Iterable[tuple[str, str, int]], area: float, scale: int
) -> list[dict[str, Any]]:
    """(label, colour, count) parts laid side by side, ``scale`` counts to ``area`` pixels; parts
    with no count are left out."""
    segments = []
    x = 0.0
    for label, colour, count in parts:
        if not count:
            continue
        width = area * count / scale if scale else 0.0
        segments.append(
            {
                "x": round(x, 2),
                "width": round(width, 2),
                "colour": colour,
                "label": label,
                "count": count,
            }
        )
        x += width
    return segments
