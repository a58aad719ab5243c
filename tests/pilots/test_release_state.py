"""The one release rule (metadata_templates/releases.py) and the documents it reads: a pure
function of (pilot terms, release document, now), so a table of cases states it completely."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from metadata_templates.custom import (
    CflTargetInfo,
    CustomMetadataError,
    PilotTerms,
    format_timestamp,
    unknown_fields,
    validate,
)
from metadata_templates.releases import (
    ACTION_HOLD,
    ACTION_RELEASE,
    HELD,
    PILOT,
    RELEASED,
    ReleaseEvent,
    ReleaseList,
    release_date_problem,
    release_state,
)

TARGET = "121D/ESME-0001-00000003-0123456789abcdef.ota"
OTHER_TARGET = "121D/ESME-0001-00000004-0123456789abcdef.ota"
SHA = "ab" * 32
TERMS = PilotTerms(("00000000000000A1",), "2026-09-01")
DATE = datetime(2026, 9, 1, tzinfo=UTC)
BEFORE = DATE - timedelta(seconds=1)
AFTER = DATE + timedelta(days=3)


def event(action: str, at: datetime, target: str = TARGET) -> ReleaseEvent:
    return ReleaseEvent(target, SHA, action, format_timestamp(at), "why")


EARLY = event(ACTION_RELEASE, DATE - timedelta(days=5))
HOLD = event(ACTION_HOLD, DATE - timedelta(days=2))
AFTER_HOLD = event(ACTION_RELEASE, DATE + timedelta(days=1))


@pytest.mark.parametrize(
    ("terms", "events", "now", "phase", "decided_by"),
    [
        (None, (), BEFORE, RELEASED, None),
        (TERMS, (), BEFORE, PILOT, None),
        (TERMS, (), DATE, RELEASED, None),  # from the first instant of the date, UTC
        (TERMS, (), AFTER, RELEASED, None),
        (TERMS, (EARLY,), BEFORE, RELEASED, EARLY),
        (TERMS, (HOLD,), BEFORE, HELD, HOLD),
        (TERMS, (HOLD,), AFTER, HELD, HOLD),  # a hold overrides the date
        (TERMS, (HOLD, AFTER_HOLD), AFTER, RELEASED, AFTER_HOLD),
        # a recorded release counts even on a clock that is behind the provider's
        (TERMS, (HOLD, AFTER_HOLD), BEFORE, RELEASED, AFTER_HOLD),
        (TERMS, (event(ACTION_RELEASE, BEFORE, OTHER_TARGET),), BEFORE, PILOT, None),
    ],
    ids=[
        "no-terms-public",
        "before-date",
        "at-midnight-of-date",
        "after-date",
        "released-early",
        "held-before-date",
        "held-past-date",
        "released-after-hold",
        "recorded-release-beats-a-slow-clock",
        "another-image-released",
    ],
)
def test_release_state(
    terms: PilotTerms | None,
    events: tuple[ReleaseEvent, ...],
    now: datetime,
    phase: str,
    decided_by: ReleaseEvent | None,
) -> None:
    state = release_state(terms, ReleaseList(events), TARGET, now)
    assert state.phase == phase
    assert state.event == decided_by
    assert state.recorded == (decided_by is not None)


def test_only_the_pilot_suppliers_may_fetch_until_released() -> None:
    pilot = release_state(TERMS, ReleaseList(), TARGET, BEFORE)
    assert pilot.may_fetch("00000000000000A1")
    assert not pilot.may_fetch("00000000000000A2")
    assert not pilot.may_fetch(None)
    released = release_state(TERMS, ReleaseList(), TARGET, DATE)
    assert released.may_fetch("00000000000000A2") and released.may_fetch(None)


def test_as_of_is_the_document_at_a_past_moment() -> None:
    document = ReleaseList((HOLD, AFTER_HOLD))
    assert document.as_of(BEFORE).events == (HOLD,)
    assert release_state(TERMS, document.as_of(AFTER), TARGET, AFTER).released
    assert release_state(TERMS, document.as_of(DATE), TARGET, DATE).phase == HELD


def test_release_document_round_trips() -> None:
    document = ReleaseList((HOLD, AFTER_HOLD))
    assert ReleaseList.from_bytes(document.to_bytes()) == document
    assert ReleaseList.from_bytes(ReleaseList().to_bytes()) == ReleaseList()


def _doc(**event: object) -> bytes:
    base = {"target": TARGET, "sha256": SHA, "action": "release", "at": "2026-09-01T00:00:00Z"}
    return json.dumps({"schema_version": 1, "events": [{**base, "reason": "x", **event}]}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "releases.json: not JSON"),
        (b'{"schema_version": 2, "events": []}', "releases.schema_version: found 2, expected 1"),
        (b'{"schema_version": 1, "events": {}}', "releases.events: found {}, expected a list"),
        (
            _doc(action="publish"),
            "releases.events[0].action: found 'publish', expected release or hold",
        ),
        (_doc(sha256="AB" * 32), "releases.events[0].sha256: found"),
        (
            _doc(at="2026-09-01"),
            "releases.events[0].at: found '2026-09-01', expected YYYY-MM-DDTHH:MM:SSZ",
        ),
        (_doc(reason=7), "releases.events[0].reason: found 7, expected a string"),
    ],
    ids=["not-json", "schema-version", "events-not-list", "action", "sha256", "at", "reason"],
)
def test_malformed_release_document_names_the_field(data: bytes, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        ReleaseList.from_bytes(data)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-03-02", None),  # tomorrow
        ("2027-03-01", None),  # 365 days ahead
        ("2026-03-01", "expected a date from 2026-03-02 to 2027-03-01"),  # today: released at once
        ("2025-12-31", "expected a date from 2026-03-02"),
        ("2027-03-02", "at most 365 days ahead"),
        ("2026-02-30", "expected a real date YYYY-MM-DD"),
        ("20260302", "expected a real date YYYY-MM-DD"),
        ("2026-W10-1", "expected a real date YYYY-MM-DD"),
    ],
    ids=["tomorrow", "a-year", "today", "past", "too-far", "impossible", "basic-form", "week-date"],
)
def test_release_date_problem(text: str, problem: str | None) -> None:
    found = release_date_problem(text, datetime(2026, 3, 1, 23, 59, tzinfo=UTC), "release_at")
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and f"found {text!r}" in found


def _custom(pilot: object) -> dict[str, object]:
    return {
        "schema_version": 1,
        "device_type": "ESME",
        "manufacturer_id": "121D",
        "manufacturer_name": "Maker 121D",
        "image_type": "0001",
        "firmware_version": "00000003",
        "stack_version": "0002",
        "header_string": "x",
        "hardware_version_min": "1000",
        "hardware_version_max": "2000",
        "manufacturer_image_sha256": SHA,
        "manufacturer_image_length": 10,
        "cpl_entries": [
            {
                "id": "CPL-E3",
                "model_id": "010A030B",
                "model_name": "A",
                "hardware_version": "1111",
                "status": "Active",
                "upgrade_from": [],
            }
        ],
        "reason": "compliance",
        "advisories": [],
        "published": "2026-01-01T00:00:00Z",
        "release_notes_sha256": None,
        "pilot": pilot,
    }


def test_pilot_terms_round_trip_through_custom_cfl() -> None:
    info = CflTargetInfo.from_dict(_custom(TERMS.to_dict()))
    assert info.pilot == TERMS
    assert info.to_dict()["pilot"] == {
        "suppliers": ["00000000000000A1"],
        "release_at": "2026-09-01",
    }
    without = _custom(None)
    del without["pilot"]
    assert CflTargetInfo.from_dict(without).pilot is None
    assert "pilot" not in CflTargetInfo.from_dict(without).to_dict()


@pytest.mark.parametrize(
    ("pilot", "field"),
    [
        ({"suppliers": [], "release_at": "2026-09-01"}, "custom.cfl.pilot.suppliers"),
        ({"suppliers": ["a1"], "release_at": "2026-09-01"}, "custom.cfl.pilot.suppliers[0]"),
        (
            {"suppliers": ["00000000000000A1"] * 2, "release_at": "2026-09-01"},
            "custom.cfl.pilot.suppliers",
        ),
        ({"suppliers": ["00000000000000A1"], "release_at": "soon"}, "custom.cfl.pilot.release_at"),
        (
            {"suppliers": ["00000000000000A1"], "release_at": "2026-02-30"},
            "custom.cfl.pilot.release_at",
        ),
        ({"suppliers": ["00000000000000A1"]}, "custom.cfl.pilot"),
    ],
    ids=[
        "no-suppliers",
        "not-an-entity-id",
        "twice",
        "not-a-date",
        "impossible-date",
        "no-date",
    ],
)
def test_bad_pilot_terms_name_their_field(pilot: object, field: str) -> None:
    with pytest.raises(CustomMetadataError) as raised:
        CflTargetInfo.from_dict(_custom(pilot))
    assert raised.value.field == field
    assert str(raised.value).startswith(field)


def test_a_reader_ignores_an_unknown_key_in_the_terms_and_the_gateway_sees_it() -> None:
    # Readers ignore fields they do not know (metadata_templates/custom.py); the gateway refuses
    # them through unknown_fields (tests/repo/test_gateway.py, target-metadata-mismatch).
    data = _custom({"suppliers": ["00000000000000A1"], "release_at": "2026-09-01", "x": 1})
    info = CflTargetInfo.from_dict(data)
    assert info.pilot == PilotTerms(("00000000000000A1",), "2026-09-01")
    assert unknown_fields(data, info) == ("custom.cfl.pilot.x",)


def test_the_schema_alone_accepts_pilot_terms() -> None:
    # Other implementations validate with the published schema: the object is part of it.
    validate(_custom(TERMS.to_dict()))
