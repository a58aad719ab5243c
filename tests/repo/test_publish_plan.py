"""The publish plan both writers follow (folder and S3): its order is the safety argument."""

from __future__ import annotations

import json

import pytest

from metadata_templates.errors import UnavailableError
from repo_tool.publish.plan import (
    PUBLISH_STEPS,
    TIMESTAMP_PATH,
    Kind,
    StagedVersions,
    plan_publish,
    published_versions,
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


def _doc(meta: object) -> bytes:
    return json.dumps({"signatures": [], "signed": {"_type": "x", "meta": meta}}).encode()


TIMESTAMP = _doc({"snapshot.json": {"version": 9}})
SNAPSHOT = _doc({"targets.json": {"version": 5}, "mfr-121D.json": {"version": 3}})


def test_published_versions_are_what_the_served_snapshot_lists() -> None:
    read = {9: SNAPSHOT}.get
    assert published_versions(TIMESTAMP, read) == {"targets": 5, "mfr-121D": 3}
    assert published_versions(None, read) == {}
    assert published_versions(TIMESTAMP, {}.get) == {}  # the snapshot it names is missing


@pytest.mark.parametrize(
    "timestamp, snapshot",
    [
        (b"\x00not json", SNAPSHOT),
        (b"[" * 100_000, SNAPSHOT),
        (_doc([]), SNAPSHOT),
        (_doc({"snapshot.json": {"version": "9"}}), SNAPSHOT),
        (_doc({"snapshot.json": {"version": True}}), SNAPSHOT),
        (_doc({"snapshot.json": 9}), SNAPSHOT),
        (json.dumps({"signed": None}).encode(), SNAPSHOT),
        (TIMESTAMP, _doc({"targets.json": {"version": 0}})),
        (TIMESTAMP, _doc({"targets.json": {"version": -5}})),
        (TIMESTAMP, _doc({"targets.json": {"version": 1.5}})),
        (TIMESTAMP, _doc({"targets.json": {}})),
        (TIMESTAMP, _doc("meta")),
        (TIMESTAMP, b'{"signed": {"meta": {"a": {"version": 1}}'),  # cut short
    ],
)
def test_a_served_timestamp_or_snapshot_of_another_shape_lists_nothing(
    timestamp: bytes, snapshot: bytes
) -> None:
    """Then every role is planned and the writer compares what it finds, as before."""
    assert published_versions(timestamp, {9: snapshot}.get) == {}
