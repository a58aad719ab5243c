"""The site generator without a browser: what files it writes and what is (and is not) in them."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from site_samples import (
    GENERATED,
    HOSTILE_ATTR,
    HOSTILE_HEADER,
    HOSTILE_MANUFACTURER,
    HOSTILE_MODEL,
    keyid,
    make_image,
    many_library,
    small_library,
)

from metadata_templates.custom import NotesReader, ReleaseNotesRef
from metadata_templates.errors import UnavailableError
from metadata_templates.withdrawals import Withdrawal
from repo_tool.site import pages as site_pages
from repo_tool.site import render as site_render
from repo_tool.site.build import build_site
from repo_tool.site.files import MANIFEST_NAME
from repo_tool.site.pages import render_site
from repo_tool.site.render import CONTENT_SECURITY_POLICY, PAGE_SIZE, SiteBuildError
from repo_tool.site.search import (
    PREFIX_LENGTH,
    decode_shard_name,
    parse_word_shard,
    word_shard_path,
)
from repo_tool.verify.published import PublishedLibrary

ATOM = "{http://www.w3.org/2005/Atom}"


def rendered(library: PublishedLibrary, **kwargs: object) -> dict[str, bytes]:
    return dict(render_site(library, generated=GENERATED, **kwargs))  # type: ignore[arg-type]


class Page(HTMLParser):
    """Collects what the safety rules are about: tags, attributes, script bodies, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies.append(data)
        else:
            self.text.append(data)

    def links(self) -> list[str]:
        return [
            value
            for _, attrs in self.tags
            for name, value in attrs.items()
            if name in ("href", "src", "action", "data-index") and value is not None
        ]


def parse(data: bytes) -> Page:
    page = Page()
    page.feed(data.decode("utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return rendered(small_library(), client_init_url="https://cfl.example/lib/")


def html_files(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name.endswith(".html")}


def test_layout(files: dict[str, bytes]) -> None:
    library = small_library()
    expected = {
        "index.html",
        "manufacturers.html",
        "manufacturer-121D.html",
        "manufacturer-2AB0.html",
        "manufacturer-3C3C.html",  # registered, nothing published yet
        "security.html",
        "withdrawn.html",
        "trust.html",
        "feed.xml",
        "index.json",
        "data/images-0.json",
        "search/meta.json",
        "search/rows-0.json",
        "static/style.css",
        "static/search.js",
        "static/favicon.svg",
        *(f"image/{image.target_path}.html" for image in library.images),
    }
    word_shards = {n for n in files if re.fullmatch(r"search/w-[a-z0-9_-]+\.json", n)}
    assert word_shards and set(files) - word_shards == expected


def test_every_index_row_carries_its_target(files: dict[str, bytes]) -> None:
    page = parse(files["index.html"])
    targets = [
        attrs["data-target"] for tag, attrs in page.tags if tag == "tr" and "data-target" in attrs
    ]
    library = small_library()
    assert sorted(targets) == sorted(image.target_path for image in library.images)
    # Newest first, ties by target path.
    published = {i.target_path: i.cfl.published for i in library.images}
    assert [published[t] for t in targets] == sorted(published[t] for t in targets)[::-1]


def test_index_row_shows_every_field(files: dict[str, bytes]) -> None:
    library = small_library()
    image = next(i for i in library.images if i.cfl.reason == "security")
    html = files["index.html"].decode()
    row = re.search(rf'<tr data-target="{re.escape(image.target_path)}".*?</tr>', html, re.S)
    assert row is not None
    text = row.group(0)
    for expected in (
        "121D",
        "Acme Meters Ltd",
        "ESME",
        "010A030B",
        "Acme Single Phase",
        "ACDCACDD",
        "0100\u20130200",
        "security",
        "CFL-ADV-2026-001",
        "CVE-2026-12345",
        "4.1 kB",
        "2026-02-14",
        image.sha256,
        image.cfl.manufacturer_image_sha256,
    ):
        assert expected in text


@pytest.mark.parametrize("name", ["index.html", "trust.html", "image"], ids=str)
def test_every_page_has_the_csp_meta(files: dict[str, bytes], name: str) -> None:
    for page_name, data in html_files(files).items():
        if not page_name.startswith(name):
            continue
        metas = [a for t, a in parse(data).tags if t == "meta" and a.get("http-equiv")]
        assert metas == [
            {"http-equiv": "Content-Security-Policy", "content": CONTENT_SECURITY_POLICY}
        ]


def test_no_inline_script_style_or_handlers(files: dict[str, bytes]) -> None:
    for name, data in html_files(files).items():
        page = parse(data)
        for tag, attrs in page.tags:
            assert tag != "style", name
            assert "style" not in attrs, (name, tag)
            handlers = [a for a in attrs if a.startswith("on")]
            assert handlers == [], (name, tag, handlers)
            if tag == "script":
                assert attrs.get("src") == "static/search.js", name
            assert tag not in ("iframe", "object", "embed", "img", "form", "base"), (name, tag)
        assert "".join(page.script_bodies).strip() == "", name


def test_links_are_relative_and_resolve(files: dict[str, bytes]) -> None:
    """Every link stays on the site and points at a file the build wrote: works from any folder."""
    for name, data in html_files(files).items():
        for link in parse(data).links():
            parts = urlsplit(link)
            assert not parts.scheme and not parts.netloc and not link.startswith("/"), (name, link)
            if parts.path:
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), parts.path))
                assert resolved in files, (name, link)


@pytest.mark.parametrize(
    "hostile", [HOSTILE_MODEL, HOSTILE_ATTR, HOSTILE_HEADER, HOSTILE_MANUFACTURER]
)
def test_markup_in_metadata_is_escaped(files: dict[str, bytes], hostile: str) -> None:
    shown = False
    for name, data in html_files(files).items():
        html = data.decode()
        assert hostile not in html, name
        if hostile in "".join(parse(data).text):
            shown = True
    assert shown, "the hostile value should still be shown, as text"


def test_control_characters_do_not_reach_markup(files: dict[str, bytes]) -> None:
    assert "\x01" not in files["index.html"].decode()
    assert "Display\ufffd with control char" in files["index.html"].decode()
    ET.fromstring(files["feed.xml"])  # would fail on a raw control character


def test_byte_stable_and_independent_of_input_order(files: dict[str, bytes]) -> None:
    library = small_library()
    shuffled = dataclasses.replace(
        library,
        images=tuple(reversed(library.images)),
        roles=tuple(reversed(library.roles)),
        manufacturers=dict(reversed(library.manufacturers.items())),
    )
    assert rendered(shuffled, client_init_url="https://cfl.example/lib/") == files


def test_generated_time_is_the_only_clock(files: dict[str, bytes]) -> None:
    later = rendered(small_library(), client_init_url="https://cfl.example/lib/")
    assert later == files
    other = dict(
        render_site(
            small_library(),
            generated=GENERATED + timedelta(days=1),
            client_init_url="https://cfl.example/lib/",
        )
    )
    # Only pages that change with every build anyway carry the time; a rebuild after a publish must
    # not rewrite every image page.
    assert {n for n in files if files[n] != other[n]} == {
        "index.html",
        "trust.html",
        "feed.xml",
        "index.json",
        "search/meta.json",
    }


def test_naive_generated_time_is_refused() -> None:
    with pytest.raises(ValueError, match="generated: found naive datetime"):
        rendered_naive = render_site(small_library(), generated=datetime(2026, 1, 1))
        next(rendered_naive)


def test_withdrawn_image_shown_with_date_and_reason(files: dict[str, bytes]) -> None:
    image = next(i for i in small_library().images if i.withdrawal is not None)
    page = files[f"image/{image.target_path}.html"].decode()
    assert "Withdrawn" in page and "2026-01-20T12:00:00Z" in page
    assert "bricks meters on hardware 0101 &lt;b&gt;urgent&lt;/b&gt;" in page
    withdrawn = files["withdrawn.html"].decode()
    assert image.target_path in withdrawn and "2026-01-20" in withdrawn
    row = re.search(
        rf'<tr data-target="{re.escape(image.target_path)}"[^>]*>', files["index.html"].decode()
    )
    assert row is not None and 'class="withdrawn"' in row.group(0)


def test_withdrawal_from_the_library_list_and_of_an_image_no_longer_listed() -> None:
    library = small_library()
    image = next(i for i in library.images if i.withdrawal is None)
    gone = Withdrawal(
        "121D/ESME-0001-00000001-0123456789abcdef.ota", "ab" * 32, "2025-01-01T00:00:00Z", "gone"
    )
    library = dataclasses.replace(
        library,
        withdrawals=(
            Withdrawal(image.target_path, image.sha256, "2026-02-20T00:00:00Z", "recalled"),
            gone,
        ),
    )
    out = rendered(library)
    assert "recalled" in out[f"image/{image.target_path}.html"].decode()
    withdrawn = out["withdrawn.html"].decode()
    assert f"<code>{gone.target}</code>" in withdrawn  # shown, not linked: it has no page


def test_security_page_lists_only_fixes(files: dict[str, bytes]) -> None:
    page = files["security.html"].decode()
    targets = re.findall(r'<tr data-target="([^"]+)"', page)
    assert targets == [i.target_path for i in small_library().images if i.cfl.reason == "security"]
    assert "CVE-2026-12345" in page


def test_manufacturer_pages(files: dict[str, bytes]) -> None:
    page = files["manufacturer-121D.html"].decode()
    targets = re.findall(r'<tr data-target="([^"]+)"', page)
    assert sorted(targets) == sorted(
        i.target_path for i in small_library().images if i.cfl.manufacturer_id == "121D"
    )
    assert "No images yet." in files["manufacturer-3C3C.html"].decode()
    listing = files["manufacturers.html"].decode()
    assert all(f'href="manufacturer-{m}.html"' in listing for m in ("121D", "2AB0", "3C3C"))


def test_trust_page(files: dict[str, bytes]) -> None:
    page = files["trust.html"].decode()
    assert "Root metadata version <strong>2</strong>" in page
    for label in ("root-a", "root-b", "root-c"):
        assert keyid(label) in page
    roles = re.findall(r"<th scope=\"row\"><code>([^<]+)</code></th>", page)
    assert roles == ["root", "targets", "snapshot", "timestamp", "mfr-121D", "mfr-2AB0"]
    assert "2026-09-01T00:00:00Z" in page  # targets expiry
    assert 'class="expired"' in page  # mfr-2AB0 expired before GENERATED
    assert "cfl init https://cfl.example/lib/ --root ROOT.json" in page
    placeholder = rendered(small_library())["trust.html"].decode()
    assert "cfl init URL --root ROOT.json" in placeholder


def test_feed_is_valid_atom_newest_first(files: dict[str, bytes]) -> None:
    feed = ET.fromstring(files["feed.xml"])
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}updated") == "2026-03-01T12:00:00Z"
    entries = feed.findall(f"{ATOM}entry")
    updated = [e.findtext(f"{ATOM}updated") for e in entries]
    assert updated == sorted(updated, reverse=True)
    titles = [e.findtext(f"{ATOM}title") or "" for e in entries]
    assert any(t.startswith("Withdrawn:") for t in titles)
    assert any(
        HOSTILE_MANUFACTURER in t for t in titles
    )  # escaped in the bytes, intact once parsed
    assert len({e.findtext(f"{ATOM}id") for e in entries}) == len(entries)
    for entry in entries:
        href = entry.find(f"{ATOM}link").get("href")  # type: ignore[union-attr]
        assert href in files


def test_feed_keeps_only_the_newest_entries() -> None:
    feed = ET.fromstring(rendered(many_library(site_render.FEED_LIMIT + 20))["feed.xml"])
    assert len(feed.findall(f"{ATOM}entry")) == site_render.FEED_LIMIT


def test_index_json_for_machines(files: dict[str, bytes]) -> None:
    doc = json.loads(files["index.json"])
    assert doc["schema_version"] == 2
    assert doc["generated"] == "2026-03-01T12:00:00Z"
    library = small_library()
    assert doc["count"] == len(library.images)
    assert doc["parts"] == [{"href": "data/images-0.json", "images": len(library.images)}]
    part = json.loads(files["data/images-0.json"])
    assert part["schema_version"] == 2
    by_target = {i["target"]: i for i in part["images"]}
    assert set(by_target) == {i.target_path for i in library.images}
    for image in library.images:
        entry = by_target[image.target_path]
        assert entry["sha256"] == image.sha256
        assert entry["manufacturer_image_sha256"] == image.cfl.manufacturer_image_sha256
        assert entry["length"] == image.length
        assert entry["reason"] == image.cfl.reason
        assert entry["page"] in files
        assert (entry["withdrawn"] is None) == (image.withdrawal is None)
    hostile = next(
        i for i in part["images"] if i["manufacturer_id"] == "2AB0" and i["device_type"] == "PPMID"
    )
    assert [e["model_name"] for e in hostile["cpl_entries"]] == [HOSTILE_MODEL, HOSTILE_ATTR]


def test_index_json_parts_are_anchored_at_the_oldest_image() -> None:
    count = site_pages.IMAGES_PER_PART + 10
    out = rendered(many_library(count))
    doc = json.loads(out["index.json"])
    assert doc["parts"] == [
        {"href": "data/images-1.json", "images": 10},
        {"href": "data/images-0.json", "images": site_pages.IMAGES_PER_PART},
    ]
    newest = json.loads(out["data/images-1.json"])["images"]
    oldest = json.loads(out["data/images-0.json"])["images"]
    index_targets = re.findall(r'<tr data-target="([^"]+)"', out["index.html"].decode())
    assert [i["target"] for i in newest] == index_targets[:10]
    assert len({i["target"] for i in newest + oldest}) == count


def _search_rows(files: dict[str, bytes]) -> list[list[Any]]:
    meta = json.loads(files["search/meta.json"])
    rows: list[list[Any]] = []
    for k in range(-(-meta["count"] // meta["rows_per_shard"])):
        shard = json.loads(files[f"search/rows-{k}.json"])
        assert shard["schema_version"] == 1
        rows += shard["rows"]
    return rows


def test_search_rows_match_the_table(files: dict[str, bytes]) -> None:
    rows = _search_rows(files)
    index_targets = re.findall(r'<tr data-target="([^"]+)"', files["index.html"].decode())
    # Standard target paths are left out (search.js rebuilds them); these all are standard.
    assert [r[1] for r in rows] == [None] * len(index_targets)
    rebuilt = [f"{r[3][0]}/{r[4]}-{r[0]}-{r[6]}-{r[13][:16]}.ota" for r in rows]
    # ids are publication order, oldest first: the reverse of the newest-first table
    assert rebuilt[::-1] == index_targets


def test_word_shards_find_every_row_by_every_word(files: dict[str, bytes]) -> None:
    """Each word shard maps words to ids; every id is a row, and a row's model name finds it."""
    rows = _search_rows(files)
    postings: dict[str, list[int]] = {}
    for name, data in files.items():
        if name.startswith("search/w-"):
            shard = parse_word_shard(data)
            prefix = decode_shard_name(name.removeprefix("search/w-").removesuffix(".json"))
            assert word_shard_path(prefix) == name
            assert all(w.startswith(prefix) for w in shard)
            postings.update(shard)
    for image_id, row in enumerate(rows):
        for model_id, model_name in row[5]:
            for word in f"{model_id} {model_name}".lower().split():
                if len(word) >= PREFIX_LENGTH:
                    assert image_id in postings[word], (word, row)
        assert image_id in postings[row[13]]  # the file's SHA-256
    assert set(postings["withdrawn"]) == {i for i, r in enumerate(rows) if r[15] is not None}


def test_unsafe_target_path_gets_a_safe_page() -> None:
    image = make_image("121D", "Acme", "ESME", "00000001", [("CPL-1", "0001", "M")])
    odd = dataclasses.replace(image, target_path='121D/../"odd" name.ota')
    out = rendered(PublishedLibrary(root_version=1, roles=(), images=(odd,)))
    pages = [n for n in out if n.startswith("image/")]
    assert len(pages) == 1 and re.fullmatch(r"image/_/[0-9a-f]{64}\.html", pages[0])
    row = _search_rows(out)[0]
    assert row[1] == odd.target_path and row[2] == pages[0]


def test_two_images_on_one_target_are_refused() -> None:
    image = make_image("121D", "Acme", "ESME", "00000001", [("CPL-1", "0001", "M")])
    library = PublishedLibrary(root_version=1, roles=(), images=(image, image))
    with pytest.raises(SiteBuildError, match="expected one image per page"):
        rendered(library)


def test_two_pages_on_one_file_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Archive page 1 of manufacturer 121D and the front page of a (malformed) manufacturer "121D-1"
    # share a name.
    monkeypatch.setattr(site_pages, "PAGE_SIZE", 1)
    images = tuple(
        make_image("121D", "Acme", "ESME", version, [("CPL-1", "0001", "M")])
        for version in ("00000001", "00000002")
    )
    library = PublishedLibrary(
        root_version=1, roles=(), images=images, manufacturers={"121D-1": "Odd"}
    )
    with pytest.raises(SiteBuildError, match=r"manufacturer-121D-1\.html: produced twice"):
        build_site(library, tmp_path / "site", generated=GENERATED)


def test_pagination() -> None:
    """The front page holds the newest PAGE_SIZE..2*PAGE_SIZE-1 rows; archive page c (1 = oldest)
    the c-th PAGE_SIZE rows in publication order, so adding images never moves an archive row."""
    count = 3 * PAGE_SIZE + 1
    out = rendered(many_library(count))
    pages = sorted(n for n in out if re.fullmatch(r"index(-\d+)?\.html", n))
    assert pages == ["index-1.html", "index-2.html", "index.html"]
    rows = {
        name: re.findall(r'<tr data-target="([^"]+)"', out[name].decode())
        for name in ("index.html", "index-2.html", "index-1.html")
    }
    assert [len(r) for r in rows.values()] == [PAGE_SIZE + 1, PAGE_SIZE, PAGE_SIZE]
    seen = rows["index.html"] + rows["index-2.html"] + rows["index-1.html"]
    assert len(seen) == count == len(set(seen))
    first = out["index.html"].decode()
    assert 'href="index-2.html" rel="next"' in first and "Images 1\u2013501 of 1501" in first
    middle = out["index-2.html"].decode()
    assert 'href="index.html" rel="prev"' in middle and 'href="index-1.html" rel="next"' in middle
    assert "Images 501\u20131000 in order of publication" in middle
    assert 'rel="next"' not in out["index-1.html"].decode()
    # Manufacturer pages paginate the same way.
    assert "manufacturer-1A1A-1.html" not in out  # 501 images: all on the front page
    assert len(re.findall(r"<tr data-target=", out["manufacturer-1A1A.html"].decode())) == 501
    # One more image changes the front page only.
    grown = rendered(many_library(count + 1))
    changed = {n for n in out if re.fullmatch(r"index(-\d+)?\.html", n) and out[n] != grown[n]}
    assert changed == {"index.html"}


def test_empty_library() -> None:
    out = rendered(PublishedLibrary(root_version=1, roles=(), images=()))
    assert "No images yet." in out["index.html"].decode()
    assert json.loads(out["index.json"])["parts"] == []
    ET.fromstring(out["feed.xml"])


def test_static_assets_are_copied_verbatim(files: dict[str, bytes]) -> None:
    source = Path(__file__).resolve().parents[2] / "site" / "static"
    for name in ("style.css", "search.js", "favicon.svg"):
        assert files[f"static/{name}"] == (source / name).read_bytes()
    # Nothing the site loads may come from elsewhere: no url() to another origin, no @import.
    css = files["static/style.css"].decode()
    assert "@import" not in css and "url(" not in css and "@font-face" not in css
    js = files["static/search.js"].decode()
    assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write|eval\(", js)
    assert "http:" not in js and "https:" not in js and "//" not in js.replace("// ", "")


# --- build_site: writing --------------------------------------------------------------------------


def test_build_writes_the_rendered_files(tmp_path: Path, files: dict[str, bytes]) -> None:
    result = build_site(
        small_library(),
        tmp_path / "site",
        generated=GENERATED,
        client_init_url="https://cfl.example/lib/",
    )
    assert set(result.files) == set(files)
    assert result.index_pages == 1 and result.image_count == 5
    for name, data in files.items():
        assert (tmp_path / "site" / name).read_bytes() == data
    manifest = (tmp_path / "site" / MANIFEST_NAME).read_text().splitlines()
    assert manifest == sorted(files)
    assert not [p for p in (tmp_path / "site").rglob("*.tmp")]


def test_rebuild_touches_only_what_changed(tmp_path: Path) -> None:
    out = tmp_path / "site"
    library = small_library()
    build_site(library, out, generated=GENERATED)
    again = build_site(library, out, generated=GENERATED)
    assert again.changed == () and again.removed == ()
    grown = dataclasses.replace(
        library,
        images=(
            *library.images,
            make_image(
                "121D",
                "Acme Meters Ltd",
                "ESME",
                "ACDCACDE",
                [("CPL-9", "010A030B", "Acme Single Phase")],
            ),
        ),
    )
    third = build_site(grown, out, generated=GENERATED)
    assert "index.html" in third.changed and "trust.html" not in third.changed
    assert third.removed == ()


def test_rebuild_removes_pages_it_no_longer_produces(tmp_path: Path) -> None:
    out = tmp_path / "site"
    library = small_library()
    build_site(library, out, generated=GENERATED)
    (out / "operator-notes.txt").write_text("not ours")
    dropped = library.images[0]
    smaller = dataclasses.replace(library, images=library.images[1:])
    result = build_site(smaller, out, generated=GENERATED)
    page = f"image/{dropped.target_path}.html"
    assert page in result.removed and not (out / page).exists()
    # and word shards only it had words for
    assert all(n == page or n.startswith("search/w-") for n in result.removed)
    assert (out / "operator-notes.txt").read_text() == "not ours"


def test_manifest_cannot_make_it_delete_outside_the_site(tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / MANIFEST_NAME).write_text(f"../victim.txt\n{victim}\n.hidden\n")
    build_site(small_library(), out, generated=GENERATED)
    assert victim.read_text() == "keep me"


def test_unwritable_output_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UnavailableError, match="Not a directory"):
        build_site(small_library(), blocker / "site", generated=GENERATED)
    out = tmp_path / "site"
    out.mkdir()
    (out / "image").write_text("a file where the image pages' folder goes")
    with pytest.raises(UnavailableError, match="cannot write"):
        build_site(small_library(), out, generated=GENERATED)


def test_site_resources_found_in_a_source_checkout() -> None:
    root = site_render.site_resources()
    assert root.joinpath("templates").joinpath("base.html").is_file()
    assert root.joinpath("static").joinpath("search.js").is_file()


def test_image_page_names_who_can_read_encrypted_notes_and_nothing_of_them() -> None:
    library = small_library()
    image = next(i for i in library.images if i.withdrawal is None)
    notes = ReleaseNotesRef(
        target=f"{image.target_path}.notes.jwe",
        readers=(
            NotesReader("0011223344556677", "Volt <Energy>"),
            NotesReader("8899AABBCCDDEEFF", "Gasco"),
        ),
    )
    cfl = dataclasses.replace(image.cfl, release_notes_sha256="cd" * 32, release_notes=notes)
    cfl.to_dict()  # the schema accepts it
    noted = dataclasses.replace(image, cfl=cfl)
    library = dataclasses.replace(
        library, images=tuple(noted if i is image else i for i in library.images)
    )
    page = rendered(library)[f"image/{image.target_path}.html"].decode()
    assert "encrypted; readable by Volt &lt;Energy&gt;, Gasco" in page
    assert f"cfl notes {image.target_path}" in page
    other = next(i for i in library.images if i is not noted and i.withdrawal is None)
    assert "none lodged" in rendered(library)[f"image/{other.target_path}.html"].decode()
