"""The real `cfl` console script, end to end, on libraries built by repo_tool's own code.

Every test runs the installed script in a subprocess, as a supplier or a script would, against a
library published by `tests/factory.py` (and once the demo dataset) over ``file://`` or a stdlib HTTP
server on 127.0.0.1 that notes each path it is asked for. Expected values come from the image bytes
and the CPL the test built, never from the client's own code: file hashes are ``sha256(image)``, SR
11.3 hashes are ``sha256(image[header:])``, and target paths are read off the published folder.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from client_factories import device_id, write_estate

from client.trust.home import ClientHome
from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from repo_tool.dev.demo_data import DemoDataset, DemoImage, make_demo_dataset, render_estate_csv
from repo_tool.ops.withdraw import withdraw as withdraw_op

CFL = Path(sys.executable).with_name("cfl")
TIMEOUT = 60  # seconds for any one cfl run; a hang fails the test instead of stalling the suite
SR11_BATCH_LIMIT = 50_000  # DUIS: one SR 11.1 names at most 50,000 devices
DEVICES_CSV_HEADER = [
    "Device ID",
    "Recommended Target",
    "Manufacturer Image SHA-256",
    "Batch",
    "Hop",
    "Phase",
]
# The stable check shape (ARCHITECTURE.md "Stable outputs"), and the top-level extras that
# client/estate/report.py documents (bad-row reporting), and the manufacturer roles that did not verify.
CHECK_KEYS = {"schema_version", "devices", "groups"}
CHECK_EXTRA_KEYS = {"skipped_rows", "problem_count", "problems", "unverified"}
GROUP_KEYS = {
    "device_type",
    "manufacturer_id",
    "model_id",
    "hardware_version",
    "firmware_version",
    "device_count",
    "applicable",
    "recommended",
    # stage 2 (issue 15): the upgrade path, the product line's newest image, and why it is not
    # reached
    "path",
    "newest",
    "newest_unreachable",
    # issue 24: images on hold that apply to the group (empty unless cfl/outcomes.json holds one)
    "held",
}
APPLICABLE_KEYS = {
    "target",
    "firmware_version",
    "reason",
    "advisories",
    "manufacturer_image_sha256",
}

Group = tuple[str, str, str, str, str]  # device type, manufacturer, model, hardware, firmware

# The standard library (tests/factory.py): 121D ESME 010A030B hw 1111 has CPL-0001 (fw 1, never
# deposited), CPL-0002 (fw 2, image a2, Upgrade From N/A) and CPL-0003 (fw 3, image a3, security,
# Upgrade From CPL-0002 only); 3F01 GSME 0B0C hw 1111 has CPL-0101 (fw 5, image b5, N/A).
ESME_A = ("ESME", "121D", "010A030B", "1111")
GSME_B = ("GSME", "3F01", "0B0C", "1111")
STANDARD_ESTATE: list[tuple[str, ...]] = [
    (device_id(1), *ESME_A, "00000001"),
    # lower-case hex is the same group once normalised
    (device_id(2), "esme", "121d", "010a030b", "1111", "00000001"),
    (device_id(3), *ESME_A, "00000002"),
    (device_id(4), *ESME_A, "00000002"),
    (device_id(5).replace("-", ""), *ESME_A, "00000002"),  # bare hex digits are an EUI-64 too
    (device_id(6), *ESME_A, "00000003"),
    (device_id(7), "ESME", "121D", "010A030B", "2222", "00000001"),  # hardware not on the CPL
    (device_id(8), *GSME_B, "00000001"),
    (device_id(9), *GSME_B, "00000006"),
    (device_id(10), "ESME", "7E11", "0001", "0001", "00000001"),  # manufacturer not in the library
]
# group -> (device count, applicable image keys, recommended image key)
STANDARD_EXPECTED: dict[Group, tuple[int, list[str], str | None]] = {
    # a2 applies (N/A pathway, 2 > 1); a3 does not, though higher: its pathway lists only CPL-0002,
    # so the devices reach a3 in two hops (STANDARD_PATHS) and a3, the last hop, is recommended.
    (*ESME_A, "00000001"): (2, ["a2"], "a3"),
    # a3 applies through its pathway; a2 does not (N/A pathway, and 2 is not above 2).
    (*ESME_A, "00000002"): (3, ["a3"], "a3"),
    (*ESME_A, "00000003"): (1, [], None),
    ("ESME", "121D", "010A030B", "2222", "00000001"): (1, [], None),
    (*GSME_B, "00000001"): (1, ["b5"], "b5"),  # N/A pathway, 5 > 1
    (*GSME_B, "00000006"): (1, [], None),  # N/A pathway, 5 < 6
    ("ESME", "7E11", "0001", "0001", "00000001"): (1, [], None),
}

# group -> the image keys of its upgrade path (issue 15); groups not listed have an empty path or
# the recommended image alone
STANDARD_PATHS: dict[Group, list[str]] = {(*ESME_A, "00000001"): ["a2", "a3"]}


def expected_path(key: Group) -> list[str]:
    """The image keys of a standard group's upgrade path."""
    recommended = STANDARD_EXPECTED[key][2]
    return STANDARD_PATHS.get(key, [recommended] if recommended else [])


# ----------------------------------------------------------------------------------- plumbing


def cfl(
    *args: str | Path,
    home: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `cfl` script; CFL_HOME from the caller's environment never leaks in."""
    if not CFL.is_file():
        pytest.fail(f"the cfl console script is not installed next to {sys.executable}")
    command = [str(CFL)]
    if home is not None:
        command += ["--home", str(home)]
    command += [str(a) for a in args]
    base = {k: v for k, v in os.environ.items() if k != "CFL_HOME"}
    base["COLUMNS"] = "200"
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON document a successful --json run prints on stdout."""
    doc = json.loads(ok(result).stdout)
    assert isinstance(doc, dict)
    assert doc["schema_version"] == 1
    return doc


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass(frozen=True)
class Library:
    """A published library, its trusted root as a file, and its images by short name."""

    factory: LibraryFactory
    images: dict[str, bytes]
    root: Path

    @property
    def url(self) -> str:
        return self.factory.out.as_uri()

    def target(self, key: str) -> str:
        """The target path of an image, read off the published folder (blobs are named
        ``targets/<mfr>/<sha256>.<basename>``)."""
        digest = sha256(self.images[key])
        [blob] = self.factory.out.glob(f"targets/*/{digest}.*")
        return f"{blob.parent.name}/{blob.name.removeprefix(digest + '.')}"

    def out_name(self, key: str) -> str:
        """The name the image must have in an output folder: ``<sha256>.<basename>``."""
        return f"{sha256(self.images[key])}.{self.target(key).rpartition('/')[2]}"

    def applicable_doc(self, key: str) -> dict[str, Any]:
        """What `cfl check --json` must say about an applicable image."""
        cfl_facts = {
            "a2": ("00000002", "compliance", []),
            "a3": ("00000003", "security", ["CFL-SA-2026-001"]),
            "a4": ("00000004", "compliance", []),
            "b5": ("00000005", "compliance", []),
        }
        firmware, reason, advisories = cfl_facts[key]
        return {
            "target": self.target(key),
            "firmware_version": firmware,
            "reason": reason,
            "advisories": advisories,
            "manufacturer_image_sha256": mi_sha(self.images[key]),
        }


def build_library(tmp: Path) -> Library:
    factory, images = standard_library(tmp / "lib")
    root = tmp / "root.json"
    root.write_bytes(factory.root_bytes)
    return Library(factory, dict(images), root)


def publish_a4(library: Library) -> None:
    """A new 121D image, firmware 4, whose CPL entry says N/A: it applies to firmware 1, 2 and 3."""
    image = make_image("121D", 4)
    library.images["a4"] = image
    factory = library.factory
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(image))]
    )
    factory.publish()  # the manufacturer declares against the published CPL
    factory.deposit(image, ["CPL-0004"])


def init_home(library: Library, home: Path, url: str | None = None) -> Path:
    ok(cfl("init", url or library.url, "--root", library.root, home=home))
    return home


def groups_by_key(doc: dict[str, Any]) -> dict[Group, dict[str, Any]]:
    found: dict[Group, dict[str, Any]] = {}
    for group in doc["groups"]:
        key: Group = (
            group["device_type"],
            group["manufacturer_id"],
            group["model_id"],
            group["hardware_version"],
            group["firmware_version"],
        )
        assert key not in found, f"two groups for {key}"
        found[key] = group
    return found


def read_devices_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == DEVICES_CSV_HEADER
        return list(reader)


def assert_sr11_batches(rows: Sequence[dict[str, str]]) -> dict[int, list[str]]:
    """Batches number from 1 without gaps, each holds one target (and one hop and phase) and at
    most 50,000 devices, and each (target, hop, phase) uses the fewest batches that respect the
    limit. Returns batch -> targets."""
    batches: dict[int, list[str]] = defaultdict(list)
    stages: dict[int, set[tuple[str, str, str]]] = defaultdict(set)
    for row in rows:
        if row["Batch"]:
            batches[int(row["Batch"])].append(row["Recommended Target"])
            stages[int(row["Batch"])].add((row["Recommended Target"], row["Hop"], row["Phase"]))
        else:
            assert row["Recommended Target"] == row["Manufacturer Image SHA-256"] == "", row
    assert sorted(batches) == list(range(1, len(batches) + 1))
    for number, targets in batches.items():
        assert len(targets) <= SR11_BATCH_LIMIT, f"batch {number} has {len(targets)} devices"
        assert len(stages[number]) == 1, f"batch {number} mixes images {stages[number]}"
    devices_per_stage = Counter(
        (r["Recommended Target"], r["Hop"], r["Phase"]) for r in rows if r["Batch"]
    )
    batches_per_stage = Counter(next(iter(stage)) for stage in stages.values())
    for stage, devices in devices_per_stage.items():
        assert batches_per_stage[stage] == math.ceil(devices / SR11_BATCH_LIMIT), stage
    return batches


class LibraryServer:
    """A static host for a published folder on 127.0.0.1, noting every path requested."""

    def __init__(self, folder: Path) -> None:
        self._requests: list[str] = []
        guard = threading.Lock()
        requests = self._requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                with guard:
                    requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._guard = guard
        self._httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._running = True

    def take(self) -> list[str]:
        """The paths requested since the last call, in order."""
        with self._guard:
            taken = list(self._requests)
            self._requests.clear()
        return taken

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)


@pytest.fixture
def serve() -> Iterator[Callable[[Path], LibraryServer]]:
    servers: list[LibraryServer] = []

    def start(folder: Path) -> LibraryServer:
        server = LibraryServer(folder)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """One standard library for the tests that only read it."""
    return build_library(tmp_path_factory.mktemp("library"))


@pytest.fixture
def fresh_library(tmp_path: Path) -> Library:
    """A library of the test's own, for tests that publish or withdraw."""
    return build_library(tmp_path)


@pytest.fixture
def home(library: Library, tmp_path: Path) -> Path:
    """A home initialised over file:// on the shared library (not yet refreshed)."""
    return init_home(library, tmp_path / "home")


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    return write_estate(tmp_path / "estate.csv", STANDARD_ESTATE)


# ------------------------------------------------------------------------------------ cfl init


def test_init_without_root_is_a_usage_error(library: Library, tmp_path: Path) -> None:
    result = cfl("init", library.url, home=tmp_path / "home")
    assert result.returncode == 2
    assert "--root" in result.stderr
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("targets-metadata", "signed._type: found 'targets', expected 'root'"),
        ("not-json", "not TUF metadata"),
        ("root-edited-without-its-keys", "not signed by a threshold of its own root keys"),
    ],
    ids=["targets-metadata", "not-json", "root-edited-without-its-keys"],
)
def test_init_refuses_a_file_that_is_not_a_valid_root(
    library: Library, tmp_path: Path, kind: str, expected: str
) -> None:
    given = tmp_path / "given.json"
    if kind == "targets-metadata":
        shutil.copy(sorted(library.factory.out.glob("metadata/*.targets.json"))[0], given)
    elif kind == "not-json":
        given.write_text("this is not metadata\n")
    else:
        doc = json.loads(library.root.read_bytes())
        doc["signed"]["expires"] = "2099-01-01T00:00:00Z"  # extends its own life, unsigned
        given.write_text(json.dumps(doc))
    home = tmp_path / "home"
    result = cfl("init", library.url, "--root", given, home=home)
    assert result.returncode == 1
    [error] = errors(result)
    assert error.startswith("error: root file") and expected in error
    assert not ClientHome(home).is_initialised()


def test_init_refuses_to_reinitialise_without_force(library: Library, home: Path) -> None:
    ok(cfl("refresh", home=home))
    assert (home / "metadata" / "timestamp.json").is_file()
    other = "http://127.0.0.1:9/another-library"

    again = cfl("init", other, "--root", library.root, home=home)
    assert again.returncode == 2
    assert errors(again) == [f"error: client home {home} is already initialised"]
    assert "hint: use --force" in again.stderr
    assert json.loads((home / "config.json").read_text())["repository_url"] == library.url
    assert (home / "metadata" / "timestamp.json").is_file()

    ok(cfl("init", other, "--root", library.root, "--force", home=home))
    assert json.loads((home / "config.json").read_text())["repository_url"] == other
    # trust starts again from the given root: the old trusted metadata is gone
    assert not (home / "metadata" / "timestamp.json").exists()


def test_home_is_honoured_and_nothing_is_written_outside_it(
    library: Library, tmp_path: Path
) -> None:
    user, xdg, cwd, tmp, inputs = (tmp_path / n for n in ("user", "xdg", "cwd", "tmp", "inputs"))
    for folder in (user, xdg, cwd, tmp, inputs):
        folder.mkdir()
    env = {
        "HOME": str(user),
        "XDG_DATA_HOME": str(xdg / "data"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "TMPDIR": str(tmp),
    }
    root = inputs / "root.json"
    root.write_bytes(library.root.read_bytes())
    estate = write_estate(inputs / "estate.csv", STANDARD_ESTATE)
    library_before = files_under(library.factory.out)
    inputs_before = files_under(inputs)
    home = tmp_path / "supplier-home"

    ok(cfl("init", library.url, "--root", root, home=home, env=env, cwd=cwd))
    ok(cfl("refresh", "--json", home=home, env=env, cwd=cwd))
    ok(cfl("check", estate, "--json", "--changes", home=home, env=env, cwd=cwd))
    # CFL_HOME names the home as --home does
    ok(cfl("list", "--json", env={**env, "CFL_HOME": str(home)}, cwd=cwd))

    for folder in (user, xdg, cwd, tmp):
        assert list(folder.rglob("*")) == [], f"cfl wrote into {folder}"
    assert files_under(library.factory.out) == library_before
    assert files_under(inputs) == inputs_before
    for name in ("config.json", "bootstrap-root.json", "metadata/timestamp.json", "history.sqlite"):
        assert (home / name).is_file(), name

    # Without --home or CFL_HOME the home is the per-user data folder, here under XDG_DATA_HOME.
    default = cfl("list", env=env, cwd=cwd)
    assert default.returncode == 2
    assert errors(default) == [f"error: no client home at {xdg / 'data' / 'cfl'}"]
    assert not (xdg / "data").exists()


# --------------------------------------------------------------------------------- refresh, list


def test_refresh_json_reports_the_published_versions(library: Library, home: Path) -> None:
    doc = as_json(cfl("refresh", "--json", home=home))

    def signed(name: str) -> dict[str, Any]:
        value = json.loads((library.factory.out / "metadata" / name).read_bytes())["signed"]
        assert isinstance(value, dict)
        return value

    timestamp = signed("timestamp.json")
    snapshot_version = timestamp["meta"]["snapshot.json"]["version"]
    snapshot = signed(f"{snapshot_version}.snapshot.json")
    assert set(doc) == {"schema_version", "versions", "manufacturers", "unverified"}
    assert doc["unverified"] == []
    assert doc["versions"] == {
        "root": signed("1.root.json")["version"],
        "timestamp": timestamp["version"],
        "snapshot": snapshot_version,
        "targets": snapshot["meta"]["targets.json"]["version"],
    }
    assert doc["manufacturers"] == ["121D", "3F01"]


def test_list_json_shape_and_filters(library: Library, home: Path) -> None:
    everything = as_json(cfl("list", "--json", home=home))
    assert set(everything) == {"schema_version", "images", "unverified"}
    assert everything["unverified"] == []
    by_target = {image["target"]: image for image in everything["images"]}
    assert set(by_target) == {library.target(k) for k in ("a2", "a3", "b5")}
    for key in ("a2", "a3", "b5"):
        image = by_target[library.target(key)]
        assert {"target", "sha256", "length", "cfl"} <= set(image)
        assert image["sha256"] == sha256(library.images[key])
        assert image["length"] == len(library.images[key])
        assert image["cfl"]["manufacturer_image_sha256"] == mi_sha(library.images[key])
        assert image["withdrawn"] is None
    assert by_target[library.target("a3")]["cfl"]["advisories"] == ["CFL-SA-2026-001"]
    assert [e["id"] for e in by_target[library.target("b5")]["cfl"]["cpl_entries"]] == ["CPL-0101"]

    def targets(*args: str) -> set[str]:
        return {i["target"] for i in as_json(cfl("list", "--json", *args, home=home))["images"]}

    assert targets("--manufacturer", "3F01") == {library.target("b5")}
    assert targets("--manufacturer", "121d") == {library.target("a2"), library.target("a3")}
    assert targets("--device-type", "ESME") == {library.target("a2"), library.target("a3")}
    assert targets("--device-type", "GSME") == {library.target("b5")}
    assert targets("--manufacturer", "121D", "--device-type", "GSME") == set()
    assert targets("--manufacturer", "121D", "--manufacturer", "3F01") == set(by_target)

    bad = cfl("list", "--manufacturer", "ACME", home=home)
    assert bad.returncode == 2
    assert "--manufacturer" in errors(bad)[0] and "'ACME'" in errors(bad)[0]

    human = ok(cfl("list", home=home))
    assert human.stdout == ""  # people read stderr; stdout is for --json only
    assert "3 verified image(s)" in human.stderr


# ------------------------------------------------------------------------------------ cfl check


def test_check_json_is_exactly_the_stable_shape(library: Library, home: Path, estate: Path) -> None:
    doc = as_json(cfl("check", estate, "--json", home=home))
    assert CHECK_KEYS <= set(doc) <= CHECK_KEYS | CHECK_EXTRA_KEYS
    assert doc["devices"] == len(STANDARD_ESTATE)
    for group in doc["groups"]:
        assert set(group) == GROUP_KEYS
        for image in group["applicable"]:
            assert set(image) == APPLICABLE_KEYS
    groups = groups_by_key(doc)
    # one group per distinct 5-tuple, including those with nothing applicable
    assert set(groups) == set(STANDARD_EXPECTED)
    for key, (count, applicable, recommended) in STANDARD_EXPECTED.items():
        group = groups[key]
        assert group["device_count"] == count, key
        assert group["applicable"] == [library.applicable_doc(k) for k in applicable], key
        assert group["recommended"] == (recommended and library.target(recommended)), key
        assert group["path"] == [library.target(k) for k in expected_path(key)], key
        assert group["newest_unreachable"] is None, key
    assert (doc["skipped_rows"], doc["problem_count"], doc["problems"]) == (0, 0, [])

    human = ok(cfl("check", estate, home=home))
    assert human.stdout == ""
    assert f"Estate check: {len(STANDARD_ESTATE)} devices in {len(STANDARD_EXPECTED)} groups" in (
        human.stderr
    )
    assert "SECURITY CFL-SA-2026-001" in human.stderr


def test_check_devices_out_names_the_sr11_3_hash_and_batches_per_device(
    library: Library, home: Path, estate: Path, tmp_path: Path
) -> None:
    out = tmp_path / "devices.csv"
    doc = as_json(cfl("check", estate, "--json", "--devices-out", out, home=home))
    rows = read_devices_csv(out)
    # one row per device and hop, in file order, IDs in the DUIS form
    by_device: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_device[row["Device ID"]].append(row)
    assert list(by_device) == [device_id(n) for n in range(1, 11)]
    groups = groups_by_key(doc)
    for device, hops in zip(STANDARD_ESTATE, by_device.values(), strict=True):
        key: Group = (
            device[1].upper(),
            device[2].upper(),
            device[3].upper(),
            device[4],
            device[5],
        )
        path = expected_path(key)
        if not path:
            [row] = hops
            assert (row["Recommended Target"], row["Manufacturer Image SHA-256"]) == ("", "")
            continue
        assert [r["Recommended Target"] for r in hops] == [library.target(k) for k in path]
        assert [r["Recommended Target"] for r in hops] == groups[key]["path"]
        assert [r["Hop"] for r in hops] == [str(n) for n in range(1, len(path) + 1)]
        assert {r["Phase"] for r in hops} == {"1"}
        for row, image in zip(hops, path, strict=True):
            # the SR 11.3 hash is over the Manufacturer Image, not the whole file
            assert row["Manufacturer Image SHA-256"] == mi_sha(library.images[image])
    batches = assert_sr11_batches(rows)
    # (a2, hop 1), (a3, hop 1), (a3, hop 2), (b5, hop 1): each well under the limit
    assert len(batches) == 4


def test_check_devices_out_splits_batches_at_50000_devices(
    library: Library, home: Path, tmp_path: Path
) -> None:
    many = SR11_BATCH_LIMIT + 1
    rows = [(device_id(n), *ESME_A, "00000002") for n in range(many)]
    rows += [(device_id(many + 1), *ESME_A, "00000001"), (device_id(many + 2), *GSME_B, "00000001")]
    estate = write_estate(tmp_path / "big.csv", rows)
    out = tmp_path / "devices.csv"
    ok(cfl("check", estate, "--devices-out", out, home=home))
    written = read_devices_csv(out)
    assert len(written) == len(rows) + 1  # the device on firmware 1 takes two hops
    batches = assert_sr11_batches(written)
    per_target = Counter(targets[0] for targets in batches.values())
    assert per_target == {library.target("a3"): 3, library.target("a2"): 1, library.target("b5"): 1}
    assert max(len(t) for t in batches.values()) == math.ceil(many / 2)  # spread evenly


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--phases", "1,10"], "--phases: found last phase 10 in '1,10', expected increasing"),
        (["--phases", "5,2,100"], "--phases: found '2' in '5,2,100', expected increasing"),
        ([], "--phases: found without --devices-out, expected both together"),
    ],
    ids=["not-ending-at-100", "decreasing", "without-devices-out"],
)
def test_check_bad_phases_are_a_usage_error_and_write_nothing(
    library: Library, home: Path, estate: Path, tmp_path: Path, args: list[str], expected: str
) -> None:
    out = tmp_path / "devices.csv"
    devices_out = ["--devices-out", str(out)] if args else ["--phases", "1,100"]
    result = cfl("check", estate, *devices_out, *args, home=home)
    assert result.returncode == 2
    [line] = errors(result)
    assert line.startswith("error: " + expected)
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_check_devices_out_with_phases_keeps_each_device_in_one_phase(
    library: Library, home: Path, estate: Path, tmp_path: Path
) -> None:
    out = tmp_path / "devices.csv"
    ok(cfl("check", estate, "--devices-out", out, "--phases", "50,100", home=home))
    rows = read_devices_csv(out)
    assert_sr11_batches(rows)
    phases: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["Batch"]:
            phases[row["Device ID"]].add(row["Phase"])
    assert all(len(p) == 1 for p in phases.values())
    assert {p for ps in phases.values() for p in ps} <= {"1", "2"}


def test_check_report_writes_one_self_contained_page_with_paths_and_changes(
    library: Library, home: Path, estate: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    doc = as_json(cfl("check", estate, "--json", "--changes", "--report", page, home=home))
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "<script" not in html
    for group in doc["groups"]:
        for target in group["path"]:
            assert target in html
    # the first --changes check: every meter is new to this home
    assert f'id="gained-count">{len(STANDARD_ESTATE)}<' in html
    human = ok(cfl("check", estate, "--report", page, home=home))
    assert f"report written to {page}" in human.stderr
    assert "only when the check runs with <code>--changes</code>" in page.read_text()


def test_check_reports_bad_rows_by_number_and_strict_makes_them_fatal(
    library: Library, home: Path, tmp_path: Path
) -> None:
    rows: list[tuple[str, ...]] = list(STANDARD_ESTATE)
    rows.insert(1, ("not-an-eui64", *ESME_A, "00000002"))
    rows.insert(5, (device_id(11), *ESME_A, "1.2.3"))
    rows.append((device_id(12), "ESME", "121D"))
    bad_rows = {2 + i: row for i, row in enumerate(rows) if row not in STANDARD_ESTATE}
    estate = write_estate(tmp_path / "estate.csv", rows)
    clean = as_json(
        cfl("check", write_estate(tmp_path / "clean.csv", STANDARD_ESTATE), "--json", home=home)
    )

    doc = as_json(cfl("check", estate, "--json", home=home))
    assert doc["devices"] == len(STANDARD_ESTATE)
    assert doc["groups"] == clean["groups"]  # the bad rows were skipped, nothing else changed
    assert doc["skipped_rows"] == doc["problem_count"] == 3
    found = {(p["row"], p["column"], p["found"]) for p in doc["problems"]}
    assert found == {
        (min(bad_rows), "Device ID", "not-an-eui64"),
        (sorted(bad_rows)[1], "Firmware Version", "1.2.3"),
        (max(bad_rows), "(row)", "3 fields"),
    }
    human = ok(cfl("check", estate, home=home))
    for number in bad_rows:
        assert f"row {number}: " in human.stderr

    out = tmp_path / "devices.csv"
    strict = cfl("check", estate, "--strict", "--json", "--devices-out", out, home=home)
    assert strict.returncode == 1
    assert errors(strict) == [
        f"error: row {min(bad_rows)}: Device ID: found 'not-an-eui64', expected an EUI-64: "
        "16 hex digits, hyphens allowed"
    ]
    assert strict.stdout == ""
    assert not out.exists()


def test_check_changes_reports_gained_devices_and_new_applicable_images(
    fresh_library: Library, tmp_path: Path
) -> None:
    library = fresh_library
    home = init_home(library, tmp_path / "home")
    before = [(device_id(n), *ESME_A, f"0000000{n}") for n in (1, 2, 3)]
    first = as_json(
        cfl("check", write_estate(tmp_path / "e1.csv", before), "--json", "--changes", home=home)
    )["changes"]
    # nothing to compare with yet: every device and every applicable image is new
    assert first["devices_since"] is None and first["images_since"] is None
    assert (first["gained_devices"], first["gained_sample"]) == (
        3,
        [device_id(n) for n in (1, 2, 3)],
    )
    assert first["new_images"] == sorted([library.target("a2"), library.target("a3")])

    # A Change of Supplier brings two meters; the manufacturer publishes firmware 4 (N/A pathway).
    publish_a4(library)
    gained = [(device_id(20), *ESME_A, "00000001"), (device_id(21), *ESME_A, "00000003")]
    after = write_estate(tmp_path / "e2.csv", before + gained)
    doc = as_json(cfl("check", after, "--json", "--changes", home=home))
    changes = doc["changes"]
    assert changes["devices_since"] is not None and changes["images_since"] is not None
    assert (changes["gained_devices"], changes["gained_sample"]) == (
        2,
        [device_id(20), device_id(21)],
    )
    assert (changes["lost_devices"], changes["lost_sample"]) == (0, [])
    assert changes["new_images"] == [library.target("a4")]
    # the highest applicable firmware is recommended wherever several images apply
    groups = groups_by_key(doc)
    for firmware, also in (("00000001", "a2"), ("00000002", "a3"), ("00000003", None)):
        group = groups[(*ESME_A, firmware)]
        expected = {library.target("a4")} | ({library.target(also)} if also else set())
        assert {i["target"] for i in group["applicable"]} == expected
        assert group["recommended"] == library.target("a4")

    # Nothing new since: nothing reported; a meter that left is reported as lost.
    again = as_json(
        cfl(
            "check",
            write_estate(tmp_path / "e3.csv", before[1:] + gained),
            "--json",
            "--changes",
            home=home,
        )
    )["changes"]
    assert (again["gained_devices"], again["new_images"]) == (0, [])
    assert (again["lost_devices"], again["lost_sample"]) == (1, [device_id(1)])


def test_withdrawn_image_is_never_applicable_recommended_or_downloaded(
    fresh_library: Library, tmp_path: Path
) -> None:
    library = fresh_library
    publish_a4(library)
    home = init_home(library, tmp_path / "home")
    rows = [(device_id(n), *ESME_A, f"0000000{n}") for n in (1, 2, 3)]
    estate = write_estate(tmp_path / "estate.csv", rows)
    assert {
        g["recommended"] for g in as_json(cfl("check", estate, "--json", home=home))["groups"]
    } == {library.target("a4")}

    withdrawn = library.target("a4")
    with library.factory.repo.locked():
        withdraw_op(library.factory.repo, withdrawn, "bricks meters", now=library.factory.tick())
    library.factory.publish()

    listed = {i["target"]: i for i in as_json(cfl("list", "--json", home=home))["images"]}
    assert listed[withdrawn]["withdrawn"]["reason"] == "bricks meters"
    assert all(i["withdrawn"] is None for t, i in listed.items() if t != withdrawn)

    groups = groups_by_key(as_json(cfl("check", estate, "--json", home=home)))
    assert all(withdrawn not in [i["target"] for i in g["applicable"]] for g in groups.values())
    assert groups[(*ESME_A, "00000001")]["path"] == [library.target("a2"), library.target("a3")]
    assert groups[(*ESME_A, "00000002")]["recommended"] == library.target("a3")
    assert groups[(*ESME_A, "00000003")]["recommended"] is None

    out = tmp_path / "firmware"
    refused = cfl("download", withdrawn, "--out", out, home=home)
    assert refused.returncode == 1
    assert errors(refused) == [
        f"error: TARGET: {withdrawn} has been withdrawn by the provider; refusing to download it"
    ]
    assert not out.exists() or list(out.iterdir()) == []

    ok(cfl("download", "--estate", estate, "--out", out, home=home))
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["target"] for f in manifest["files"]} == {library.target("a2"), library.target("a3")}
    assert not any(p.name.startswith(sha256(library.images["a4"])) for p in out.iterdir())


def test_check_on_the_demo_dataset_matches_the_domain_rule(tmp_path: Path) -> None:
    """The demo dataset (pathways, several manufacturers, one absent) published through repo_tool;
    the applicable images of every group are worked out here from the CPL by DOMAIN.md's rule."""
    dataset = make_demo_dataset(seed=0)
    factory = LibraryFactory(tmp_path / "lib")
    factory.import_cpl(list(dataset.cpl))
    for manufacturer in dataset.manufacturers:
        factory.add_manufacturer(manufacturer.id)
    factory.publish()
    for image in dataset.images:
        factory.deposit(
            image.data,
            list(image.cpl_entries),
            mfr=image.manufacturer_id,
            reason=image.reason,
            advisories=image.advisories,
        )
    root = tmp_path / "root.json"
    root.write_bytes(factory.root_bytes)
    estate = tmp_path / "estate.csv"
    estate.write_bytes(render_estate_csv(dataset.devices))
    home = tmp_path / "home"
    ok(cfl("init", factory.out.as_uri(), "--root", root, home=home))

    doc = as_json(cfl("check", estate, "--json", home=home))
    by_mi_sha = {image.manufacturer_image_sha256: image for image in dataset.images}
    counts = Counter(
        (d.device_type, d.manufacturer_id, d.model_id, d.hardware_version, d.firmware_version)
        for d in dataset.devices
    )
    assert doc["devices"] == len(dataset.devices)
    groups = groups_by_key(doc)
    assert {k: g["device_count"] for k, g in groups.items()} == dict(counts)
    for key, group in groups.items():
        expected = _demo_applicable(dataset, key)
        got = [by_mi_sha[i["manufacturer_image_sha256"]] for i in group["applicable"]]
        assert {i.name for i in got} == {i.name for i in expected}, key
        if expected:
            # The path starts with an applicable image and ends at least as high as the best one.
            best = max(expected, key=lambda i: int(i.firmware_version, 16))
            assert group["path"][0] in {i["target"] for i in group["applicable"]}, key
            assert group["path"][-1] == group["recommended"], key
            last = group["recommended"].split("-")[2]
            assert int(last, 16) >= int(best.firmware_version, 16), key
        else:
            assert group["recommended"] is None, key
    # The dataset's own pathway case: on 00050000 a Northgate G-Smart must step through 00060000.
    stepping = groups[("GSME", "0A5C", "0A5C0002", "0003", "00050000")]
    assert [i["firmware_version"] for i in stepping["applicable"]] == ["00060000"]
    assert any(not g["applicable"] for g in groups.values())


def _demo_applicable(dataset: DemoDataset, key: Group) -> list[DemoImage]:
    device_type, manufacturer, model, hardware, firmware = key
    cpl = {entry.id: entry for entry in dataset.cpl}
    current = {
        e.id
        for e in dataset.cpl
        if (e.manufacturer_id, e.model_id, e.hardware_version, e.firmware_version)
        == (manufacturer, model, hardware, firmware)
    }
    found = []
    for image in dataset.images:
        if (image.device_type, image.manufacturer_id) != (device_type, manufacturer):
            continue
        for entry_id in image.cpl_entries:
            entry = cpl[entry_id]
            if (entry.model_id, entry.hardware_version) != (model, hardware):
                continue
            pathway = set(entry.upgrade_from)
            if (
                (pathway & current)
                if pathway
                else int(image.firmware_version, 16) > int(firmware, 16)
            ):
                found.append(image)
                break
    return found


# --------------------------------------------------------------------------------- cfl download


def test_download_estate_writes_verified_files_and_a_manifest(
    library: Library, home: Path, estate: Path, tmp_path: Path
) -> None:
    out = tmp_path / "firmware"
    doc = as_json(cfl("download", "--estate", estate, "--out", out, "--json", home=home))
    # devices per image on the upgrade paths (STANDARD_EXPECTED, STANDARD_PATHS): a3 is the
    # second hop of the two devices on firmware 1 and the only hop of the three on firmware 2
    wanted = {"a2": 2, "a3": 5, "b5": 1}
    names = {library.out_name(k) for k in wanted}
    assert {p.name for p in out.iterdir()} == names | {"manifest.json"}
    for key in wanted:
        data = (out / library.out_name(key)).read_bytes()
        assert data == library.images[key]
        assert library.out_name(key).startswith(sha256(data) + ".")

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["files"] == doc["files"]
    entries = {e["target"]: e for e in manifest["files"]}
    assert set(entries) == {library.target(k) for k in wanted}
    for key, devices in wanted.items():
        entry = entries[library.target(key)]
        assert entry["file"] == library.out_name(key)
        assert entry["sha256"] == sha256(library.images[key])
        assert entry["length"] == len(library.images[key])
        assert entry["manufacturer_image_sha256"] == mi_sha(library.images[key])
        assert entry["devices"]["count"] == devices

    # A second run finds every file present and verified, and leaves it alone.
    before = {name: (out / name).stat() for name in names}
    again = ok(cfl("download", "--estate", estate, "--out", out, home=home))
    assert "(0 downloaded, 3 already present)" in again.stderr
    for name, stat in before.items():
        now = (out / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)

    # A file that no longer verifies is not "present": it is replaced by verified bytes.
    (out / library.out_name("a3")).write_bytes(b"not the image")
    repaired = ok(cfl("download", "--estate", estate, "--out", out, home=home))
    assert "(1 downloaded, 2 already present)" in repaired.stderr
    assert (out / library.out_name("a3")).read_bytes() == library.images["a3"]
    assert not list(out.glob(".cfl-partial-*"))


def test_download_target_by_name_with_fragments(
    library: Library, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "han"
    size = 256
    ok(cfl("download", library.target("a3"), "--out", out, "--fragment-size", str(size), home=home))
    image = library.images["a3"]
    [entry] = json.loads((out / "manifest.json").read_text())["files"]
    assert entry["target"] == library.target("a3")
    assert entry["sha256"] == sha256(image)
    assert entry["devices"]["count"] == 0  # named, not for an estate
    assert entry["fragment_size"] == size
    fragments = entry["fragments"]
    assert [f["index"] for f in fragments] == list(range(1, math.ceil(len(image) / size) + 1))
    joined = b""
    for fragment in fragments:
        data = (out / fragment["file"]).read_bytes()
        assert fragment["offset"] == len(joined)
        assert fragment["length"] == len(data) <= size
        assert fragment["sha256"] == sha256(data)
        joined += data
    assert joined == image
    assert {p.name for p in out.iterdir()} == {"manifest.json", entry["file"]} | {
        f["file"] for f in fragments
    }


@pytest.mark.parametrize("columns", [80, 120])
def test_list_and_check_fit_the_terminal_with_names_download_accepts(
    library: Library, home: Path, estate: Path, tmp_path: Path, columns: int
) -> None:
    env = {"COLUMNS": str(columns)}
    listed = ok(cfl("list", home=home, env=env)).stderr.splitlines()
    checked = ok(cfl("check", estate, home=home, env=env)).stderr.splitlines()
    assert max(len(line) for line in listed + checked) <= columns
    full = [library.target(k) for k in ("a2", "a3", "b5")]
    shown = "\n".join(listed)
    assert not any(t in shown for t in full)  # full names only with --wide
    short = {t: t.split("/")[0] + "/" + t.rsplit("-", 1)[1][:4] for t in full}
    assert all(name in shown for name in short.values())
    assert short[library.target("a3")] in "\n".join(checked)
    # the short name is what download needs
    out = tmp_path / "firmware"
    ok(cfl("download", short[library.target("a3")], "--out", out, home=home))
    assert {p.name for p in out.iterdir()} == {library.out_name("a3"), "manifest.json"}


def test_wide_shows_full_names_and_json_always_does(
    library: Library, home: Path, estate: Path
) -> None:
    env = {"COLUMNS": "80"}
    full = [library.target(k) for k in ("a2", "a3", "b5")]
    wide = ok(cfl("list", "--wide", home=home, env=env)).stderr
    assert all(t in wide for t in full)
    assert all(t in ok(cfl("check", estate, "--wide", home=home, env=env)).stderr for t in full)
    listed = as_json(cfl("list", "--json", home=home, env=env))
    assert {i["target"] for i in listed["images"]} == set(full)


@pytest.mark.parametrize(
    "target",
    [
        "121D/ESME-0001-00000009-0000000000000000.ota",
        "FFFF/GSME-0001-00000001-00.ota",
        "cfl/cpl.json",
    ],
    ids=["unknown-image", "unknown-manufacturer", "not-an-image"],
)
def test_download_unknown_target_is_refused(home: Path, tmp_path: Path, target: str) -> None:
    out = tmp_path / "firmware"
    result = cfl("download", target, "--out", out, home=home)
    assert result.returncode == 1
    assert errors(result) == [
        f"error: TARGET: found {target!r}, expected an image in the verified library (see `cfl list`)"
    ]
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("both", [False, True], ids=["neither", "both"])
def test_download_takes_targets_or_an_estate(
    library: Library, home: Path, estate: Path, tmp_path: Path, both: bool
) -> None:
    extra = [library.target("a2"), "--estate", str(estate)] if both else []
    result = cfl("download", *extra, "--out", tmp_path / "firmware", home=home)
    assert result.returncode == 2
    assert errors(result) == ["error: give TARGET... or --estate ESTATE.csv (one of them)"]


# ------------------------------------------------------------------------- HTTP, --offline, errors


def test_over_http_roles_fetched_refresh_traffic_and_offline_use(
    library: Library, serve: Callable[[Path], LibraryServer], tmp_path: Path
) -> None:
    server = serve(library.factory.out)
    home = init_home(library, tmp_path / "home", server.url)
    assert server.take() == []  # init trusts the given root and fetches nothing

    listed = as_json(cfl("list", "--manufacturer", "3F01", "--json", home=home))
    assert [i["target"] for i in listed["images"]] == [library.target("b5")]
    roles = [p for p in server.take() if "mfr-" in p]
    assert roles and all("/metadata/" in p and ".mfr-3F01.json" in p for p in roles)

    estate_121d = write_estate(tmp_path / "estate.csv", STANDARD_ESTATE[:6])
    checked = as_json(cfl("check", estate_121d, "--json", home=home))
    roles = [p for p in server.take() if "mfr-" in p]
    assert roles and all(".mfr-121D.json" in p for p in roles)

    ok(cfl("refresh", "--json", home=home))
    server.take()
    ok(cfl("refresh", home=home))
    root_version = json.loads(library.root.read_bytes())["signed"]["version"]
    # the spec's probe for a newer root, then timestamp.json: nothing else when nothing changed
    assert server.take() == [f"/metadata/{root_version + 1}.root.json", "/metadata/timestamp.json"]

    # A second home that has done nothing but one refresh.
    refreshed_only = init_home(library, tmp_path / "refreshed-only", server.url)
    ok(cfl("refresh", home=refreshed_only))
    estate_all = write_estate(tmp_path / "estate-all.csv", STANDARD_ESTATE)
    online_list = as_json(cfl("list", "--json", home=home))
    online_check = as_json(cfl("check", estate_all, "--json", home=home))
    server.stop()
    # With the host gone, --offline answers from what each home verified.
    for offline_home in (home, refreshed_only):
        assert as_json(cfl("list", "--offline", "--json", home=offline_home)) == online_list
        offline_check = as_json(cfl("check", estate_all, "--offline", "--json", home=offline_home))
        assert offline_check == online_check
    assert as_json(cfl("check", estate_121d, "--offline", "--json", home=home)) == checked
    # and without --offline the missing host is an error naming the URL
    down = cfl("refresh", home=home)
    assert down.returncode == 1
    assert server.url in errors(down)[0]


def test_offline_follows_what_the_last_refresh_verified(
    fresh_library: Library, tmp_path: Path
) -> None:
    library = fresh_library
    home = init_home(library, tmp_path / "home")
    estate = write_estate(tmp_path / "estate.csv", [(device_id(3), *ESME_A, "00000003")])
    assert as_json(cfl("check", estate, "--json", home=home))["groups"][0]["recommended"] is None
    publish_a4(library)  # new manufacturer role, targets, snapshot and CPL
    ok(cfl("refresh", home=home))
    offline = as_json(cfl("check", estate, "--offline", "--json", home=home))
    assert offline["groups"][0]["recommended"] == library.target("a4")


def test_offline_with_nothing_cached_is_a_clear_error(home: Path, estate: Path) -> None:
    for command in (["list"], ["check", str(estate)]):
        result = cfl(*command, "--offline", home=home)
        assert result.returncode == 1
        [error] = errors(result)
        assert "offline" in error and "not in the local cache" in error


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_host_is_an_error_naming_the_url(library: Library, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    home = init_home(library, tmp_path / "home", url)
    result = cfl("refresh", home=home)
    assert result.returncode == 1
    [error] = errors(result)
    assert f"{url}/metadata/" in error and "unreachable" in error


def test_wrong_url_404_is_an_error_naming_the_url(
    library: Library, serve: Callable[[Path], LibraryServer], tmp_path: Path
) -> None:
    server = serve(library.factory.out)
    url = f"{server.url}/not-the-library"
    home = init_home(library, tmp_path / "home", url)
    result = cfl("list", home=home)
    assert result.returncode == 1
    [error] = errors(result)
    assert f"{url}/metadata/timestamp.json" in error and "404" in error


@pytest.mark.parametrize(
    "command",
    [
        ["refresh"],
        ["list"],
        ["check", "ESTATE"],
        ["download", "--estate", "ESTATE", "--out", "OUT"],
    ],
    ids=["refresh", "list", "check", "download"],
)
def test_uninitialised_home_is_a_usage_error_with_a_hint(
    tmp_path: Path, estate: Path, command: list[str]
) -> None:
    home = tmp_path / "never-initialised"
    out = tmp_path / "out"
    args = [{"ESTATE": str(estate), "OUT": str(out)}.get(a, a) for a in command]
    result = cfl(*args, home=home)
    assert result.returncode == 2
    assert errors(result) == [f"error: no client home at {home}"]
    assert "hint: run: cfl --home HOME init URL --root ROOT.json" in result.stderr
    assert not home.exists() and not out.exists()


def test_a_second_cfl_fails_fast_while_the_home_is_locked(home: Path) -> None:
    with ClientHome(home).lock():
        # the lock is held for the whole run: a cfl that waited for it would time out here
        result = cfl("refresh", home=home, timeout=30)
    assert result.returncode == 1
    [line] = errors(result)
    assert line.startswith(f"error: the client home {home} is busy: cfl (PID {os.getpid()} on ")
    assert f"hint: the lock ({home / 'lock'}) is released when that process exits" in result.stderr
    assert not (home / "metadata" / "timestamp.json").exists()
    ok(cfl("refresh", home=home))  # released: the next run proceeds
