"""Tables that fit: short unique target names, resolving them back, and line widths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from client_factories import cpl, cpl_entry, device_id, image, write_estate
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from client.cli.tables import image_table, render_summary
from client.estate.check import check_estate
from client.trust.short_names import MIN_DIGITS, resolve_target, short_names
from metadata_templates.errors import ConfigurationError

HEX = "0123456789abcdef"


def target(mfr: str, digits: str, fw: str = "00000001") -> str:
    return f"{mfr}/ESME-0001-{fw}-{digits}.ota"


def test_short_names_are_the_fewest_unique_digits() -> None:
    a = target("121D", "3f2a9c1d0b7e4a51")
    b = target("121D", "3f2b000000000000")
    c = target("121D", "9000000000000000")
    other = target("3F01", "3f2a9c1d0b7e4a51")  # same digits, other manufacturer
    names = short_names([a, b, c, other, "cfl/cpl.json"])
    assert names == {
        a: "121D/3f2a",
        b: "121D/3f2b",
        c: "121D/9000",
        other: "3F01/3f2a",
        "cfl/cpl.json": "cfl/cpl.json",
    }
    close = target("121D", "3f2a9c1d0b7e4a52")
    assert short_names([a, close])[a] == "121D/3f2a9c1d0b7e4a51"


@settings(max_examples=200, deadline=None)
@given(
    digits=st.sets(st.text(alphabet=HEX, min_size=16, max_size=16), min_size=1, max_size=30),
    mfrs=st.lists(st.sampled_from(["121D", "3F01"]), min_size=30, max_size=30),
)
def test_short_names_are_unique_and_resolve_back(digits: set[str], mfrs: list[str]) -> None:
    targets = [target(m, d) for m, d in zip(mfrs, sorted(digits), strict=False)]
    names = short_names(targets)
    assert len(set(names.values())) == len(set(targets))
    for t, name in names.items():
        assert len(name) >= 5 + MIN_DIGITS
        assert resolve_target(name, targets) == t
        assert resolve_target(t, targets) == t
    assert short_names(reversed(targets)) == names  # order never matters


def test_resolving_refuses_an_ambiguous_name_and_ignores_nonsense() -> None:
    a = target("121D", "3f2a9c1d0b7e4a51")
    b = target("121D", "3f2a000000000000")
    with pytest.raises(ConfigurationError) as caught:
        resolve_target("121D/3f2a", [a, b])
    assert "found '121D/3f2a', which names 2 images" in str(caught.value)
    assert a in str(caught.value) and b in str(caught.value)
    assert caught.value.exit_code == 2
    assert resolve_target("121D/3f2a9", [a, b]) == a
    assert resolve_target("121d/3F2A9", [a, b]) == a  # hex compares case-insensitively
    for nonsense in ("121D/3f2", "121D/zzzz", "3f2a9c", "", "121D/", "7E11/3f2a9"):
        assert resolve_target(nonsense, [a, b]) is None, nonsense


V1 = cpl_entry("CPL-1", fw="00000001")
V2 = cpl_entry("CPL-2", fw="00000002", model="010A030B")
V3 = cpl_entry("CPL-3", fw="00000003", upgrade_from=["CPL-2"], model="010A030B")
LONG_NAME = cpl_entry("CPL-4", fw="00000004", model="010A030C")


def _render(table_or_report: object, width: int) -> list[str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, highlight=False, markup=False)
    console.print(table_or_report)
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 120])
def test_list_table_fits_and_never_cuts_a_short_name(width: int) -> None:
    images = [
        image([V2]),
        image([V3], reason="security", advisories=["CVE-2026-0001", "CFL-SA-2026-0042"]),
        image([LONG_NAME], withdrawn=True),
    ]
    names = short_names(i.target_path for i in images)
    lines = _render(image_table(images, names, wide=False), width)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for name in names.values():
        assert name in text
    for shown in images:  # nothing else is cut either: the no-wrap columns show whole values
        assert shown.cfl.firmware_version in text and shown.cfl.device_type in text
        assert shown.cfl.manufacturer_image_sha256[:8] + "…" in text
    assert "compliance" in text and "WITHDRAWN;" in text
    assert images[0].target_path not in text
    wide = _render(image_table(images, {t: t for t in names}, wide=True), 10_000)
    assert all(i.target_path in "\n".join(wide) for i in images)


@pytest.mark.parametrize("width", [80, 120])
def test_check_table_fits_and_shows_every_hop_by_its_short_name(tmp_path: Path, width: int) -> None:
    e1 = cpl_entry("CPL-1", fw="00000001", model="010A030B")
    images = [
        image([V2]),
        image([V3], reason="security", advisories=["CVE-2026-0001", "CFL-SA-2026-0042"]),
    ]
    rows = [(device_id(n), "ESME", "121D", "010A030B", "0001", "00000001") for n in range(3)]
    rows.append((device_id(9), "ESME", "121D", "0001", "0001", "00000001"))
    estate = write_estate(tmp_path / "estate.csv", rows)
    report = check_estate(estate, images, cpl([e1, V1, V2, V3]))
    names = short_names(i.target_path for i in images)
    buffer = io.StringIO()
    render_summary(report, Console(file=buffer, width=width, highlight=False), names)
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for name in names.values():
        assert name in text
    # the security fix on the second hop is flagged (the notes may wrap, never the names)
    assert "SECURITY" in text
