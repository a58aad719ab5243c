"""A real library (two ESME images on an upgrade pathway, one GSME image) with registered suppliers,
and inventory extracts written as the DCC's Smart Metering Inventory would.

Images (tests/factory.py ``standard_library``): ``a2`` ESME firmware 2 (Upgrade From N/A), ``a3``
ESME firmware 3 (Upgrade From CPL-0002 only, so a firmware-1 device reaches it through ``a2``), ``b5``
GSME firmware 5. Suppliers: ``S1``, ``S2`` (IS+GS) and ``S3`` (IS) registered; ``FF`` is not.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from access.pki import Issued, issue, make_ca

from factory import T0, LibraryFactory, standard_library
from repo_tool.ops.suppliers import add_supplier
from repo_tool.state.repository import Repository

S1, S2, S3, FF = "00000000000000C1", "00000000000000C2", "00000000000000C3", "00000000000000FF"
ROLES = {S1: ("IS", "GS"), S2: ("IS", "GS"), S3: ("IS",)}
HEADER = (
    "Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
    "Firmware Version,Responsible Supplier,Since\n"
)
DAY = timedelta(days=1)
TODAY = T0.date()


@dataclass(frozen=True)
class Device:
    """One inventory row's device (the standard library's models)."""

    device_id: str
    kind: str  # "esme" (121D 010A030B 1111) or "gsme" (3F01 0B0C 1111)
    firmware: str

    def row(self, supplier: str, since: date) -> str:
        what = "ESME,121D,010A030B,1111" if self.kind == "esme" else "GSME,3F01,0B0C,1111"
        return f"{self.device_id},{what},{self.firmware},{supplier},{since.isoformat()}\n"


D1 = Device("00000000000000D1", "esme", "00000001")  # reaches a2 and, through it, a3
D2 = Device("00000000000000D2", "gsme", "00000004")  # b5
D3 = Device("00000000000000D3", "esme", "00000002")  # a3 (and a2: it runs it)


def inventory(rows: Iterable[tuple[Device, str, date]]) -> str:
    return HEADER + "".join(device.row(supplier, since) for device, supplier, since in rows)


def write_inventory(path: Path, rows: Iterable[tuple[Device, str, date]]) -> Path:
    path.write_text(inventory(rows))
    return path


@dataclass
class World:
    """The library, its targets by short name, and the suppliers' certificates."""

    factory: LibraryFactory
    targets: dict[str, str]
    certificates: dict[str, Issued]
    supplier_ca: Issued

    @property
    def repo_path(self) -> Path:
        return self.factory.repo.path


def build_world(tmp: Path) -> World:
    factory, _ = standard_library(tmp)
    targets = {}
    for role, short in (("mfr-121D", "a"), ("mfr-3F01", "b")):
        for path in factory.repo.role(role).signed.targets:
            fw = int(path.split("-")[2], 16)
            targets[f"{short}{fw}"] = path
    ca = make_ca()
    certificates = {entity: issue(ca, f"Supplier {entity[-2:]}") for entity in ROLES}
    repo = factory.repo
    with repo.locked():
        for entity, roles in ROLES.items():
            add_supplier(
                repo,
                entity=entity,
                name=f"Supplier {entity[-2:]}",
                roles=roles,
                certificate=certificates[entity].cert_pem,
                now=factory.tick(),
                ca_pem=ca.cert_pem,
            )
    factory.publish()
    return World(factory, targets, certificates, ca)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One world per module; tests that change it work on a copy (`repo_copy`)."""
    return build_world(tmp_path_factory.mktemp("entitle-world"))


@pytest.fixture
def repo_copy(pristine: World, tmp_path: Path) -> Repository:
    """A copy of the pristine repository, opened."""
    copy = tmp_path / "repo"
    shutil.copytree(pristine.repo_path, copy, symlinks=True)
    return Repository.open(copy)
