"""`status` warns about roles close to expiry, so nobody learns of it from suppliers' failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from repo_tool.ops.status import expiring as _expiring

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def _roles(**days: float) -> dict[str, dict[str, str]]:
    return {
        name.replace("_", "-"): {"expires": (NOW + timedelta(days=d)).isoformat()}
        for name, d in days.items()
    }


def test_offline_and_manufacturer_roles_warn_within_thirty_days() -> None:
    roles = _roles(root=200, targets=29, mfr_121D=10, mfr_3F01=31)
    assert _expiring(roles, NOW) == ["targets", "mfr-121D"]


def test_short_lived_online_roles_warn_only_once_expired() -> None:
    roles = _roles(timestamp=0.5, snapshot=3)
    assert _expiring(roles, NOW) == []
    assert _expiring(_roles(timestamp=-0.1), NOW) == ["timestamp"]
