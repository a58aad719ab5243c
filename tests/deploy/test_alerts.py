"""deploy/cfl-alerts.yml fires on the metrics `status --prometheus` really writes, and only then.

The input series of Prometheus's own rule tester (`promtool test rules`) are the samples of real
readings of a library built at an injected time: a manufacturer role 10 days from expiry must
alert, one 15 days from it must not, a rejection between two readings must, and so on.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from deploy_units import DEPLOY
from prometheus_client.parser import text_string_to_metric_families

from conftest import require_system
from factory import LibraryFactory, make_entry, make_image, mi_sha
from repo_tool.monitor.exposition import render
from repo_tool.monitor.readings import Readings, read_status
from repo_tool.ops.refresh import refresh

STEPS = 5  # one reading per minute of each phase


def series(*phases: Readings) -> list[dict[str, str]]:
    """promtool input series: each sample's value for STEPS minutes per phase, in order."""
    values: dict[str, list[str]] = {}
    for index, readings in enumerate(phases):
        text = render(readings).decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                column = values.setdefault(f"{sample.name}{{{labels}}}", ["_"] * index * STEPS)
                column.extend([repr(float(sample.value))] * STEPS)
    return [{"series": name, "values": " ".join(column)} for name, column in values.items()]


def alert(severity: str, summary: str, description: str, **labels: str) -> Any:
    return {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


RENEW = (
    "Ask the manufacturer to re-sign: `cfl-repo submit --renew` (docs/manufacturer.md), then "
    "ingest and publish its bundle."
)
REJECTED = (
    "Send R/rejected/*/report.json back to the manufacturer and move the bundle out of the inbox "
    "(`journalctl -u cfl-ingest` names it)."
)
PUBLISHED = "refresh or publish is failing: `journalctl -u cfl-refresh -u cfl-publish`."


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    require_system("promtool")
    spec = tmp_path / "cfl-alerts.test.yml"
    # JSON is YAML: no YAML writer needed.
    spec.write_text(
        json.dumps(
            {
                "rule_files": [str(DEPLOY / "cfl-alerts.yml")],
                "evaluation_interval": "1m",
                "tests": tests,
            }
        )
    )
    check = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "cfl-alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    done = subprocess.run(
        ["promtool", "test", "rules", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def library(tmp_path: Path) -> tuple[LibraryFactory, Path]:
    """121D signed for 40 days and 3F01 for 45, read 30 days on: 10 and 15 days left, and the
    online roles refreshed and published then."""
    images = {"121D": make_image("121D", 2), "3F01": make_image("3F01", 5)}
    factory = LibraryFactory(tmp_path)
    factory.import_cpl(
        [
            make_entry("CPL-0002", image_sha=mi_sha(images["121D"])),
            make_entry(
                "CPL-0101",
                mfr="3F01",
                model="0B0C",
                fw="00000005",
                image_sha=mi_sha(images["3F01"]),
                device_type="GSME",
            ),
        ]
    )
    factory.add_manufacturer("121D")
    factory.add_manufacturer("3F01")
    factory.publish()
    start = factory.now
    factory.deposit(images["121D"], ["CPL-0002"], expiry=timedelta(days=40))
    factory.deposit(images["3F01"], ["CPL-0101"], mfr="3F01", expiry=timedelta(days=45))
    factory.now = start + timedelta(days=30)
    with factory.repo.locked():
        refresh(factory.repo, now=factory.now, force=True)
    factory.publish()
    junk = tmp_path / "junk.cflb"
    junk.write_bytes(b"not a bundle")
    return factory, junk


def test_alerts_fire_on_real_readings_and_only_where_they_should(tmp_path: Path) -> None:
    factory, junk = library(tmp_path)
    now = factory.now
    calm = read_status(factory.repo, now=now, published=factory.out)
    assert factory.ingest(junk).status == "rejected"
    rejected = read_status(factory.repo, now=now + timedelta(minutes=STEPS), published=factory.out)
    late = read_status(factory.repo, now=now + timedelta(hours=19), published=factory.out)
    assert late.published is not None
    left = late.published.timestamp_expires - late.now  # about 5 hours
    manufacturer = {"role": "mfr-121D", "renewed_by": "manufacturer"}
    tests = [
        {
            "interval": "1m",
            "input_series": series(calm, rejected),
            "alert_rule_test": [
                {  # 10 days and the minutes the library took to build
                    "eval_time": "2m",
                    "alertname": "CflManufacturerRoleExpiresSoon",
                    "exp_alerts": [
                        alert(
                            "warning",
                            _summary(calm, "mfr-121D"),
                            RENEW,
                            **manufacturer,
                        )
                    ],
                },
                {"eval_time": "2m", "alertname": "CflDepositRejected", "exp_alerts": []},
                {
                    "eval_time": "7m",
                    "alertname": "CflDepositRejected",
                    "exp_alerts": [alert("info", "ingest rejected a deposit", REJECTED)],
                },
            ]
            + [
                {"eval_time": "7m", "alertname": quiet, "exp_alerts": []}
                for quiet in (
                    "CflRoleExpiresSoon",
                    "CflRoleNotRefreshed",
                    "CflPublishedTimestampExpiring",
                    "CflRoleExpired",
                    "CflUnpublished",
                    "CflMetricsStale",
                )
            ],
        },
        {
            "interval": "1m",
            "input_series": series(late),
            "alert_rule_test": [
                {
                    "eval_time": "2m",
                    "alertname": "CflPublishedTimestampExpiring",
                    "exp_alerts": [
                        alert(
                            "critical",
                            f"the published timestamp expires in {_humanized(left)}",
                            PUBLISHED,
                            role="timestamp",
                        )
                    ],
                }
            ],
        },
    ]
    promtool_test(tmp_path, tests)


def _summary(readings: Readings, role: str) -> str:
    (left,) = [r.expires - readings.now for r in readings.roles if r.role == role]
    return f"{role} expires in {_humanized(left)}"


def _humanized(span: timedelta) -> str:
    """Prometheus's humanizeDuration of a span over an hour."""
    days, rest = divmod(int(span.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{days}d {hours}h {minutes}m {seconds}s" if days else f"{hours}h {minutes}m {seconds}s"


def test_a_manufacturer_role_fifteen_days_from_expiry_does_not_alert(tmp_path: Path) -> None:
    factory, _ = library(tmp_path)
    readings = read_status(factory.repo, now=factory.now, published=factory.out)
    (left,) = [r.expires - readings.now for r in readings.roles if r.role == "mfr-3F01"]
    assert timedelta(days=14) < left < timedelta(days=16)
    only_3f01 = [s for s in series(readings) if "mfr-121D" not in s["series"]]
    promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": only_3f01,
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "CflManufacturerRoleExpiresSoon",
                        "exp_alerts": [],
                    }
                ],
            }
        ],
    )


def test_metrics_that_stop_arriving_alert(tmp_path: Path) -> None:
    promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [{"series": 'up{job="node"}', "values": "1x20"}],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "CflMetricsStale",
                        "exp_alerts": [
                            alert(
                                "warning",
                                "the CFL metrics have not been written for 15 minutes",
                                "Read `journalctl -u cfl-status`: the expiry alerts above are blind meanwhile.",
                            )
                        ],
                    }
                ],
            }
        ],
    )
