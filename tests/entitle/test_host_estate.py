"""`host nginx --access estate` on a real nginx: each supplier gets exactly the images its estate
gives it a right to; role mode stays byte for byte what it was; the client explains the refusal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from entitle.conftest import (
    D1,
    D2,
    D3,
    DAY,
    FF,
    S1,
    S2,
    S3,
    TODAY,
    World,
    build_world,
    write_inventory,
)
from entitle.host import Host, start_host
from factory import T0
from metadata_templates.suppliers import ESTATE_REFUSAL, SupplierRegistry
from repo_tool.access.host_estate import estate_maps
from repo_tool.access.host_nginx import NginxSettings, render_nginx_config
from repo_tool.entitle.policy import EntitlementPolicy
from repo_tool.entitle.record import EntitlementRecord, EntityRights
from repo_tool.ops.entitlements import import_entitlements, read_estate

GOLDEN = Path(__file__).parent / "golden" / "role-empty-registry.conf"
CFL = Path(sys.executable).with_name("cfl")
SINCE = TODAY.replace(year=TODAY.year - 1)


def import_now(world: World, path: Path) -> None:
    repo = world.factory.repo
    with repo.locked():
        import_entitlements(repo, read_estate(path), now=datetime.now(UTC).replace(microsecond=0))


def test_role_mode_is_byte_for_byte_what_it_was() -> None:
    settings = NginxSettings(
        server_name="firmware.example.org",
        listen="0.0.0.0:443",
        tls_cert="/etc/cfl/server.crt.pem",
        tls_key="/etc/cfl/server.key.pem",
        supplier_ca="/etc/cfl/supplier-ca.pem",
        public_root="/srv/cfl/public",
    )
    text = render_nginx_config(
        settings, SupplierRegistry(), registry_sha256="", now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    # Rendered by main before issue 22; since then only the advisory locations (issue 23) added,
    # and no-store on every 404 (docs/hosting.md).
    assert text == GOLDEN.read_text()


def test_the_maps_hold_one_line_per_image_and_only_rights_in_force(pristine: World) -> None:
    t = pristine.targets
    next_year = TODAY.replace(year=TODAY.year + 1)
    record = EntitlementRecord(
        inventory_date=TODAY, imported=T0, inventory_sha256="0" * 64, devices=3, bad_rows=0,
        grace_days=28, previous=None, unregistered={},
        entities={
            S1: EntityRights(since={t["a2"]: TODAY, t["a3"]: next_year}),
            S2: EntityRights(since={t["a2"]: SINCE}, grace={t["b5"]: TODAY}),
        },
    )  # fmt: skip
    registry = pristine.factory.repo.suppliers()
    maps = estate_maps(record, "f" * 64, registry, day=TODAY, library=t.values())
    assert dict(maps.holders) == {t["a2"]: ":1:2:", t["b5"]: ":2:"}
    assert maps.rights == 3
    assert maps.unheld == 1  # a3: its right begins next year
    assert maps.next_change == TODAY + DAY  # the day after the grace's last day
    text = render_nginx_config(SETTINGS, registry, registry_sha256="", now=T0, estate=maps)
    assert f'        {t["a2"]} ":1:2:";\n' in text
    assert t["a3"] not in text
    assert f'"~^\\|1\\|" "{ESTATE_REFUSAL}";' in text
    assert "if ($cfl_estate_refusal)" in text and 'return 403 "$cfl_estate_refusal\\n";' in text
    # Tomorrow the grace is over: b5 has no holder; next year a3 has one.
    assert t["b5"] not in dict(estate_maps(record, "f" * 64, registry, day=TODAY + DAY).holders)
    assert t["a3"] in dict(estate_maps(record, "f" * 64, registry, day=next_year).holders)


def test_a_policy_per_device_type_leaves_other_types_by_role(pristine: World) -> None:
    record = EntitlementRecord(
        inventory_date=TODAY, imported=T0, inventory_sha256="0" * 64, devices=0, bad_rows=0,
        grace_days=28, previous=None, entities={},
    )  # fmt: skip
    policy = EntitlementPolicy(estate_device_types=("ESME",))
    maps = estate_maps(record, "f" * 64, SupplierRegistry(), day=TODAY, policy=policy)
    text = render_nginx_config(
        SETTINGS, SupplierRegistry(), registry_sha256="", now=T0, estate=maps
    )
    block = text[text.index("$cfl_estate_applies {") :]
    assert block.split("}")[0].split() == [
        "$cfl_estate_applies",
        "{",
        "default",
        '"";',
        "ESME",
        "1;",
    ]


SETTINGS = NginxSettings(
    server_name="firmware.example.org",
    listen="0.0.0.0:443",
    tls_cert="/etc/cfl/server.crt.pem",
    tls_key="/etc/cfl/server.key.pem",
    supplier_ca="/etc/cfl/supplier-ca.pem",
    public_root="/srv/cfl/public",
)


# ------------------------------------------------------------------------------- real nginx


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """Inventory: D1 (ESME fw 1) -> S1, D2 (GSME) -> S2, D3 (ESME fw 2) -> S3 (IS only), and a
    device of the unregistered FF."""
    tmp = tmp_path_factory.mktemp("estate-host")
    world = build_world(tmp)
    rows = [(D1, S1, SINCE), (D2, S2, SINCE), (D3, S3, SINCE), (D3, FF, SINCE)]
    import_now(world, write_inventory(tmp / "inventory.csv", rows))
    served = start_host(world, tmp)
    yield served
    served.stop()


ROLE_REASON = "device type not covered by the organisation's User Roles"
EXPECTED = {
    (S1, "a2"): (200, ""),
    (S1, "a3"): (200, ""),  # through a2: every hop of the upgrade path
    (S1, "b5"): (403, ESTATE_REFUSAL),
    (S2, "a2"): (403, ESTATE_REFUSAL),
    (S2, "a3"): (403, ESTATE_REFUSAL),
    (S2, "b5"): (200, ""),
    (S3, "a2"): (200, ""),  # its device runs a2's firmware
    (S3, "a3"): (200, ""),
    (S3, "b5"): (403, ROLE_REASON),  # the role decides first, as without estates
    ("no-certificate", "a2"): (
        403,
        "no client certificate: images are for registered suppliers only",
    ),
}


@pytest.mark.system
@pytest.mark.parametrize(("caller", "image"), sorted(EXPECTED), ids=lambda v: str(v)[-8:])
def test_a_supplier_downloads_exactly_what_its_estate_gives_it(
    host: Host, caller: str, image: str
) -> None:
    assert host.get(caller, image) == EXPECTED[(caller, image)]


@pytest.mark.system
def test_metadata_and_the_cpl_stay_public(host: Host) -> None:
    pool = host.pool("no-certificate")
    assert pool.request("GET", "/metadata/timestamp.json").status == 200
    cpl = (
        host.repo.targets().signed.targets.get("cfl/cpl.json")
        or host.repo.provider_targets()["cfl/cpl.json"]
    )
    path = "/targets/cfl/" + cpl.hashes["sha256"] + ".cpl.json"
    assert pool.request("GET", path).status == 200


@pytest.mark.system
def test_the_client_explains_the_refusal_in_one_line(host: Host, tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = tmp_path / "root.json"
    root.write_bytes(host.world.factory.root_bytes)
    cert, key = host.credentials[S1]
    init = cfl(home, "init", f"https://localhost:{host.port}/", "--root", root,
               "--ca-bundle", host.server_ca, "--client-cert", cert, "--client-key", key)  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert cfl(home, "refresh").returncode == 0
    refused = cfl(home, "download", host.world.targets["b5"], "--out", tmp_path / "out")
    assert refused.returncode == 1, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert line.endswith(f": the library refused: {ESTATE_REFUSAL}")
    fetched = cfl(home, "download", host.world.targets["a3"], "--out", tmp_path / "out")
    assert fetched.returncode == 0, fetched.stderr


def cfl(home: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFL), "--home", str(home), *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.system
@pytest.mark.parametrize(
    ("caller", "rewrite", "expected"),
    [
        # Percent-encoding the stored name: nginx decodes $uri before the maps see it.
        (S1, lambda p: p.replace(".GSME-", ".%47SME-"), 403),
        (S1, lambda p: p.replace("/targets/", "/targets/./"), 403),
        (S1, lambda p: p.replace("/targets/3F01/", "/targets/121D/../3F01/"), 403),
        # A query string changes nothing either way.
        (S1, lambda p: p + "?entity=00000000000000C2", 403),
        (S2, lambda p: p + "?x=1", 200),
        # Release notes follow the image: refused to S1, and for S2 simply not there.
        (S1, lambda p: p + ".notes.jwe", 403),
        (S2, lambda p: p + ".notes.jwe", 404),
    ],
    ids=[
        "percent-encoded",
        "dot-segment",
        "dot-dot",
        "query-s1",
        "query-s2",
        "notes-s1",
        "notes-s2",
    ],
)
def test_a_rewritten_path_does_not_get_past_the_estate(
    host: Host, caller: str, rewrite: Callable[[str], str], expected: int
) -> None:
    response = host.pool(caller).request("GET", rewrite(host.path("b5")), redirect=False)
    assert response.status == expected, response.data[:200]
    if expected == 403:
        assert response.data.decode().strip() == ESTATE_REFUSAL
