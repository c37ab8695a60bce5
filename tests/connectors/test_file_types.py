"""More file types: gzip around any type, reStructuredText, SVG, spreadsheets and CSV tables, files of unknown
type that are text; and the anchors that open where they point (GitHub slugs, HTML ids, RFC 5147 lines)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from connectors.sources import SourceOptions, iter_html, iter_markdown, iter_text, open_sources
from connectors.sources.chunking import Slugger, slug
from connectors.sources.rst import iter_rst
from connectors.sources.svg import iter_svg
from connectors.sources.tables import iter_table
from rag.display import passed_over_line
from rag.embeddings.text_window import TextWindow, load_tokenizer_window
from rag.items import KnowledgeItem, Severity, SourceError
from rag.items import SourceErrorKind as Kind
from tests.helpers.documents import make_docx, make_text_pdf, make_xlsx, png
from tests.helpers.models import PARITY

from .test_sources import split, write

STOPS = " ".join(f"Stop {i} is on the {['north', 'east', 'west'][i % 3]} line." for i in range(200))


@pytest.fixture(scope="module")
def window() -> TextWindow:
    return load_tokenizer_window(PARITY / "base" / "text_model", limit=64)


@pytest.fixture
def options(tmp_path: Path, window: TextWindow) -> SourceOptions:
    # OCR off: a test page's few words would otherwise send it through real OCR (seconds a page); test_ocr*.py OCR
    return SourceOptions(cache_dir=tmp_path / "cache", text_window=window, chunk_overlap=8, ocr="off")


def gz(path: Path, data: str | bytes) -> Path:
    raw = data.encode() if isinstance(data, str) else data
    return write(path, gzip.compress(raw))


def read(paths: list[Path], options: SourceOptions) -> tuple[list[KnowledgeItem], list[SourceError]]:
    return split(open_sources(paths, **options.model_dump()))


# -- gzip -------------------------------------------------------------------------------------


def test_gzipped_files_read_as_their_inner_type_and_keep_their_real_names(
    tmp_path: Path, options: SourceOptions
) -> None:
    root = tmp_path / "doc"
    gz(root / "README.md.gz", "# Tool\n\nSorts wagons.\n\n## Install\n\nRun make.\n\n![logo](logo.png)\n")
    write(root / "logo.png", png((10, 120, 10)))  # beside the .gz: relative references resolve there
    write(root / "logo.txt", "the logo")
    gz(root / "notes.txt.gz", "first line\nsecond line\n")
    gz(root / "page.html.gz", "<h1 id='top'>Page</h1><p>Welcome.</p>")
    pdf = make_text_pdf(tmp_path / "m.pdf", [["manual page"]])
    gz(root / "manual.pdf.gz", pdf.read_bytes())
    docx = make_docx(tmp_path / "r.docx", png((0, 0, 90)))
    gz(root / "report.docx.gz", docx.read_bytes())
    gz(root / "changelog.Debian.gz", "tool (1.0-1) unstable; urgency=medium\n\n  * First upload.\n")
    items, problems = read([root], options)
    names = {i.name for i in items}
    assert {
        "README.md.gz#tool", "README.md.gz#install", "README.md.gz#image=1", "notes.txt.gz#line=0,2",
        "page.html.gz#top", "manual.pdf.gz#page=1", "manual.pdf.gz#page=1&chunk=1", "changelog.Debian.gz#line=0,3",
    } <= names  # fmt: skip
    assert any(n.startswith("report.docx.gz#") for n in names)
    assert problems == []
    readme = next(i for i in items if i.name == "README.md.gz#install")
    assert readme.text == "Install\n\nRun make." and readme.source == str((root / "README.md.gz").resolve())
    assert next(i for i in items if i.name == "README.md.gz#image=1").image.uri == str((root / "logo.png").resolve())


def test_a_corrupt_gz_is_named_and_skipped_and_the_rest_of_the_folder_lands(
    tmp_path: Path, options: SourceOptions
) -> None:
    root = tmp_path / "doc"
    write(root / "broken.md.gz", gzip.compress(b"# Broken\n\n" + os.urandom(5000).hex().encode())[:200])  # truncated
    write(root / "notgz.txt.gz", b"plain text, never compressed")
    write(root / "fine.txt", "still here")
    items, problems = read([root], options)
    assert [i.name for i in items] == ["fine.txt#line=0,1"]
    assert sorted((Path(p.source).name, p.kind, p.severity) for p in problems) == [
        ("broken.md.gz", Kind.UNREADABLE_DOCUMENT, Severity.ERROR),
        ("notgz.txt.gz", Kind.UNREADABLE_DOCUMENT, Severity.ERROR),
    ]
    assert all("gzip" in p.reason for p in problems)


def test_a_gzip_bomb_is_cut_at_the_document_limit_with_a_clear_message(tmp_path: Path, window: TextWindow) -> None:
    options = SourceOptions(
        cache_dir=tmp_path / "cache", text_window=window, max_document_bytes=100_000, max_chunks_per_document=100_000
    )
    bomb = gz(tmp_path / "bomb.md.gz", b"# Bomb\n\n" + b"a" * 50_000_000)  # 50 MB in ~50 KB
    assert bomb.stat().st_size < 100_000
    [error] = list(iter_markdown(bomb, options))
    assert isinstance(error, SourceError) and error.kind is Kind.UNREADABLE_DOCUMENT
    assert "100,000-byte limit" in error.reason and "gzip bomb" in error.reason
    streamed = gz(tmp_path / "bomb.txt.gz", b"all work and no play\n" * 2_000_000)
    items, errors = split(iter_text(streamed, options))
    last = int(items[-1].anchor.split(",")[1])
    assert 4700 < last <= 100_000 // len("all work and no play\n") + 1  # what came before the cut is kept
    assert [(e.kind, e.severity) for e in errors] == [(Kind.UNREADABLE_DOCUMENT, Severity.ERROR)]


# -- reStructuredText ---------------------------------------------------------------------------

RST = """\
Tool
====

Sorts wagons by weight.

Install
-------

Run ``make install``.

.. image:: logo.png
   :alt: the logo

.. include:: /etc/passwd

Install
-------

Again, on a second machine.

* a list item

.. code-block:: sh

   make check
"""


def test_rst_sections_are_read_by_docutils_and_anchored_by_its_ids(tmp_path: Path, options: SourceOptions) -> None:
    write(tmp_path / "logo.png", png((200, 0, 0)))
    items, problems = split(iter_rst(write(tmp_path / "guide.rst", RST), options))
    chunks = [(i.anchor, i.text) for i in items if i.image is None]
    assert chunks == [
        ("tool", "Tool\n\nSorts wagons by weight."),
        ("install", "Install\n\nRun make install."),
        ("install-1", "Install\n\nAgain, on a second machine.\n\na list item\n\nmake check"),
    ]
    assert "root:" not in " ".join(t for _, t in chunks)  # include is off
    [picture] = [i for i in items if i.image is not None]
    assert picture.anchor == "image=1" and picture.text.startswith("the logo\nInstall")
    assert items[1].metadata["heading_path"] == ["Tool", "Install"] and problems == []


# -- SVG --------------------------------------------------------------------------------------

SVG = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
  width="4cm" height="2cm" viewBox="0 0 400 200">
  <title>Depot map</title><desc>Tracks and sheds</desc>
  <rect width="400" height="200" fill="#00f"/>
  <text x="10" y="50">Shed <tspan>north</tspan></text>
  <image href="secret.png" width="100" height="100"/>
</svg>"""


def test_svg_text_is_the_items_text_and_the_drawing_its_picture(tmp_path: Path, options: SourceOptions) -> None:
    [item] = list(iter_svg(write(tmp_path / "map.svg", SVG), options))
    assert isinstance(item, KnowledgeItem)
    assert item.text == "Depot map\nTracks and sheds\nShed north" and item.image is not None
    with Image.open(item.image.uri) as picture:
        assert picture.format == "PNG" and picture.width == 512  # 4 cm is 151 px: drawn at 512 px at least
        assert 250 <= picture.height <= 260
        assert picture.convert("RGB").getpixel((500, 250)) == (0, 0, 255)
    assert Path(item.image.uri).parent == (options.cache_dir / "svg").resolve()


def test_svg_without_a_drawable_size_keeps_its_words_and_uploads_drop_linked_images(
    tmp_path: Path, options: SourceOptions
) -> None:
    broken = write(
        tmp_path / "broken.svg", '<svg xmlns="http://www.w3.org/2000/svg" width="0" height="0"><text>Hi</text></svg>'
    )
    item, warning = list(iter_svg(broken, options))
    assert isinstance(item, KnowledgeItem) and item.text == "Hi" and item.image is None
    assert isinstance(warning, SourceError) and warning.severity is Severity.WARNING
    [error] = list(iter_svg(write(tmp_path / "bad.svg", "<svg"), options))
    assert isinstance(error, SourceError) and error.kind is Kind.UNREADABLE_DOCUMENT
    write(tmp_path / "secret.png", png((255, 0, 0), (100, 100)))
    guarded = SourceOptions(cache_dir=tmp_path / "cache", local_root=tmp_path / "uploads")
    [item] = list(iter_svg(write(tmp_path / "map.svg", SVG), guarded))
    with Image.open(item.image.uri) as picture:
        assert picture.convert("RGB").getpixel((20, 20)) == (0, 0, 255)  # the linked red square was not drawn


# -- tables -----------------------------------------------------------------------------------


def test_xlsx_and_csv_rows_become_chunks_under_their_header(tmp_path: Path, options: SourceOptions) -> None:
    rows: list[list[object]] = [["wagon", "weight", "depot"]] + [[f"W{i}", 1000 + i, "north"] for i in range(60)]
    book = make_xlsx(tmp_path / "fleet.xlsx", {"Wagons": rows, "Empty": [], "Notes": [["note"], ["oil the crane"]]})
    items, problems = split(iter_table(book, options))
    assert problems == []
    wagons = [i for i in items if i.metadata["sheet"] == "Wagons"]
    assert len(wagons) > 2 and all(i.text.startswith("wagon | weight | depot\n") for i in wagons)
    assert "W0 | 1000 | north" in wagons[0].text  # whole numbers without .0
    spans = [i.metadata["rows"] for i in wagons]
    assert spans[0][0] == 2 and spans[-1][1] == 61 and all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:]))
    assert wagons[0].anchor == f"sheet=Wagons&row=2-{spans[0][1]}"
    assert [(i.anchor, i.text) for i in items if i.metadata["sheet"] == "Notes"] == [
        ("sheet=Notes&row=2", "note\noil the crane")
    ]
    for item in items:
        assert options.window.count(item.text) <= options.window.text_tokens
    table = write(tmp_path / "fleet.csv", "wagon;weight\nW1;1001\n\nW2;1002\n")
    assert [(i.anchor, i.text) for i in iter_table(table, options)] == [
        ("row=2-4", "wagon | weight\nW1 | 1001\nW2 | 1002")  # RFC 7111 rows, the header is row 1
    ]


def test_a_corrupt_xlsx_is_named_and_skipped_and_the_rest_lands(tmp_path: Path, options: SourceOptions) -> None:
    root = tmp_path / "sheets"
    write(root / "broken.xlsx", b"PK\x03\x04 not a workbook")
    make_xlsx(root / "good.xlsx", {"S": [["a"], ["b"]]})
    write(root / "rows.csv", "text,tags\na manifest row,x\n")  # a manifest's columns: still a manifest
    items, problems = read([root], options)
    assert sorted(i.name for i in items) == ["good.xlsx#sheet=S&row=2", "rows.csv#line=2"]
    assert [(Path(p.source).name, p.kind) for p in problems] == [("broken.xlsx", Kind.UNREADABLE_DOCUMENT)]
    assert "not a readable .xlsx file" in problems[0].reason


# -- unknown types ------------------------------------------------------------------------------


def test_files_of_unknown_type_are_read_when_they_are_text_and_binaries_passed_over_by_type(
    tmp_path: Path, options: SourceOptions
) -> None:
    root = tmp_path / "pkg"
    write(root / "LICENSE", "Permission is hereby granted, free of charge.\n")
    write(root / "Makefile", "all:\n\tcc -o tool tool.c\n")
    write(
        root / "notes.cp1252",
        "Le caf\xe9 co\xfbte deux \u20ac, na\xefvement pay\xe9s \xe0 la d\xe9p\xf4t.\n".encode("cp1252"),
    )
    write(root / "blob", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    write(root / "a.zip", b"PK\x03\x04\x14\x00\x00\x00")
    write(root / "b.zip", b"PK\x03\x04\x14\x00\x00\x01")
    items, problems = read([root], options)
    texts = {i.name: i.text for i in items}
    assert texts["LICENSE#line=0,1"] == "Permission is hereby granted, free of charge."
    assert texts["Makefile#line=0,2"] == "all:\n\tcc -o tool tool.c"
    assert "caf\xe9" in texts["notes.cp1252#line=0,1"] and "\u20ac" in texts["notes.cp1252#line=0,1"]
    passed = [p for p in problems if p.kind is Kind.PASSED_OVER]
    assert len(passed) == len(problems) == 3
    assert (
        passed_over_line(passed) == "passed over 3 files: 2 .zip files (a.zip, b.zip), 1 file without a suffix (blob)"
    )


def test_debians_bsd_license_is_read(options: SourceOptions) -> None:
    bsd = Path("/usr/share/common-licenses/BSD")
    if not bsd.is_file():
        pytest.skip("no Debian common-licenses here")
    items, problems = read([bsd], options)
    assert problems == [] and items[0].name.startswith("BSD#line=0,")
    assert "Redistribution and use in source and binary forms" in " ".join(i.text for i in items)


# -- anchors ------------------------------------------------------------------------------------


def test_markdown_anchors_follow_githubs_slugs(tmp_path: Path, options: SourceOptions) -> None:
    assert slug("Install & run") == "install--run"
    assert slug("Überblick: Was ist neu?") == "überblick-was-ist-neu"
    assert slug("日本語の見出し") == "日本語の見出し"
    assert slug("snake_case  and-dash 🚀") == "snake_case--and-dash-"
    slugs = Slugger()
    assert [slugs.slug(h) for h in ("Setup", "Setup", "Setup", "Setup-1")] == [
        "setup",
        "setup-1",
        "setup-2",
        "setup-1-1",
    ]
    doc = write(tmp_path / "g.md", f"Intro words.\n\n# Setup\n\n{STOPS}\n\n# Setup\n\nAgain.\n\n# Ça marche\n\nOui.\n")
    anchors = [i.anchor for i in iter_markdown(doc, options)]
    assert anchors[:3] == ["", "setup", "setup&chunk=2"]  # the top has no fragment; a long section adds &chunk=N
    assert anchors[-2:] == ["setup-1", "ça-marche"]


def test_html_anchors_are_the_pages_own_ids_never_made_up(tmp_path: Path, options: SourceOptions) -> None:
    page = write(
        tmp_path / "p.html",
        "<p>Before any id.</p>"
        "<h1 id='intro'>Intro</h1><p>Hello.</p>"
        "<a name='legacy'></a><h2>Old style</h2><p>Named anchor.</p>"
        "<section id='install'><h2>Install</h2><p>" + STOPS + "</p></section>"
        "<h2><span id='inner'>Inner</span></h2><p>Span id.</p>"
        "<h2>No id of its own</h2><p>Still under inner.</p>",
    )
    anchors = [i.anchor for i in iter_html(page, options)]
    assert anchors[:3] == ["", "intro", "legacy"]
    assert anchors[3:5] == ["install", "install&chunk=2"]
    assert anchors[-2:] == ["inner", "inner&chunk=2"]  # the id just before the section, numbered on
    assert len(set(anchors)) == len(anchors)


def test_text_anchors_are_rfc_5147_line_ranges_that_hold_the_chunk(tmp_path: Path, options: SourceOptions) -> None:
    lines = [f"Line {n}: {STOPS[n * 40 : n * 40 + 60]}" for n in range(120)]
    path = write(tmp_path / "log.txt", "\n".join(lines) + "\n")
    items = [i for i in iter_text(path, options) if isinstance(i, KnowledgeItem)]
    assert len(items) > 5 and [i.metadata["chunk"] for i in items] == list(range(1, len(items) + 1))
    for item in items:
        first, last = (int(n) for n in item.anchor.removeprefix("line=").split(","))
        assert item.text in "\n".join(lines[first:last])  # 0-based positions: lines first .. last-1
        assert item.text.split("\n")[0] in lines[first] and item.text.split("\n")[-1] in lines[last - 1]


def test_a_folder_of_every_new_type(tmp_path: Path, options: SourceOptions) -> None:
    root = tmp_path / "mixed"
    write(root / "guide.rst", "Guide\n=====\n\nRead me.\n")
    write(root / "map.svg", SVG)
    make_xlsx(root / "fleet.xlsx", {"S": [["a"], ["b"]]})
    write(root / "table.csv", "a,b\n1,2\n")
    gz(root / "notes.txt.gz", "zipped notes\n")
    write(root / "COPYING", "Copying is allowed.\n")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    gz(root / "picture.png.gz", buffer.getvalue())  # a compressed picture is no document: passed over
    items, problems = read([root], options)
    assert {i.name for i in items} == {
        "guide.rst#guide", "map.svg", "fleet.xlsx#sheet=S&row=2", "table.csv#row=2", "notes.txt.gz#line=0,1",
        "COPYING#line=0,1",
    }  # fmt: skip
    assert [(Path(p.source).name, p.kind) for p in problems] == [("picture.png.gz", Kind.PASSED_OVER)]
