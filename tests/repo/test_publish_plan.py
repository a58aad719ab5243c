"""The publish plan both writers follow (folder and S3): its order is the safety argument."""

from __future__ import annotations

import pytest

from metadata_templates.errors import UnavailableError
from repo_tool.publish.plan import (
    PUBLISH_STEPS,
    TIMESTAMP_PATH,
    Kind,
    StagedVersions,
    plan_publish,
)

SHA = "ab" * 32
STAGED = StagedVersions(root=2, targets=5, snapshot=9, timestamp=11, roles={"mfr-121D": 3})


def test_the_order_is_blobs_roles_targets_snapshot_roots_then_timestamp() -> None:
    plan = plan_publish(STAGED, {}, [("121D/ESME-0001-00000002-abab.ota", SHA)])

    assert [p.path for p in plan] == [
        f"targets/121D/{SHA}.ESME-0001-00000002-abab.ota",
        "metadata/3.mfr-121D.json",
        "metadata/5.targets.json",
        "metadata/9.snapshot.json",
        "metadata/1.root.json",
        "metadata/2.root.json",  # a new root lands just before the timestamp signed under it
        TIMESTAMP_PATH,
    ]
    assert [p.step for p in plan] == sorted((p.step for p in plan), key=PUBLISH_STEPS.index)
    assert [p.kind for p in plan] == [Kind.IMMUTABLE] * 6 + [Kind.MUTABLE]
    assert plan[-1].version == 11


def test_roles_the_destination_lists_already_are_not_planned_and_blobs_once() -> None:
    plan = plan_publish(STAGED, {"mfr-121D": 3}, [("121D/a.ota", SHA), ("121D/a.ota", SHA)])
    paths = [p.path for p in plan]
    assert "metadata/3.mfr-121D.json" not in paths
    assert paths.count(f"targets/121D/{SHA}.a.ota") == 1


@pytest.mark.parametrize("path", ["../escape.ota", "121D/../../x.ota", "/abs.ota"])
def test_a_target_path_cannot_steer_a_write_outside_the_tree(path: str) -> None:
    with pytest.raises(UnavailableError, match="escapes the targets directory"):
        plan_publish(STAGED, {}, [(path, SHA)])
