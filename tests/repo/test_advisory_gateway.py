"""Advisories through the provider's inbox and gateway: signed end to end under the manufacturer's
delegation, revisions that supersede and never delete, and one refusal per attack, each a stable
code with the field, the value found and the value expected, the repository unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from advisory_factory import CRITICAL, MEDIUM, authored, forged, image_target, lodge, submit
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Targets

from client.log.audit import audit
from factory import LibraryFactory, standard_library
from metadata_templates.advisory import Advisory, advisory_target_path
from metadata_templates.errors import RejectedInputError
from repo_tool.intake.bundle import read_bundle, write_bundle
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LibraryFactory, dict[str, bytes]]:
    return standard_library(tmp_path_factory.mktemp("advisories"))


@pytest.fixture
def lib(built: tuple[LibraryFactory, dict[str, bytes]], tmp_path: Path) -> LibraryFactory:
    """A private copy of the module's library (repositories record key paths relatively)."""
    import copy
    import shutil

    factory, _images = built
    shutil.copytree(factory.tmp / "repo", tmp_path / "repo")
    clone = copy.copy(factory)
    clone.tmp = tmp_path
    from repo_tool.state.repository import Repository

    clone.repo = Repository.open(tmp_path / "repo")
    return clone


def state_of(factory: LibraryFactory) -> bytes:
    return (factory.repo.path / "state" / "head.json").read_bytes()


def test_an_advisory_for_firmware_in_the_field_is_lodged_signed_and_logged(
    lib: LibraryFactory,
) -> None:
    fix = image_target(lib, "CPL-0003")
    result = lodge(lib, authored(status="fixed", fixed_by=[fix]))
    path = advisory_target_path("CFL-121D-2026-0001", 1)
    assert result.target == path
    library = verified_library(folder_reader(lib.out), lib.root_bytes, now=lib.tick())
    role = library.role_metadata["mfr-121D"].signed
    blob = lib.out / "targets" / "121D" / f"{role.targets[path].hashes['sha256']}.{path[5:]}"
    advisory = Advisory.from_bytes(blob.read_bytes())
    assert (advisory.severity, advisory.score, advisory.fixed_by) == ("critical", 9.8, (fix,))
    events = [
        json.loads(line) for line in (lib.repo.path / "events.jsonl").read_text().splitlines()
    ]
    logged = [e for e in events if e["event"] == "advisory"]
    assert [(e["target"], e["advisory"], e["revision"]) for e in logged] == [
        (path, "CFL-121D-2026-0001", 1)
    ]
    # `cfl log verify` finds the advisory's own event in the transparency log.
    report = audit(_folder_fetch(lib.out), vkey=None)
    assert report.problems == [] and report.advisories_checked == 1


def _folder_fetch(root: Path) -> Any:
    def fetch(relative: str) -> bytes:
        from metadata_templates.errors import UnavailableError

        try:
            return (root / relative).read_bytes()
        except OSError as e:
            raise UnavailableError(str(e)) from e

    return fetch


def test_a_fix_reached_through_an_intermediate_image_is_applicable(lib: LibraryFactory) -> None:
    # CPL-0001 (fw 1) reaches fw 3 only through fw 2 (CPL-0003 upgrades from CPL-0002 alone).
    lodge(
        lib,
        authored(
            affected_cpl_entries=["CPL-0001"],
            status="fixed",
            fixed_by=[image_target(lib, "CPL-0003")],
        ),
    )


def test_revisions_supersede_and_none_is_deleted(lib: LibraryFactory) -> None:
    lodge(lib, authored(status="investigating", cvss=MEDIUM))
    lodge(lib, authored(status="fixed", fixed_by=[image_target(lib, "CPL-0003")]))
    role = lib.repo.role("mfr-121D").signed
    assert {advisory_target_path("CFL-121D-2026-0001", r) for r in (1, 2)} <= set(role.targets)


def test_a_rerun_of_an_accepted_advisory_changes_nothing(lib: LibraryFactory) -> None:
    path = lib.write(submit(lib, authored()), "advisory")
    assert lib.ingest(path).status == "accepted"
    before = state_of(lib)
    again = lib.ingest(path)
    assert again.status == "accepted" and "already accepted" in again.messages[0]
    assert state_of(lib) == before


def _refused(lib: LibraryFactory, bundle: Any, code: str, words: str) -> None:
    before = state_of(lib)
    result = lib.ingest(bundle, name="advisory")
    assert result.status == "rejected", result
    assert code in result.reasons, result.messages
    assert any(words in m for m in result.messages), result.messages
    assert state_of(lib) == before


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        (
            "unknown-entry",
            "advisory-unknown-entry",
            "found 'CPL-9999', expected an entry on the imported CPL",
        ),
        (
            "foreign-entry",
            "manufacturer-mismatch",
            "CPL entry CPL-0101 Manufacturer Identifier: found 3F01",
        ),
        ("fix-missing", "advisory-fix-missing", "expected an image target of mfr-121D"),
        ("fix-foreign", "advisory-fix-missing", "expected an image target of mfr-121D"),
        ("fix-not-applicable", "advisory-fix-not-applicable", "expected an image that applies"),
        ("stale-revision", "advisory-stale-revision", "revision: found 2, expected 1"),
        ("forged-score", "advisory-malformed", "score: found 2.0"),
        ("too-large", "advisory-too-large", "advisory.json size: found"),
        ("hash-mismatch", "target-metadata-mismatch", "length/hashes/custom"),
        ("two-targets", "target-metadata-mismatch", "new targets: found 2"),
        ("dropped-revision", "role-content-altered", "found it removed"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else "",
)
def test_each_bad_advisory_is_refused_with_its_code(
    lib: LibraryFactory, case: str, code: str, words: str
) -> None:
    fix = image_target(lib, "CPL-0003")
    doc = authored()
    kwargs: dict[str, Any] = {}
    if case == "unknown-entry":
        doc = authored(affected_cpl_entries=["CPL-9999"])
    elif case == "foreign-entry":
        doc = authored(affected_cpl_entries=["CPL-0002", "CPL-0101"])
    elif case == "fix-missing":
        doc = authored(status="fixed", fixed_by=["121D/ESME-0001-00000009-0000000000000000.ota"])
    elif case == "fix-foreign":
        doc = authored(status="fixed", fixed_by=[image_target(lib, "CPL-0101")])
    elif case == "fix-not-applicable":
        doc = authored(
            affected_cpl_entries=["CPL-0003"],
            status="fixed",
            fixed_by=[image_target(lib, "CPL-0002")],
        )
    elif case == "stale-revision":
        kwargs["revision"] = 2
    elif case == "forged-score":
        real = json.loads(Advisory.from_bytes(forged(lib, doc).advisory or b"").to_bytes())
        kwargs["data"] = json.dumps(real | {"score": 2.0}).encode()
    elif case == "too-large":
        kwargs["data"] = b" " * (300 * 1024)
    elif case == "hash-mismatch":
        good = forged(lib, doc)
        bundle = forged(lib, doc, data=(good.advisory or b"") + b" ")
        import dataclasses

        _refused(lib, dataclasses.replace(bundle, advisory=good.advisory), code, words)
        return
    elif case == "two-targets":

        def extra(signed: Targets) -> None:
            other = advisory_target_path("CFL-121D-2026-0002", 1)
            signed.targets[other] = signed.targets[advisory_target_path("CFL-121D-2026-0001", 1)]

        kwargs["edit_role"] = extra
    elif case == "dropped-revision":
        lodge(lib, authored(status="investigating"))

        def drop(signed: Targets) -> None:
            del signed.targets[advisory_target_path("CFL-121D-2026-0001", 1)]

        kwargs.update(revision=2, edit_role=drop)
    del fix
    _refused(lib, forged(lib, doc, **kwargs), code, words)


def test_a_strangers_advisory_is_refused(lib: LibraryFactory) -> None:
    stranger = CryptoSigner.generate_ed25519()
    _refused(
        lib, forged(lib, authored(), signer=stranger), "threshold-not-met", "expected at least 1"
    )
    unknown = forged(lib, authored(id="CFL-ABCD-2026-0001"), mfr="ABCD", signer=stranger)
    _refused(lib, unknown, "unknown-manufacturer", "found 'ABCD'")


def test_another_manufacturers_advisory_is_refused(lib: LibraryFactory) -> None:
    # 3F01 signs, with its own registered key, an advisory about 121D's firmware.
    bundle = forged(lib, authored(), mfr="3F01", path="3F01/CFL-121D-2026-0001.r1.advisory.json")
    _refused(lib, bundle, "manufacturer-mismatch", "expected an ID of the submitting manufacturer")
    # ... or names 121D's advisory path in its own role: outside its delegation.
    inside = forged(lib, authored(), mfr="3F01")
    _refused(lib, inside, "outside-delegation", "expected an advisory path matching '3F01/*'")


def test_the_manufacturer_side_refuses_what_the_gateway_would(lib: LibraryFactory) -> None:
    with pytest.raises(
        RejectedInputError, match="advisory-unknown-entry: advisory affected_cpl_entries"
    ):
        submit(lib, authored(affected_cpl_entries=["CPL-9999"]))
    with pytest.raises(RejectedInputError, match="revision: found 3, expected 1"):
        submit(lib, authored(revision=3))
    with pytest.raises(RejectedInputError, match="an ID of manufacturer 3F01"):
        submit(lib, authored(), mfr="3F01")


def test_a_bundle_survives_the_file_round_trip(lib: LibraryFactory, tmp_path: Path) -> None:
    bundle = submit(lib, authored(cvss=CRITICAL))
    path = tmp_path / "a.cflb"
    write_bundle(path, bundle)
    assert read_bundle(path) == bundle
