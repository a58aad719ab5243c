"""The estate reader: headers, bad rows, strict mode, and agreement of its fast and slow paths."""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_factories import ESTATE_HEADER, device_id, write_estate
from hypothesis import given, settings
from hypothesis import strategies as st

from client.estate.reader import (
    _BLOCK_CHARS,
    DEVICE_ID,
    DEVICE_TYPE,
    FIRMWARE,
    HARDWARE,
    MANUFACTURER,
    MODEL,
    EstateError,
    EstateSummary,
    GroupKey,
    iter_estate_devices,
    normalise_device_id,
    open_estate,
    read_estate_groups,
)
from metadata_templates.errors import UnavailableError

GOOD = ("ESME", "121D", "010A030B", "1111", "ACDCACDC")
GOOD_KEY = GroupKey(*GOOD)


def read(text: str, *, strict: bool = False, max_problems: int = 100) -> EstateSummary:
    source = io.StringIO(text, newline="")
    return read_estate_groups(source, strict=strict, max_problems=max_problems)


def estate_text(rows: list[tuple[str, ...]], header: tuple[str, ...] = ESTATE_HEADER) -> str:
    return "\n".join(",".join(row) for row in [header, *rows]) + "\n"


def test_counts_devices_per_group_and_normalises_spelling() -> None:
    rows = [
        (device_id(1), *GOOD),
        (device_id(2).replace("-", "").lower(), "esme", "121d", "010a030b", "1111", "acdcacdc"),
        (device_id(3), "GSME", "121D", "0203", "2222", "00000001"),
    ]
    summary = read(estate_text(rows))
    assert summary.devices == 3
    assert summary.groups == {
        GOOD_KEY: 2,
        GroupKey("GSME", "121D", "0203", "2222", "00000001"): 1,
    }
    assert summary.skipped_rows == 0
    assert summary.problems == ()


@pytest.mark.parametrize(
    "header",
    [
        ESTATE_HEADER,
        tuple(h.upper() for h in ESTATE_HEADER),
        tuple(h.replace(" ", "") for h in ESTATE_HEADER),
        tuple(f"  {h.lower()}  " for h in ESTATE_HEADER),
        tuple(reversed(ESTATE_HEADER)),
        ("Site", *ESTATE_HEADER, "Notes"),
    ],
    ids=["canonical", "upper-case", "no-spaces", "padded-lower", "reordered", "extra-columns"],
)
def test_headers_match_leniently(header: tuple[str, ...]) -> None:
    values = {
        "".join(name.split()).lower(): value
        for name, value in zip(ESTATE_HEADER, (device_id(7), *GOOD), strict=True)
    }
    row = tuple(values.get("".join(h.split()).lower(), "extra") for h in header)
    summary = read(estate_text([row], header))
    assert summary.groups == {GOOD_KEY: 1}
    assert summary.skipped_rows == 0


def test_byte_order_mark_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "estate.csv"
    text = "\n" + estate_text([(device_id(1), *GOOD)]) + "\n\n" + ",".join((device_id(2), *GOOD))
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    with open_estate(path) as source:
        summary = read_estate_groups(source)
    assert summary.groups == {GOOD_KEY: 2}
    assert summary.skipped_rows == 0


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (ESTATE_HEADER[:-1], "missing: Firmware Version"),
        ((*ESTATE_HEADER, "device id"), "'Device ID' only once"),
        ((), "a header row"),
    ],
    ids=["missing-column", "duplicate-column", "empty-file"],
)
def test_unusable_header_is_an_error(header: tuple[str, ...], message: str) -> None:
    text = ",".join(header) + "\n" if header else ""
    with pytest.raises(EstateError, match=message):
        read(text)


# One case per rule a row can break: (row, column, found)
BAD_ROWS = [
    ((device_id(1)[:-1], *GOOD), DEVICE_ID, device_id(1)[:-1]),
    (("000D6F000000000G", *GOOD), DEVICE_ID, "000D6F000000000G"),
    (("000D6F00 00000001", *GOOD), DEVICE_ID, "000D6F00 00000001"),
    (("", *GOOD), DEVICE_ID, ""),
    ((device_id(1), "TOASTER", *GOOD[1:]), DEVICE_TYPE, "TOASTER"),
    ((device_id(1), "ESME", "121", *GOOD[2:]), MANUFACTURER, "121"),
    ((device_id(1), "ESME", "121D", "010A03", *GOOD[3:]), MODEL, "010A03"),
    ((device_id(1), "ESME", "121D", "010A030B", "11X1", "ACDCACDC"), HARDWARE, "11X1"),
    ((device_id(1), *GOOD[:4], "ACDC"), FIRMWARE, "ACDC"),
    ((device_id(1), *GOOD[:3]), "(row)", "4 fields"),
]
BAD_IDS = [
    "id-short",
    "id-not-hex",
    "id-inner-space",
    "id-empty",
    "device-type",
    "manufacturer",
    "model",
    "hardware-version",
    "firmware-version",
    "too-few-fields",
]


@pytest.mark.parametrize(("row", "column", "found"), BAD_ROWS, ids=BAD_IDS)
def test_bad_row_is_reported_with_row_column_found_expected_and_skipped(
    row: tuple[str, ...], column: str, found: str
) -> None:
    rows = [(device_id(1), *GOOD), row, (device_id(2), *GOOD)]
    summary = read(estate_text(rows))
    assert summary.groups == {GOOD_KEY: 2}
    assert summary.skipped_rows == 1
    (problem,) = summary.problems
    assert (problem.row, problem.column, problem.found) == (3, column, found)
    assert problem.expected
    assert problem.message().startswith(f"row 3: {column}: found {found!r}, expected ")


@pytest.mark.parametrize(("row", "column", "found"), BAD_ROWS, ids=BAD_IDS)
def test_bad_row_is_fatal_in_strict_mode(row: tuple[str, ...], column: str, found: str) -> None:
    with pytest.raises(EstateError) as caught:
        read(estate_text([(device_id(1), *GOOD), row]), strict=True)
    assert caught.value.problem is not None
    assert (caught.value.problem.row, caught.value.problem.column) == (3, column)
    assert str(caught.value).startswith("row 3: ")


def test_a_row_with_several_bad_columns_counts_once_and_reports_each() -> None:
    summary = read(estate_text([("nope", "ESME", "XXXX", "010A030B", "1111", "1")]))
    assert summary.skipped_rows == 1
    assert [p.column for p in summary.problems] == [DEVICE_ID, MANUFACTURER, FIRMWARE]
    assert summary.problem_count == 3


def test_problem_details_are_bounded_but_all_are_counted() -> None:
    rows = [(f"bad{i}", *GOOD) for i in range(50)]
    summary = read(estate_text(rows), max_problems=5)
    assert len(summary.problems) == 5
    assert summary.problem_count == 50
    assert summary.skipped_rows == 50


def test_row_numbers_stay_right_across_chunks_and_quoted_newlines() -> None:
    rows = [(device_id(i), *GOOD) for i in range(3000)]
    rows[2500] = ("bad", *GOOD)
    text = estate_text(rows[:10]) + '"' + device_id(99) + '",ESME,121D,"010A030B",1111,ACDCACDC\n'
    text += '"line\nbreak",ESME,121D,010A030B,1111,ACDCACDC\n'
    text += "\n".join(",".join(row) for row in rows[10:]) + "\n"
    summary = read(text)
    assert [p.row for p in summary.problems] == [13, 2500 + 2 + 2]
    assert summary.devices == 3000 - 1 + 1


def test_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "estate.csv"
    path.write_bytes(estate_text([(device_id(1), *GOOD)]).encode() + b"\xff\xfe,\n")
    with open_estate(path) as source, pytest.raises(EstateError, match="unreadable CSV"):
        read_estate_groups(source)


def test_missing_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(UnavailableError, match="cannot open estate file"):
        open_estate(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("000D6F0000000001", "00-0D-6F-00-00-00-00-01"),
        ("00-0d-6f-00-00-00-00-01", "00-0D-6F-00-00-00-00-01"),
        (" 000D-6F00-0000-0001 ", "00-0D-6F-00-00-00-00-01"),
        ("000D6F000000001", None),
        ("000D6F00000000011", None),
        ("000D6F000000000Z", None),
        ("", None),
    ],
    ids=["plain", "duis-lower", "grouped-padded", "15-digits", "17-digits", "not-hex", "empty"],
)
def test_normalise_device_id(text: str, expected: str | None) -> None:
    assert normalise_device_id(text) == expected


def test_second_pass_yields_every_good_device_in_order(tmp_path: Path) -> None:
    rows = [(device_id(i), *GOOD) for i in range(2100)]
    rows[5] = ("broken", *GOOD)
    rows[2050] = (device_id(2050).replace("-", "").lower(), "gsme", *GOOD[1:])
    path = write_estate(tmp_path / "e.csv", rows)
    with open_estate(path) as source:
        devices = list(iter_estate_devices(source))
    assert len(devices) == 2099
    assert devices[0] == (device_id(0), GOOD_KEY)
    assert devices[5][0] == device_id(6)
    assert (device_id(2050), GroupKey("GSME", *GOOD[1:])) in devices


# --- fast path and slow path agree with a plain row-by-row reading of the rule -------------------

_hex = "0123456789ABCDEFabcdef"
good_ids = (
    st.integers(0, 2**64 - 1)
    .map(lambda n: f"{n:016x}")
    .flatmap(lambda s: st.sampled_from([s, s.upper(), bytes.fromhex(s).hex("-")]))
)
any_ids = st.one_of(good_ids, st.text(alphabet=_hex + "- G", max_size=24))
fields = st.tuples(
    st.sampled_from(["ESME", "gsme", "IHD", "FRIDGE"]),
    st.sampled_from(["121D", "121d", "ABCD", "12"]),
    st.sampled_from(["0001", "010A030B", "01"]),
    st.sampled_from(["1111", "0002", "XYZW"]),
    st.sampled_from(["ACDCACDC", "00000001", "1"]),
)
rows_strategy = st.lists(st.tuples(any_ids, fields), max_size=2500)


def _reference(rows: list[tuple[str, tuple[str, ...]]]) -> tuple[Counter[GroupKey], int]:
    from metadata_templates import identifiers as ids

    counts: Counter[GroupKey] = Counter()
    bad = 0
    for device, (dt, mfr, model, hw, fw) in rows:
        try:
            if normalise_device_id(device) is None:
                raise ValueError(device)
            key = GroupKey(
                ids.device_type(dt),
                ids.manufacturer_id(mfr),
                ids.model_id(model),
                ids.hardware_version(hw),
                ids.firmware_version(fw),
            )
        except ValueError:
            bad += 1
            continue
        counts[key] += 1
    return counts, bad


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy)
def test_fast_and_slow_paths_agree_with_the_rule(rows: list[tuple[str, tuple[str, ...]]]) -> None:
    # Blank device IDs with otherwise empty rows would be blank lines; keep rows non-blank.
    text = estate_text([(device, *values) for device, values in rows])
    expected, bad = _reference(rows)
    summary = read(text)
    assert summary.groups == dict(expected)
    assert summary.skipped_rows == bad
    assert summary.devices == sum(expected.values())
    second = Counter(key for _, key in iter_estate_devices(io.StringIO(text, newline="")))
    assert second == expected


@settings(max_examples=15, deadline=None)
@given(
    rnd=st.randoms(use_true_random=False),
    size=st.integers(1, 3500),
    bad_at=st.lists(st.integers(0, 3499), max_size=3),
)
def test_mostly_clean_estates_take_the_fast_path_and_still_agree(
    rnd: random.Random, size: int, bad_at: list[int]
) -> None:
    spellings = [("ESME", "121D", "010A030B", "1111", "ACDCACDC"), ("esme", "121d", *GOOD[2:])]
    spellings += [("GSME", "ABCD", "0001", "0002", "00000001")]
    rows: list[tuple[str, tuple[str, ...]]] = []
    for n in range(size):
        raw = f"{rnd.getrandbits(64):016x}"
        device = rnd.choice([raw, raw.upper(), bytes.fromhex(raw).hex("-")])
        rows.append((device, rnd.choice(spellings)))
    for index in bad_at:
        if index < size:
            # Odd: a bad ID (caught by the fast checks); even: a bad value (caught when judged).
            device, values = rows[index]
            rows[index] = (
                ("not-an-id", values) if index % 2 else (device, ("ESME", "12", *GOOD[2:]))
            )
    text = estate_text([(device, *values) for device, values in rows])
    expected, bad = _reference(rows)
    summary = read(text)
    assert summary.groups == dict(expected)
    assert summary.skipped_rows == bad
    assert [p.row - 2 for p in summary.problems] == sorted({i for i in bad_at if i < size})
    second = Counter(key for _, key in iter_estate_devices(io.StringIO(text, newline="")))
    assert second == expected


# --- the plain-text reading of quote-free blocks gives csv.reader's records, problems and rows ----


def _both_readings(text: str, *, strict: bool = False) -> tuple[EstateSummary, EstateSummary]:
    def one(plain_text: bool) -> EstateSummary:
        source = io.StringIO(text, newline="")
        return read_estate_groups(source, strict=strict, plain_text=plain_text)

    return one(True), one(False)


def _second_pass(text: str, plain_text: bool) -> Iterator[tuple[str, GroupKey]]:
    return iter_estate_devices(io.StringIO(text, newline=""), plain_text=plain_text)


def _both_second_passes(text: str) -> tuple[list[tuple[str, GroupKey]], ...]:
    return list(_second_pass(text, True)), list(_second_pass(text, False))


# Pieces of lines a real export, a damaged one or a hostile one may hold.
_line_pieces = st.sampled_from(
    [
        "000D6F0000000001,ESME,121D,010A030B,1111,ACDCACDC",
        "00-0d-6f-00-00-00-00-02,esme,121d,010a030b,1111,acdcacdc",
        "000D6F0000000003,GSME,ABCD,0001,0002,00000001",
        "000D6F0000000004,ESME,12,0001,0002,00000001",
        "000D6F0000000005,ESME,121D,0001,0002,00000001,extra",
        "000D6F0000000006,ESME,121D",
        "not-an-id,ESME,121D,0001,0002,00000001",
        '"000D6F0000000007",ESME,"121D",0001,0002,00000001',
        '"broken\nline",ESME,121D,0001,0002,00000001',
        "000D6F00000000\x0008,ESME,121D,0001,0002,00000001",
        " 000D6F0000000009 ,ESME,121D,0001,0002,00000001",
        "",
        ",,,,,",
    ]
)
_line_ends = st.sampled_from(["\n", "\r\n", "\r"])


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.tuples(_line_pieces, _line_ends), max_size=40),
    crlf_file=st.booleans(),
    last_newline=st.booleans(),
)
def test_plain_text_reading_equals_csv_reader(
    lines: list[tuple[str, str]], crlf_file: bool, last_newline: bool
) -> None:
    # Mostly one line-break style per file (as exports are), sometimes mixed.
    ending = "\r\n" if crlf_file else "\n"
    body = "".join(piece + (end if end == "\r" else ending) for piece, end in lines)
    if not last_newline:
        body = body.removesuffix(ending)
    text = ",".join(ESTATE_HEADER) + ending + body
    plain, reference = _both_readings(text)
    assert plain == reference
    assert _both_second_passes(text) == (list(_second_pass(text, False)),) * 2


@pytest.mark.parametrize(
    "damage",
    ['"quoted"', "\r", "lone\rcr", "\r\n"],
    ids=["quote", "cr-at-cut", "lone-cr", "crlf-in-lf-file"],
)
@pytest.mark.parametrize("where", [10, 1400, 2900], ids=["first-block", "second-block", "late"])
def test_plain_text_hands_over_to_csv_reader_mid_file(damage: str, where: int) -> None:
    # ~3,000 rows span several 64 KiB blocks, so the hand-over happens after a cut line too.
    rows = [(device_id(i), *GOOD) for i in range(3000)]
    rows[where + 7] = ("bad", *GOOD)
    lines = [",".join(row) for row in [ESTATE_HEADER, *rows]]
    lines[where] = lines[where].replace("ESME", f"ESME{damage}", 1)
    text = "\n".join(lines) + "\n"
    plain, reference = _both_readings(text)
    assert plain == reference
    assert "bad" in [p.found for p in plain.problems]
    first, second = _both_second_passes(text)
    assert first == second
    assert len(first) == plain.devices


def test_hand_over_finishes_a_crlf_cut_between_its_cr_and_lf() -> None:
    # Rows of 51 or 58 characters (plain or hyphenated IDs) chosen so that the first block read
    # after the header ends exactly between a CR and its LF; a quote in that block hands the rest
    # to csv.reader, which must not see a blank record where the CRLF was cut.
    plain_row, hyphen_row = (
        ",".join((device_id(1).replace("-", ""), *GOOD)),
        ",".join((device_id(1), *GOOD)),
    )
    short, long = len(plain_row) + 2, len(hyphen_row) + 2
    wanted = _BLOCK_CHARS + 1 - 2  # the block ends on the CR; the quotes add two characters
    count, hyphenated = next(
        (k, m)
        for k in range(wanted // short, 0, -1)
        for m in [(wanted - short * k) // (long - short)]
        if 0 <= m <= k and short * k + (long - short) * m == wanted
    )
    rows = [
        (device_id(i) if i < hyphenated else device_id(i).replace("-", ""), *GOOD)
        for i in range(count + 50)
    ]
    rows[3] = (f'"{rows[3][0]}"', *GOOD)
    rows[count + 20] = ("bad", *GOOD)
    text = "\r\n".join(",".join(row) for row in [ESTATE_HEADER, *rows]) + "\r\n"
    header_end = len(",".join(ESTATE_HEADER)) + 2
    assert text[header_end + _BLOCK_CHARS - 1 : header_end + _BLOCK_CHARS + 1] == "\r\n"
    plain, reference = _both_readings(text)
    assert plain == reference
    assert [p.row for p in plain.problems] == [count + 22]
    first, second = _both_second_passes(text)
    assert first == second


def test_plain_text_reads_a_windows_export_like_a_unix_one() -> None:
    rows = [(device_id(i), *GOOD) for i in range(3000)]
    rows[2000] = ("bad", *GOOD)
    unix = estate_text(rows)
    windows, reference = _both_readings(unix.replace("\n", "\r\n"))
    assert windows == reference == read(unix)
    assert [p.row for p in windows.problems] == [2002]
    first, second = _both_second_passes(unix.replace("\n", "\r\n"))
    assert first == second == list(_second_pass(unix, True))
    assert len(first) == 2999


def test_plain_text_refuses_a_line_longer_than_csv_allows_like_csv_reader() -> None:
    text = estate_text([(device_id(1), *GOOD), (device_id(2), *GOOD[:4], "A" * 200_000)])
    with pytest.raises(EstateError, match="field larger than field limit"):
        read_estate_groups(io.StringIO(text, newline=""))
    with pytest.raises(EstateError, match="field larger than field limit"):
        read_estate_groups(io.StringIO(text, newline=""), plain_text=False)


def test_plain_text_strict_mode_stops_at_the_same_row() -> None:
    rows = [(device_id(i), *GOOD) for i in range(2500)]
    rows[1700] = (device_id(1700), "ESME", "12", *GOOD[2:])
    text = estate_text(rows)
    errors = []
    for plain_text in (True, False):
        with pytest.raises(EstateError) as caught:
            read_estate_groups(io.StringIO(text, newline=""), strict=True, plain_text=plain_text)
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith("row 1702: Manufacturer Identifier: found '12'")
