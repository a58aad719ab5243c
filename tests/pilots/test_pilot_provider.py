"""The provider's side of a pilot (issue 22): `refresh` on the date, `release` and `hold`.

Each decision is a new ``cfl/releases.json`` signed by the online ``cfl-provider`` role, an event in
the journal and in the transparency log (checked here with the auditor's `cfl log verify` code,
which also insists every recorded decision has its log event). Time is injected into the
operations; the command-line tests use the real clock on a pilot whose date is still ahead.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from client.log.audit import audit
from metadata_templates import naming
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.releases import HELD, PILOT, RELEASED
from pilots.pilot_library import PilotLibrary, build_pilot_library
from repo_tool.ops.hold import hold
from repo_tool.ops.refresh import refresh
from repo_tool.ops.release import release
from repo_tool.state import pilots
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")


@pytest.fixture
def library(tmp_path: Path) -> PilotLibrary:
    return build_pilot_library(tmp_path)


def _state(library: PilotLibrary) -> str:
    image = pilots.pilot_image(library.factory.repo, library.pilot_target, library.factory.now)
    assert image is not None
    return image.state.phase


def _journal(library: PilotLibrary, kind: str) -> list[dict[str, Any]]:
    lines = (library.repo_path / "events.jsonl").read_bytes().splitlines()
    return [json.loads(line) for line in lines if json.loads(line)["event"] == kind]


def _logged(library: PilotLibrary) -> dict[str, int]:
    """The published transparency log's events by kind; fails on any problem the auditor finds."""
    out = library.factory.out
    report = audit(lambda path: (out / path).read_bytes(), vkey=None)
    assert report.problems == []
    return report.events


def _refresh(library: PilotLibrary) -> list[str]:
    factory = library.factory
    with factory.repo.locked():
        resigned = refresh(factory.repo, now=factory.tick())
    factory.publish()
    return resigned


def _published_releases(library: PilotLibrary) -> list[tuple[str, str, str]]:
    factory = library.factory
    published = verified_library(folder_reader(factory.out), factory.root_bytes, now=factory.now)
    return [(e.target, e.action, e.reason) for e in published.releases.events]


def test_refresh_before_the_date_releases_nothing(library: PilotLibrary) -> None:
    library.travel(library.release_moment() - timedelta(minutes=5))
    _refresh(library)
    assert _state(library) == PILOT
    assert library.factory.repo.head.pilots == {library.pilot_target: library.release_at}
    assert library.factory.repo.head.releases_sha256 is None
    assert _journal(library, "release") == []


def test_refresh_on_the_date_records_the_release_signed_and_logged(library: PilotLibrary) -> None:
    repo = library.factory.repo
    provider_before = repo.head.roles[naming.PROVIDER_ROLE]
    library.travel(library.release_moment() + timedelta(minutes=1))
    resigned = _refresh(library)
    assert naming.PROVIDER_ROLE in resigned
    assert repo.head.roles[naming.PROVIDER_ROLE] == provider_before + 1
    assert repo.head.pilots == {}  # nothing left waiting
    assert _state(library) == RELEASED
    reason = f"release date {library.release_at} reached"
    assert _published_releases(library) == [(library.pilot_target, "release", reason)]
    (event,) = _journal(library, "release")
    assert event["target"] == library.pilot_target and event["reason"] == reason
    assert _logged(library)["release"] == 1
    # A second refresh (the next cron run) records nothing more.
    library.travel(library.factory.now + timedelta(hours=1))
    _refresh(library)
    assert len(_journal(library, "release")) == 1
    assert _logged(library)["release"] == 1


def test_a_hold_keeps_the_pilot_past_its_date_until_released(library: PilotLibrary) -> None:
    factory = library.factory
    with factory.repo.locked():
        held, recorded = hold(
            factory.repo, library.pilot_target, "pilot found a fault", now=factory.tick()
        )
    assert recorded and held.action == "hold"
    factory.publish()
    library.travel(library.release_moment() + timedelta(days=2))
    _refresh(library)
    assert _state(library) == HELD
    assert factory.repo.head.pilots == {library.pilot_target: library.release_at}
    with factory.repo.locked():
        released, recorded = release(
            factory.repo, library.pilot_target, "fault fixed upstream", now=factory.tick()
        )
    assert recorded and released.action == "release"
    factory.publish()
    assert _state(library) == RELEASED
    assert factory.repo.head.pilots == {}
    assert [a for _, a, _ in _published_releases(library)] == ["hold", "release"]
    events = _logged(library)
    assert events["hold"] == 1 and events["release"] == 1


def test_release_early_then_the_date_changes_nothing(library: PilotLibrary) -> None:
    factory = library.factory
    with factory.repo.locked():
        event, recorded = release(factory.repo, library.pilot_target, None, now=factory.tick())
    assert recorded and event.reason == "released by the provider"
    factory.publish()
    assert _state(library) == RELEASED
    library.travel(library.release_moment() + timedelta(hours=1))
    _refresh(library)
    assert len(_journal(library, "release")) == 1


def test_release_and_hold_are_recorded_once(library: PilotLibrary) -> None:
    repo, factory, target = library.factory.repo, library.factory, library.pilot_target
    with repo.locked():
        first, _ = hold(repo, target, "wait", now=factory.tick())
        again, recorded = hold(repo, target, "wait", now=factory.tick())
        assert (again, recorded) == (first, False)  # a re-run changes nothing
        with pytest.raises(RejectedInputError, match=r"is held already .* reason 'wait'"):
            hold(repo, target, "another reason", now=factory.tick())
        done, _ = release(repo, target, "go", now=factory.tick())
        assert release(repo, target, "go", now=factory.tick()) == (done, False)
        with pytest.raises(RejectedInputError, match="was released already"):
            release(repo, target, "other", now=factory.tick())
        with pytest.raises(RejectedInputError, match="a released image cannot be held") as raised:
            hold(repo, target, "too late", now=factory.tick())
        assert raised.value.hint is not None and "cfl-repo withdraw" in raised.value.hint
    assert len(_journal(library, "hold")) == 1 and len(_journal(library, "release")) == 1


def test_hold_is_refused_once_the_date_has_come(library: PilotLibrary) -> None:
    # Released by its date (not yet recorded by refresh): what was released is not taken back.
    library.travel(library.release_moment() + timedelta(minutes=1))
    repo = library.factory.repo
    with repo.locked(), pytest.raises(RejectedInputError, match=r"\(its date\)"):
        hold(repo, library.pilot_target, "late", now=library.factory.now)


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("public", "expected a pilot image (custom.cfl.pilot)"),
        ("unknown", "expected an image target in the library"),
        ("provider", "expected an image target in the library"),
    ],
    ids=["not-a-pilot", "unknown-target", "provider-document"],
)
def test_release_and_hold_refuse_what_is_no_pilot(
    library: PilotLibrary, which: str, message: str
) -> None:
    target = {
        "public": library.public_target,
        "unknown": library.pilot_target.replace("00000003", "00000009"),
        "provider": naming.RELEASES_TARGET_PATH,
    }[which]
    repo = library.factory.repo
    head = (repo.state_dir / "head.json").read_bytes()
    with repo.locked():
        for operation in (release, hold):
            with pytest.raises(RejectedInputError, match="TARGET: found") as raised:
                operation(repo, target, "why", now=library.factory.now)  # type: ignore[operator]
            assert message in str(raised.value)
    assert (repo.state_dir / "head.json").read_bytes() == head


@pytest.mark.parametrize(
    "reason", ["", "   ", "two\nlines", "x" * 501], ids=["empty", "blank", "newline", "too-long"]
)
def test_a_reason_is_one_printable_line(library: PilotLibrary, reason: str) -> None:
    repo = library.factory.repo
    with repo.locked():
        for operation in (release, hold):
            with pytest.raises(ConfigurationError, match="--reason: found"):
                operation(repo, library.pilot_target, reason, now=library.factory.now)  # type: ignore[operator]


# ------------------------------------------------------------------------------ the commands


def _cli(library: PilotLibrary, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL_REPO), "--repo", str(library.repo_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _errors(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def test_commands_hold_then_release_with_json(library: PilotLibrary) -> None:
    target = library.pilot_target
    held = _cli(library, "hold", target, "--reason", "pilot found a fault", "--json")
    assert held.returncode == 0, held.stderr
    doc = json.loads(held.stdout)
    assert doc["schema_version"] == 1 and doc["action"] == "hold" and doc["recorded"] is True
    assert doc["target"] == target and doc["reason"] == "pilot found a fault"
    again = _cli(library, "hold", target, "--reason", "pilot found a fault", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["recorded"] is False
    assert "nothing changed" in again.stderr
    released = _cli(library, "release", target, "--json")
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)["reason"] == "released by the provider"
    assert "cfl-repo host nginx" in released.stderr
    # A released image cannot go back into its pilot; `hold` now holds it from recommendation
    # instead (issue 24, cfl/outcomes.json): every entitled supplier may still fetch it.
    late = _cli(library, "hold", target, "--reason", "too late")
    assert late.returncode == 0, late.stderr
    assert "no client recommends it" in late.stderr and "Traceback" not in late.stderr
    published = _cli(library, "publish", "--no-site")
    assert published.returncode == 0, published.stderr
    assert _logged(library)["hold"] == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["release", "PUBLIC"], 1, "expected a pilot image (custom.cfl.pilot)"),
        (
            ["hold", "121D/nothing.ota", "--reason", "x"],
            1,
            "expected an image target in the library",
        ),
        (["hold", "PILOT"], 2, "Missing option '--reason'"),
        (["hold", "PILOT", "--reason", " "], 2, "--reason: found ' ', expected one line"),
        (["release", "PILOT", "--reason", "a\tb"], 2, "--reason: found 'a\\tb'"),
    ],
    ids=[
        "release-not-a-pilot",
        "hold-unknown",
        "hold-no-reason",
        "blank-reason",
        "control-character",
    ],
)
def test_commands_refuse_bad_input_with_one_error_line(
    library: PilotLibrary, args: list[str], code: int, message: str
) -> None:
    names = {"PUBLIC": library.public_target, "PILOT": library.pilot_target}
    head = (library.factory.repo.state_dir / "head.json").read_bytes()
    done = _cli(library, *[names.get(a, a) for a in args])
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert (library.factory.repo.state_dir / "head.json").read_bytes() == head


@pytest.mark.parametrize("command", ["release", "hold", "refresh"])
def test_help_teaches_with_an_example(library: PilotLibrary, command: str) -> None:
    done = _cli(library, command, "--help")
    assert done.returncode == 0
    assert f"cfl-repo --repo R {command}" in done.stdout
    assert "pilot" in done.stdout.lower()


def test_a_pilot_in_a_manufacturer_split_into_hash_bins(tmp_path: Path) -> None:
    """The terms live in the bin the image goes to; release and hold find it there."""
    from pilots.pilot_library import IMAGES, OTHER, day_after, pilot_bundle
    from repo_tool.submit.bins import build_split

    library = build_pilot_library(tmp_path, deposit_pilot=False)
    factory = library.factory
    published = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=2,
        signers=[factory.mfr_signers["121D"]],
        library=published,
        now=factory.now,
    )
    assert factory.ingest(split, "split").status == "accepted"
    factory.publish()
    result = factory.ingest(
        pilot_bundle(
            factory,
            IMAGES["pilot"],
            ["CPL-E3"],
            suppliers=(OTHER,),
            release_at=day_after(factory.now, 4),
        )
    )
    assert result.status == "accepted", result.messages
    assert result.target is not None
    factory.publish()
    library.pilot_target, library.release_at = result.target, day_after(factory.now, 4)
    assert _state(library) == PILOT
    with factory.repo.locked():
        hold(factory.repo, result.target, "wait", now=factory.tick())
        release(factory.repo, result.target, "go", now=factory.tick())
    factory.publish()
    assert _state(library) == RELEASED
    assert _logged(library)["release"] == 1
