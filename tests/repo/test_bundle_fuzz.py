"""A fuzzer over the bundle reader and the gateway: no bytes in a bundle may escape as an exception.

The contract under test: ``parse_bundle`` either returns a ``Bundle`` or raises ``BundleError``
(reported as ``malformed-bundle``); ``check_bundle`` never raises and every rejection carries at
least one code. Inputs are raw bytes, byte-level mutations of a valid bundle, and structure-aware
mutations (one JSON node of the manifest or the role replaced by hostile values, the role then
re-signed with the manufacturer's real key so that the deeper checks run).

Budget: a few examples per strategy in CI (derandomised, so CI is stable). For a long run set
``CFL_FUZZ_EXAMPLES`` (see docs/testing.md), e.g. ``CFL_FUZZ_EXAMPLES=100000``.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from notes_factory import publish_custodian
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Signature

from factory import LibraryFactory, make_entry, make_image, mi_sha
from repo_tool.gateway.check import check_bundle
from repo_tool.gateway.model import GatewayContext
from repo_tool.intake.bundle import IMAGE, MANIFEST, RELEASE_NOTES, ROLE, BundleError, parse_bundle
from repo_tool.ops.ingest import gateway_context

MFR = "121D"
_LONG_RUN = os.environ.get("CFL_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_LONG_RUN) if _LONG_RUN else 12,
    derandomize=not _LONG_RUN,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Target:
    """A valid deposit and everything needed to judge mutations of it."""

    # Not in the repr: hypothesis prints the fixture with every failing example.
    context: GatewayContext = field(repr=False)
    signer: CryptoSigner = field(repr=False)
    members: dict[str, bytes] = field(repr=False)
    data: bytes = field(repr=False)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Target:
    tmp = tmp_path_factory.mktemp("fuzz")
    images = {fw: make_image(MFR, fw) for fw in (2, 3)}
    factory = LibraryFactory(tmp)
    factory.import_cpl(
        [
            make_entry("CPL-0002", fw="00000002", image_sha=mi_sha(images[2])),
            make_entry("CPL-0003", fw="00000003", image_sha=mi_sha(images[3])),
        ]
    )
    factory.add_manufacturer(MFR)
    factory.publish()
    factory.deposit(images[2], ["CPL-0002"])
    publish_custodian(factory)  # so the bundle carries encrypted notes for the fuzzer to mangle
    bundle = factory.submit(images[3], ["CPL-0003"], release_notes=b"notes")
    path = factory.write(bundle, "good")
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    context = gateway_context(factory.repo, factory.tick())
    assert check_bundle(parse_bundle(data), context).ok, "the unmutated bundle must be accepted"
    return Target(context, factory.mfr_signers[MFR], members, data)


def judge(data: bytes, context: GatewayContext) -> None:
    """The property: only BundleError escapes the reader, nothing escapes the gateway."""
    try:
        bundle = parse_bundle(data, source="fuzz.cflb")
    except BundleError as e:
        assert str(e), "a rejection names what is wrong"
        return
    verdict = check_bundle(bundle, context)
    if not verdict.ok:
        assert verdict.codes, "a rejection carries at least one code"
        assert all(f.message for f in verdict.findings)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# Values an attacker would try in place of any JSON node: wrong types, floats (not canonical JSON),
# impossible dates, huge numbers, deep nesting, odd strings.
HOSTILE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(
        [
            "2026-02-30T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "deposit",
            "renewal",
            "../../etc/passwd",
            "121D/*",
            "",
            "ff" * 32,
        ]
    ),
)
HOSTILE_JSON = st.recursive(
    HOSTILE_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every JSON node's path (dict keys and list indices), the root included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any, *, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        copy = dict(node)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(node[head], rest, value, delete=delete)
        return copy
    copy_list = list(node)
    if delete and not rest:
        copy_list.pop(head)
    else:
        copy_list[head] = _replace(node[head], rest, value, delete=delete)
    return copy_list


def _resign(role: Any, signer: CryptoSigner) -> Any:
    """Sign the mutated ``signed`` with the real key when it can be canonicalised (a float cannot)."""
    if not isinstance(role, dict):
        return role
    signed = role.get("signed")
    try:
        payload = encode_canonical(signed).encode()
    except Exception:  # securesystemslib refuses floats and other non-canonical values
        return role
    signature: Signature = signer.sign(payload)
    return {**role, "signatures": [signature.to_dict()]}


@FUZZ
@given(data=st.binary(max_size=2048))
def test_raw_bytes(target: Target, data: bytes) -> None:
    judge(data, target.context)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=4,
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_byte_mutations_of_a_valid_bundle(
    target: Target, edits: list[tuple[int, bytes]], cut: int | None
) -> None:
    data = bytearray(target.data)
    for offset, chunk in edits:
        at = offset % len(data)
        data[at : at + len(chunk)] = chunk
    if cut is not None:
        del data[cut % len(data) :]
    judge(bytes(data), target.context)


@FUZZ
@given(
    member=st.sampled_from([MANIFEST, ROLE]),
    choice=st.data(),
    value=HOSTILE_JSON,
    delete=st.booleans(),
    resign=st.booleans(),
)
def test_json_mutations_of_a_valid_bundle(
    target: Target,
    member: str,
    choice: st.DataObject,
    value: Any,
    delete: bool,
    resign: bool,
) -> None:
    document = json.loads(target.members[member])
    path = choice.draw(st.sampled_from(_paths(document)))
    mutated = _replace(document, path, value, delete=delete and bool(path))
    if member == ROLE and resign:
        mutated = _resign(mutated, target.signer)
    members = dict(target.members)
    members[member] = json.dumps(mutated).encode()
    judge(zipped(members), target.context)


@FUZZ
@given(
    drop=st.sets(st.sampled_from([MANIFEST, IMAGE, ROLE, RELEASE_NOTES])),
    extra=st.dictionaries(
        st.text(
            alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_/", min_size=1, max_size=12
        ).filter(
            lambda name: not name.endswith("/")  # zipfile itself cannot write an empty file name
        ),
        st.binary(max_size=16),
        max_size=2,
    ),
    image=st.one_of(st.none(), st.binary(max_size=256)),
)
def test_member_mutations_of_a_valid_bundle(
    target: Target, drop: set[str], extra: dict[str, bytes], image: bytes | None
) -> None:
    members = {k: v for k, v in target.members.items() if k not in drop} | extra
    if image is not None and IMAGE in members:
        members[IMAGE] = image
    judge(zipped(members), target.context)


# ------------------------------------------------------------------------- the known poison, named


def _with_manifest(target: Target, **changes: Any) -> bytes:
    manifest = json.loads(target.members[MANIFEST]) | changes
    return zipped(target.members | {MANIFEST: json.dumps(manifest).encode()})


def _with_signed(target: Target, edit: Any) -> bytes:
    role = json.loads(target.members[ROLE])
    edit(role["signed"])
    return zipped(target.members | {ROLE: json.dumps(_resign(role, target.signer)).encode()})


def _new_target(signed: dict[str, Any]) -> dict[str, Any]:
    """The deposited image target: the last image added (the one lodged before keeps its place
    first; the release notes travel as a second, ``.notes.jwe`` target)."""
    images = [t for path, t in signed["targets"].items() if path.endswith(".ota")]
    return images[-1]  # type: ignore[no-any-return]


def _truncated_stored_manifest(target: Target) -> bytes:
    """A stored manifest whose central-directory sizes claim more bytes than the file holds."""
    data = bytearray(zipped(target.members))
    # compressed and uncompressed sizes of the first central-directory entry (the manifest)
    first = data.find(b"PK\x01\x02")
    assert first > 0
    data[first + 20 : first + 28] = (10**6 - 1).to_bytes(4, "little") * 2
    return bytes(data)


def _with_role(target: Target, edit: Any) -> bytes:
    role = json.loads(target.members[ROLE])
    edit(role)
    return zipped(target.members | {ROLE: json.dumps(role).encode()})


POISON = {
    # found by the fuzzer: python-tuf takes any JSON value as a key ID or signature
    "signature-keyid-null": lambda t: _with_role(
        t, lambda r: r["signatures"][0].update(keyid=None)
    ),
    "signature-sig-a-number": lambda t: _with_role(t, lambda r: r["signatures"][0].update(sig=7)),
    "manifest-kind-list": lambda t: _with_manifest(t, kind=[]),
    "manifest-kind-object": lambda t: _with_manifest(t, kind={}),
    "float-in-signed": lambda t: _with_signed(t, lambda s: s.update(version=2.0)),
    "float-deep-in-custom": lambda t: _with_signed(
        t, lambda s: _new_target(s)["custom"]["cfl"].update(extra=1.5)
    ),
    "custom-a-list": lambda t: _with_signed(t, lambda s: _new_target(s).update(custom=[])),
    "custom-a-string": lambda t: _with_signed(t, lambda s: _new_target(s).update(custom="cfl")),
    "custom-cfl-a-list": lambda t: _with_signed(
        t, lambda s: _new_target(s).update(custom={"cfl": []})
    ),
    "custom-cfl-a-string": lambda t: _with_signed(
        t, lambda s: _new_target(s).update(custom={"cfl": "cfl"})
    ),
    "published-impossible-date": lambda t: _with_signed(
        t, lambda s: _new_target(s)["custom"]["cfl"].update(published="2026-02-30T00:00:00Z")
    ),
    "published-not-a-string": lambda t: _with_signed(
        t, lambda s: _new_target(s)["custom"]["cfl"].update(published=20260101)
    ),
    "stored-manifest-sizes-past-end": _truncated_stored_manifest,
}


@pytest.mark.parametrize("make", list(POISON.values()), ids=list(POISON))
def test_known_poison_is_a_rejection_with_codes(target: Target, make: Any) -> None:
    data = make(target)
    try:
        bundle = parse_bundle(data, source="poison.cflb")
    except BundleError as e:
        assert "poison.cflb" in str(e)
        return
    verdict = check_bundle(bundle, target.context)
    assert not verdict.ok
    assert verdict.codes
