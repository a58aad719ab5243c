"""A pilot image behind a real nginx generated with `host nginx --access estate`: the embargo and the
entitlement by estate both apply (a supplier gets a pilot image only when its estate gives it the
right AND the pilot names it, or after the release), and each refusal keeps its own reason.

The decisions chain in the generated configuration: the registry's (``$cfl_refusal``), then the
estate's (``$cfl_estate_refusal``), then the embargo's (``$cfl_pilot_refusal``); each only narrows
the one before it (repo_tool/access/host_nginx.py ``_decision_values``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from metadata_templates.suppliers import ESTATE_REFUSAL, SupplierRegistry
from pilots.pilot_library import GAS, IMAGES, OTHER, PILOT
from pilots.test_pilot_host import Host, _cfl_repo
from pilots.test_pilot_host import host as host  # the fixture, shared
from repo_tool.access.host_estate import EstateMaps
from repo_tool.access.host_nginx import NginxSettings, render_nginx_config
from repo_tool.access.host_pilots import REFUSAL, Embargo, embargo_of

HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since\n"
)


def _inventory(path: Path, *suppliers: str) -> Path:
    """One firmware-1 ESME device (upgrade path: the public image, then the pilot) per supplier."""
    since = (datetime.now(UTC).date() - timedelta(days=400)).isoformat()
    rows = [
        f"00000000000000D{n},ESME,121D,010A030B,1111,00000001,{supplier},{since}\n"
        for n, supplier in enumerate(suppliers, start=1)
    ]
    path.write_text(HEADER + "".join(rows))
    return path


def _import(host: Host, *suppliers: str) -> None:
    inventory = _inventory(host.state.parent / f"inventory-{len(suppliers)}.csv", *suppliers)
    done = _cfl_repo(host.library, "entitlements", "import", str(inventory))
    assert done.returncode == 0, done.stderr


@pytest.mark.system
def test_a_pilot_image_needs_the_estate_right_and_the_pilot(host: Host) -> None:
    library = host.library
    pilot, public = host.blob(library.pilot_target), host.blob(library.public_target)
    host.args += ["--access", "estate"]

    # Only OTHER's estate reaches the images: the pilot supplier has no right to them yet.
    _import(host, OTHER)
    done = host.regenerate()
    doc = json.loads(done.stdout)
    assert doc["pilots"] == [library.pilot_target] and doc["estate"]["rights"] == 2
    text = host.conf.read_text()
    assert "$cfl_estate_refusal|$cfl_pilot_suppliers|$cfl_entity" in text
    assert "if ($cfl_pilot_refusal)" in text
    assert host.get(PILOT, pilot) == (403, f"{ESTATE_REFUSAL}\n".encode())  # pilot, no right
    assert host.get(OTHER, pilot) == (403, f"{REFUSAL}\n".encode())  # right, not in the pilot
    assert host.get(OTHER, public) == (200, IMAGES["public"])
    assert host.get(PILOT, public) == (403, f"{ESTATE_REFUSAL}\n".encode())
    status, body = host.get(GAS, pilot)  # the registry's reason stays first
    assert status == 403 and b"not covered by the organisation's User Roles" in body

    # The pilot supplier gains a device: the right and the pilot together let it through.
    _import(host, OTHER, PILOT)
    host.regenerate()
    assert host.get(PILOT, pilot) == (200, IMAGES["pilot"])
    assert host.get(OTHER, pilot) == (403, f"{REFUSAL}\n".encode())

    # Released: everyone with the right gets it; the role and the estate still decide the rest.
    released = _cfl_repo(library, "release", library.pilot_target, "--reason", "pilot done")
    assert released.returncode == 0, released.stderr
    assert _cfl_repo(library, "publish", "--no-site").returncode == 0
    regenerated = json.loads(host.regenerate().stdout)
    assert "pilots" not in regenerated and "estate" in regenerated
    assert "cfl_pilot_refusal" not in host.conf.read_text()
    assert host.get(OTHER, pilot) == (200, IMAGES["pilot"])
    assert host.get(PILOT, pilot) == (200, IMAGES["pilot"])
    status, body = host.get(GAS, pilot)
    assert status == 403 and b"not covered" in body


SETTINGS = NginxSettings(
    server_name="firmware.example.org",
    listen="0.0.0.0:443",
    tls_cert="/etc/cfl/server.crt.pem",
    tls_key="/etc/cfl/server.key.pem",
    supplier_ca="/etc/cfl/supplier-ca.pem",
    public_root="/srv/cfl/public",
)
EMBARGO = embargo_of(
    "121D/ESME-0001-00000003-0123456789abcdef.ota", "ab" * 32, [PILOT], "2026-09-01", None
)
NO_RIGHTS = EstateMaps(
    record="f" * 64,
    day=datetime(2026, 1, 1, tzinfo=UTC).date(),
    numbers=(),
    holders=(),
    device_types=None,
    rights=0,
    next_change=None,
    unheld=0,
)


@pytest.mark.parametrize(
    ("estate", "embargoes", "decision", "narrows"),
    [
        (None, (), "$cfl_refusal", None),
        (NO_RIGHTS, (), "$cfl_estate_refusal", None),
        (None, (EMBARGO,), "$cfl_pilot_refusal", "$cfl_refusal"),
        (NO_RIGHTS, (EMBARGO,), "$cfl_pilot_refusal", "$cfl_estate_refusal"),
    ],
    ids=["role", "estate", "role-and-pilot", "estate-and-pilot"],
)
def test_each_mode_refuses_by_the_last_decision_of_its_chain(
    estate: EstateMaps | None, embargoes: tuple[Embargo, ...], decision: str, narrows: str | None
) -> None:
    text = render_nginx_config(
        SETTINGS,
        SupplierRegistry(),
        registry_sha256="",
        now=datetime(2026, 1, 1, tzinfo=UTC),
        estate=estate,
        embargoes=embargoes,
    )
    assert f"if ({decision})" in text and f'return 403 "{decision}\\n";' in text
    if narrows is None:
        assert "cfl_pilot_suppliers" not in text
    else:
        # The embargo reads the decision before it, and falls back to its reason.
        assert f'map "{narrows}|$cfl_pilot_suppliers|$cfl_entity" $cfl_pilot_refusal {{' in text
        assert f"        default {narrows};" in text
        # Every variable the chain reads is defined before it is read.
        assert text.index(f"{narrows} {{") < text.index("$cfl_pilot_refusal {")
