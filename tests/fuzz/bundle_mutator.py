"""A seeded mutator of submission bundles: input number N of seed S is always the same bytes.

No coverage feedback: every input is one of the valid seeds (tests/fuzz/bundle_corpus.py) put
through a few mutations drawn from a ``random.Random`` seeded with ``(S, N)`` alone, so any one
input is regenerated without replaying the ones before it, and a finding is its seed and number.

Four families, drawn in proportion to what the parser has to survive:

- ``bytes``: bit flips, interesting bytes, random overwrites, insertions, deletions, repeated
  ranges and truncation of the whole archive, plus integer fields of the ZIP local headers, the
  central directory and its end record set to edge values (0, 0xFFFF, 0xFFFFFFFF, the file's
  length, one off the real value);
- ``json``: one node of a JSON member (mostly the manifest, which the parser reads field by
  field) replaced by a hostile value or raw JSON text: another type (``"kind": []``), huge or
  non-finite numbers, digit strings past Python's int limit, nesting past the recursion limit,
  lone surrogates, NUL, right-to-left marks, duplicate keys; or the key dropped, or one added;
- ``text``: a JSON member's text broken below the JSON level: truncated, a BOM, UTF-16, invalid
  UTF-8, bytes flipped;
- ``members``: ZIP member games: dropped, doubled, renamed (case, ``./``, ``../``, absolute,
  backslashes, look-alike Unicode, valid and invalid ``bins/`` names), unknown or misplaced
  members added, deflate/bzip2/lzma instead of stored, a small declared size over a member that
  inflates to megabytes, the encryption and data-descriptor flags, ZIP64 extras, reordering, a
  long archive comment, junk before or after the archive, a bundle nested in a bundle.

A structural mutation is followed by byte mutations a third of the time, so the byte family also
hits the archives only the structural ones can make.
"""

from __future__ import annotations

import io
import json
import random
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from repo_tool.intake.bundle import (
    ADVISORY,
    ADVISORY_DETAIL,
    IMAGE,
    MANIFEST,
    RELEASE_NOTES,
    RELEASE_NOTES_JWE,
    ROLE,
)

# Reserved for the splice of raw JSON text into a serialised document (see `_serialise`).
_HOLE = "\u0000cfl-fuzz-hole\u0000"
_SIGNATURES = (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
# (offset, width) of every integer field after each header's signature (APPNOTE 4.3.7, 4.3.12,
# 4.3.16): versions, flags, method, times, CRC, sizes, name/extra/comment lengths, disk numbers,
# attributes, offsets, entry counts.
_FIELDS = {
    b"PK\x03\x04": ((4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)),
    b"PK\x01\x02": (
        (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2), (16, 4), (20, 4), (24, 4), (28, 2),
        (30, 2), (32, 2), (34, 2), (36, 2), (38, 4), (42, 4),
    ),
    b"PK\x05\x06": ((4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)),
    b"PK\x06\x06": ((4, 8), (12, 2), (14, 2), (16, 4), (20, 4), (24, 8), (32, 8), (40, 8), (48, 8)),
    b"PK\x06\x07": ((4, 4), (8, 8), (16, 4)),
}  # fmt: skip
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x5B, 0x2C, 0x3A)
# Names a manufacturer's tool, or an attacker, might put in the archive.
_HOSTILE_NAMES = (
    "CFL-BUNDLE.JSON",
    "./cfl-bundle.json",
    "/cfl-bundle.json",
    "../cfl-bundle.json",
    "cfl-bundle.json/",
    "cfl-bundle.json ",
    "cfl\\bundle.json",
    "cfl‐bundle.json",  # a Unicode hyphen
    "ｃfl-bundle.json",  # a full-width letter
    "image.ota\u202e",
    "role.json.",
    "bins/",
    "bins/mfr-121D-bin-0.json",
    "bins/mfr-121D-bin-fff.json",
    "bins/mfr-121D-bin-10000.json",
    "bins/mfr-121d-bin-0.json",
    "bins/mfr-3F01-bin-0.json",
    "bins/../role.json",
    "bins\\mfr-121D-bin-0.json",
    "bins/mfr-121D-bin-0.json/x",
    "x" * 300,
    "y" * 5000,
    "role.json\nerror: forged line",
    "role.json\r",
    "é" * 200,
    RELEASE_NOTES,
    RELEASE_NOTES_JWE,
    ADVISORY,
    ADVISORY_DETAIL,
    IMAGE,
    ROLE,
    MANIFEST,
)
# Raw JSON text no ``json.dumps`` would write, spliced in where a value goes.
_RAW_VALUES = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-0",
    "1" * 4301,  # past int's default digit limit: json.loads raises ValueError
    "9" * 5000 + ".5",
    '"\\ud800"',  # a lone surrogate: a str that cannot be encoded back
    '"\\udfff\\ud800"',
    '"\\u0000"',
    '"\\x41"',  # an invalid escape
    '"\x01raw control"',
    "[" * 100_000 + "]" * 100_000,  # past the recursion limit
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    "[" * 900 + "]" * 900,
    '{"kind": "deposit", "kind": "advisory"}',
    "tru",
    "",
    "[1,]",
    "01",
)
_HOSTILE_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    2**31,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    1.5,
    -0.0,
    1e308,
    "",
    " ",
    "deposit",
    "renewal",
    "split-bins",
    "advisory",
    "DEPOSIT",
    "121D",
    "121d",
    "3F01",
    "mfr-121D",
    "mfr-121D-bin-0",
    "mfr-121D-bin-",
    "mfr-3F01-bin-1",
    "security",
    "compliance",
    "CPL-0003",
    "2026-02-30T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "../../etc/passwd",
    "121D/*",
    "\u202e121D",
    "\x00",
    "１２１Ｄ",
    "ß",
    "İ",  # upper() and lower() change its length
    "ﬀ",
    "x" * 10_000,
    [],
    {},
    [None],
    [[]],
    [""],
    ["CPL-0003", "CPL-0003"],
    [1],
    {"": None},
    {"cpl_entries": "CPL-0003"},
)


@dataclass(frozen=True)
class Seed:
    """One valid bundle, and its members as the mutator edits them."""

    name: str
    data: bytes
    members: tuple[tuple[str, bytes], ...]
    # JSON members decoded once, so a JSON mutation does not parse the member every time.
    documents: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, name: str, data: bytes) -> Seed:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = tuple((info.filename, archive.read(info)) for info in archive.infolist())
        documents = tuple((n, json.loads(b)) for n, b in members if n.endswith(".json"))
        return cls(name, data, members, documents)


@dataclass(frozen=True)
class Mutant:
    """One input: the bytes, where they came from, and what was done to them."""

    data: bytes
    seed: str
    steps: tuple[str, ...]


def zipped(
    members: Sequence[tuple[str, bytes]],
    *,
    compression: dict[str, int] | None = None,
    flags: dict[str, int] | None = None,
    zip64: Sequence[str] = (),
    comment: bytes = b"",
) -> bytes:
    """An archive of ``members`` in order; a name may repeat (an attack the parser must refuse)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on a duplicate name: the point here
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, content in members:
                info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
                info.compress_type = (compression or {}).get(name, zipfile.ZIP_STORED)
                info.flag_bits |= (flags or {}).get(name, 0)
                with archive.open(info, "w", force_zip64=name in zip64) as handle:
                    handle.write(content)
            archive.comment = comment
    return buffer.getvalue()


class Mutator:
    """Inputs for ``parse_bundle``, drawn from the seeds by a seeded generator."""

    def __init__(self, corpus: dict[str, bytes]) -> None:
        if not corpus:
            raise ValueError("corpus: found no seed, expected at least one valid bundle")
        # In name order: the same corpus gives the same inputs however it was loaded.
        self.seeds = tuple(Seed.of(name, corpus[name]) for name in sorted(corpus))
        self._rng = random.Random()
        self._bomb: bytes | None = None

    def mutant(self, seed: int, index: int) -> Mutant:
        """Input number ``index`` of run ``seed``: the same bytes on every call, in any process."""
        rng = self._rng
        rng.seed(seed * 2**40 + index)
        source = rng.choice(self.seeds)
        steps: list[str] = []
        roll = rng.random()
        if roll < 0.30:
            data = source.data
            structural = False
        elif roll < 0.70:
            data = self._json(rng, source, steps)
            structural = True
        elif roll < 0.80:
            data = self._text(rng, source, steps)
            structural = True
        else:
            data = self._members(rng, source, steps)
            structural = True
        if not structural or rng.random() < 0.33:
            data = self._bytes(rng, data, steps)
        return Mutant(data, source.name, tuple(steps))

    # ------------------------------------------------------------------------------- bytes

    def _bytes(self, rng: random.Random, data: bytes, steps: list[str]) -> bytes:
        out = bytearray(data)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            op = rng.random()
            if not out:
                out += rng.randbytes(rng.randrange(1, 64))
                steps.append("bytes: random file")
            elif op < 0.35:
                self._header_field(rng, out, steps)
            elif op < 0.50:
                at = rng.randrange(len(out))
                out[at] ^= 1 << rng.randrange(8)
                steps.append(f"bytes: flip a bit at {at}")
            elif op < 0.60:
                at = rng.randrange(len(out))
                out[at] = rng.choice(_INTERESTING_BYTES)
                steps.append(f"bytes: set {at} to {out[at]:#x}")
            elif op < 0.70:
                at, size = rng.randrange(len(out)), rng.randrange(1, 17)
                out[at : at + size] = rng.randbytes(size)
                steps.append(f"bytes: overwrite {size} at {at}")
            elif op < 0.78:
                at, size = rng.randrange(len(out) + 1), rng.randrange(1, 65)
                out[at:at] = rng.randbytes(size)
                steps.append(f"bytes: insert {size} at {at}")
            elif op < 0.86:
                at, size = rng.randrange(len(out)), rng.randrange(1, 257)
                del out[at : at + size]
                steps.append(f"bytes: delete {size} at {at}")
            elif op < 0.92:
                at, size = rng.randrange(len(out)), rng.randrange(1, 4097)
                out[at:at] = out[at : at + size]
                steps.append(f"bytes: repeat {size} at {at}")
            else:
                at = rng.randrange(len(out))
                del out[at:]
                steps.append(f"bytes: truncate at {at}")
        return bytes(out)

    def _header_field(self, rng: random.Random, out: bytearray, steps: list[str]) -> None:
        """One integer field of one ZIP header (local, central, end records) set to an edge value."""
        signature = rng.choice(_SIGNATURES)
        places = []
        at = out.find(signature)
        while at >= 0:
            places.append(at)
            at = out.find(signature, at + 1)
        if not places:
            at = rng.randrange(len(out))
            out[at] ^= 0xFF
            steps.append(f"bytes: no {signature!r} header, invert {at}")
            return
        start = rng.choice(places)
        offset, width = rng.choice(_FIELDS[signature])
        where = start + offset
        if where + width > len(out):
            return
        old = int.from_bytes(out[where : where + width], "little")
        top = (1 << (8 * width)) - 1
        value = rng.choice(
            (0, 1, 2, old - 1, old + 1, old * 2, top, top >> 1, (top >> 1) + 1, len(out),
             len(out) + 1, start, rng.randrange(top + 1), 0x0800, 0x0008, 0x0001, 8, 12, 14, 99)
        ) & top  # fmt: skip
        out[where : where + width] = value.to_bytes(width, "little")
        steps.append(f"zip: {signature[2:4].hex()} header at {start} field +{offset} = {value:#x}")

    # -------------------------------------------------------------------------------- json

    def _json(self, rng: random.Random, source: Seed, steps: list[str]) -> bytes:
        documents = dict(source.documents)
        # The parser reads the manifest field by field; other JSON members it only sizes.
        name = MANIFEST if rng.random() < 0.75 else rng.choice(list(documents))
        document = documents[name]
        raw: str | None = None
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            paths = _paths(document)
            path = rng.choice(paths)
            op = rng.random()
            label = "/".join(map(str, path)) or "(root)"
            if op < 0.12 and path:
                document = _edit(document, path, None, delete=True)
                steps.append(f"json: {name}: drop {label}")
            elif op < 0.22:
                raw = rng.choice(_RAW_VALUES)
                document = _edit(document, path, _HOLE, delete=False)
                steps.append(f"json: {name}: {label} <- raw {_clip(raw)}")
                break  # one hole per document
            elif op < 0.32:
                key = rng.choice(("kind", "role", "target", "declaration", "x", "", "__proto__"))
                document = _edit(document, (*path, key), rng.choice(_HOSTILE_VALUES), add=True)
                steps.append(f"json: {name}: add {key!r} under {label}")
            elif op < 0.45:
                value = _swap_type(rng, _get(document, path))
                document = _edit(document, path, value, delete=False)
                steps.append(f"json: {name}: {label} <- {_clip(repr(value))}")
            elif op < 0.52:
                value = _get(document, rng.choice(paths))
                document = _edit(document, path, value, delete=False)
                steps.append(f"json: {name}: {label} <- another node")
            else:
                value = rng.choice(_HOSTILE_VALUES)
                document = _edit(document, path, value, delete=False)
                steps.append(f"json: {name}: {label} <- {_clip(repr(value))}")
        content = _serialise(rng, document, raw)
        return zipped([(n, content if n == name else b) for n, b in source.members])

    def _text(self, rng: random.Random, source: Seed, steps: list[str]) -> bytes:
        names = [n for n, _ in source.members if n.endswith(".json")]
        name = MANIFEST if rng.random() < 0.7 else rng.choice(names)
        content = dict(source.members)[name]
        op = rng.randrange(6)
        if op == 0:
            content = content[: rng.randrange(len(content))]
            steps.append(f"text: {name}: truncated to {len(content)}")
        elif op == 1:
            content = b"\xef\xbb\xbf" + content
            steps.append(f"text: {name}: a UTF-8 BOM")
        elif op == 2:
            content = content.decode().encode(rng.choice(("utf-16", "utf-16-be", "utf-32")))
            steps.append(f"text: {name}: UTF-16/32")
        elif op == 3:
            at = rng.randrange(len(content))
            content = (
                content[:at]
                + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"))
                + content[at:]
            )
            steps.append(f"text: {name}: invalid UTF-8 at {at}")
        elif op == 4:
            content = self._bytes(rng, content, steps)
            steps.append(f"text: {name}: bytes above")
        else:
            content = content + content
            steps.append(f"text: {name}: two documents")
        return zipped([(n, content if n == name else b) for n, b in source.members])

    # ----------------------------------------------------------------------------- members

    def _members(self, rng: random.Random, source: Seed, steps: list[str]) -> bytes:
        members = list(source.members)
        compression: dict[str, int] = {}
        flags: dict[str, int] = {}
        zip64: list[str] = []
        comment = b""
        op = rng.randrange(13)
        index = rng.randrange(len(members))
        name, content = members[index]
        if op == 0:
            del members[index]
            steps.append(f"members: drop {name}")
        elif op == 1:
            members.insert(rng.randrange(len(members) + 1), (name, rng.choice((content, b"{}"))))
            steps.append(f"members: {name} twice")
        elif op == 2:
            new = rng.choice(_HOSTILE_NAMES)
            members[index] = (new, content)
            steps.append(f"members: rename {name} to {_clip(new)}")
        elif op == 3:
            new = rng.choice(_HOSTILE_NAMES)
            extra = rng.choice((b"", b"{}", b"[]", rng.randbytes(rng.randrange(64)), source.data))
            members.insert(rng.randrange(len(members) + 1), (new, extra))
            steps.append(f"members: add {_clip(new)} ({len(extra)} bytes)")
        elif op == 4:
            method = rng.choice((zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
            compression[name] = method
            steps.append(f"members: {name} compressed ({method})")
        elif op == 5:
            return self._bomb_member(rng, members, index, steps)
        elif op == 6:
            flags[name] = rng.choice((0x1, 0x8, 0x40, 0x800, 0x2000))
            steps.append(f"members: {name} flag {flags[name]:#x}")
        elif op == 7:
            zip64.append(name)
            steps.append(f"members: {name} with a ZIP64 extra")
        elif op == 8:
            rng.shuffle(members)
            steps.append("members: shuffled")
        elif op == 9:
            comment = rng.randbytes(rng.choice((1, 1000, 65535)))
            steps.append(f"members: a {len(comment)}-byte comment")
        elif op == 10:
            junk = rng.randbytes(rng.randrange(1, 200))
            data = zipped(members)
            steps.append(f"members: {len(junk)} bytes of junk around")
            return junk + data if rng.random() < 0.5 else data + junk
        elif op == 11:
            members[index] = (name, rng.choice(self.seeds).data)
            steps.append(f"members: {name} holds a whole bundle")
        else:
            members = [(n, b) for n, b in members if n == MANIFEST] * rng.choice((0, 1))
            steps.append("members: only the manifest, or none")
        return zipped(members, compression=compression, flags=flags, zip64=zip64, comment=comment)

    def _bomb_member(
        self, rng: random.Random, members: list[tuple[str, bytes]], index: int, steps: list[str]
    ) -> bytes:
        """A deflated member of 80 MiB of zeros (78 KiB compressed) whose headers claim a small size."""
        if self._bomb is None:  # made once: compressing 80 MiB takes a fraction of a second
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            self._bomb = packer.compress(bytes(80 * 1024 * 1024)) + packer.flush()
        name = members[index][0]
        members[index] = (name, b"\0" * 16)
        data = bytearray(zipped(members, compression={name: zipfile.ZIP_DEFLATED}))
        claimed = rng.choice((0, 16, 1000, 999_999))
        # Put the bomb's stream in place of the 16 zeros' stream, then make both headers agree on
        # its compressed size and claim ``claimed`` uncompressed bytes (a lying but consistent ZIP).
        return _swap_stream(bytes(data), name, self._bomb, claimed, steps)


def _swap_stream(data: bytes, name: str, stream: bytes, claimed: int, steps: list[str]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    target = next(i for i in infos if i.filename == name)
    local = target.header_offset
    name_length, extra_length = struct.unpack_from("<HH", data, local + 26)
    start = local + 30 + name_length + extra_length
    out = bytearray(data[:start] + stream + data[start + target.compress_size :])
    shift = len(stream) - target.compress_size
    struct.pack_into("<II", out, local + 18, len(stream), claimed)
    central = out.find(b"PK\x01\x02", start + len(stream))
    while central >= 0:
        offset = struct.unpack_from("<I", out, central + 42)[0]
        if offset == local:
            struct.pack_into("<II", out, central + 20, len(stream), claimed)
        elif offset > local:
            struct.pack_into("<I", out, central + 42, offset + shift)
        central = out.find(b"PK\x01\x02", central + 4)
    end = out.rfind(b"PK\x05\x06")
    if end >= 0:
        directory = struct.unpack_from("<I", out, end + 16)[0]
        struct.pack_into("<I", out, end + 16, directory + shift)
    steps.append(f"members: {name} inflates to {80 * 1024 * 1024} bytes, claims {claimed}")
    return bytes(out)


# ------------------------------------------------------------------------------ JSON helpers


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every node's path (keys and indices), the root included; long lists are sampled by their
    first and last items so a role with many targets does not drown the manifest's fields."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index in sorted({0, len(node) - 1}) if node else ():
            found.extend(_paths(node[index], (*prefix, index)))
    return found


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _edit(
    node: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False, add: bool = False
) -> Any:
    """A copy of ``node`` with the node at ``path`` replaced, deleted, or (``add``) created as a key
    of the object at ``path[:-1]`` (nothing happens when that is not an object)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        copy = dict(node)
        if not rest and (delete or add):
            if delete:
                copy.pop(head, None)
            else:
                copy[head] = value
            return copy
        if head not in copy:
            return node
        copy[head] = _edit(copy[head], rest, value, delete=delete, add=add)
        return copy
    if isinstance(node, list) and isinstance(head, int) and head < len(node):
        items = list(node)
        if not rest and delete:
            items.pop(head)
            return items
        items[head] = _edit(items[head], rest, value, delete=delete, add=add)
        return items
    return node


def _swap_type(rng: random.Random, value: Any) -> Any:
    """The same content in another type: the wrong shape a careless tool writes."""
    swaps: list[Callable[[Any], Any]] = [
        lambda v: [v],
        lambda v: {"value": v},
        lambda v: str(v) if not isinstance(v, str) else [v],
        lambda v: len(v) if isinstance(v, (str, list, dict)) else str(v),
        lambda v: list(v.values()) if isinstance(v, dict) else v,
        lambda v: dict.fromkeys(v, True) if isinstance(v, list) and all(isinstance(x, str) for x in v) else None,
        lambda v: v.upper() + "\u0301" if isinstance(v, str) else -v if isinstance(v, int) else v,
    ]  # fmt: skip
    return rng.choice(swaps)(value)


def _serialise(rng: random.Random, document: Any, raw: str | None) -> bytes:
    """JSON text of ``document`` in a random style, with ``raw`` spliced in place of the hole."""
    text = json.dumps(
        document,
        indent=rng.choice((None, 2)),
        ensure_ascii=rng.random() < 0.5,
        sort_keys=rng.random() < 0.5,
    )
    if raw is not None:
        text = text.replace(json.dumps(_HOLE, ensure_ascii=True), raw, 1)
        text = text.replace(json.dumps(_HOLE, ensure_ascii=False), raw, 1)
    return text.encode("utf-8", "surrogatepass")


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)})"
