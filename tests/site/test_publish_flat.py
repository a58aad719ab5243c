"""Flat publish (issue 26): the told website step recalls unchanged roles from their memo entries'
headers and does not read role files its stamps show untouched (repo_tool/verify/lazy.py,
repo_tool/verify/stamps.py). The site must still hold the bytes a full build renders, and a
published tree tampered with must still fail the publish, whatever the memo and stamps say."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Targets

from factory import LibraryFactory, make_entry, make_image, mi_sha, standard_library
from metadata_templates.errors import VerificationError
from repo_tool.publish.site_step import (
    BASIS_NAME,
    PublishedSite,
    build_published_site,
    publish_hint,
    tree_state,
)
from repo_tool.site.build import build_site
from repo_tool.submit.bins import build_split
from repo_tool.verify import stamps as stamps_module
from repo_tool.verify.memo import VerifyMemo, memo_key
from repo_tool.verify.published import PublishedLibrary
from repo_tool.verify.sources import folder_reader
from repo_tool.verify.stamps import STAMPS_NAME, FileStamps
from repo_tool.verify.walk import verified_library

CFL_REPO = Path(sys.executable).with_name("cfl-repo")
NEW_FIRMWARE = (7, 8, 9)


def _entry(firmware: int) -> str:
    return f"CPL-9{firmware:03d}"


def tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def library_of(factory: LibraryFactory) -> PublishedLibrary:
    return verified_library(
        folder_reader(factory.out), factory.root_bytes, now=factory.now, check_blobs=False
    )


def assert_full_build_bytes(factory: LibraryFactory, site: Path, tmp_path: Path) -> None:
    generated = json.loads((site / "search" / "meta.json").read_bytes())["generated"]
    fresh = tmp_path / "fresh-site"
    result = build_site(library_of(factory), fresh, generated=datetime.fromisoformat(generated))
    assert not result.appended
    assert tree(site) == tree(fresh)


def memo_of(factory: LibraryFactory) -> VerifyMemo:
    return VerifyMemo.of_repository(factory.repo.path)


def lodge(factory: LibraryFactory, firmware: int) -> str:
    entry = _entry(firmware)
    result = factory.ingest(factory.submit(make_image("121D", firmware), [entry]), name=entry)
    assert result.status == "accepted" and result.target is not None, result.messages
    return result.target


def publish_with_site(factory: LibraryFactory, *, flat: bool = True) -> PublishedSite:
    """What `cfl-repo publish` runs, with the repository's memo."""
    before = tree_state(factory.out)
    factory.publish()
    return build_published_site(
        factory.out,
        factory.root_bytes,
        now=factory.now,
        hint=publish_hint(factory.repo, before),
        memo=memo_of(factory),
        flat=flat,
    )


class StampCount:
    """How many role files the walks did not read again (their stamps held)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.skipped = 0
        original = FileStamps.unchanged

        def counting(stamps: FileStamps, relative: str, sha256: str) -> bool:
            held = original(stamps, relative, sha256)
            self.skipped += held
            return held

        monkeypatch.setattr(FileStamps, "unchanged", counting)


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LibraryFactory:
    """The standard library, 121D in 4 hash bins, published with its site built once (a full
    build: no basis yet), then one told publish (flat: it stamps the role files)."""
    # Files count as old enough to stamp (the racy window is real time, not the factory's).
    monkeypatch.setattr(stamps_module, "_now_ns", lambda: 1 << 62)
    factory, _ = standard_library(tmp_path / "lib")
    factory.import_cpl(
        [
            *factory.entries,
            *(
                make_entry(_entry(n), fw=f"{n:08X}", image_sha=mi_sha(make_image("121D", n)))
                for n in NEW_FIRMWARE
            ),
        ]
    )
    split, _ = build_split(
        manufacturer_id="121D",
        bit_length=2,
        signers=[factory.mfr_signers["121D"]],
        library=library_of(factory),
        now=factory.tick(),
    )
    assert factory.ingest(split, "split").status == "accepted"
    first = publish_with_site(factory)
    assert first.hinted is None and not first.result.appended
    lodge(factory, 7)
    second = publish_with_site(factory)
    assert second.hinted == 1 and second.result.appended
    assert (factory.repo.path / "cache" / STAMPS_NAME).is_file()
    return factory


def test_a_flat_append_gives_the_full_build_bytes(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = StampCount(monkeypatch)
    lodge(built, 8)

    site = publish_with_site(built)

    assert site.hinted == 1 and site.result.appended
    assert site.memo is not None and site.memo.recalled >= 4  # 121D, 3 of its bins, 3F01
    assert site.memo.verified == 1  # the one bin the new image changed
    assert count.skipped >= 4  # unchanged role files were not read again
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_the_flat_and_the_full_walk_give_the_same_site(
    built: LibraryFactory, tmp_path: Path
) -> None:
    lodge(built, 8)
    flat = publish_with_site(built)
    flat_bytes = tree(flat.site_dir)
    lodge(built, 9)
    full = publish_with_site(built, flat=False)

    assert full.result.appended and flat.result.appended
    assert_full_build_bytes(built, full.site_dir, tmp_path)
    assert flat_bytes != tree(full.site_dir)  # the second publish did change the site


def _snapshot_meta(factory: LibraryFactory) -> dict[str, dict[str, object]]:
    metadata = factory.out / "metadata"
    timestamp = json.loads((metadata / "timestamp.json").read_bytes())
    version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads((metadata / f"{version}.snapshot.json").read_bytes())
    meta: dict[str, dict[str, object]] = snapshot["signed"]["meta"]
    return meta


def _role_file(factory: LibraryFactory, role: str) -> Path:
    version = _snapshot_meta(factory)[f"{role}.json"]["version"]
    return factory.out / "metadata" / f"{version}.{role}.json"


def _flip_in_place(path: Path) -> bytes:
    """One byte changed, the length kept, written into the same file (same inode)."""
    data = path.read_bytes()
    at = data.index(b'"expires"') + 12  # a digit of the role's expiry
    tampered = data[:at] + (b"1" if data[at : at + 1] != b"1" else b"2") + data[at + 1 :]
    assert len(tampered) == len(data) and tampered != data
    with path.open("r+b") as f:
        f.write(tampered)
    return tampered


def test_a_role_file_tampered_in_place_fails_the_publish(
    built: LibraryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mfr-3F01 is stamped (unchanged since the fixture's publishes): an edit of the same length
    in place changes its times, so the walk reads it again, and the pin refuses it."""
    count = StampCount(monkeypatch)
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    site_dir = built.out / "site"
    site_before = tree(site_dir)
    basis_before = (site_dir / BASIS_NAME).read_bytes()
    role = _role_file(built, "mfr-3F01")
    _flip_in_place(role)

    with pytest.raises(VerificationError) as raised:
        build_published_site(
            built.out,
            built.root_bytes,
            now=built.now,
            hint=publish_hint(built.repo, before),
            memo=memo_of(built),
        )

    message = str(raised.value)
    assert f"metadata/{role.name}: does not match the length/hash snapshot records" in message
    assert count.skipped >= 3  # the other role files' stamps held: only the tampered one moved
    assert tree(site_dir) == site_before  # the site was not updated
    assert (site_dir / BASIS_NAME).read_bytes() == basis_before


def test_cfl_repo_publish_refuses_a_tampered_role_file(built: LibraryFactory) -> None:
    lodge(built, 8)
    site_before = tree(built.out / "site")
    role = _role_file(built, "mfr-3F01")
    _flip_in_place(role)

    done = subprocess.run(  # the console entry point: where errors become exit codes
        [str(CFL_REPO), "--repo", str(built.repo.path), "publish"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 1, done.stderr
    assert f"{role.name}: does not match the length/hash snapshot records" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(built.out / "site") == site_before


def test_a_forged_memo_entry_cannot_make_a_tampered_role_pass(built: LibraryFactory) -> None:
    """The memo entry of the genuine bytes copied under the key of the tampered bytes, and no
    stamps: the walk still hashes the file against the snapshot's pin first."""
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    role = _role_file(built, "mfr-3F01")
    genuine = role.read_bytes()
    tampered = _flip_in_place(role)
    memo = memo_of(built)
    targets = library_of_targets(built)
    delegation = targets.signed.delegations
    assert delegation is not None and delegation.roles is not None
    real = delegation.roles["mfr-3F01"]
    real_key = memo_key("mfr-3F01", real, targets.signed, real, _sha(genuine))
    forged_key = memo_key("mfr-3F01", real, targets.signed, real, _sha(tampered))
    entry = (memo.directory / f"{real_key}.json").read_bytes()
    forged = entry.replace(real_key.encode(), forged_key.encode())
    (memo.directory / f"{forged_key}.json").write_bytes(forged)
    (built.repo.path / "cache" / STAMPS_NAME).unlink()

    with pytest.raises(VerificationError, match="does not match the length/hash snapshot"):
        build_published_site(
            built.out,
            built.root_bytes,
            now=built.now,
            hint=publish_hint(built.repo, before),
            memo=memo_of(built),
        )


def test_a_header_that_lies_costs_time_never_bytes(built: LibraryFactory, tmp_path: Path) -> None:
    """Every memo header claims one image more than its body holds: the site's count check
    refuses the hint, decoding a body finds it does not match its header, and the step walks
    again in full."""
    lodge(built, 8)
    memo = memo_of(built)
    for path in memo.directory.iterdir():
        header_line, body = path.read_bytes().split(b"\n", 1)
        header = json.loads(header_line)
        header["summary"]["images"] += 1
        path.write_bytes(json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)

    site = publish_with_site(built)

    assert_full_build_bytes(built, site.site_dir, tmp_path)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_of_targets(factory: LibraryFactory) -> Metadata[Targets]:
    version = _snapshot_meta(factory)["targets.json"]["version"]
    path = factory.out / "metadata" / f"{version}.targets.json"
    return Metadata[Targets].from_bytes(path.read_bytes())


def test_stamps_without_a_memo_read_the_files_again(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memo deleted, the stamps kept: a stamped file the memo no longer knows is read,
    checked against its pin and verified in full."""
    count = StampCount(monkeypatch)
    shutil.rmtree(memo_of(built).directory)
    lodge(built, 8)

    site = publish_with_site(built)

    assert count.skipped >= 4  # the stamps held ...
    assert site.memo is not None and site.memo.recalled == 0  # ... but nothing was recalled
    assert site.result.appended
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_damaged_stamps_are_no_stamps(built: LibraryFactory, tmp_path: Path) -> None:
    (built.repo.path / "cache" / STAMPS_NAME).write_bytes(b'{"magic": "cfl-verify-stamps", ')
    lodge(built, 8)

    site = publish_with_site(built)

    assert site.result.appended
    assert_full_build_bytes(built, site.site_dir, tmp_path)
    record = json.loads((built.repo.path / "cache" / STAMPS_NAME).read_bytes())
    assert record["files"]  # written afresh by the clean walk


# --- the CPL, stamped like the role files (repo_tool/verify/stamped_cpl.py) ---------------------


def _cpl_file(factory: LibraryFactory) -> Path:
    """The CPL the published tree signs now (earlier imports' files stay beside it)."""
    signed = b"".join(
        _role_file(factory, name.removesuffix(".json")).read_bytes()
        for name in _snapshot_meta(factory)
    )
    (path,) = (
        path
        for path in (factory.out / "targets" / "cfl").glob("*.cpl.json")
        if path.name.split(".")[0].encode() in signed
    )
    return path


class CplReads:
    """How many times the website step read the published CPL whole."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from repo_tool.verify import stamped_cpl

        self.whole = 0
        original = stamped_cpl.select_entries

        def counting(data: bytes, entry_ids: object) -> object:
            self.whole += 1
            return original(data, entry_ids)  # type: ignore[arg-type]

        monkeypatch.setattr(stamped_cpl, "select_entries", counting)


def test_an_unchanged_cpl_is_not_read_again(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixture's publishes stamped the CPL: the next one reads only its tail, and the site
    is still the full build's (it shows the CPL's source and import time)."""
    reads = CplReads(monkeypatch)
    lodge(built, 8)

    site = publish_with_site(built)

    assert reads.whole == 0
    record = json.loads((built.repo.path / "cache" / STAMPS_NAME).read_bytes())
    assert f"targets/cfl/{_cpl_file(built).name}" in record["files"]
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_a_cpl_tampered_in_place_fails_the_publish(
    built: LibraryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte of an entry changed, the length and the envelope kept: the stamp no longer holds
    (the change time moved), so the CPL is read whole, and its signed hash refuses it."""
    reads = CplReads(monkeypatch)
    lodge(built, 8)
    before = tree_state(built.out)
    built.publish()
    cpl = _cpl_file(built)
    data = cpl.read_bytes()
    at = data.index(b'"CPL-') + 5
    with cpl.open("r+b") as f:
        f.seek(at)
        f.write(b"X" if data[at : at + 1] != b"X" else b"Y")

    with pytest.raises(VerificationError, match=f"{cpl.name}: found {len(data)} bytes hashing"):
        build_published_site(
            built.out,
            built.root_bytes,
            now=built.now,
            hint=publish_hint(built.repo, before),
            memo=memo_of(built),
        )
    assert reads.whole == 0  # refused by the hash check, before any parse


def test_a_cpl_swapped_for_a_link_is_not_vouched_for_by_its_stamp(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes behind a symbolic link: not the stamped file, so the walk reads it as
    without stamps, and the tree reader refuses links (a link could point anywhere)."""
    lodge(built, 8)  # a deposit reads the published tree too: swap after it
    cpl = _cpl_file(built)
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copyfile(cpl, elsewhere)
    cpl.unlink()
    cpl.symlink_to(elsewhere)

    with pytest.raises(VerificationError, match=f"targets/cfl/{cpl.name}: missing"):
        publish_with_site(built)


def test_a_stamped_cpl_whose_tail_holds_no_envelope_is_read_whole(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repo_tool.verify import stamped_cpl

    reads = CplReads(monkeypatch)
    monkeypatch.setattr(stamped_cpl, "TAIL_OCTETS", 8)  # ends inside the envelope
    lodge(built, 8)

    site = publish_with_site(built)

    assert reads.whole == 1
    assert_full_build_bytes(built, site.site_dir, tmp_path)


# --- the memo's header index (repo_tool/verify/memo_index.py) -----------------------------------


class HeaderReads:
    """Which memo entries' header lines the walks read from their files."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from repo_tool.verify import memo as memo_module

        self.roles: list[str] = []
        original = memo_module.read_header

        def counting(data: bytes, key: str, name: str) -> object:
            self.roles.append(name)
            return original(data, key, name)

        monkeypatch.setattr(memo_module, "read_header", counting)


def test_a_flat_walk_takes_the_headers_from_the_index(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = HeaderReads(monkeypatch)
    lodge(built, 8)

    site = publish_with_site(built)

    assert site.memo is not None and site.memo.recalled >= 4
    assert reads.roles == []  # every recalled role's summary came from the one index file
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_an_entry_changed_since_it_was_indexed_is_read_from_its_file(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One entry's header edited to claim an image more: the index no longer vouches for that
    file, so its own (lying) header is read, the site's count check refuses the hint, and the
    step walks again in full: the bytes are still the full build's."""
    memo = memo_of(built)
    # mfr-3F01's entry: the deposit below changes a bin of 121D, whose old entry is not read
    path, header_line, body = next(
        (p, *p.read_bytes().split(b"\n", 1))
        for p in sorted(memo.directory.glob("*.json"))
        if json.loads(p.read_bytes().split(b"\n", 1)[0])["role"] == "mfr-3F01"
    )
    header = json.loads(header_line)
    header["summary"]["images"] += 1
    path.write_bytes(json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)
    reads = HeaderReads(monkeypatch)
    lodge(built, 8)

    site = publish_with_site(built)

    assert header["role"] in reads.roles
    assert_full_build_bytes(built, site.site_dir, tmp_path)


def test_a_damaged_index_is_no_index(
    built: LibraryFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repo_tool.verify.memo_index import INDEX_NAME

    index = memo_of(built).directory.parent / INDEX_NAME
    index.write_bytes(b'{"magic":"cfl-verify-memo-headers","format":1,"entries":{"x":[1,')
    reads = HeaderReads(monkeypatch)
    lodge(built, 8)

    site = publish_with_site(built)

    assert len(reads.roles) >= 4  # the headers were read from their files
    assert_full_build_bytes(built, site.site_dir, tmp_path)
    assert json.loads(index.read_bytes())["entries"]  # written afresh by the clean walk
