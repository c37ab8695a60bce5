"""Documents as knowledge: a folder read whole, text chunked to the window, anchors and names, bad input named."""

from __future__ import annotations

import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from connectors.sources import (
    SourceOptions,
    iter_docx,
    iter_html,
    iter_pptx,
    iter_text,
    open_sources,
)
from connectors.sources.chunking import Chunker, clean_extracted, slug
from rag.embeddings.text_window import TextWindow, load_tokenizer_window
from rag.items import KnowledgeItem, Modality, Severity, SourceError
from rag.items import SourceErrorKind as Kind
from tests.helpers.documents import make_docx, make_pptx, make_text_pdf, make_xlsx, png
from tests.helpers.models import PARITY

from .test_sources import split, write

SENTENCES = [f"Stop {i} is on the {['north', 'east', 'west'][i % 3]} line." for i in range(400)]


@pytest.fixture(scope="module")
def window() -> TextWindow:
    """The test model's own tokenizer, with a small window so that chunking shows."""
    return load_tokenizer_window(PARITY / "base" / "text_model", limit=64)


@pytest.fixture
def options(tmp_path: Path, window: TextWindow) -> SourceOptions:
    # OCR off: a test page's few words would otherwise send it through real OCR (seconds a page); test_ocr*.py OCR
    return SourceOptions(cache_dir=tmp_path / "cache", text_window=window, chunk_overlap=8, ocr="off")


def test_a_folder_with_every_type_gives_items_per_file_and_names_what_it_passes_over(
    tmp_path: Path, options: SourceOptions
) -> None:
    root = tmp_path / "docs"
    write(root / "photos" / "red.png", png((200, 0, 0)))
    write(root / "photos" / "red.txt", "A red square")  # a caption, not a document
    write(root / "guide.md", "# Guide\n\nRead me first.\n\n## Install\n\nRun the installer.\n\n![blue](blue.png)\n")
    write(root / "blue.png", png((0, 0, 200)))
    write(root / "blue.txt", "A blue square")
    write(root / "plain.md", "No headings and no images, just words.\n")
    write(root / "page.html", "<h1>Intro</h1><p>Welcome aboard.</p>")
    write(root / "notes.txt", "Plain notes.\n\nA second paragraph.\n")
    make_text_pdf(root / "manual.pdf", [["Page one text"], ["Page two text"]])
    make_docx(root / "report.docx", png((0, 150, 0)))
    make_pptx(root / "deck.pptx", png((150, 150, 0)))
    write(root / "rows.jsonl", '{"text": "a manifest row"}\n')
    write(root / "table.csv", "a,b\n1,2\n")  # no manifest columns
    make_xlsx(root / "budget.xlsx", {"Q1": [["item", "cost"], ["rails", 120]]})
    write(root / "backup.zip", b"PK\x03\x04")
    write(root / "meta.json", "{}")
    write(root / ".hidden" / "secret.md", "# hidden")
    write(root / ".dotfile.txt", "hidden too")

    items, problems = split(open_sources([root], **options.model_dump()))
    names = {item.name for item in items}
    files = {name.split("#")[0] for name in names}
    assert files == {
        "photos/red.png",
        "guide.md",
        "blue.png",
        "plain.md",
        "page.html",
        "notes.txt",
        "manual.pdf",
        "report.docx",
        "deck.pptx",
        "rows.jsonl",
        "table.csv",
        "budget.xlsx",
    }
    assert len(names) == len(items)  # unique
    assert {"guide.md#guide", "guide.md#install", "guide.md#image=1", "plain.md", "page.html"} <= names
    assert {
        "manual.pdf#page=1",
        "manual.pdf#page=1&chunk=1",
        "manual.pdf#page=2&chunk=1",
        "notes.txt#line=0,3",
    } <= names
    assert {f"report.docx#{a}" for a in ("field-manual", "tracking-faults", "cleaning", "image=1")} <= names
    assert {"deck.pptx#slide=1", "deck.pptx#slide=2", "deck.pptx#slide=2&image=1", "rows.jsonl#line=1"} <= names
    assert next(i for i in items if i.name == "photos/red.png").text == "A red square"
    passed = sorted(Path(p.source).name for p in problems if p.kind is Kind.PASSED_OVER)
    assert passed == ["backup.zip", "meta.json"]
    assert {"table.csv#row=2", "budget.xlsx#sheet=Q1&row=2", "notes.txt#line=0,3"} <= names
    assert [(p.kind, Path(p.source).name) for p in problems if p.kind is not Kind.PASSED_OVER] == []
    assert not any("hidden" in i.name or "dotfile" in i.name for i in items)


def test_docx_and_pptx_text_tables_notes_and_pictures(tmp_path: Path, options: SourceOptions) -> None:
    picture = png((0, 150, 0))
    items, errors = split(iter_docx(make_docx(tmp_path / "r.docx", picture), options))
    assert errors == []
    by_anchor = {i.anchor: i for i in items}
    section = " ".join(i.text for i in items if i.anchor.startswith("tracking-faults"))
    assert "brake squeal | depot" in section  # tables are text too
    assert by_anchor["tracking-faults"].metadata["heading_path"] == ["Field manual", "Tracking faults"]
    image = by_anchor["image=1"]
    assert image.modality is Modality.IMAGE_TEXT and "Wash the carriage" in image.text
    assert Path(image.image.uri).read_bytes() == picture
    assert Path(image.image.uri).parent == (options.cache_dir / "figures").resolve()  # written once, by hash

    items, errors = split(iter_pptx(make_pptx(tmp_path / "d.pptx", picture), options))
    assert errors == []
    slides = {i.anchor: i for i in items}
    assert slides["slide=1"].text == "Quarterly plan\n\nShip the signal upgrade"
    assert "Mention the new crane." in slides["slide=2"].text and slides["slide=2"].metadata["title"] == "Depot map"
    assert slides["slide=2&image=1"].text.startswith("Depot map") and slides["slide=2&image=1"].image is not None


def test_chunks_lose_no_text_and_fit_the_window(tmp_path: Path, options: SourceOptions, window: TextWindow) -> None:
    text = " ".join(SENTENCES)
    items, errors = split(iter_text(write(tmp_path / "long.txt", text), options))
    assert errors == [] and len(items) > 10
    assert [i.anchor for i in items] == ["line=0,1", *(f"line=0,1&chunk={n}" for n in range(2, len(items) + 1))]
    assert [i.metadata["chunk"] for i in items] == list(range(1, len(items) + 1))
    for item in items:  # the window holds, special tokens included, under the encoder's own tokenizer
        assert window.count(item.text) + window.specials <= window.window
    for sentence in SENTENCES:  # no sentence is lost
        assert any(sentence in item.text for item in items), sentence


def test_consecutive_chunks_share_their_boundary_within_the_overlap(tmp_path: Path, window: TextWindow) -> None:
    options = SourceOptions(cache_dir=tmp_path / "cache", text_window=window, chunk_overlap=20)
    text = " ".join(f"Stop {i}." for i in range(300))
    items, _ = split(iter_text(write(tmp_path / "stops.txt", text), options))
    assert len(items) > 5
    for before, after in zip(items, items[1:]):
        shared = _shared_prefix(before.text, after.text)
        assert shared.strip() and window.count(shared) <= 20


def _shared_prefix(before: str, after: str) -> str:
    """The longest start of ``after`` that ends ``before``."""
    return next((after[:n] for n in range(min(len(before), len(after)), 0, -1) if before.endswith(after[:n])), "")


def test_the_chunk_cap_is_one_warning_saying_what_was_left_out(tmp_path: Path, window: TextWindow) -> None:
    options = SourceOptions(cache_dir=tmp_path / "cache", text_window=window, max_chunks_per_document=3)
    items, errors = split(iter_text(write(tmp_path / "long.txt", " ".join(SENTENCES)), options))
    assert len(items) == 3
    assert [(e.kind, e.severity) for e in errors] == [(Kind.TOO_MANY_CHUNKS, Severity.WARNING)]
    assert "3-chunk cap" in errors[0].reason and "characters of text left out" in errors[0].reason


def test_pdf_text_is_cleaned_and_chunked_by_page(tmp_path: Path, options: SourceOptions) -> None:
    raw = "e\ufb03cient \ufb02ow of infor-\nmation, co\ufffeoperate\r\n"
    assert clean_extracted(raw) == "efficient flow of information, cooperate\n"
    assert slug("Install on Linux (x86)!") == "install-on-linux-x86"
    pdf = make_text_pdf(tmp_path / "m.pdf", [["first page " * 3], [f"line {i} of a long page" for i in range(40)]])
    items, errors = split(open_sources([pdf], **options.model_dump()))
    assert errors == []
    chunk_names = [i.name for i in items if i.modality is Modality.TEXT]
    assert chunk_names[0] == "m.pdf#page=1&chunk=1" and len([n for n in chunk_names if "page=2&chunk" in n]) > 1


def test_changed_documents_replace_exactly_their_old_items(tmp_path: Path, options: SourceOptions) -> None:
    long_text = write(tmp_path / "notes.txt", " ".join(SENTENCES[:120]))
    first = {i.id for i in split(iter_text(long_text, options))[0]}
    write(long_text, " ".join(SENTENCES[:10]))
    second = split(iter_text(long_text, options))[0]
    assert len(second) < len(first) and {i.source for i in second} == {str(long_text.resolve())}  # one document


# -- bad input ------------------------------------------------------------------------------


def test_corrupt_office_files_and_zip_bombs_are_named_errors(tmp_path: Path, options: SourceOptions) -> None:
    corrupt_docx = write(tmp_path / "corrupt.docx", b"PK\x03\x04 not a zip at all")
    corrupt_pptx = write(tmp_path / "corrupt.pptx", make_pptx(tmp_path / "x.pptx").read_bytes()[:500])
    not_office = tmp_path / "other.docx"
    with zipfile.ZipFile(not_office, "w") as archive:
        archive.writestr("hello.txt", "a zip, but no Word document")
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (8 << 20))
    small = SourceOptions(cache_dir=tmp_path / "cache", max_document_bytes=1 << 20)
    cases = ((corrupt_docx, iter_docx), (corrupt_pptx, iter_pptx), (not_office, iter_docx), (bomb, iter_docx))
    for path, reader in cases:
        results = list(reader(path, small))
        assert len(results) == 1 and isinstance(results[0], SourceError), path
        assert results[0].kind is Kind.UNREADABLE_DOCUMENT and results[0].severity is Severity.ERROR
    assert "zip bomb" in next(iter_docx(bomb, small)).reason


def test_a_200_mb_text_file_is_streamed_in_bounded_memory(tmp_path: Path, window: TextWindow) -> None:
    path = tmp_path / "huge.txt"
    block = ("All work and no play makes a dull engine. " * 24 + "\n\n").encode() * 1024  # ~1 MB
    with path.open("wb") as f:
        for _ in range(200):
            f.write(block)
    options = SourceOptions(cache_dir=tmp_path / "cache", text_window=window, max_chunks_per_document=200)
    tracemalloc.start()
    items, errors = split(iter_text(path, options))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(items) == 200 and [e.kind for e in errors] == [Kind.TOO_MANY_CHUNKS]
    assert peak < 40 << 20  # a few blocks at a time, never the file
    assert int(errors[0].reason.split(": ")[1].split()[0].replace(",", "")) > 190_000_000


def test_binary_and_non_utf8_text_files(tmp_path: Path, options: SourceOptions) -> None:
    binary = write(tmp_path / "data.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 8)
    assert [(e.kind, e.severity) for e in iter_text(binary, options)] == [(Kind.NOT_TEXT, Severity.ERROR)]
    latin = write(tmp_path / "latin.txt", "Caf\xe9 cr\xe8me, na\xefve.".encode("latin-1"))
    items, errors = split(iter_text(latin, options))
    assert [i.text for i in items] == ["Caf\xe9 cr\xe8me, na\xefve."]
    assert [(e.kind, e.severity) for e in errors] == [(Kind.NOT_TEXT, Severity.WARNING)]


def test_an_html_page_with_10000_images_is_capped_with_a_warning(tmp_path: Path, options: SourceOptions) -> None:
    write(tmp_path / "one.png", png((1, 2, 3), (8, 8)))
    page = write(tmp_path / "many.html", "<p>Gallery</p>" + "<img src='one.png' alt='x'>" * 10_000)
    small = options.model_copy(update={"max_images_per_document": 50})
    items, errors = split(iter_html(page, small))
    assert len([i for i in items if i.image is not None]) == 50
    assert [(e.kind, e.severity) for e in errors] == [(Kind.TOO_MANY_IMAGES, Severity.WARNING)]
    assert "9950 left out" in errors[0].reason


def test_a_folder_symlink_loop_is_named_and_not_followed(tmp_path: Path, options: SourceOptions) -> None:
    root = tmp_path / "root"
    write(root / "sub" / "a.txt", "text in a")
    os.symlink(root, root / "sub" / "loop")
    os.symlink(root / "sub", root / "again")
    results = list(open_sources([root], **options.model_dump()))
    items = [r for r in results if isinstance(r, KnowledgeItem)]
    loops = [r for r in results if isinstance(r, SourceError)]
    assert [i.name for i in items] == ["sub/a.txt#line=0,1"]
    assert {(Path(e.source).name, e.kind, e.severity) for e in loops} == {
        ("again", Kind.SYMLINK_LOOP, Severity.WARNING),
        ("loop", Kind.SYMLINK_LOOP, Severity.WARNING),
    }


def test_chunker_anchors_are_unique_within_a_document(options: SourceOptions) -> None:
    chunker = Chunker(options)
    anchors = [chunker.anchor(a) for a in ("intro", "intro", "intro-2", "intro")]
    assert anchors == ["intro", "intro-2", "intro-2-2", "intro-3"]
