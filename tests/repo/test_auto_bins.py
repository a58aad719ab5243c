"""Automatic hash bins: `cfl-repo submit` splits a role past the contract's sizes and doubles its
bins by itself (metadata_templates/bin_rule.py, repo_tool/submit/auto_bins.py), with the very
`split-bins` bundle the gateway checks; the provider's commands and a supplier's client follow.

The library is built through the commands (click's runner in this process for the many seeding
deposits, the console scripts for the steps each test asserts), so what is tested is what a
manufacturer who never heard of bins gets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, TargetFile, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library, updater_for
from metadata_templates import naming
from metadata_templates.bin_rule import AUTO_BINS, SNAPSHOT_ENTRY_BYTES, BinRule
from repo_tool.cli.main import cli
from repo_tool.dev.demo_data import render_cpl_csv
from repo_tool.intake.bundle import read_bundle, write_bundle
from repo_tool.ops.status import status_report
from repo_tool.signing.keys import signer_from_private_pem
from repo_tool.submit.auto_bins import split_first
from repo_tool.submit.bins import build_split
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
CFL = Path(sys.executable).with_name("cfl")
IMAGES = 40  # enough for the split past 8 and the doubling of 2 bins


# ------------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize(("targets", "due"), [(1, False), (8, False), (9, True), (500, True)])
def test_a_role_splits_once_a_deposit_would_take_it_past_8_targets(targets: int, due: bool) -> None:
    bits = AUTO_BINS.split_due(targets, role_bytes=targets * 821)
    assert (bits is not None) == due
    if bits is not None:
        assert bits >= AUTO_BINS.min_bit_length


def test_the_first_split_sizes_its_bins_by_the_growth_rule() -> None:
    assert AUTO_BINS.split_due(9, 9 * 821) == 1
    # 10,000 images of 821 bytes: bins average at most max(4,000, 282 B) bytes -> 256 bins
    assert AUTO_BINS.split_due(10_000, 10_000 * 821) == 8
    assert AUTO_BINS.bit_length_for(10**12) == naming.MAX_BIN_BIT_LENGTH


@pytest.mark.parametrize(
    ("bits", "average", "grows"),
    [
        (1, 4_000, False),
        (1, 4_001, True),
        (6, 2 * SNAPSHOT_ENTRY_BYTES * 64, False),
        (6, 2 * SNAPSHOT_ENTRY_BYTES * 64 + 1, True),
    ],
)
def test_bins_double_when_their_average_passes_the_growth_size(
    bits: int, average: int, grows: bool
) -> None:
    lengths = {name: average for name in naming.bin_roles("121D", bits)}
    assert AUTO_BINS.growth_due(bits, lengths) == (bits + 1 if grows else None)


def test_growth_is_one_doubling_per_deposit_and_stops_at_the_most_bins() -> None:
    huge = {name: 10**9 for name in naming.bin_roles("121D", 2)}
    assert AUTO_BINS.growth_due(2, huge) == 3
    assert AUTO_BINS.growth_due(naming.MAX_BIN_BIT_LENGTH, {"x": 10**12}) is None
    assert AUTO_BINS.growth_due(3, {}) is None
    assert BinRule(split_above_targets=0).split_due(1, 100) == 1


# ------------------------------------------------------------------------------ the commands


def _images() -> list[bytes]:
    return [
        make_image("121D", n, body=f"firmware {n} ".encode() * 60) for n in range(1, IMAGES + 1)
    ]


@dataclass(frozen=True)
class Lib:
    base: Path

    @property
    def repo(self) -> Path:
        return self.base / "R"

    @property
    def out(self) -> Path:
        return self.repo / "public"

    @property
    def root(self) -> Path:
        return self.out / "metadata" / "1.root.json"

    @property
    def key(self) -> Path:
        return self.base / "mfr.pem"

    def inproc(self, *args: str | Path) -> str:
        """One command in this process (click's runner): seeding only."""
        done = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert done.exit_code == 0, (args, done.output)
        return done.output

    def submit_args(self, n: int, out: Path) -> list[str | Path]:
        return [
            "submit",
            self.base / "images" / f"{n}.ota",
            "--manufacturer",
            "121D",
            "--key",
            self.key,
            "--cpl-entry",
            f"CPL-{n:04d}",
            "--reason",
            "compliance",
            "--from",
            self.out,
            "--root",
            self.root,
            "--out",
            out,
        ]

    def deposit(self, n: int) -> Path:
        """Submit image ``n`` into an outbox of its own, ingest the outbox, publish (in process)."""
        outbox = self.base / "outbox" / str(n)
        self.inproc(*self.submit_args(n, outbox / f"121D-{n}.cflb"))
        self.inproc("--repo", self.repo, "ingest", outbox)
        self.inproc("--repo", self.repo, "publish", "--no-site")
        return outbox

    def head(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads((self.repo / "state" / "head.json").read_bytes())
        return doc

    def bins(self) -> list[str]:
        roles = self.head()["roles"]
        assert isinstance(roles, dict)
        return sorted(r for r in roles if naming.manufacturer_of_bin(r) == "121D")


def run(*args: str | Path, exe: Path = CFL_REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def ok(*args: str | Path, exe: Path = CFL_REPO) -> subprocess.CompletedProcess[str]:
    done = run(*args, exe=exe)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.fixture(scope="module")
def eight(tmp_path_factory: pytest.TempPathFactory) -> Lib:
    """A library whose manufacturer 121D has deposited 8 images through the commands, unsplit."""
    lib = Lib(tmp_path_factory.mktemp("auto-bins"))
    images = _images()
    (lib.base / "images").mkdir()
    entries = []
    for n, image in enumerate(images, start=1):
        (lib.base / "images" / f"{n}.ota").write_bytes(image)
        entries.append(make_entry(f"CPL-{n:04d}", fw=f"{n:08X}", image_sha=mi_sha(image)))
    (lib.base / "cpl.csv").write_bytes(render_cpl_csv(entries))
    lib.inproc("--repo", lib.repo, "init", "--dev-keys")
    lib.inproc("keygen", lib.key, "--no-encrypt")
    lib.inproc("--repo", lib.repo, "cpl", "import", lib.base / "cpl.csv")
    pub = lib.base / "mfr.pub.pem"
    lib.inproc("--repo", lib.repo, "manufacturer", "add", "121D", "--name", "M", "--key", pub)
    lib.inproc("--repo", lib.repo, "publish", "--no-site")
    for n in range(1, 9):
        lib.deposit(n)
    assert lib.bins() == []
    return lib


@pytest.fixture
def lib(eight: Lib, tmp_path: Path) -> Lib:
    shutil.copytree(eight.base, tmp_path / "lib", symlinks=True)
    return Lib(tmp_path / "lib")


def _supplier(lib: Lib) -> Path:
    home = lib.base / "supplier"
    ok("--home", home, "init", lib.out.as_uri(), "--root", lib.root, exe=CFL)
    return home


def _listed(home: Path) -> set[str]:
    ok("--home", home, "refresh", exe=CFL)
    done = ok("--home", home, "list", "--json", exe=CFL)
    return {image["target"] for image in json.loads(done.stdout)["images"]}


def test_the_ninth_deposit_splits_the_role_first_and_the_provider_takes_both(lib: Lib) -> None:
    home = _supplier(lib)
    before = _listed(home)
    assert len(before) == 8
    outbox = lib.base / "outbox" / "9"
    done = ok(*lib.submit_args(9, outbox / "121D-9.cflb"), "--json")
    doc = json.loads(done.stdout)
    split = doc["split"]
    assert split["kind"] == "split-bins" and split["bit_length"] == 1
    assert split["bundle"] == str(outbox / "121D-9-split.cflb")
    assert split["bins"] == naming.bin_roles("121D", 1)
    assert doc["role"] in split["bins"] and doc["kind"] == "deposit"
    assert "automatic" in done.stderr and "ingested first" in done.stderr
    assert sorted(p.name for p in outbox.iterdir()) == ["121D-9-split.cflb", "121D-9.cflb"]
    ingested = ok("--repo", lib.repo, "ingest", outbox, "--json")
    results = json.loads(ingested.stdout)["results"]
    assert [r["bundle"] for r in results] == ["121D-9-split.cflb", "121D-9.cflb"]
    assert [r["status"] for r in results] == ["accepted", "accepted"]
    ok("--repo", lib.repo, "publish")
    assert lib.bins() == naming.bin_roles("121D", 1)
    ok("verify", lib.out, "--root", lib.root)
    # A supplier that refreshed before the split keeps every image, and sees the new one.
    after = _listed(home)
    assert before < after and len(after) == 9
    events = [json.loads(line) for line in (lib.repo / "events.jsonl").read_bytes().splitlines()]
    names = [e["event"] for e in events if e["event"] in ("manufacturer-bins", "ingest-accepted")]
    assert names[-2:] == ["manufacturer-bins", "ingest-accepted"]


def test_no_auto_bins_writes_the_deposit_alone(lib: Lib) -> None:
    outbox = lib.base / "outbox" / "9"
    done = ok(*lib.submit_args(9, outbox / "121D-9.cflb"), "--no-auto-bins", "--json")
    assert "split" not in json.loads(done.stdout)
    assert [p.name for p in outbox.iterdir()] == ["121D-9.cflb"]
    ok("--repo", lib.repo, "ingest", outbox)
    assert lib.bins() == []


def test_below_the_threshold_a_deposit_is_one_bundle_with_the_json_as_before(lib: Lib) -> None:
    # The fixture's first 8 deposits wrote one bundle each.
    for n in range(1, 9):
        assert [p.name for p in (lib.base / "outbox" / str(n)).iterdir()] == [f"121D-{n}.cflb"]
    keys = {"schema_version", "bundle", "kind", "manufacturer_id", "target", "role"}
    outbox = lib.base / "outbox" / "again"
    done = ok(*lib.submit_args(9, outbox / "x.cflb"), "--no-auto-bins", "--json")
    assert set(json.loads(done.stdout)) == keys | {"role_version", "bins"}


def test_a_deposit_ingested_without_its_split_is_refused_and_changes_nothing(lib: Lib) -> None:
    outbox = lib.base / "outbox" / "9"
    ok(*lib.submit_args(9, outbox / "121D-9.cflb"))
    head = (lib.repo / "state" / "head.json").read_bytes()
    done = run("--repo", lib.repo, "ingest", outbox / "121D-9.cflb", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)["results"][0]["reasons"] == ["wrong-bin"]
    assert (lib.repo / "state" / "head.json").read_bytes() == head
    # ...and once its split is in, the very same deposit is accepted.
    ok("--repo", lib.repo, "ingest", outbox / "121D-9-split.cflb", outbox / "121D-9.cflb")


def _tampered(path: Path, how: str, signer: Signer) -> None:
    bundle = read_bundle(path)
    bins = dict(bundle.bins)
    first, second = sorted(bins)[:2]
    one = Metadata[Targets].from_bytes(bins[first])
    if how == "drop-image":
        one.signed.targets.pop(sorted(one.signed.targets)[0])
        one.sign(signer)
        bins[first] = one.to_bytes()
    elif how == "swap-bins":
        bins[first], bins[second] = bins[second], bins[first]
    elif how == "add-image":
        # An image never deposited, smuggled into the bin the rule assigns it.
        bits = len(bins).bit_length() - 1
        for n in range(1000):
            smuggled = f"121D/ESME-0001-000000FF-{n:064x}.ota"
            if naming.bin_for_target("121D", smuggled, bits) == first:
                break
        template = next(iter(one.signed.targets.values()))
        one.signed.targets[smuggled] = TargetFile(template.length, template.hashes, smuggled)
        one.signatures.clear()
        one.sign(signer)
        bins[first] = one.to_bytes()
    elif how == "unsigned-edit":
        one.signed.expires = one.signed.expires.replace(year=one.signed.expires.year - 1)
        bins[first] = one.to_bytes()
    elif how == "foreign-key":
        one.signatures.clear()
        one.sign(CryptoSigner.generate_ed25519())
        bins[first] = one.to_bytes()
    from dataclasses import replace

    write_bundle(path, replace(bundle, bins=tuple(sorted(bins.items()))))


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("drop-image", "role-content-altered"),
        ("swap-bins", "wrong-bin"),
        ("add-image", "target-metadata-mismatch"),
        ("foreign-key", "threshold-not-met"),
        ("unsigned-edit", "bad-signature"),
    ],
)
def test_a_tampered_auto_split_is_refused_with_its_deposit(lib: Lib, how: str, code: str) -> None:
    outbox = lib.base / "outbox" / "9"
    ok(*lib.submit_args(9, outbox / "121D-9.cflb"))
    signer = signer_from_private_pem(lib.key.read_bytes(), source="key", passphrase_prompt=None)
    _tampered(outbox / "121D-9-split.cflb", how, signer)
    head = (lib.repo / "state" / "head.json").read_bytes()
    done = run("--repo", lib.repo, "ingest", outbox, "--json")
    assert done.returncode == 1
    split, deposit = json.loads(done.stdout)["results"]
    assert split["status"] == "rejected" and code in split["reasons"], split
    assert deposit["status"] == "rejected"
    assert (lib.repo / "state" / "head.json").read_bytes() == head


def _published_bin_bytes(lib: Lib) -> int:
    """The bins' total signed size as the published snapshot lists it (what submit weighs)."""
    timestamp = json.loads((lib.out / "metadata" / "timestamp.json").read_bytes())
    version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads((lib.out / "metadata" / f"{version}.snapshot.json").read_bytes())
    meta = snapshot["signed"]["meta"]
    return sum(m["length"] for name, m in meta.items() if naming.manufacturer_of_bin(name[:-5]))


def test_bins_double_at_the_growth_size_and_a_supplier_keeps_every_image(lib: Lib) -> None:
    home = _supplier(lib)
    _listed(home)
    lib.deposit(9)  # the split into 2 bins
    assert lib.bins() == naming.bin_roles("121D", 1)
    grow_above = AUTO_BINS.grow_above(2) * 2
    for n in range(10, IMAGES + 1):
        weighed = _published_bin_bytes(lib)
        outbox = lib.deposit(n)
        grew = (outbox / f"121D-{n}-split.cflb").exists()
        # Doubled exactly when the bins it read had passed the growth size, and not before.
        assert grew == (weighed > grow_above), (n, weighed)
        if grew:
            break
    else:
        pytest.fail("no doubling within the test's images")
    assert lib.bins() == naming.bin_roles("121D", 2)
    assert len(_listed(home)) == n
    ok("verify", lib.out, "--root", lib.root)


# ------------------------------------------------- a doubling that renames the bins (4 -> 5 bits)


def test_a_client_refreshes_across_a_doubling_that_renames_every_bin(tmp_path: Path) -> None:
    """At 5 bits the bin names grow a hex digit (mfr-121D-bin-a -> mfr-121D-bin-0a): the old bins
    leave the delegation but stay listed in every snapshot, or every client that trusted the old
    snapshot would refuse each new one ("New snapshot is missing info for ...") for ever."""
    factory, _ = standard_library(tmp_path / "lib")
    for bits in (1, 4):
        split, _ = build_split(
            manufacturer_id="121D",
            bit_length=bits,
            signers=[factory.mfr_signers["121D"]],
            library=verified_library(
                folder_reader(factory.out),
                factory.root_bytes,
                now=factory.tick(),
                check_blobs=False,
            ),
            now=factory.now,
        )
        assert factory.ingest(split, f"split-{bits}").status == "accepted"
        factory.publish()
    before = {p: t for p, t in _staged_targets(factory).items()}
    updater, _ = updater_for(factory, tmp_path / "client")
    updater.refresh()
    home = tmp_path / "supplier"
    ok(
        "--home",
        home,
        "init",
        factory.out.as_uri(),
        "--root",
        factory.out / "metadata" / "1.root.json",
        exe=CFL,
    )
    ok("--home", home, "refresh", exe=CFL)

    library = verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
    )
    auto = split_first(
        manufacturer_id="121D",
        signers=[factory.mfr_signers["121D"]],
        library=library,
        load_every_bin=lambda: library,
        new_targets=1,
        now=factory.now,
        rule=BinRule(min_average_bin_bytes=1, snapshot_entry_bytes=0),  # double at once
    )
    assert auto is not None and auto.bit_length == 5
    assert factory.ingest(auto.bundle, "split-5").status == "accepted"
    factory.publish()

    head = factory.repo.head
    assert sorted(n for n in head.roles if naming.manufacturer_of_bin(n) == "121D") == (
        naming.bin_roles("121D", 5)
    )
    assert sorted(head.retired_roles) == naming.bin_roles("121D", 4)
    snapshot = factory.repo.snapshot().signed.meta
    assert all(f"{name}.json" in snapshot for name in naming.bin_roles("121D", 4))
    assert _staged_targets(factory) == before
    # ngclient, and the real `cfl`, refresh from the snapshot they trusted at 16 bins.
    fresh, _ = updater_for(factory, tmp_path / "client")
    fresh.refresh()
    for path, target in before.items():
        info = fresh.get_targetinfo(path)
        assert info is not None and info.hashes == target["hashes"]
    ok("--home", home, "refresh", exe=CFL)
    listed = ok("--home", home, "list", "--json", exe=CFL)
    assert {i["target"] for i in json.loads(listed.stdout)["images"]} >= {
        p for p in before if naming.is_image_target_path(p)
    }
    ok("verify", factory.out, "--root", factory.out / "metadata" / "1.root.json")
    report = status_report(factory.repo, now=factory.now)
    assert report["images"] == 3 and not any(n in report["roles"] for n in head.retired_roles)
    # A new destination gets the retired bins too: its snapshot lists them.
    fresh = tmp_path / "fresh"
    ok("--repo", factory.repo.path, "publish", "--no-site", "--out", fresh)
    for name, version in head.retired_roles.items():
        assert (fresh / "metadata" / f"{version}.{name}.json").is_file()
    ok("verify", fresh, "--root", fresh / "metadata" / "1.root.json")
    ok("log", "verify", fresh.as_uri(), exe=CFL)


def _staged_targets(factory: LibraryFactory) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for name in factory.repo.head.roles:
        if naming.owner_of_role(name) == "121D":
            found.update(
                {p: t.to_dict() for p, t in factory.repo.role(name).signed.targets.items()}
            )
    return found


def test_a_host_that_inflates_the_bins_sizes_cannot_make_submit_double_them(lib: Lib) -> None:
    """submit weighs the bins by the lengths the snapshot lists: a host that edits them breaks the
    snapshot's hash in the signed timestamp, and submit refuses to sign anything."""
    lib.deposit(9)  # split into 2 bins
    timestamp = json.loads((lib.out / "metadata" / "timestamp.json").read_bytes())
    version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    path = lib.out / "metadata" / f"{version}.snapshot.json"
    snapshot = json.loads(path.read_bytes())
    for name, meta in snapshot["signed"]["meta"].items():
        if naming.manufacturer_of_bin(name.removesuffix(".json")):
            meta["length"] = 10**9
    path.write_bytes(json.dumps(snapshot).encode())
    outbox = lib.base / "outbox" / "10"
    done = run(*lib.submit_args(10, outbox / "121D-10.cflb"))
    assert done.returncode == 1 and done.stderr.startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr and "snapshot" in done.stderr
    assert not outbox.exists()
