"""The verified-role memo (repo_tool/verify/memo.py): the website step's walk recalls role files it
verified cleanly before instead of verifying them again, and gives the very library a memo-free walk
gives. Every way the memo could be made to vouch for something it should not is attacked here."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from notes_factory import PLAINTEXT, notes_library
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Snapshot,
    SuccinctRoles,
    Targets,
    Timestamp,
)

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.custom import CUSTOM_KEY
from repo_tool.ops.manufacturer_keys import rotate_key
from repo_tool.ops.withdraw import withdraw
from repo_tool.submit.bins import build_split
from repo_tool.verify.memo import (
    FORMAT_VERSION,
    MAGIC,
    MEMO_DIR_NAME,
    RoleFacts,
    VerifyMemo,
    decode_entry,
    encode_entry,
    memo_key,
)
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.walk import load_verified_library, verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
MFR_ROLES = ("mfr-121D", "mfr-3F01")


def walk(
    factory: LibraryFactory, memo: VerifyMemo | None = None, **kwargs: object
) -> tuple[PublishedLibrary | None, list[str]]:
    now = kwargs.pop("now", factory.now)
    return load_verified_library(
        folder_reader(factory.out),
        factory.root_bytes,
        now=now,
        check_blobs=bool(kwargs.pop("check_blobs", False)),
        memo=memo,
    )


def memo_dir(factory: LibraryFactory) -> Path:
    return factory.repo.path / "cache" / MEMO_DIR_NAME


def warm(factory: LibraryFactory) -> VerifyMemo:
    """A memo that has seen the published tree once, cleanly."""
    memo = VerifyMemo(memo_dir(factory))
    library, problems = walk(factory, memo)
    assert problems == [] and library is not None
    assert memo.written == memo.misses > 0 and memo.hits == 0
    memo.prune()
    return memo


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def published_role(factory: LibraryFactory, name: str) -> tuple[Path, bytes]:
    """The file of role ``name`` the published snapshot lists, and its bytes."""
    metadata = factory.out / "metadata"
    timestamp = Metadata[Timestamp].from_bytes((metadata / "timestamp.json").read_bytes())
    version = timestamp.signed.snapshot_meta.version
    snapshot = Metadata[Snapshot].from_bytes((metadata / f"{version}.snapshot.json").read_bytes())
    path = metadata / f"{snapshot.signed.meta[f'{name}.json'].version}.{name}.json"
    return path, path.read_bytes()


def serve_with_online_keys(factory: LibraryFactory, changed: dict[str, bytes]) -> None:
    """What a holder of the provider's online keys (snapshot, timestamp) can serve: other bytes
    for published role files, pinned by a new snapshot and timestamp."""
    metadata = factory.out / "metadata"
    timestamp = Metadata[Timestamp].from_bytes((metadata / "timestamp.json").read_bytes())
    snap_version = timestamp.signed.snapshot_meta.version
    snapshot = Metadata[Snapshot].from_bytes(
        (metadata / f"{snap_version}.snapshot.json").read_bytes()
    )
    for name, data in changed.items():
        version = snapshot.signed.meta[f"{name}.json"].version
        (metadata / f"{version}.{name}.json").write_bytes(data)
        snapshot.signed.meta[f"{name}.json"] = MetaFile(version, len(data), {"sha256": _sha(data)})
    root = factory.repo.root().signed
    snapshot.signed.version += 1
    snap_bytes = factory.repo.sign(snapshot, Snapshot.type, delegator=root).to_bytes()
    (metadata / f"{snapshot.signed.version}.snapshot.json").write_bytes(snap_bytes)
    timestamp.signed.snapshot_meta = MetaFile(
        snapshot.signed.version, len(snap_bytes), {"sha256": _sha(snap_bytes)}
    )
    timestamp.signed.version += 1
    (metadata / "timestamp.json").write_bytes(
        factory.repo.sign(timestamp, Timestamp.type, delegator=root).to_bytes()
    )


def tampered(role_bytes: bytes) -> bytes:
    """The role with one image's header string edited and its signatures kept."""
    md = Metadata[Targets].from_bytes(role_bytes)
    path = sorted(p for p in md.signed.targets if not p.endswith(".notes.jwe"))[0]
    md.signed.targets[path].custom[CUSTOM_KEY]["header_string"] = "FORGED"
    return md.to_bytes()


@pytest.fixture
def library(tmp_path: Path) -> LibraryFactory:
    factory, _ = standard_library(tmp_path / "lib")
    return factory


# ------------------------------------------------------------------------------ the same library


@pytest.fixture
def full_tree(tmp_path: Path) -> LibraryFactory:
    """Bins (121D split into 16), the online cfl-provider role, a withdrawal, encrypted release
    notes (before the split, in the manufacturer role; after it, in a bin)."""
    notes = notes_library(tmp_path / "lib", provider=True)
    factory = notes.factory
    factory.deposit(notes.images["esme"], ["CPL-0002"], release_notes=PLAINTEXT)
    gsme = factory.deposit(notes.images["gsme"], ["CPL-0101"], mfr="3F01")
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=4,
        signers=[factory.mfr_signers["121D"]],
        library=verified_library(
            folder_reader(factory.out), factory.root_bytes, now=factory.tick(), check_blobs=False
        ),
        now=factory.now,
    )
    assert factory.ingest(split, "split").status == "accepted"
    factory.publish()
    factory.deposit(notes.images["esme3"], ["CPL-0003"], release_notes=PLAINTEXT)
    assert gsme.target is not None
    with factory.repo.locked():
        withdraw(factory.repo, gsme.target, "recalled", now=factory.tick())
    factory.publish()
    return factory


def test_the_memo_gives_the_library_a_full_walk_gives(full_tree: LibraryFactory) -> None:
    plain, problems = walk(full_tree)
    assert problems == [] and plain is not None
    # The tree has what the memo must carry faithfully.
    assert any(i.role.startswith("mfr-121D-") for i in plain.images)  # bins
    assert any(r.name == "cfl-provider" for r in plain.roles)
    assert plain.withdrawals and any(i.withdrawal is not None for i in plain.images)
    assert sum(i.cfl.release_notes is not None for i in plain.images) == 2

    first = VerifyMemo(memo_dir(full_tree))
    learnt, problems = walk(full_tree, first)
    assert problems == [] and learnt == plain
    roles = 2 + 16  # two manufacturer roles and 121D's bins; never the provider's own role
    assert (first.hits, first.misses, first.written) == (0, roles, roles)

    second = VerifyMemo(memo_dir(full_tree))
    recalled, problems = walk(full_tree, second)
    assert problems == []
    assert (second.hits, second.misses, second.written) == (roles, 0, 0)
    assert recalled == plain  # role_metadata too: recalled roles are parsed when looked at
    assert (
        recalled is not None
        and recalled.role_metadata["mfr-121D"] == plain.role_metadata["mfr-121D"]
    )
    with_blobs, problems = walk(full_tree, VerifyMemo(memo_dir(full_tree)), check_blobs=True)
    assert problems == [] and with_blobs == plain


def test_a_publish_verifies_again_only_the_roles_it_changed(library: LibraryFactory) -> None:
    warm(library)
    image = make_image("121D", 4)
    library.import_cpl(
        [*library.entries, make_entry("CPL-0004", fw="00000004", image_sha=mi_sha(image))]
    )
    library.publish()
    library.deposit(image, ["CPL-0004"])

    memo = VerifyMemo(memo_dir(library))
    recalled, problems = walk(library, memo)

    assert problems == [] and recalled == walk(library)[0]
    assert (memo.hits, memo.misses, memo.written) == (1, 1, 1)  # 3F01 recalled, 121D new
    assert memo.prune() == 1  # 121D's previous version
    assert len(list(memo_dir(library).iterdir())) == len(MFR_ROLES)


# ------------------------------------------------------------------------------------- attacks


def test_role_bytes_swapped_on_disk_are_verified_again_and_reported_as_without_memo(
    library: LibraryFactory,
) -> None:
    warm(library)
    path, data = published_role(library, "mfr-121D")
    path.write_bytes(tampered(data))  # the snapshot still pins the old bytes

    memo = VerifyMemo(memo_dir(library))
    _, problems = walk(library, memo)

    assert problems == walk(library)[1]
    assert len(problems) == 1 and "does not match the length/hash snapshot records" in problems[0]
    assert memo.written == 0


def test_swapped_bytes_pinned_with_online_keys_fail_on_their_signature_as_without_memo(
    library: LibraryFactory,
) -> None:
    """The online-key thief: new bytes for a manufacturer role, pinned by a snapshot and timestamp
    signed with the provider's online keys. A new hash is a miss: the signature is checked."""
    warm(library)
    _, data = published_role(library, "mfr-121D")
    forged = tampered(data)
    serve_with_online_keys(library, {"mfr-121D": forged})

    memo = VerifyMemo(memo_dir(library))
    _, problems = walk(library, memo)

    assert problems == walk(library)[1]
    assert len(problems) == 1 and "signatures do not verify for role mfr-121D" in problems[0]
    assert (memo.hits, memo.misses, memo.written) == (1, 1, 0)  # nothing learnt from a failure
    assert all(b"FORGED" not in p.read_bytes() for p in memo_dir(library).iterdir())


def _delegation_swapped(library: LibraryFactory, name: str, new: CryptoSigner) -> bytes:
    """targets, re-signed, delegating ``name`` to ``new``'s key instead of its own."""
    _, data = published_role(library, "targets")
    targets = Metadata[Targets].from_bytes(data)
    delegations = targets.signed.delegations
    assert delegations is not None and delegations.roles is not None
    role = delegations.roles[name]
    for keyid in list(role.keyids):
        role.keyids.remove(keyid)
        delegations.keys.pop(keyid, None)
    role.keyids.append(new.public_key.keyid)
    delegations.keys[new.public_key.keyid] = new.public_key
    return library.repo.sign(targets, Targets.type, delegator=library.repo.root().signed).to_bytes()


def test_a_role_delegated_to_another_key_is_a_miss_and_fails_as_without_memo(
    library: LibraryFactory,
) -> None:
    """Same role bytes, a delegation to a key that did not sign them: the memo's entry was for
    the old key, so the role is verified again and its signature fails."""
    warm(library)
    thief = CryptoSigner.generate_ed25519()
    serve_with_online_keys(library, {"targets": _delegation_swapped(library, "mfr-121D", thief)})

    memo = VerifyMemo(memo_dir(library))
    _, problems = walk(library, memo)

    assert problems == walk(library)[1]
    assert len(problems) == 1 and "signatures do not verify for role mfr-121D" in problems[0]
    assert (memo.hits, memo.misses, memo.written) == (1, 1, 0)


def test_a_manufacturer_key_rotation_is_a_miss(library: LibraryFactory) -> None:
    """`manufacturer rotate-key` adds a key (the role bytes stay): verified again, then kept."""
    warm(library)
    with library.repo.locked():
        rotate_key(
            library.repo,
            "121D",
            add=[CryptoSigner.generate_ecdsa().public_key],
            remove=[],
            threshold=None,
            now=library.tick(),
            ceremony=False,
        )
    library.publish()
    _, before = published_role(library, "mfr-121D")

    memo = VerifyMemo(memo_dir(library))
    recalled, problems = walk(library, memo)

    assert published_role(library, "mfr-121D")[1] == before
    assert problems == [] and recalled == walk(library)[0]
    assert (memo.hits, memo.misses, memo.written) == (1, 1, 1)


def test_a_role_that_expired_since_it_was_remembered_is_reported_expired(
    tmp_path: Path,
) -> None:
    factory = LibraryFactory(tmp_path)
    image = make_image("3F01", 5)
    factory.import_cpl(
        [make_entry("CPL-0105", mfr="3F01", model="0B0C", fw="00000005", image_sha=mi_sha(image))]
    )
    factory.add_manufacturer("3F01")
    factory.publish()
    factory.deposit(image, ["CPL-0105"], mfr="3F01", expiry=timedelta(days=31))
    warm(factory)
    later = factory.now + timedelta(days=40)

    memo = VerifyMemo(memo_dir(factory))
    recalled, problems = walk(factory, memo, now=later)

    plain, plain_problems = walk(factory, now=later)
    assert memo.hits == 1  # recalled, and its expiry checked against `now` all the same
    assert recalled is not None and plain is not None
    assert "mfr-3F01" in recalled.expired_roles
    assert recalled.expired_roles == plain.expired_roles and problems == plain_problems
    assert recalled == plain


def _one_entry(library: LibraryFactory) -> Path:
    files = sorted(memo_dir(library).iterdir())
    assert len(files) == len(MFR_ROLES)
    return next(p for p in files if b'"role":"mfr-121D"' in p.read_bytes().split(b"\n")[0])


def _rewrite_body(data: bytes, edit: object) -> bytes:
    """The entry with its body edited and its digest made to match (a well-formed file)."""
    header_line, body_line, _ = data.split(b"\n")
    body = json.loads(body_line)
    edit(body)
    new_body = json.dumps(body).encode()
    header = json.loads(header_line) | {"body_sha256": _sha(new_body)}
    return json.dumps(header).encode() + b"\n" + new_body + b"\n"


def _header(data: bytes, **fields: object) -> bytes:
    header_line, rest = data.split(b"\n", 1)
    return json.dumps(json.loads(header_line) | fields).encode() + b"\n" + rest


DAMAGE = {
    "empty": lambda d: b"",
    "garbage": lambda d: b"\x00\xffnot json at all",
    "truncated": lambda d: d[: len(d) // 2],
    "header only": lambda d: d.split(b"\n")[0] + b"\n",
    "another magic": lambda d: _header(d, magic="something-else"),
    "another format": lambda d: _header(d, format=FORMAT_VERSION + 1),
    "another key": lambda d: _header(d, key="0" * 64),
    "another role": lambda d: _header(d, role="mfr-3F01"),
    "body edited, digest stale": lambda d: d.replace(b'\n{"version":', b'\n{"version": ', 1),
    "version of the wrong type": lambda d: _rewrite_body(d, lambda b: b.update(version="2")),
    "expires not a time": lambda d: _rewrite_body(d, lambda b: b.update(expires="soon")),
    "targets not triples": lambda d: _rewrite_body(d, lambda b: b.update(targets=[["x"]])),
    "image field missing": lambda d: _rewrite_body(d, lambda b: b["images"][0][1].pop("reason")),
    "image field of the wrong type": lambda d: _rewrite_body(
        d, lambda b: b["images"][0][1].update(header_string=5)
    ),
    "image length a boolean": lambda d: _rewrite_body(
        d, lambda b: b["images"][0][1].update(manufacturer_image_length=True)
    ),
    "CPL entry not an object": lambda d: _rewrite_body(
        d, lambda b: b["images"][0][1].update(cpl_entries=["CPL-0002"])
    ),
    "advisories not texts": lambda d: _rewrite_body(
        d, lambda b: b["images"][0][1].update(advisories=[1])
    ),
    "release notes reader of the wrong shape": lambda d: _rewrite_body(
        d, lambda b: b["images"][0][1].update(release_notes={"target": "x", "readers": [1]})
    ),
    "image not a listed target": lambda d: _rewrite_body(
        d, lambda b: b["images"][0].__setitem__(0, "121D/elsewhere")
    ),
    "delegations to named roles": lambda d: _rewrite_body(
        d,
        lambda b: b.update(
            delegations={
                "keys": {},
                "roles": [
                    {
                        "name": "x",
                        "keyids": [],
                        "threshold": 1,
                        "terminating": True,
                        "paths": ["*"],
                    }
                ],
            }
        ),
    ),
    "a list, not an object": lambda d: b"[]\n[]\n",
    "header summary not the body's": lambda d: _rewrite_header_summary(d),
}


def _rewrite_header_summary(data: bytes) -> bytes:
    """The header claims one image more than the body holds (issue 26: a flat walk reads it)."""
    header_line, body = data.split(b"\n", 1)
    header = json.loads(header_line)
    header["summary"]["images"] += 1
    return json.dumps(header).encode() + b"\n" + body


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_memo_file_is_a_miss_and_is_rebuilt(
    library: LibraryFactory, damage: object
) -> None:
    warm(library)
    entry = _one_entry(library)
    entry.write_bytes(damage(entry.read_bytes()))

    memo = VerifyMemo(memo_dir(library))
    recalled, problems = walk(library, memo)

    assert problems == [] and recalled == walk(library)[0]
    assert (memo.hits, memo.misses, memo.written) == (1, 1, 1)
    assert decode_entry(entry.read_bytes(), entry.stem, "mfr-121D") is not None  # rewritten


def test_a_memo_folder_that_cannot_be_used_costs_time_not_the_walk(
    library: LibraryFactory,
) -> None:
    memo_dir(library).parent.mkdir(parents=True, exist_ok=True)
    memo_dir(library).write_bytes(b"a file where the folder should be")

    memo = VerifyMemo(memo_dir(library))
    recalled, problems = walk(library, memo)

    assert problems == [] and recalled == walk(library)[0]
    assert (memo.hits, memo.misses, memo.written) == (0, 2, 0)
    assert memo.prune() == 0


def test_an_entry_is_written_only_after_a_clean_verification(library: LibraryFactory) -> None:
    """A role with a problem of its own (a custom.cfl the schema rejects, signed by the real
    manufacturer key) is verified, reported, and not remembered: the next walk reports it again."""
    _, data = published_role(library, "mfr-121D")
    md = Metadata[Targets].from_bytes(data)
    path = sorted(md.signed.targets)[0]
    md.signed.targets[path].custom[CUSTOM_KEY]["reason"] = "because"
    md.signatures.clear()
    md.sign(library.mfr_signers["121D"])
    serve_with_online_keys(library, {"mfr-121D": md.to_bytes()})

    # (hits, misses, written): 3F01 is learnt on the first walk; 121D is never learnt.
    for expected in ((0, 2, 1), (1, 1, 0)):
        memo = VerifyMemo(memo_dir(library))
        _, problems = walk(library, memo)
        assert problems == walk(library)[1]
        assert len(problems) == 1 and "custom.cfl.reason" in problems[0]
        assert (memo.hits, memo.misses, memo.written) == expected


def test_a_planted_entry_is_the_documented_trust_boundary_and_verify_ignores_it(
    library: LibraryFactory,
) -> None:
    """The memo is as trusted as R/state: someone who can write there can make the
    website step accept bytes that do not verify (docs/design.md, "The verified-role memo"). What
    it cannot do is fool the auditor's check, which never reads a memo."""
    genuine = walk(library)[0]
    assert genuine is not None
    _, data = published_role(library, "mfr-121D")
    forged = tampered(data)
    serve_with_online_keys(library, {"mfr-121D": forged})
    honest = VerifyMemo(memo_dir(library))
    _, problems = walk(library, honest)
    assert len(problems) == 1 and honest.written == 1  # 3F01 only: the forgery was not learnt
    # The planted entry: the forged role's facts under the real delegation's key.
    targets = Metadata[Targets].from_bytes(published_role(library, "targets")[1]).signed
    assert targets.delegations is not None and targets.delegations.roles is not None
    role = targets.delegations.roles["mfr-121D"]
    key = memo_key("mfr-121D", role, targets, role, _sha(forged))
    signed = Metadata[Targets].from_bytes(forged).signed
    images = tuple(
        replace(i, cfl=replace(i.cfl, header_string="FORGED"), withdrawal=None)
        if i.target_path == sorted(signed.targets)[0]
        else replace(i, withdrawal=None)
        for i in genuine.images
        if i.role == "mfr-121D"
    )
    targets_list = tuple(
        (p, t.length, t.hashes["sha256"]) for p, t in sorted(signed.targets.items())
    )
    facts = RoleFacts(signed.version, signed.expires, targets_list, images, (), None)
    (memo_dir(library) / f"{key}.json").write_bytes(encode_entry(key, "mfr-121D", facts))

    planted, problems = walk(library, VerifyMemo(memo_dir(library)))
    assert problems == []  # trusted, as documented
    assert planted is not None and any(i.cfl.header_string == "FORGED" for i in planted.images)

    audit = subprocess.run(
        [str(CFL_REPO), "verify", str(library.out), "--root", str(_root_file(library))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 1
    assert "signatures do not verify for role mfr-121D" in audit.stderr
    assert "Traceback" not in audit.stderr


def _root_file(library: LibraryFactory) -> Path:
    path = library.tmp / "1.root.json"
    path.write_bytes(library.root_bytes)
    return path


# ---------------------------------------------------------------------------------------- keys


def _mfr_delegation(**changes: object) -> DelegatedRole:
    fields: dict[str, object] = {
        "name": "mfr-121D",
        "keyids": ["a" * 64],
        "threshold": 1,
        "terminating": True,
        "paths": ["121D/*"],
    } | changes
    return DelegatedRole(**fields)


def _delegator(*signers: CryptoSigner, keyids: tuple[str, ...] = ()) -> Targets:
    keys = {s.public_key.keyid: s.public_key for s in signers}
    return Targets(delegations=Delegations(keys=keys, roles={}))


_SIGNER = CryptoSigner.generate_ed25519()
_OTHER = CryptoSigner.generate_ed25519()
_ROLE = _mfr_delegation(keyids=[_SIGNER.public_key.keyid])
_BASE = ("mfr-121D", _ROLE, _delegator(_SIGNER), _ROLE, "0" * 64)
KEY_CHANGES = {
    "role bytes": ("mfr-121D", _ROLE, _delegator(_SIGNER), _ROLE, "1" * 64),
    "role name": ("mfr-121E", _ROLE, _delegator(_SIGNER), _ROLE, "0" * 64),
    "keyids": (
        "mfr-121D",
        _mfr_delegation(keyids=[_OTHER.public_key.keyid]),
        _delegator(_OTHER),
        _ROLE,
        "0" * 64,
    ),
    "key value under the same keyid": (
        "mfr-121D",
        _ROLE,
        Targets(
            delegations=Delegations(keys={_SIGNER.public_key.keyid: _OTHER.public_key}, roles={})
        ),
        _ROLE,
        "0" * 64,
    ),
    "key missing from the delegator": ("mfr-121D", _ROLE, _delegator(), _ROLE, "0" * 64),
    "threshold": (
        "mfr-121D",
        _mfr_delegation(keyids=[_SIGNER.public_key.keyid], threshold=2),
        _delegator(_SIGNER),
        _ROLE,
        "0" * 64,
    ),
    "terminating": (
        "mfr-121D",
        _mfr_delegation(keyids=[_SIGNER.public_key.keyid], terminating=False),
        _delegator(_SIGNER),
        _ROLE,
        "0" * 64,
    ),
    "paths": (
        "mfr-121D",
        _mfr_delegation(keyids=[_SIGNER.public_key.keyid], paths=["121D/*", "*"]),
        _delegator(_SIGNER),
        _mfr_delegation(keyids=[_SIGNER.public_key.keyid], paths=["121D/*", "*"]),
        "0" * 64,
    ),
    "the enclosing delegation's paths (a bin's prefix)": (
        "mfr-121D",
        _ROLE,
        _delegator(_SIGNER),
        _mfr_delegation(keyids=[_SIGNER.public_key.keyid], paths=["*"]),
        "0" * 64,
    ),
}


@pytest.mark.parametrize("changed", KEY_CHANGES.values(), ids=KEY_CHANGES.keys())
def test_every_input_of_a_verification_is_part_of_the_key(changed: tuple) -> None:
    assert memo_key(*changed) != memo_key(*_BASE)
    assert memo_key(*_BASE) == memo_key(*_BASE)


@pytest.mark.parametrize("field", ["bit_length", "name_prefix", "threshold", "keyids"])
def test_every_bin_parameter_is_part_of_the_key(field: str) -> None:
    base = {
        "keyids": [_SIGNER.public_key.keyid],
        "threshold": 1,
        "bit_length": 4,
        "name_prefix": "mfr-121D",
    }
    other = base | {
        "bit_length": 5,
        "name_prefix": "mfr-121E",
        "threshold": 2,
        "keyids": [_OTHER.public_key.keyid],
    }
    delegator = _delegator(_SIGNER, _OTHER)

    def key(fields: dict[str, object]) -> str:
        return memo_key(
            "mfr-121D-0",
            SuccinctRoles(**fields),
            delegator,
            _ROLE,
            "0" * 64,
        )

    assert key(base | {field: other[field]}) != key(base)


# ----------------------------------------------------------------------------------------- CLI


def test_cfl_repo_publish_and_site_build_use_the_memo_and_verify_does_not(
    library: LibraryFactory,
) -> None:
    def cfl_repo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CFL_REPO), "--repo", str(library.repo.path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = cfl_repo("publish", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["site_build"]["verify_memo"] == {
        "recalled": 0,
        "verified": 2,
        "remembered": 2,
    }
    # With nothing new, publish replays its last outcome (repo_tool/publish/unchanged.py) and
    # verifies nothing; without that stamp, the full path runs and recalls the memo.
    assert json.loads(cfl_repo("publish", "--json").stdout)["unchanged"] is True
    (library.repo.path / "cache" / "publish-unchanged.json").unlink()
    again = cfl_repo("publish", "--json")
    assert json.loads(again.stdout)["site_build"]["verify_memo"] == {
        "recalled": 2,
        "verified": 0,
        "remembered": 0,
    }
    entries = {p.name: p.read_bytes() for p in memo_dir(library).iterdir()}
    shutil.rmtree(memo_dir(library))  # always safe: the next build rebuilds it
    built = cfl_repo("site", "build")
    assert built.returncode == 0, built.stderr
    assert {p.name: p.read_bytes() for p in memo_dir(library).iterdir()} == entries

    for path in memo_dir(library).iterdir():  # every entry damaged, and strays beside them
        path.write_bytes(b"\x00garbage")
    (memo_dir(library) / ".stray.json.tmp").write_bytes(b"{")
    rebuilt = cfl_repo("publish", "--json")
    assert rebuilt.returncode == 0 and "Traceback" not in rebuilt.stderr, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["site_build"]["verify_memo"]["remembered"] == 2
    assert {p.name: p.read_bytes() for p in memo_dir(library).iterdir()} == entries

    audit = subprocess.run(
        [str(CFL_REPO), "verify", str(library.out), "--root", str(_root_file(library)), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr
    assert {p.name: p.read_bytes() for p in memo_dir(library).iterdir()} == entries
    assert json.loads(audit.stdout)["ok"] is True


def test_the_memo_file_format(library: LibraryFactory) -> None:
    """JSON lines: a header with magic, format, key, role and the body's digest; then the body."""
    warm(library)
    header_line, body_line, end = _one_entry(library).read_bytes().split(b"\n")
    header = json.loads(header_line)
    assert end == b""
    assert header["magic"] == MAGIC and header["format"] == FORMAT_VERSION
    assert header["role"] == "mfr-121D" and header["body_sha256"] == _sha(body_line)
    assert set(json.loads(body_line)) == {
        "version",
        "expires",
        "targets",
        "images",
        "notes",
        "delegations",
    }
