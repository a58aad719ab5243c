"""kill -9 at every commit point while `cfl-repo ingest` takes an automatic split and its deposit.

The inbox holds what `cfl-repo submit` writes when a deposit passes the bin rule: the `split-bins`
bundle (repo_tool/submit/auto_bins.py) and the deposit signed on top of it. Ingest makes two
commits; a kill at any rename or fsync of either, then the same command again, must leave the
role split, the image in its bin, the published tree verifying and the journal whole (the loop and
its checks are tests/repo/test_crash_recovery.py's).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from test_crash_recovery import Scenario, _run_kill_loop

from conftest import require_system
from factory import make_entry, make_image, mi_sha, standard_library
from metadata_templates import naming
from metadata_templates.bin_rule import BinRule
from repo_tool.intake.bundle import Declaration, write_bundle
from repo_tool.submit.auto_bins import split_first, split_path_for
from repo_tool.submit.deposit import build_submission
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

NEW_IMAGE = make_image("121D", 4)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    base = tmp_path_factory.mktemp("auto-split-crash")
    factory, _ = standard_library(base)
    factory.entries.append(make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(NEW_IMAGE)))
    factory.import_cpl()
    factory.publish()
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    signers = [factory.mfr_signers["121D"]]
    # The contract splits past 8 images; a rule that splits at once gives the same bundles here.
    auto = split_first(
        manufacturer_id="121D",
        signers=signers,
        library=library,
        load_every_bin=lambda: library,
        new_targets=1,
        now=factory.now,
        rule=BinRule(split_above_targets=0),
    )
    assert auto is not None
    deposit = build_submission(
        image=NEW_IMAGE,
        manufacturer_id="121D",
        signers=signers,
        declaration=Declaration(("CPL-0004",), "compliance", ()),
        release_notes=None,
        library=auto.library,
        now=factory.now,
    )
    write_bundle(base / "auto" / split_path_for("121D-4.cflb"), auto.bundle)
    write_bundle(base / "auto" / "121D-4.cflb", deposit.bundle)
    return base, factory.root_bytes


def _split_with_image(bits: int) -> Callable[[Path], None]:
    def check(base: Path) -> None:
        state = base / "repo" / "state"
        head = json.loads((state / "head.json").read_bytes())
        bins = sorted(r for r in head["roles"] if naming.manufacturer_of_bin(r) == "121D")
        assert bins == naming.bin_roles("121D", bits)
        held: set[str] = set()
        for name in bins:
            doc = json.loads(
                (state / "metadata" / name / f"{head['roles'][name]}.json").read_bytes()
            )
            held.update(doc["signed"]["targets"])
        assert len(held) == 3  # the two lodged images and the new one, each once
        assert any(t.startswith("121D/ESME-0001-00000004-") for t in held)

    return check


@pytest.mark.system
@pytest.mark.slow
def test_kill_ingest_of_an_automatic_split_at_every_point_then_rerun_succeeds(
    tmp_path: Path, pristine: tuple[Path, bytes]
) -> None:
    require_system("strace")
    base, root = pristine
    scenario = Scenario(
        "ingest-auto-split", lambda b: ["ingest", str(b / "auto")], _split_with_image(1)
    )
    points = _run_kill_loop(tmp_path, base, scenario, root)
    assert points >= 4, f"killed at only {points} point(s): two commits have more"
