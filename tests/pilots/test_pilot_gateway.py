"""The gateway on pilot deposits (issue 22): one named case per refusal, driven through `ingest`.

A hostile or careless bundle is made as the gateway's own tests make theirs: a good pilot deposit
signed by the real `submit` code, then its signed ``custom.cfl.pilot`` edited and re-signed with
the manufacturer's own key, so that exactly the pilot check fails. Each case asserts its code, a
message naming the field with the value found and the value expected, and an untouched repository.
The manufacturer's `submit` refuses the same terms before the trip (same messages, exit 1), and its
command line refuses malformed options (exit 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, Targets

from metadata_templates.errors import RejectedInputError
from pilots.pilot_library import (
    GAS,
    IMAGES,
    MFR,
    OTHER,
    PILOT,
    REVOKED,
    PilotLibrary,
    build_pilot_library,
    day_after,
    manufacturer_key,
    pilot_bundle,
)
from repo_tool.intake.bundle import Bundle

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> PilotLibrary:
    return build_pilot_library(tmp_path_factory.mktemp("gateway"))


def _resign(
    library: PilotLibrary, bundle: Bundle, edit: Callable[[dict[str, Any]], None]
) -> Bundle:
    """Edit the signed ``custom.cfl.pilot`` of the bundle's image, then sign as the manufacturer."""
    md = Metadata[Targets].from_bytes(bundle.role_bytes)
    edit(md.signed.targets[bundle.target].custom["cfl"]["pilot"])
    md.signatures.clear()
    md.sign(library.factory.mfr_signers[MFR])
    return replace(bundle, role_bytes=md.to_bytes())


def _good(library: PilotLibrary, suppliers: tuple[str, ...] = (OTHER,)) -> Bundle:
    factory = library.factory
    return pilot_bundle(
        factory,
        IMAGES["spare"],
        ["CPL-E4"],
        suppliers=suppliers,
        release_at=day_after(factory.now, 3),
    )


@dataclass(frozen=True)
class Case:
    code: str
    edit: Callable[[PilotLibrary, dict[str, Any]], None]
    message: tuple[str, ...]


def _set(key: str, value: object) -> Callable[[PilotLibrary, dict[str, Any]], None]:
    def edit(library: PilotLibrary, pilot: dict[str, Any]) -> None:
        pilot[key] = value(library) if callable(value) else value

    return edit


CASES = {
    "unregistered-supplier": Case(
        "pilot-supplier-unknown",
        _set("suppliers", ["00000000000000F9"]),
        (
            "custom.cfl.pilot.suppliers: found '00000000000000F9'",
            "expected the Entity ID of a registered supplier",
            OTHER,
        ),
    ),
    "revoked-supplier": Case(
        "pilot-supplier-unknown",
        _set("suppliers", [REVOKED]),
        (f"found '{REVOKED}'", "expected an active registration (revoked", "left the market"),
    ),
    "supplier-outside-role": Case(
        "pilot-supplier-unknown",
        _set("suppliers", [PILOT, GAS]),
        (
            f"found '{GAS} (roles GS)'",
            "expected an organisation whose User Roles cover ESME images (IS)",
        ),
    ),
    "not-an-entity-id": Case(
        "pilot-supplier-unknown",
        _set("suppliers", ["A1"]),
        ("custom.cfl.pilot.suppliers[0]", "'A1' does not match"),
    ),
    "no-supplier": Case(
        "pilot-supplier-unknown", _set("suppliers", []), ("custom.cfl.pilot.suppliers",)
    ),
    "release-today": Case(
        "release-date-invalid",
        _set("release_at", lambda lib: day_after(lib.factory.now, 0)),
        ("custom.cfl.pilot.release_at: found", "expected a date from", "after today"),
    ),
    "release-in-the-past": Case(
        "release-date-invalid",
        _set("release_at", lambda lib: day_after(lib.factory.now, -30)),
        ("custom.cfl.pilot.release_at: found", "expected a date from"),
    ),
    "release-too-far": Case(
        "release-date-invalid",
        _set("release_at", lambda lib: day_after(lib.factory.now, 366)),
        ("at most 365 days ahead",),
    ),
    "impossible-date": Case(
        "release-date-invalid",
        _set("release_at", "2027-02-30"),
        ("custom.cfl.pilot.release_at: found '2027-02-30', expected a real date YYYY-MM-DD",),
    ),
    "not-a-date": Case(
        "release-date-invalid",
        _set("release_at", "next week"),
        ("custom.cfl.pilot.release_at", "'next week' does not match"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gateway_refuses_bad_pilot_terms(library: PilotLibrary, name: str) -> None:
    case = CASES[name]
    factory = library.factory
    bundle = _resign(library, _good(library), lambda pilot: case.edit(library, pilot))
    head = (factory.repo.state_dir / "head.json").read_bytes()
    result = factory.ingest(bundle, f"case-{name}")
    assert result.status == "rejected"
    assert result.reasons == [case.code], result.messages
    (message,) = [m for m in result.messages if m.startswith(case.code)]
    for part in case.message:
        assert part in message, message
    assert (factory.repo.state_dir / "head.json").read_bytes() == head  # nothing changed
    assert (
        result.kept_at is not None and (factory.repo.path / result.kept_at / "report.json").exists()
    )


def test_gateway_refuses_pilot_terms_the_bundle_did_not_sign(library: PilotLibrary) -> None:
    # Terms edited after signing (to add oneself to a pilot) break the manufacturer's signature.
    bundle = _good(library)
    md = Metadata[Targets].from_bytes(bundle.role_bytes)
    md.signed.targets[bundle.target].custom["cfl"]["pilot"]["suppliers"].append(PILOT)
    result = library.factory.ingest(replace(bundle, role_bytes=md.to_bytes()), "unsigned-terms")
    assert result.status == "rejected"
    assert "bad-signature" in result.reasons or "threshold-not-met" in result.reasons


def test_a_later_role_version_cannot_change_a_lodged_pilot(library: PilotLibrary) -> None:
    # The manufacturer re-signs its role with the pilot image's date moved: the terms are lodged.
    factory = library.factory
    bundle = _good(library)
    md = Metadata[Targets].from_bytes(bundle.role_bytes)
    md.signed.targets[library.pilot_target].custom["cfl"]["pilot"]["release_at"] = day_after(
        factory.now, 300
    )
    md.signatures.clear()
    md.sign(factory.mfr_signers[MFR])
    result = factory.ingest(replace(bundle, role_bytes=md.to_bytes()), "moved-date")
    assert result.reasons == ["role-content-altered"], result.messages
    assert f"target {library.pilot_target}" in result.messages[0]


def test_accepted_pilot_is_recorded_and_logged(tmp_path: Path) -> None:
    fresh = build_pilot_library(tmp_path)
    head = fresh.factory.repo.head
    assert head.pilots == {fresh.pilot_target: fresh.release_at}
    lines = (fresh.repo_path / "events.jsonl").read_bytes().splitlines()
    (deposit,) = [
        json.loads(line)
        for line in lines
        if json.loads(line).get("target") == fresh.pilot_target
        and json.loads(line)["event"] == "ingest-accepted"
    ]
    assert deposit["pilot"] == {"suppliers": [PILOT], "release_at": fresh.release_at}
    role = fresh.factory.repo.role("mfr-121D").signed
    assert role.targets[fresh.pilot_target].custom["cfl"]["pilot"]["suppliers"] == [PILOT]
    assert "pilot" not in role.targets[fresh.public_target].custom["cfl"]


@pytest.mark.parametrize(
    ("suppliers", "days", "part"),
    [
        (
            ("00000000000000F9",),
            3,
            "pilot-supplier-unknown: custom.cfl.pilot.suppliers: found '00000000000000F9'",
        ),
        ((GAS,), 3, "expected an organisation whose User Roles cover ESME images"),
        ((OTHER,), 0, "release-date-invalid: custom.cfl.pilot.release_at: found"),
    ],
    ids=["unregistered", "outside-role", "today"],
)
def test_submit_refuses_what_the_gateway_would(
    library: PilotLibrary, suppliers: tuple[str, ...], days: int, part: str
) -> None:
    factory = library.factory
    with pytest.raises(RejectedInputError) as raised:
        pilot_bundle(
            factory,
            IMAGES["spare"],
            ["CPL-E4"],
            suppliers=suppliers,
            release_at=day_after(factory.now, days),
        )
    assert part in str(raised.value)


def _submit(library: PilotLibrary, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    key = manufacturer_key(library)
    image = tmp / "spare.ota"
    image.write_bytes(IMAGES["spare"])
    return subprocess.run(
        [
            str(CFL_REPO), "submit", str(image), "--manufacturer", MFR, "--key", str(key),
            "--cpl-entry", "CPL-E4", "--reason", "compliance",
            "--from", str(library.factory.out),
            "--root", str(library.factory.out / "metadata" / "1.root.json"),
            "--out", str(tmp / "spare.cflb"), *extra,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ("--pilot", OTHER),
            "error: --pilot: found without --release-at YYYY-MM-DD, expected both together",
        ),
        (
            ("--release-at", "2030-01-01"),
            "error: --release-at: found without --pilot ENTITY_ID, expected both together",
        ),
        (
            ("--pilot", "A2", "--release-at", "2030-01-01"),
            "error: --pilot: found 'A2', expected 16 hex digits (an EUI-64)",
        ),
        (
            ("--pilot", OTHER, "--release-at", "1 Jan 2030"),
            "error: --release-at: found '1 Jan 2030', expected a real date YYYY-MM-DD",
        ),
        (
            ("--pilot", OTHER, "--pilot", OTHER.lower(), "--release-at", "2030-01-01"),
            "expected each Entity ID once",
        ),
    ],
    ids=["no-date", "no-pilot", "bad-entity", "bad-date", "twice"],
)
def test_submit_command_line_refuses_malformed_pilot_options(
    library: PilotLibrary, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    done = _submit(library, tmp_path, *extra)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert not (tmp_path / "spare.cflb").exists()


def test_submit_command_line_signs_a_pilot_the_gateway_accepts(tmp_path: Path) -> None:
    fresh = build_pilot_library(tmp_path / "lib")
    release_at = day_after(fresh.factory.now, 10)
    done = _submit(fresh, tmp_path, "--pilot", OTHER.lower(), "--release-at", release_at, "--json")
    assert done.returncode == 0, done.stderr
    result = fresh.factory.ingest(tmp_path / "spare.cflb")
    assert result.status == "accepted", result.messages
    assert result.target is not None
    assert fresh.factory.repo.head.pilots[result.target] == release_at
    assert any("regenerate the host configuration" in m for m in result.messages)


def test_refused_by_submit_exits_1_with_one_error_line(
    library: PilotLibrary, tmp_path: Path
) -> None:
    done = _submit(
        library,
        tmp_path,
        "--pilot",
        "00000000000000F9",
        "--release-at",
        day_after(library.factory.now, 5),
    )
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pilot-supplier-unknown" in errors[0]
    assert not (tmp_path / "spare.cflb").exists()
