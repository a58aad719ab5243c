"""`status --prometheus` readings match the repository they were read from, and the exposition is
Prometheus text that prometheus_client's own parser reads back, whatever the names in it.

Every library here is built with repo_tool's own code (tests/factory.py) at an injected time, and
read at an injected ``now``, so each expected value is exact.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.policy import DEFAULT_POLICY
from repo_tool.monitor.exposition import render, write_textfile
from repo_tool.monitor.readings import OTHER_REASON, Readings, read_status
from repo_tool.submit.bins import build_split
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

DAY = 86400.0


def samples(readings: Readings) -> list[Sample]:
    text = render(readings).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(readings: Readings, name: str, **labels: str) -> float:
    found = [s.value for s in samples(readings) if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for s in samples(readings) if s.name == name])
    return found[0]


def names(readings: Readings, name: str) -> list[dict[str, str]]:
    return [s.labels for s in samples(readings) if s.name == name]


def one_manufacturer(tmp_path: Path) -> tuple[LibraryFactory, bytes]:
    image = make_image("121D", 2)
    factory = LibraryFactory(tmp_path)
    factory.import_cpl([make_entry("CPL-0002", image_sha=mi_sha(image))])
    factory.add_manufacturer("121D")
    factory.publish()
    return factory, image


def test_a_manufacturer_role_expiring_in_ten_days_reads_ten_days(tmp_path: Path) -> None:
    factory, image = one_manufacturer(tmp_path)
    # The gateway wants at least 30 days' validity at a deposit; 40 leave 10 after 30 days.
    bundle = factory.submit(image, ["CPL-0002"], expiry=timedelta(days=40))
    signed_at = factory.now
    assert factory.ingest(bundle).status == "accepted"
    factory.publish()
    published_at = factory.now
    labels = {"role": "mfr-121D", "renewed_by": "manufacturer"}
    now = signed_at + timedelta(days=30)
    readings = read_status(factory.repo, now=now, published=factory.out)
    assert value(readings, "cfl_role_expiry_seconds", **labels) == 10 * DAY
    later = read_status(factory.repo, now=now + timedelta(days=9), published=factory.out)
    assert value(later, "cfl_role_expiry_seconds", **labels) == 1 * DAY
    expired = read_status(factory.repo, now=now + timedelta(days=11), published=factory.out)
    assert value(expired, "cfl_role_expiry_seconds", **labels) == -1 * DAY
    # The published timestamp suppliers fetch: signed at the publish, for the policy's one day.
    at_publish = read_status(factory.repo, now=published_at, published=factory.out)
    assert value(at_publish, "cfl_published_expiry_seconds", role="timestamp") == (
        DEFAULT_POLICY.expiry("timestamp").total_seconds()
    )
    assert (
        value(readings, "cfl_published_expiry_seconds", role="timestamp")
        == (published_at + DEFAULT_POLICY.expiry("timestamp") - now).total_seconds()
    )
    assert value(readings, "cfl_status_timestamp_seconds") == now.timestamp()


def test_every_staged_role_is_listed_with_who_renews_it(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path, provider=True)
    readings = read_status(factory.repo, now=factory.now, published=factory.out)
    by_role = {
        labels["role"]: labels["renewed_by"]
        for labels in names(readings, "cfl_role_expiry_seconds")
    }
    assert by_role == {
        "root": "ceremony",
        "targets": "refresh",  # development keys: refresh holds the targets key
        "snapshot": "refresh",
        "timestamp": "refresh",
        "cfl-provider": "refresh",
        "mfr-121D": "manufacturer",
        "mfr-3F01": "manufacturer",
    }
    staged = factory.repo.snapshot()
    assert staged is not None
    assert (
        value(readings, "cfl_role_expiry_seconds", role="snapshot", renewed_by="refresh")
        == (staged.signed.expires - factory.now).total_seconds()
    )


def test_each_bin_of_a_split_manufacturer_is_listed(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=2,
        signers=[factory.mfr_signers["121D"]],
        library=library,
        now=factory.now,
        expiry=timedelta(days=40),
    )
    split_at = factory.now
    assert factory.ingest(split, "split").status == "accepted"
    readings = read_status(factory.repo, now=split_at, published=factory.out)
    bins = {
        labels["role"]
        for labels in names(readings, "cfl_role_expiry_seconds")
        if "-bin-" in labels["role"]
    }
    assert bins == {f"mfr-121D-bin-{i}" for i in range(4)}
    for role in bins:
        labels = {"role": role, "renewed_by": "manufacturer"}
        assert value(readings, "cfl_role_expiry_seconds", **labels) == 40 * DAY
    # The split is staged, not yet published: the manufacturer role and its four bins.
    assert value(readings, "cfl_unpublished_roles") == 5
    factory.publish()
    after = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(after, "cfl_unpublished_roles") == 0


def test_inbox_depth_counts_every_entry_ingest_would_judge_and_opens_none(
    tmp_path: Path,
) -> None:
    factory, image = one_manufacturer(tmp_path)
    inbox = tmp_path / "inbox"
    factory.write(factory.submit(image, ["CPL-0002"]), "a")
    (inbox / "b.cflb").write_bytes(b"not a bundle")
    (inbox / "notes.txt").write_text("not named *.cflb")
    (inbox / "key.cflb").symlink_to("/dev/zero")  # a link: listed, never followed
    os.mkfifo(inbox / "pipe.cflb")  # opening it would wait for a writer
    (inbox / "folder.cflb").mkdir()
    other = tmp_path / "other inbox"
    other.mkdir()
    readings = read_status(
        factory.repo, now=factory.now, published=factory.out, inboxes=[inbox, other]
    )
    assert value(readings, "cfl_inbox_bundles", inbox=str(inbox)) == 5
    assert value(readings, "cfl_inbox_bundles", inbox=str(other)) == 0


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda p: None, "no such folder"),
        (lambda p: p.write_text("a file"), "not a folder"),
    ],
    ids=["missing", "a-file"],
)
def test_an_inbox_that_is_not_a_folder_is_a_configuration_error(
    tmp_path: Path, make: object, found: str
) -> None:
    factory, _ = one_manufacturer(tmp_path)
    inbox = tmp_path / "inbox"
    make(inbox)  # type: ignore[operator]
    with pytest.raises(ConfigurationError, match=f"--inbox {inbox}: found {found}"):
        read_status(factory.repo, now=factory.now, published=factory.out, inboxes=[inbox])


def test_rejections_are_counted_from_the_event_log_with_their_reasons(tmp_path: Path) -> None:
    factory, image = one_manufacturer(tmp_path)
    junk = tmp_path / "inbox" / "junk.cflb"
    junk.parent.mkdir()
    junk.write_bytes(b"PK junk")
    for _ in range(2):  # a rejected bundle left in the inbox is rejected again on every run
        assert factory.ingest(junk).status == "rejected"
    duplicate = factory.submit(image, ["CPL-0002"])
    assert factory.ingest(duplicate).status == "accepted"
    readings = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(readings, "cfl_rejected_bundles_total") == 2
    assert value(readings, "cfl_rejection_reasons_total", reason="malformed-bundle") == 2
    # Pruning the kept copies does not lower a counter.
    for kept in (factory.repo.path / "rejected").iterdir():
        for f in kept.iterdir():
            f.unlink()
        kept.rmdir()
    again = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(again, "cfl_rejected_bundles_total") == 2


def test_the_event_log_reader_counts_only_real_rejection_events(tmp_path: Path) -> None:
    factory, _ = one_manufacturer(tmp_path)
    events = factory.repo.path / "events.jsonl"
    lines = [
        # A bundle name is the depositor's choice: a name that spells the marker is a string value,
        # escaped, and is not an event.
        {"event": "ingest-accepted", "bundle": '"event":"ingest-rejected".cflb'},
        # Reasons outside the gateway's codes share one label value, so labels stay a fixed set.
        {"event": "ingest-rejected", "reasons": ['x"}\n{evil="1', "duplicate-image"]},
        {"event": "ingest-rejected", "reasons": "not-a-list"},
    ]
    with events.open("ab") as handle:
        for line in lines:
            handle.write(json.dumps(line, sort_keys=True, separators=(",", ":")).encode() + b"\n")
        handle.write(b'{"event":"ingest-rejected","reas')  # the torn line a kill -9 leaves
    readings = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(readings, "cfl_rejected_bundles_total") == 2
    reasons = {s.labels["reason"] for s in samples(readings) if s.name.startswith("cfl_rejection")}
    assert reasons == {OTHER_REASON, "duplicate-image"}


def test_log_sizes_are_the_transparency_log_and_the_event_log(tmp_path: Path) -> None:
    factory, image = one_manufacturer(tmp_path)
    before = read_status(factory.repo, now=factory.now, published=factory.out)
    factory.deposit(image, ["CPL-0002"])
    after = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(after, "cfl_log_entries") == factory.repo.head.log_size
    assert value(after, "cfl_log_entries") == value(before, "cfl_log_entries") + 1
    log_dir = factory.repo.log_dir
    on_disk = sum(p.stat().st_size for p in log_dir.rglob("*") if p.is_file())
    assert value(after, "cfl_log_bytes") == on_disk
    assert (
        value(after, "cfl_event_log_bytes") == (factory.repo.path / "events.jsonl").stat().st_size
    )
    # A link planted in the log folder is not followed (it could point at a whole disk).
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100_000)
    (log_dir / "link").symlink_to(big)
    (log_dir / "dirlink").symlink_to(tmp_path)
    linked = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(linked, "cfl_log_bytes") == on_disk


def test_last_publish_is_when_the_published_timestamp_was_written(tmp_path: Path) -> None:
    factory, _ = one_manufacturer(tmp_path)
    timestamp = factory.out / "metadata" / "timestamp.json"
    os.utime(timestamp, (1_800_000_000, 1_800_000_000))
    readings = read_status(factory.repo, now=factory.now, published=factory.out)
    assert value(readings, "cfl_last_publish_timestamp_seconds") == 1_800_000_000


def test_nothing_published_yet_has_no_published_samples(tmp_path: Path) -> None:
    factory, _ = one_manufacturer(tmp_path)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    readings = read_status(factory.repo, now=factory.now, published=empty)
    assert readings.published is None
    assert names(readings, "cfl_published_expiry_seconds") == []
    assert names(readings, "cfl_last_publish_timestamp_seconds") == []
    assert value(readings, "cfl_role_expiry_seconds", role="root", renewed_by="ceremony") > 0


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (lambda t: t.write_bytes(b"{not json"), "found unreadable metadata"),
        (lambda t: t.write_bytes(b"x" * (1024 * 1024 + 1)), "size: found more than"),
        (
            lambda t: t.write_bytes(t.with_name("1.root.json").read_bytes()),
            "_type: found 'root', expected 'timestamp'",
        ),
        (lambda t: (t.unlink(), t.symlink_to("/etc/shadow")), "found not a regular file"),
        (lambda t: (t.unlink(), t.mkdir()), "found not a regular file"),
    ],
    ids=["not-json", "oversized", "a-root-instead", "a-link", "a-folder"],
)
def test_a_published_timestamp_that_is_not_one_is_refused(
    tmp_path: Path, plant: object, message: str
) -> None:
    factory, _ = one_manufacturer(tmp_path)
    plant(factory.out / "metadata" / "timestamp.json")  # type: ignore[operator]
    with pytest.raises(RejectedInputError, match=message):
        read_status(factory.repo, now=factory.now, published=factory.out)


def test_hostile_label_values_are_escaped_and_read_back_exactly(tmp_path: Path) -> None:
    factory, _ = one_manufacturer(tmp_path)
    inbox = tmp_path / 'in"box\\ \n} cfl_inbox_bundles{inbox="x"} 99'
    inbox.mkdir()
    readings = read_status(factory.repo, now=factory.now, published=factory.out, inboxes=[inbox])
    assert names(readings, "cfl_inbox_bundles") == [{"inbox": str(inbox)}]
    assert value(readings, "cfl_inbox_bundles", inbox=str(inbox)) == 0


def test_every_family_is_prefixed_typed_and_documented(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    text = render(read_status(factory.repo, now=factory.now, published=factory.out)).decode()
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} == {
        "cfl_role_expiry_seconds",
        "cfl_published_expiry_seconds",
        "cfl_last_publish_timestamp_seconds",
        "cfl_inbox_bundles",
        "cfl_rejected_bundles",
        "cfl_rejection_reasons",
        "cfl_unpublished_roles",
        "cfl_log_entries",
        "cfl_log_bytes",
        "cfl_event_log_bytes",
        "cfl_status_timestamp_seconds",
    }
    for family in families:
        assert family.documentation, family.name
        assert f"# TYPE {family.name}" in text
    # Counters carry _total and no _created sample (a file has no process start to report).
    assert "cfl_rejected_bundles_total 0.0" in text
    assert "_created" not in text


def test_the_textfile_is_replaced_atomically_and_readable_by_the_exporter(tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "cfl.prom"
    write_textfile(target, b"cfl_log_entries 1.0\n")
    write_textfile(target, b"cfl_log_entries 2.0\n")
    assert target.read_bytes() == b"cfl_log_entries 2.0\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["cfl.prom"]  # no temporary file left


def test_a_textfile_that_is_a_link_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "cfl.prom"
    link.symlink_to(victim)
    write_textfile(link, b"cfl_log_entries 1.0\n")
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()
    assert link.read_bytes() == b"cfl_log_entries 1.0\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cfl.txt", "expected a name ending .prom"),
        (".prom", "expected a name ending .prom"),
        ("folder.prom", "is a folder"),
        ("file/cfl.prom", "is a file, expected a folder"),
    ],
    ids=["wrong-suffix", "only-suffix", "a-folder", "under-a-file"],
)
def test_a_textfile_path_that_cannot_be_one_is_refused(
    tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "folder.prom").mkdir()
    (tmp_path / "file").write_text("a file")
    with pytest.raises(ConfigurationError, match=message):
        write_textfile(tmp_path / name, b"cfl_log_entries 1.0\n")
