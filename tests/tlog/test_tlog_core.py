"""The pure transparency-log core against published vectors.

Vectors cited:
- RFC 6962 Merkle roots, inclusion paths and consistency proofs for the eight-leaf tree used by every
  CT implementation: transparency-dev/merkle ``testonly/constants.go`` (LeafInputs, RootHashes,
  InclusionProofs, ConsistencyProofs), originally google/certificate-transparency's
  ``merkle_tree_test.cc``.
- The signed-note example (vkey ``example.com/foo+530d903a+...`` and its note):
  C2SP ``signed-note.md``, section "Verifier keys / Example".
- The tile index encoding (1234067 -> ``x001/x234/067``) and the tiles of a tree of 70,000 entries:
  C2SP ``tlog-tiles.md``, sections "Merkle Tree" and "Partial Tiles".
- The checkpoint text ``example.com/behind-the-sofa / 20852163 / CsUY...``: C2SP ``tlog-checkpoint.md``
  and ``tlog-cosignature.md``.
"""

from __future__ import annotations

import base64
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from metadata_templates.errors import VerificationError
from metadata_templates.tlog import merkle, note
from metadata_templates.tlog.append import append_entries
from metadata_templates.tlog.checkpoint import Checkpoint
from metadata_templates.tlog.proofs import TreeHashes
from metadata_templates.tlog.tiles import (
    ENTRIES_LEVEL,
    TileId,
    decode_bundle,
    encode_bundle,
    encode_index,
    entries_path,
    tile_path,
    tiles_added,
    tiles_for_size,
)

LEAVES = [
    bytes.fromhex(h)
    for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = {  # (index, size) -> path
    (0, 1): [],
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CONSISTENCY = {  # (old, new) -> proof
    (1, 1): [],
    (1, 8): INCLUSION[(0, 8)],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def _tiled(entries: list[bytes], *, batch: int = 7) -> tuple[dict[TileId, bytes], TreeHashes]:
    """A log built by appending ``entries`` in batches, as the repository does."""
    store: dict[TileId, bytes] = {}
    size = 0
    for start in range(0, len(entries), batch):
        result = append_entries(size, store.__getitem__, entries[start : start + batch])
        store.update(result.tiles)
        size = result.size
    return store, TreeHashes(size, store.__getitem__)


def test_rfc6962_roots_from_leaf_hashes_and_from_tiles() -> None:
    assert merkle.root_from_leaf_hashes([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    for size in range(1, 9):
        hashes = [merkle.leaf_hash(e) for e in LEAVES[:size]]
        assert merkle.root_from_leaf_hashes(hashes).hex() == ROOTS[size - 1]
        assert _tiled(LEAVES[:size], batch=3)[1].root().hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size"), list(INCLUSION), ids=str)
def test_rfc6962_inclusion_vectors(index: int, size: int) -> None:
    _, tree = _tiled(LEAVES[:size])
    proof = tree.inclusion_proof(index)
    assert [p.hex() for p in proof] == INCLUSION[(index, size)]
    merkle.verify_inclusion(
        merkle.leaf_hash(LEAVES[index]), index, size, proof, bytes.fromhex(ROOTS[size - 1])
    )


@pytest.mark.parametrize(("old", "new"), list(CONSISTENCY), ids=str)
def test_rfc6962_consistency_vectors(old: int, new: int) -> None:
    _, tree = _tiled(LEAVES[:new])
    proof = tree.consistency_proof(old)
    assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
    merkle.verify_consistency(
        old, new, bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1]), proof
    )


def test_every_proof_over_tile_boundaries_verifies_and_tampering_fails() -> None:
    rng = random.Random(6962)
    entries = [rng.randbytes(rng.randrange(0, 40)) for _ in range(70_000 // 100)]
    _, tree = _tiled(entries, batch=97)
    hashes = [merkle.leaf_hash(e) for e in entries]
    assert tree.root() == merkle.root_from_leaf_hashes(hashes)
    new = tree.size
    for _ in range(60):
        old = rng.randrange(0, new + 1)
        proof = tree.consistency_proof(old)
        old_root = merkle.root_from_leaf_hashes(hashes[:old])
        merkle.verify_consistency(old, new, old_root, tree.root(), proof)
        if proof:
            bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
            with pytest.raises(VerificationError):
                merkle.verify_consistency(old, new, old_root, tree.root(), bad)
        index = rng.randrange(0, new)
        path = tree.inclusion_proof(index)
        merkle.verify_inclusion(hashes[index], index, new, path, tree.root())
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(merkle.leaf_hash(b"forged"), index, new, path, tree.root())


def test_consistency_from_every_old_size_of_a_multi_level_tree() -> None:
    entries = [i.to_bytes(4, "big") for i in range(256 * 256 + 300)]
    _, tree = _tiled(entries, batch=5000)
    hashes = [merkle.leaf_hash(e) for e in entries]
    roots = {}
    for old in (0, 1, 255, 256, 257, 65535, 65536, 65537, 65836):
        roots[old] = merkle.root_from_leaf_hashes(hashes[:old])
        merkle.verify_consistency(
            old, tree.size, roots[old], tree.root(), tree.consistency_proof(old)
        )


def test_a_log_without_an_earlier_entry_is_inconsistent() -> None:
    entries = [f"event {i}".encode() for i in range(40)]
    _, honest = _tiled(entries[:30])
    _, rewritten = _tiled(entries[:12] + entries[13:])  # one event dropped, size 39 > 30
    with pytest.raises(VerificationError, match="does not contain"):
        merkle.verify_consistency(
            30, rewritten.size, honest.root(), rewritten.root(), rewritten.consistency_proof(30)
        )


def test_shrinking_or_forking_at_the_same_size_is_refused() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    with pytest.raises(VerificationError, match="went down"):
        merkle.verify_consistency(5, 4, a, a, [])
    with pytest.raises(VerificationError, match="two different roots"):
        merkle.verify_consistency(4, 4, a, b, [])


def test_c2sp_tile_paths() -> None:
    assert encode_index(1234067) == "x001/x234/067"
    assert encode_index(0) == "000"
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(3, 5, 8) == "tile/3/005.p/8"
    assert entries_path(1000, 1) == "tile/entries/x001/000.p/1"
    assert TileId(ENTRIES_LEVEL, 2, 256).path == "tile/entries/002"


def test_c2sp_tiles_of_a_tree_of_70000() -> None:
    tiles = [t for t in tiles_for_size(70_000) if t.level >= 0]
    level0 = [t for t in tiles if t.level == 0]
    assert sum(t.width == 256 for t in level0) == 273
    assert [t.width for t in level0 if t.width != 256] == [112]
    assert [(t.level, t.width) for t in tiles if t.level > 0] == [(1, 256), (1, 17), (2, 1)]
    assert [(t.level, t.width) for t in tiles_for_size(256) if t.level >= 0] == [(0, 256), (1, 1)]


def test_tiles_added_are_exactly_the_new_files() -> None:
    old, new = 300, 70_000
    added = set(tiles_added(old, new))
    assert added == set(tiles_for_size(new)) - set(tiles_for_size(old))
    assert set(tiles_added(5, 5)) == set()


def test_entry_bundles_round_trip_and_reject_truncation() -> None:
    data = encode_bundle([b"", b"abc", bytes(300)])
    assert decode_bundle(data, expected=3, where="b") == [b"", b"abc", bytes(300)]
    with pytest.raises(VerificationError, match="declares"):
        decode_bundle(data[:-1], expected=3, where="b")
    with pytest.raises(VerificationError, match="found 3 entries, expected 4"):
        decode_bundle(data, expected=4, where="b")
    with pytest.raises(ValueError, match="65535"):
        encode_bundle([bytes(70_000)])


C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()


def test_c2sp_signed_note_example_verifies() -> None:
    verifier = note.parse_vkey(C2SP_VKEY)
    assert verifier.vkey == C2SP_VKEY
    assert note.open_note(C2SP_NOTE, verifier).text == b"This is an example message.\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (C2SP_NOTE.replace(b"example message", b"example massage"), "does not verify"),
        (C2SP_NOTE.replace(b"\n\n", b"\n"), "no blank line"),
        (C2SP_NOTE.replace("\u2014".encode(), b"-"), "malformed signature line"),
        (b"\xff\xfe\n\n", "not UTF-8"),
    ],
    ids=["altered-text", "no-blank-line", "not-an-em-dash", "not-utf8"],
)
def test_altered_or_malformed_notes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        note.open_note(data, note.parse_vkey(C2SP_VKEY))


def test_a_note_signed_only_by_another_key_is_not_accepted() -> None:
    other = note.NoteSigner("example.com/foo", Ed25519PrivateKey.generate())
    signed = note.sign_note(b"This is an example message.\n", [other])
    with pytest.raises(VerificationError, match="expected one by"):
        note.open_note(signed.to_bytes(), note.parse_vkey(C2SP_VKEY))


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a",
        "example.com/foo+530d903a+AqkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+!!!",
    ],
    ids=["wrong-key-id", "two-parts", "unsupported-type", "not-base64"],
)
def test_bad_vkeys_are_rejected(vkey: str) -> None:
    with pytest.raises(ValueError, match="vkey"):
        note.parse_vkey(vkey)


def test_checkpoint_text_round_trip_and_rejections() -> None:
    text = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.from_text(text)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.to_text() == text
    for bad, message in [
        (text.replace(b"20852163", b"020852163"), "leading zeros"),
        (text.replace(b"CsUY", b"CsU"), "root hash"),
        (b"origin\n1\n", "line"),
    ]:
        with pytest.raises(VerificationError, match=message):
            Checkpoint.from_text(bad)


def test_cosignature_v1_signs_the_header_time_and_checkpoint() -> None:
    text = Checkpoint("example.com/log", 3, bytes(32)).to_text()
    log = note.NoteSigner("example.com/log", Ed25519PrivateKey.generate())
    witness = note.NoteSigner(
        "witness.example/w1", Ed25519PrivateKey.generate(), note.TYPE_COSIGNATURE_V1
    )
    signed = note.sign_note(text, [log])
    cosigned = signed.with_lines(note.sign_note(text, [witness], timestamp=1679315147).signatures)
    parsed = note.parse_note(cosigned.to_bytes())
    assert note.verified_by(parsed, [log.verifier, witness.verifier]) == [
        log.verifier,
        witness.verifier,
    ]
    line = parsed.signatures[1]
    assert note.cosignature_time(line) == 1679315147
    signature = line.signature[8:]
    public = witness.private_key.public_key()
    public.verify(signature, b"cosignature/v1\ntime 1679315147\n" + text)
    assert (
        witness.verifier.vkey.split("+", 2)[2]
        == base64.b64encode(b"\x04" + witness.verifier.public_key).decode()
    )
    # The same cosignature does not verify another checkpoint text.
    other = Checkpoint("example.com/log", 4, bytes(32)).to_text()
    assert not witness.verifier.verifies(other, line.signature)


def test_vkeys_whose_base64_contains_plus_round_trip() -> None:
    for seed in range(64):
        signer = note.NoteSigner(
            "example.com/log", Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        )
        if "+" in signer.verifier.vkey.split("+", 2)[2]:
            assert note.parse_vkey(signer.verifier.vkey) == signer.verifier
            return
    raise AssertionError("no seed produced a '+' in the base64 key")
