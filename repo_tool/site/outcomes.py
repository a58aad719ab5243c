"""Delivery outcomes on the public website (issue 24): what each image page shows of the combined
figures the provider publishes in ``cfl/outcomes.json``, and the hold in force.

Pure: the verified library in, one ``OutcomeView`` per image with figures or a hold event out. The
page draws the view as a small stacked bar in inline SVG (no script, no inline style: the site's
Content-Security-Policy allows neither) with the numbers beside it, and a notice when the image is on
hold. Only what the signed document already publishes is shown: the combined counts and how many
suppliers reported, never who reported what.

Each view has a ``key`` that the site's build plan adds to the image's key (repo_tool/site/pages.py),
so an ingest that changes an image's figures re-renders that image's page and the listing pages its
row is on, and nothing else; ``digest`` keeps the append path (repo_tool/site/append.py) out of a
build whose figures changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from metadata_templates.outcomes import (
    BY_POLICY,
    BY_PROVIDER,
    FAILURE,
    OUTCOME_CODES,
    SUCCESS,
    UNDELIVERED,
    HoldEvent,
    ImageOutcomes,
    OutcomesDocument,
)
from repo_tool.verify.published import PublishedImage, PublishedLibrary

# The bar's drawing area in SVG user units; the page's stylesheet scales it to the column.
BAR_WIDTH = 300
BAR_HEIGHT = 16
# Kind, label and CSS class, in the order the bar stacks them.
KINDS: tuple[tuple[str, str], ...] = (
    (SUCCESS, "Activated"),
    (FAILURE, "Failed"),
    (UNDELIVERED, "Not delivered"),
)


@dataclass(frozen=True)
class Segment:
    """One piece of the bar: a kind of outcome, its devices and where it is drawn."""

    kind: str
    label: str
    count: int
    percent: str  # of attempted devices, e.g. "2.7%"
    x: float
    width: float


@dataclass(frozen=True)
class CodeRow:
    """One outcome code's line in the table under the bar."""

    code: str
    meaning: str
    kind: str
    count: int


@dataclass(frozen=True)
class OutcomeView:
    """What one image page shows of its delivery outcomes."""

    target: str
    figures: ImageOutcomes | None  # None: a hold or release recorded before any report
    segments: tuple[Segment, ...]
    codes: tuple[CodeRow, ...]
    failure_rate: str  # failures over delivered devices, e.g. "2.7%"
    policy: str  # when the policy holds an image by itself
    hold: HoldEvent | None  # the hold in force, if any
    hold_by: str  # "the library's outcome policy" or "the CFL provider" (for the notice)
    released: HoldEvent | None  # the provider's last release of a hold, if any
    key: str
    bar_width: ClassVar[int] = BAR_WIDTH
    bar_height: ClassVar[int] = BAR_HEIGHT

    @property
    def summary(self) -> str:
        """The bar's text alternative: every number it draws, in words."""
        if self.figures is None:
            return "No outcomes reported"
        f = self.figures
        parts = ", ".join(f"{s.label.lower()} {s.count:,}" for s in self.segments)
        return f"{f.figures.attempted:,} devices attempted: {parts}"


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "0.0%"


def _segments(image: ImageOutcomes) -> tuple[Segment, ...]:
    f = image.figures
    total = f.attempted
    segments = []
    x = 0.0
    for kind, label in KINDS:
        count = f.of_kind(kind)
        if not count:
            continue
        width = BAR_WIDTH * count / total
        segments.append(
            Segment(kind, label, count, _percent(count, total), round(x, 2), round(width, 2))
        )
        x += width
    return tuple(segments)


def _codes(image: ImageOutcomes) -> tuple[CodeRow, ...]:
    counts = image.figures.outcomes
    return tuple(
        CodeRow(code, c.meaning, c.kind, counts[code])
        for code, c in OUTCOME_CODES.items()
        if counts.get(code)
    )


# Who put a hold on, as the notice says it.
_HELD_BY = {BY_POLICY: "the library's outcome policy", BY_PROVIDER: "the CFL provider"}


def _view(
    target: str,
    image: ImageOutcomes | None,
    document: OutcomesDocument,
    hold: HoldEvent | None,
    released: HoldEvent | None,
) -> OutcomeView:
    shown = {
        "figures": None if image is None else image.to_dict(),
        "hold": None if hold is None else hold.to_dict(),
        "released": None if released is None else released.to_dict(),
        "policy": document.policy.to_dict(),
    }
    return OutcomeView(
        target=target,
        figures=image,
        segments=() if image is None else _segments(image),
        codes=() if image is None else _codes(image),
        failure_rate="0.0%" if image is None else f"{image.figures.failure_rate:.1%}",
        policy=document.policy.describe(),
        hold=hold,
        hold_by="" if hold is None else _HELD_BY[hold.by],
        released=released,
        key=hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:32],
    )


def mentioned(library: PublishedLibrary) -> frozenset[str]:
    """The targets the published document has figures or hold events for."""
    document = library.outcomes
    if document is None:
        return frozenset()
    return frozenset({i.target for i in document.images} | {e.target for e in document.events})


def outcome_views(
    library: PublishedLibrary, images: Iterable[PublishedImage]
) -> dict[str, OutcomeView]:
    """Target -> what its page shows, for each of ``images`` (the listed ones) the published
    document reports, holds or released. Figures or events recorded for other bytes under the
    same path (impossible for a content-addressed target, but the document is matched by hash all
    the same) are not shown."""
    document = library.outcomes
    targets = mentioned(library)
    if document is None or not targets:
        return {}
    figures = {i.target: i for i in document.images}
    holds = document.holds()
    views = {}
    for image in images:
        if image.target_path not in targets:
            continue
        found = figures.get(image.target_path)
        if found is not None and found.sha256 != image.sha256:
            found = None
        hold = holds.get(image.target_path)
        if hold is not None and hold.sha256 != image.sha256:
            hold = None
        released = document.last_release(image.target_path)
        if found is None and hold is None and released is None:
            continue
        views[image.target_path] = _view(image.target_path, found, document, hold, released)
    return views


def digest(library: PublishedLibrary) -> str:
    """What the outcome parts of the site show, for the append path's state: an append runs only
    while it holds (a change renders the pages it touches through the keyed build)."""
    document = library.outcomes
    if document is None:
        return ""
    return hashlib.sha256(document.to_bytes()).hexdigest()
