"""Regressions for what an attacker found by hand: each was a traceback, a wrong exit code or a
hostile value accepted. One named case each, through the real console scripts."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.cpl_document import CplDocument
from metadata_templates.errors import ConfigurationError, RejectedInputError
from metadata_templates.policy import DEFAULT_POLICY, RolePolicy
from repo_tool.intake.cpl_cache import CplCache
from repo_tool.ops.init import refuse_initialised
from repo_tool.ops.manufacturers import add_manufacturer
from repo_tool.site.render import _bins_grouped
from repo_tool.state.repository import Repository
from repo_tool.submit.scope import load_for_deposit
from repo_tool.verify.published import RoleSummary
from repo_tool.verify.sources import folder_reader

BIN = Path(sys.executable).parent


def run(tool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFL_")}
    return subprocess.run(
        [str(BIN / tool), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def one_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.mark.parametrize(
    "bad", ["r#x", "r?x", "r%41", "r\nx"], ids=["hash", "query", "percent", "newline"]
)
def test_a_repository_path_a_signer_uri_cannot_carry_is_refused_before_any_key(
    tmp_path: Path, bad: str
) -> None:
    path = tmp_path / bad
    with pytest.raises(ConfigurationError, match="expected a path without"):
        refuse_initialised(path)
    assert not path.exists()


def test_deeply_nested_json_is_one_error_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    done = run("cfl-repo", "ceremony", "sign", deep, "--signer", "file2:none.pem", "--yes")
    assert "nested too deeply" in one_error(done, 1)


def test_a_log_time_outside_the_calendar_is_a_malformed_line(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    image = next(iter(factory.repo.role("mfr-121D").signed.targets.values()))
    line = {
        "format": "cfl-access-1",
        "time": "9999-12-31T23:59:59-23:59",
        "path": f"/targets/121D/{image.hashes['sha256']}.{image.path.split('/')[1]}",
        "status": 200,
        "bytes": 1,
    }
    log = tmp_path / "access.log"
    log.write_text(json.dumps(line) + "\n")
    done = run("cfl-repo", "--repo", factory.repo.path, "audit", log, "--json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_a_truncated_gzip_inventory_is_unreadable_not_an_interrupt(tmp_path: Path) -> None:
    factory, _ = standard_library(tmp_path)
    log = tmp_path / "access.log"
    log.write_text("")
    inventory = tmp_path / "inventory.csv.gz"
    header = (
        b"Device ID,Device Type,Manufacturer Identifier,Model Identifier,Hardware Version,"
        b"Firmware Version,Responsible Supplier,Since\n"
    )
    row = b"0011223344556677,ESME,121D,010A030B,1111,00000001,0011223344556677,2026-01-01\n"
    inventory.write_bytes(gzip.compress(header + row * 5000)[:-40])
    done = run("cfl-repo", "--repo", factory.repo.path, "audit", log, "--inventory", inventory)
    assert "unreadable" in one_error(done, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp_expiry_days", 999_999_999),
        ("refresh_margin_fraction", "nan"),
        ("refresh_margin_fraction", 1.5),
        ("snapshot_expiry_days", True),
    ],
    ids=["expiry-past-the-calendar", "margin-a-string", "margin-above-one", "expiry-a-bool"],
)
def test_a_policy_value_that_would_fail_later_is_refused_when_loaded(
    field: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"policy.{field}"):
        RolePolicy.from_dict(DEFAULT_POLICY.to_dict() | {field: value})


def test_a_fragment_size_beyond_the_image_cap_is_a_usage_error(tmp_path: Path) -> None:
    done = run(
        "cfl", "--home", tmp_path / "h", "download", "121D/abcd", "--out", tmp_path / "o",
        "--fragment-size", "99999999999999999999",
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_one_key_cannot_serve_two_manufacturers(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    signer = factory.add_manufacturer("121D")[0]
    with factory.repo.locked(), pytest.raises(RejectedInputError, match="registered to"):
        add_manufacturer(factory.repo, "3F01", "Other", [signer.public_key], 1, now=factory.tick())


def test_a_manufacturer_name_with_control_characters_is_refused(tmp_path: Path) -> None:
    factory = LibraryFactory(tmp_path)
    key = CryptoSigner.generate_ed25519().public_key
    with factory.repo.locked(), pytest.raises(ConfigurationError, match="printable"):
        add_manufacturer(factory.repo, "3F01", "E\x1b[2Jvil", [key], 1, now=factory.tick())


@pytest.mark.parametrize("damage", [b"", b"junk", None], ids=["empty", "junk", "missing"])
def test_verify_reports_a_published_root_that_is_not_the_trusted_one(
    tmp_path: Path, damage: bytes | None
) -> None:
    from datetime import UTC, datetime

    from repo_tool.verify.sources import folder_reader
    from repo_tool.verify.walk import load_verified_library

    factory, _ = standard_library(tmp_path)
    published = factory.out / "metadata" / "1.root.json"
    if damage is None:
        published.unlink()
    else:
        published.write_bytes(damage)

    _, problems = load_verified_library(
        folder_reader(factory.out), factory.root_bytes, now=datetime.now(UTC)
    )

    assert any(p.startswith("metadata/1.root.json: ") for p in problems), problems


def test_a_replayed_role_with_an_edited_manifest_is_judged_not_already_accepted(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from factory import make_entry, make_image, mi_sha
    from repo_tool.intake.bundle import read_bundle, write_bundle

    factory = LibraryFactory(tmp_path)
    image = make_image("121D", 2)
    factory.import_cpl([make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(image))])
    factory.add_manufacturer("121D")
    factory.publish()
    accepted = factory.write(factory.submit(image, ["CPL-0002"]), "good")
    assert factory.ingest(accepted).status == "accepted"
    assert factory.ingest(accepted).messages[0].startswith("already accepted")
    edited = tmp_path / "edited.cflb"
    write_bundle(edited, replace(read_bundle(accepted), target="x\n\x1b[2J"))

    result = factory.ingest(edited)

    assert result.status == "rejected" and result.reasons


def _memory_capped() -> None:
    """Child processes get 1.5 GB of address space: reading an endless file fails fast."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))


def test_an_endless_enrolment_bundle_is_refused_by_size_not_read_whole(tmp_path: Path) -> None:
    # Attack: `manufacturer enrol 121D /dev/zero` read the file whole before the size cap was
    # applied, and died with a MemoryError traceback (a huge file held the machine's memory).
    factory = LibraryFactory(tmp_path, provider=True)
    factory.add_manufacturer("121D")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFL_")}
    done = subprocess.run(
        [
            BIN / "cfl-repo",
            "--repo",
            factory.repo.path,
            "manufacturer",
            "enrol",
            "121D",
            "/dev/zero",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        preexec_fn=_memory_capped,
    )
    line = one_error(done, 1)
    assert "BUNDLE /dev/zero: size: found more than" in line, line
    assert f"at most {factory.repo.config.role_size_cap}" in line, line


@pytest.mark.parametrize("other", ["targets", "root", "a-manufacturer"])
def test_a_cfl_provider_key_cannot_be_a_key_of_another_role(tmp_path: Path, other: str) -> None:
    # Attack: `provider rotate-key --add` took the offline targets key (putting it online) or a
    # manufacturer's key (letting that manufacturer sign the CPL and withdrawals) as a cfl-provider
    # key, and committed.
    from repo_tool.ops.provider import rotate_key
    from repo_tool.signing.keys import SignerRef, write_keypair

    factory = LibraryFactory(tmp_path, provider=True)
    if other == "a-manufacturer":
        key, uri = write_keypair(tmp_path / "mfr-121D.pem")
        with factory.repo.locked():
            add_manufacturer(factory.repo, "121D", "Maker", [key], 1, now=factory.tick())
        ref = SignerRef(key, uri)
    else:
        ref = factory.repo.config.signers[other][0]
    head = factory.repo.head
    with factory.repo.locked(), pytest.raises(RejectedInputError, match="--add: found key"):
        rotate_key(factory.repo, [ref], (), None, now=factory.tick(), ceremony=False)
    assert factory.repo.head == head


# --- the CPL index (repo_tool/intake/cpl_cache.py): whoever writes a cache folder forges no CPL entry ------


def _forged_cpl(genuine: bytes, entry_id: str, **fields: str) -> tuple[CplDocument, bytes]:
    """The signed CPL with one entry's fields replaced: what a hex editor makes of an index."""
    doc = CplDocument.from_bytes(genuine)
    forged = CplDocument.of(
        [replace(e, **fields) if e.id == entry_id else e for e in doc.entries],
        doc.source_sha256,
        doc.imported,
    )
    return forged, forged.to_bytes()


def _plant_index(path: Path, sha: str, forged: CplDocument, forged_bytes: bytes) -> None:
    """Every index an attacker could leave under the CPL's own name: the sqlite index the first
    version of the cache kept, and a copy of the CPL edited in place."""
    path.mkdir(parents=True, exist_ok=True)
    (path / f"cpl-{sha}.sqlite").unlink(missing_ok=True)
    with closing(sqlite3.connect(path / f"cpl-{sha}.sqlite")) as db:
        db.execute("CREATE TABLE doc (magic, sha256, source_sha256, imported)")
        db.execute("CREATE TABLE entry (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        db.execute(
            "INSERT INTO doc VALUES (?, ?, ?, ?)",
            ("cfl-cpl-index 1", sha, forged.source_sha256, forged.imported),
        )
        db.executemany(
            "INSERT INTO entry VALUES (?, ?)",
            ((e.id, json.dumps(e.to_dict(), sort_keys=True)) for e in forged.entries),
        )
        db.commit()
    (path / f"cpl-{sha}.json").write_bytes(forged_bytes)


def _library_and_a_wrong_image(tmp_path: Path) -> tuple[LibraryFactory, bytes, bytes, str]:
    factory, _ = standard_library(tmp_path)
    image, wrong = make_image("121D", 7), make_image("121D", 9)
    factory.import_cpl(
        [*factory.entries, make_entry("CPL-0070", fw="00000007", image_sha=mi_sha(image))]
    )
    factory.publish()
    sha = factory.repo.head.cpl_sha256
    assert sha
    return factory, image, wrong, sha


def test_a_forged_cpl_index_in_the_repository_never_makes_the_gateway_accept(
    tmp_path: Path,
) -> None:
    factory, _, wrong, sha = _library_and_a_wrong_image(tmp_path)
    forged = _forged_cpl(
        factory.repo.blobs.get(sha),
        "CPL-0070",
        manufacturer_image_sha256=mi_sha(wrong),
        firmware_version="00000009",
    )
    _plant_index(factory.repo.path / "cache" / "cpl", sha, *forged)
    factory.repo = Repository.open(factory.repo.path)  # a fresh `cfl-repo ingest` process
    result = factory.ingest(factory.submit(wrong, ["CPL-0070"]), "wrong-image")
    assert result.status == "rejected", result.messages
    assert any("hash-not-on-cpl" in r for r in result.reasons), result.reasons


def test_a_forged_submit_cache_signs_the_deposit_a_clean_one_signs(tmp_path: Path) -> None:
    factory, image, _, sha = _library_and_a_wrong_image(tmp_path)
    genuine = factory.repo.blobs.get(sha)
    cache = tmp_path / "submit-cache"

    def deposit(entry_image: bytes) -> str:
        library = load_for_deposit(
            str(factory.out),
            folder_reader(factory.out),
            factory.root_bytes,
            now=factory.tick(),
            manufacturer_id="121D",
            image=entry_image,
            cpl_entry_ids=["CPL-0070"],
            with_notes=False,
            cpl_cache=CplCache(cache),
        )
        entry = library.cpl.by_id()["CPL-0070"] if library.cpl else None
        return "" if entry is None else entry.manufacturer_image_sha256

    _plant_index(cache, sha, *_forged_cpl(genuine, "CPL-0070", manufacturer_image_sha256="ab" * 32))
    assert deposit(image) == mi_sha(image)  # the signed entry, not the planted one
    deep = b"[" * 100_000 + b"]" * 100_000
    _plant_index(cache, sha, *_forged_cpl(genuine, "CPL-0070"))
    with closing(sqlite3.connect(cache / f"cpl-{sha}.sqlite")) as db:
        db.execute("UPDATE entry SET body = ? WHERE id = 'CPL-0070'", (deep.decode(),))
        db.commit()
    (cache / f"cpl-{sha}.json").write_bytes(deep)
    assert deposit(image) == mi_sha(image)  # no RecursionError: a miss


# --- key rotation re-runs (repo_tool/signing/keys.py rotation_done): a typo never reads as "done" ---------


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = run("cfl-repo", *args)
    assert done.returncode == 0, (args, done.stderr)
    return done


def test_a_mistyped_remove_beside_a_key_present_from_before_is_refused_not_done(
    tmp_path: Path,
) -> None:
    """`--add` of a key the role holds already (a second key added earlier) with a `--remove` that
    matches no key: the key meant to go stays, so the command must refuse, not say "nothing to do"
    and exit 0 as a re-run of a rotation that happened."""
    repo = tmp_path / "R"
    _cli("--repo", repo, "init", "--dev-keys")
    for name in ("m1", "m2", "t2", "p2"):
        _cli("keygen", tmp_path / f"{name}.pem", "--no-encrypt")
    _cli("--repo", repo, "manufacturer", "add", "121D", "--name", "M",
         "--key", tmp_path / "m1.pub.pem")  # fmt: skip
    m2 = ("--add", tmp_path / "m2.pub.pem")
    _cli("--repo", repo, "manufacturer", "rotate-key", "121D", *m2)
    t2 = ("--add", tmp_path / "t2.pub.pem", f"file2:{tmp_path / 't2.pem'}")
    _cli("--repo", repo, "rotate-keys", "timestamp", *t2)
    p2 = ("--add", tmp_path / "p2.pub.pem", "--uri", f"file2:{tmp_path / 'p2.pem'}")
    _cli("--repo", repo, "provider", "rotate-key", *p2)
    before = (repo / "state" / "head.json").read_bytes()
    for command, expected in [
        (("manufacturer", "rotate-key", "121D", *m2), "matching 0 key(s) of 121D"),
        (("rotate-keys", "timestamp", *t2), "matching 0 timestamp key(s)"),
        (("provider", "rotate-key", *p2), "matching 0 cfl-provider key(s)"),
    ]:
        line = one_error(run("cfl-repo", "--repo", repo, *command, "--remove", "deadbeef"), 1)
        assert expected in line, line
    assert (repo / "state" / "head.json").read_bytes() == before


# --- the trust page's bin row (repo_tool/site/build.py _bins_grouped) ------------------------------------


def _summary(name: str, version: int, day: int, keyids: tuple[str, ...] = ("k1",)) -> RoleSummary:
    return RoleSummary(name, version, datetime(2027, 1, day, tzinfo=UTC), keyids, 1)


def test_the_bin_row_gives_the_version_range_and_the_earliest_expiry_of_each_manufacturer() -> None:
    roles = [
        _summary("targets", 3, 20),
        _summary("mfr-121D", 2, 28),
        _summary("mfr-121D-bin-0", 1, 9),
        _summary("mfr-121D-bin-1", 4, 3),  # expires first: the day a reader must watch
        _summary("mfr-3F01", 1, 28),
        _summary("mfr-3F01-bin-0", 2, 15),
        _summary("mfr-3F01-bin-1", 2, 16),
    ]
    rows = _bins_grouped(roles)
    assert [r.name for r in rows] == [
        "targets",
        "mfr-121D",
        "mfr-121D-bin-* (2 hash bins)",
        "mfr-3F01",
        "mfr-3F01-bin-* (2 hash bins)",
    ]
    assert (rows[2].version, rows[2].expires.day) == ("1–4", 3)
    assert (rows[4].version, rows[4].expires.day) == ("2", 15)


def test_a_bin_named_role_with_other_keys_is_never_hidden_in_the_bin_row() -> None:
    """One succinct delegation gives every bin the same keys, but targets may delegate a role
    named like a bin directly, with keys of its own: the page must show them, not its siblings'."""
    roles = [
        _summary("mfr-121D", 2, 28),
        _summary("mfr-121D-bin-0", 1, 9),
        _summary("mfr-121D-bin-1", 1, 10, keyids=("someone-else",)),
    ]
    rows = _bins_grouped(roles)
    assert [(r.name, r.keyids) for r in rows] == [
        ("mfr-121D", ("k1",)),
        ("mfr-121D-bin-0", ("k1",)),
        ("mfr-121D-bin-1", ("someone-else",)),
    ]


@pytest.mark.parametrize("prefix", ["", "UPPER"], ids=["empty", "upper-case"])
def test_rotate_keys_reads_a_remove_prefix_as_the_other_rotations_do(
    tmp_path: Path, prefix: str
) -> None:
    """An empty --remove (an unset shell variable) removed the only timestamp key, where
    `manufacturer rotate-key` and `provider rotate-key` refuse it; an upper-case prefix of a key ID
    matched nothing, where they match it."""
    repo = tmp_path / "R"
    _cli("--repo", repo, "init", "--dev-keys")
    _cli("keygen", tmp_path / "t2.pem", "--no-encrypt")
    add = ("--add", tmp_path / "t2.pub.pem", f"file2:{tmp_path / 't2.pem'}")
    before = (repo / "state" / "head.json").read_bytes()
    if not prefix:
        line = one_error(run("cfl-repo", "--repo", repo, "rotate-keys", "timestamp", *add,
                             "--remove", ""), 1)  # fmt: skip
        assert "found '' matching 0 timestamp key(s)" in line, line
        assert (repo / "state" / "head.json").read_bytes() == before
        return
    config = json.loads((repo / "cfl-repo.json").read_bytes())
    old = config["signers"]["timestamp"][0]["keyid"]
    _cli("--repo", repo, "rotate-keys", "timestamp", *add, "--remove", old[:8].upper())
    config = json.loads((repo / "cfl-repo.json").read_bytes())
    assert old not in [s["keyid"] for s in config["signers"]["timestamp"]]
