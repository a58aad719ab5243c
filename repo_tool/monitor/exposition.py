"""Readings as the Prometheus text format, and the node exporter textfile written atomically.

prometheus_client builds the exposition (escaping of label values, number formatting, HELP and TYPE
lines), so a hostile inbox folder or bundle name can never inject a sample. Every name carries the
``cfl_`` prefix and its unit. Times until expiry are **seconds**, measured from the readings' ``now``
(negative once expired): ``cfl_role_expiry_seconds / 86400`` is the issue's "days until". A file
that stops being rewritten keeps its last values, so ``cfl_status_timestamp_seconds`` says when
they were read, and docs/operator.md's alert rules fire on a stale file too.

The families, their labels and meanings are listed in docs/operator.md, "Metrics".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metadata_templates.atomic import atomic_write_bytes
from metadata_templates.errors import ConfigurationError
from repo_tool.monitor.readings import Readings
from repo_tool.output_paths import prepare_file

TEXTFILE_SUFFIX = ".prom"  # node exporter's textfile collector reads only these
TEXTFILE_MODE = 0o644  # node exporter runs as its own user


class _ReadingsCollector(Collector):
    """One scrape's worth of families from fixed readings (no live state, no process metrics)."""

    def __init__(self, readings: Readings) -> None:
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        r = self.readings
        now = r.now.timestamp()
        roles = GaugeMetricFamily(
            "cfl_role_expiry_seconds",
            "Seconds until the staged role expires (negative: expired); renewed_by says who renews "
            "it: refresh (the timer), ceremony (offline key holders), manufacturer (submit --renew).",
            labels=["role", "renewed_by"],
        )
        for role in r.roles:
            roles.add_metric([role.role, role.renewed_by], role.expires.timestamp() - now)
        yield roles
        published = GaugeMetricFamily(
            "cfl_published_expiry_seconds",
            "Seconds until the published role suppliers fetch first expires (negative: expired).",
            labels=["role"],
        )
        last = GaugeMetricFamily(
            "cfl_last_publish_timestamp_seconds",
            "When the published timestamp.json was last replaced (a publish that changed anything).",
        )
        if r.published is not None:
            published.add_metric(["timestamp"], r.published.timestamp_expires.timestamp() - now)
            last.add_metric([], r.published.written)
        yield published
        yield last
        inbox = GaugeMetricFamily(
            "cfl_inbox_bundles",
            "*.cflb entries in the inbox folder (ingest only reads them: archive judged ones).",
            labels=["inbox"],
        )
        for folder, depth in r.inboxes:
            inbox.add_metric([folder], depth)
        yield inbox
        yield CounterMetricFamily(
            "cfl_rejected_bundles",
            "Bundles ingest rejected, from the ingest-rejected events of events.jsonl.",
            value=r.rejected,
        )
        reasons = CounterMetricFamily(
            "cfl_rejection_reasons",
            "Rejections that named each gateway code (a bundle may name several).",
            labels=["reason"],
        )
        for code, count in r.rejection_reasons:
            reasons.add_metric([code], count)
        yield reasons
        for name, text, value in (
            (
                "cfl_unpublished_roles",
                "Staged role versions the staged snapshot does not list yet (publish signs them in).",
                r.unpublished_roles,
            ),
            ("cfl_log_entries", "Entries in the transparency log.", r.log_entries),
            ("cfl_log_bytes", "Bytes of the transparency log's tiles on disk.", r.log_bytes),
            ("cfl_event_log_bytes", "Bytes of the event log events.jsonl.", r.event_log_bytes),
            ("cfl_status_timestamp_seconds", "When these readings were taken.", now),
        ):
            yield GaugeMetricFamily(name, text, value=value)


def render(readings: Readings) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``readings``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ReadingsCollector(readings))
    return generate_latest(registry)


def write_textfile(path: Path, data: bytes) -> None:
    """Replace the textfile ``path`` atomically, world-readable: a temporary ``.NAME.*.tmp`` file
    beside it (which the collector ignores), fsync, rename. A scrape never reads half a file.

    Raises:
        ConfigurationError: ``path`` does not end in ``.prom``, is a folder, or its folder cannot
            be made.
    """
    if not path.name.endswith(TEXTFILE_SUFFIX) or path.name == TEXTFILE_SUFFIX:
        raise ConfigurationError(
            f"--prometheus-file: found {path.name!r}, expected a name ending {TEXTFILE_SUFFIX} "
            "(node exporter's textfile collector reads only those)"
        )
    prepare_file(path, field="--prometheus-file")
    atomic_write_bytes(path, data, mode=TEXTFILE_MODE)
