"""Sources: every good item comes out with the right text, metadata and a stable id; every bad input is reported."""

from __future__ import annotations

import base64
import http.server
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from connectors.sources import (
    SourceOptions,
    iter_folder,
    iter_html,
    iter_llama_nodes,
    iter_manifest,
    iter_markdown,
    iter_pdf,
    iter_urls,
    missing_sources,
    open_sources,
    peek_items,
)
from rag.items import KnowledgeItem, Modality, Severity, SourceError
from rag.items import SourceErrorKind as Kind
from tests.helpers.documents import encrypted_pdf, jpeg, make_pdf, png

# -- helpers --------------------------------------------------------------------------------


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def split(results: Iterable[KnowledgeItem | SourceError]) -> tuple[list[KnowledgeItem], list[SourceError]]:
    results = list(results)
    items = [r for r in results if isinstance(r, KnowledgeItem)]
    errors = [r for r in results if isinstance(r, SourceError)]
    assert len(items) + len(errors) == len(results)
    return items, errors


@pytest.fixture
def options(tmp_path: Path) -> SourceOptions:
    return SourceOptions(cache_dir=tmp_path / "cache")


# -- folder with sidecars -------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write(root / "a.jpg", jpeg((200, 0, 0)))
    write(root / "a.txt", "  A red rectangle.\n")
    write(root / "b.png", png((0, 0, 200)))
    write(root / "b.json", json.dumps({"caption": "A blue one", "tags": ["blue", "shape"], "author": "Ann"}))
    write(root / "sub" / "c.jpg", jpeg((0, 200, 0)))
    write(root / "sub" / "d.jpg", jpeg((0, 200, 200)))
    write(root / "sub" / "d.txt", "word " * 2000)
    write(root / "e.jpg", jpeg((50, 50, 50)))
    write(root / "e.json", "{not json")
    write(root / "orphan.txt", "a caption for nothing")
    write(root / ".hidden" / "h.jpg", jpeg((1, 2, 3)))
    good = jpeg((9, 9, 9), (256, 256))
    write(root / "bad" / "corrupt.jpg", good[:300] + b"\x00garbage" * 200)
    truncated = png((10, 20, 30), (128, 128))
    write(root / "bad" / "truncated.png", truncated[: len(truncated) // 2])
    write(root / "bad" / "empty.jpg", b"")
    write(root / "bad" / "notes.jpg", "this is a text file, renamed")
    return root


def test_folder_items_text_tags_metadata_and_order(corpus: Path, options: SourceOptions) -> None:
    everything, _ = split(iter_folder(corpus, options))
    items = [i for i in everything if i.image is not None]
    by_name = {Path(i.image.uri).name: i for i in items}
    assert [Path(i.image.uri).relative_to(corpus).as_posix() for i in items] == [
        "a.jpg",
        "b.png",
        "e.jpg",
        "sub/c.jpg",
        "sub/d.jpg",
    ]
    a, b, c = by_name["a.jpg"], by_name["b.png"], by_name["c.jpg"]
    assert a.text == "A red rectangle." and a.modality == Modality.IMAGE_TEXT
    assert a.image.mime_type == "image/jpeg" and a.source == str(corpus / "a.jpg")
    assert b.text == "A blue one" and b.tags == ["blue", "shape"]
    assert b.metadata["author"] == "Ann" and b.metadata["caption_path"] == str(corpus / "b.json")
    assert b.image.mime_type == "image/png"
    assert c.text == "" and c.modality == Modality.IMAGE
    assert len(by_name["d.jpg"].text) == len("word " * 2000) - 1  # kept whole, only stripped
    orphan = [i for i in everything if i.image is None]  # a .txt beside no image is a document, not a caption
    assert [(i.name, i.text, i.modality) for i in orphan] == [
        ("orphan.txt#line=0,1", "a caption for nothing", Modality.TEXT)
    ]


def test_folder_reports_every_bad_file_and_warns_on_captions(corpus: Path, options: SourceOptions) -> None:
    _, errors = split(iter_folder(corpus, options))
    found = {(Path(e.source).name, e.kind, e.severity) for e in errors}
    assert found == {
        ("corrupt.jpg", Kind.CORRUPT_IMAGE, Severity.ERROR),
        ("truncated.png", Kind.CORRUPT_IMAGE, Severity.ERROR),
        ("empty.jpg", Kind.EMPTY_FILE, Severity.ERROR),
        ("notes.jpg", Kind.NOT_AN_IMAGE, Severity.ERROR),
        ("e.json", Kind.BAD_SIDECAR, Severity.ERROR),
        ("c.jpg", Kind.MISSING_CAPTION, Severity.WARNING),
        ("d.jpg", Kind.TEXT_OVER_WINDOW, Severity.WARNING),  # over the window, kept whole: one warning
    }
    assert all(e.reason for e in errors)


def test_folder_ids_are_stable_and_follow_the_content(corpus: Path, options: SourceOptions) -> None:
    first = {i.name: i.id for i in split(iter_folder(corpus, options))[0]}
    assert first == {i.name: i.id for i in split(iter_folder(corpus, options))[0]}
    write(corpus / "a.txt", "A red rectangle, recaptioned.")
    third = {i.name: i.id for i in split(iter_folder(corpus, options))[0]}
    changed = {uri for uri in first if first[uri] != third[uri]}
    assert changed == {"a.jpg"}


def test_folder_is_lazy_and_skips_its_own_cache(corpus: Path) -> None:
    write(corpus / "rag_data" / "pages" / "x.png", png((1, 1, 1)))
    results = iter_folder(corpus, SourceOptions(cache_dir=corpus / "rag_data"))
    assert isinstance(next(results), KnowledgeItem)
    assert not any("rag_data" in getattr(r, "source", "") for r in results)


def test_decompression_bomb_guard(tmp_path: Path) -> None:
    write(tmp_path / "big.png", png((0, 0, 0), (100, 100)))
    _, errors = split(iter_folder(tmp_path, SourceOptions(cache_dir=tmp_path / "cache", max_image_pixels=5000)))
    assert [e.kind for e in errors] == [Kind.IMAGE_TOO_LARGE]
    assert errors[0].reason == "100x100 image exceeds the 5000-pixel limit (decompression-bomb guard)"

    # A PNG header announcing 30000x30000 pixels, past the limit Pillow applies itself.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    write(tmp_path / "big.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body)
    _, errors = split(iter_folder(tmp_path, SourceOptions(cache_dir=tmp_path / "cache", max_image_pixels=5000)))
    assert [e.reason for e in errors] == [
        "900000000-pixel image exceeds the 5000-pixel limit (decompression-bomb guard)"
    ]


# -- manifests ------------------------------------------------------------------------------


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "img"
    write(folder / "red.jpg", jpeg((200, 0, 0)))
    write(folder / "green.png", png((0, 200, 0)))
    write(folder / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def test_csv_manifest_rows_and_bad_rows_by_line(tmp_path: Path, images: Path, options: SourceOptions) -> None:
    manifest = write(
        tmp_path / "data" / "manifest.csv",
        "image,text,tags,category\n"
        'img/red.jpg,A red one,"warm,bright",colour\n'
        f'{images / "green.png"},"A green one,\nover two lines",,colour\n'
        ",Only text here,,note\n"
        "img/missing.jpg,Gone,,\n"
        "img/broken.jpg,Broken,,\n"
        "\n"
        ",,,lonely\n"
        "img/red.jpg,too,many,fields,here\n"
        "http://127.0.0.1:9/x.png,Remote,,\n"
        "img/green.png,,,\n",
    )
    items, errors = split(iter_manifest(manifest, options))
    assert [(i.text, i.modality) for i in items] == [
        ("A red one", Modality.IMAGE_TEXT),
        ("A green one,\nover two lines", Modality.IMAGE_TEXT),
        ("Only text here", Modality.TEXT),
        ("", Modality.IMAGE),
    ]
    red = items[0]
    assert red.tags == ["warm", "bright"] and red.source == str(manifest)
    assert red.metadata == {"category": "colour", "manifest": str(manifest), "line": 2}
    assert red.name == "manifest.csv#line=2"
    assert red.image.uri == str(images / "red.jpg")
    assert items[2].metadata["line"] == 5  # the quoted cell on line 3 spans two lines
    assert [(e.source.rsplit(":", 1)[1], e.kind) for e in errors] == [
        ("6", Kind.NOT_FOUND),
        ("7", Kind.CORRUPT_IMAGE),
        ("9", Kind.BAD_ROW),
        ("10", Kind.BAD_ROW),
        ("11", Kind.URL_DISABLED),
        ("12", Kind.MISSING_CAPTION),
    ]


def test_csv_bad_bytes_and_bad_quoting_stay_on_their_line(tmp_path: Path, options: SourceOptions) -> None:
    manifest = write(tmp_path / "m.csv", b'\xef\xbb\xbftext\nfirst\nsecond \xff\n"bad"quote\nlast\n"open\n')
    items, errors = split(iter_manifest(manifest, options))
    assert [i.text for i in items] == ["first", "last"]
    assert [(e.source.rsplit(":", 1)[1], e.kind) for e in errors] == [
        ("3", Kind.BAD_ROW),
        ("4", Kind.BAD_ROW),
        ("6", Kind.BAD_ROW),
    ]


def test_jsonl_manifest_with_custom_columns(tmp_path: Path, images: Path) -> None:
    rows = [
        json.dumps({"img": "img/red.jpg", "desc": "Red", "tags": ["a"], "score": 3, "nested": {"k": [1, 2]}}),
        "{broken json",
        json.dumps(["not", "an", "object"]),
        json.dumps({"img": "img/green.png", "desc": 42}),
        "",
        json.dumps({"img": "img/green.png", "desc": "Green", "tags": 7}),
        json.dumps({"desc": "Text only"}),
    ]
    manifest = write(tmp_path / "data" / "rows.jsonl", "\n".join(rows) + "\n")
    options = SourceOptions(cache_dir=tmp_path / "cache", image_columns=("img",), text_columns=("desc",))
    items, errors = split(iter_manifest(manifest, options))
    assert [i.text for i in items] == ["Red", "Text only"]
    expected = {"score": 3, "nested": {"k": [1, 2]}, "manifest": str(manifest), "line": 1}
    assert items[0].metadata == expected
    assert items[0].tags == ["a"]
    assert [(int(e.source.rsplit(":", 1)[1]), e.kind) for e in errors] == [
        (2, Kind.BAD_ROW),
        (3, Kind.BAD_ROW),
        (4, Kind.BAD_ROW),
        (6, Kind.BAD_ROW),
    ]


def test_manifest_ids_do_not_depend_on_row_order(tmp_path: Path, images: Path, options: SourceOptions) -> None:
    lines = ["image,text", "img/red.jpg,Red", "img/green.png,Green"]
    manifest = write(tmp_path / "data" / "m.csv", "\n".join(lines))
    before = sorted(i.id for i in split(iter_manifest(manifest, options))[0])
    write(manifest, "\n".join([lines[0], lines[2], lines[1]]))
    assert sorted(i.id for i in split(iter_manifest(manifest, options))[0]) == before
    write(manifest, "\n".join([lines[0], lines[1], "img/green.png,Green and edited"]))
    after = sorted(i.id for i in split(iter_manifest(manifest, options))[0])
    assert len(set(before) & set(after)) == 1


def test_missing_manifest_is_reported(tmp_path: Path, options: SourceOptions) -> None:
    assert [e.kind for e in iter_manifest(tmp_path / "nope.csv", options)] == [Kind.NOT_FOUND]


def test_local_root_confines_the_images_a_manifest_may_name(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    write(root / "inside.png", png((1, 2, 3)))
    secret = write(tmp_path / "private" / "secret.png", png((4, 5, 6)))
    (root / "link.png").symlink_to(secret)
    rows = ["inside.png", "../private/secret.png", str(secret), secret.as_uri(), "link.png"]
    manifest = write(root / "m.jsonl", "".join(json.dumps({"image": r, "text": r}) + "\n" for r in rows))
    options = SourceOptions(cache_dir=tmp_path / "cache", local_root=root)
    items, errors = split(iter_manifest(manifest, options))
    assert [i.text for i in items] == ["inside.png"]
    assert [(e.source.rsplit(":", 1)[1], e.kind) for e in errors] == [
        (str(n), Kind.BAD_REFERENCE) for n in (2, 3, 4, 5)
    ]
    assert "outside" in errors[0].reason


# -- image URLs against a loopback server ---------------------------------------------------

PNG_BYTES = png((120, 30, 200))


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        if self.path == "/ok.png":
            self._send(200, PNG_BYTES, length=True)
        elif self.path == "/big-declared.png":
            self._send(200, b"\x89PNG" + b"\x00" * 5000, length=True)
        elif self.path == "/big-streamed.png":
            self._send(200, b"\x89PNG" + b"\x00" * 5000, length=False)
        elif self.path == "/text.png":
            self._send(200, b"<html>not an image</html>", length=True)
        elif self.path == "/to-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/x.png")
            self.end_headers()
        elif self.path == "/slow.png":
            time.sleep(5.0)
            self._send(200, PNG_BYTES, length=True)
        else:
            self._send(404, b"nope", length=True)

    def _send(self, status: int, body: bytes, *, length: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for start in range(0, len(body), 1024):
                self.wfile.write(body[start : start + 1024])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading at the size cap

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    _Handler.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def test_urls_are_refused_when_fetching_is_disabled(server: str, options: SourceOptions) -> None:
    _, errors = split(iter_urls([f"{server}/ok.png"], options))
    assert [e.kind for e in errors] == [Kind.URL_DISABLED]
    assert "allow URLs (RAG_ALLOW_URLS=true)" in errors[0].reason
    assert _Handler.requests == []


def test_url_fetch_size_cap_timeout_and_failures(server: str, tmp_path: Path) -> None:
    options = SourceOptions(cache_dir=tmp_path / "cache", allow_urls=True, max_download_bytes=4096, url_timeout=2.0)
    names = ["ok.png", "big-declared.png", "big-streamed.png", "text.png", "missing.png", "to-ftp", "slow.png"]
    results = list(iter_urls([f"{server}/{n}" for n in names], options))
    assert isinstance(results[0], KnowledgeItem)
    item = results[0]
    assert item.metadata["url"] == f"{server}/ok.png" and item.source == f"{server}/ok.png"
    assert Path(item.image.uri).parent == (tmp_path / "cache" / "downloads").resolve()
    assert Path(item.image.uri).read_bytes() == PNG_BYTES and item.image.mime_type == "image/png"
    assert item.id == KnowledgeItem.create(source=item.source, image=item.image, image_bytes=PNG_BYTES).id
    assert [(r.source.rsplit("/", 1)[1], r.kind) for r in results[1:]] == [
        ("big-declared.png", Kind.IMAGE_TOO_LARGE),
        ("big-streamed.png", Kind.IMAGE_TOO_LARGE),
        ("text.png", Kind.NOT_AN_IMAGE),
        ("missing.png", Kind.FETCH_FAILED),
        ("to-ftp", Kind.FETCH_FAILED),
        ("slow.png", Kind.FETCH_FAILED),
    ]
    assert "404" in results[4].reason
    assert "non-http(s)" in results[5].reason and "timed out" in results[6].reason


# -- PDFs -----------------------------------------------------------------------------------


def test_pdf_pages_and_figures(tmp_path: Path, options: SourceOptions) -> None:
    figure = jpeg((200, 0, 0), (128, 96))
    pdf = make_pdf(tmp_path / "doc.pdf", figure)
    items, errors = split(iter_pdf(pdf, options))
    assert errors == []
    page1, chunk1, fig, page2, chunk2 = items
    assert {i.source for i in items} == {str(pdf)}  # the document: a re-ingest replaces its items, lost pages too
    assert [i.name for i in items] == [
        "doc.pdf#page=1",
        "doc.pdf#page=1&chunk=1",
        "doc.pdf#page=1&figure=1",
        "doc.pdf#page=2",
        "doc.pdf#page=2&chunk=1",
    ]
    assert chunk1.text == page1.text and chunk1.modality == Modality.TEXT and chunk2.text == "Second page text"
    assert "Chapter title far above" in page1.text and "Figure 1: a red rectangle" in page1.text
    assert page2.text == "Second page text" and page2.metadata["page"] == 2 and page2.metadata["page_count"] == 2
    page_png = Path(page1.image.uri)
    assert page_png.name == "page-0001-144dpi.png"
    assert page_png.parent.parent == (tmp_path / "cache" / "pages").resolve()
    with Image.open(page_png) as im:
        assert im.size == (600, 800)
    assert fig.text == "Figure 1: a red rectangle" and fig.metadata["context"] == "nearby"
    assert fig.metadata["figure"] == 1 and fig.metadata["bbox"] == [20, 200, 148, 296]
    assert Path(fig.image.uri).read_bytes() == figure and fig.image.mime_type == "image/jpeg"


def test_pdf_rerun_reuses_rendered_pages_and_keeps_ids(tmp_path: Path, options: SourceOptions) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", jpeg((200, 0, 0), (128, 96)))
    first = split(iter_pdf(pdf, options))[0]
    stamp = Path(first[0].image.uri).stat().st_mtime_ns
    again = split(iter_pdf(pdf, options))[0]
    assert [i.id for i in again] == [i.id for i in first]
    assert Path(again[0].image.uri).stat().st_mtime_ns == stamp
    no_figures = split(iter_pdf(pdf, SourceOptions(cache_dir=options.cache_dir, pdf_figures=False)))[0]
    assert len(no_figures) == 4  # two pages, two text chunks


def test_unreadable_pdfs_are_reported(tmp_path: Path, options: SourceOptions) -> None:
    good = make_pdf(tmp_path / "good.pdf", jpeg((1, 2, 3), (128, 96))).read_bytes()
    bad = [
        write(tmp_path / "garbage.pdf", b"%PDF-1.4\nthis is not a pdf"),
        write(tmp_path / "truncated.pdf", good[: len(good) // 2]),
        write(tmp_path / "empty.pdf", b""),
        encrypted_pdf(tmp_path / "locked.pdf"),
        tmp_path / "missing.pdf",
    ]
    for path in bad:
        _, errors = split(iter_pdf(path, options))
        assert len(errors) == 1 and errors[0].source == str(path.resolve())
        assert errors[0].kind == (Kind.NOT_FOUND if path.name == "missing.pdf" else Kind.UNREADABLE_PDF)
    assert "password" in split(iter_pdf(tmp_path / "locked.pdf", options))[1][0].reason


# -- Markdown and HTML documents ------------------------------------------------------------


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    write(folder / "img" / "red cat.jpg", jpeg((200, 0, 0)))
    write(folder / "img" / "blue.png", png((0, 0, 200)))
    write(folder / "img" / "broken.png", png((1, 1, 1))[:40])
    return folder


def test_markdown_images_with_their_context(docs: Path, options: SourceOptions) -> None:
    inline = base64.b64encode(png((0, 90, 0))).decode()
    doc = write(
        docs / "guide.md",
        "# Guide\n\nIntro that belongs to no image.\n\n"
        "## Cats\n\n"
        'Here is a cat ![A *red* cat](img/red%20cat.jpg "Tabby") sitting on a mat.\n\n'
        "![](img/blue.png)\n\n"
        "Figure 2: the caption paragraph after a lone image.\n\n"
        "## Broken\n\n"
        "![gone](img/missing.png) and ![bad](img/broken.png) and ![remote](https://example.com/x.png)\n\n"
        "| a | b |\n|---|---|\n| cell ![t](img/blue.png) | x |\n\n"
        '<p>Raw <img src="img/red%20cat.jpg" alt="html in markdown"></p>\n\n'
        f"![inline](data:image/png;base64,{inline})\n",
    )
    everything, errors = split(iter_markdown(doc, options))
    chunks = [i for i in everything if i.image is None]
    assert [i.name for i in chunks] == ["guide.md#guide", "guide.md#cats", "guide.md#broken"]
    assert chunks[1].text.startswith("Cats\n\nHere is a cat sitting on a mat.") and chunks[1].metadata[
        "heading_path"
    ] == ["Guide", "Cats"]
    items = [i for i in everything if i.image is not None]
    assert [i.anchor for i in items] == ["image=1", "image=2", "image=6", "image=7", "image=8"]  # 3-5 failed
    texts = [i.text for i in items]
    assert texts[0] == "A red cat\nTabby\nCats\nHere is a cat sitting on a mat."
    assert items[0].image.uri == str(docs / "img" / "red cat.jpg")
    assert items[0].metadata["heading"] == "Cats" and items[0].source == str(doc)
    assert texts[1] == "Cats\nHere is a cat sitting on a mat.\nFigure 2: the caption paragraph after a lone image."
    assert texts[2] == "t\nBroken\ncell"
    assert texts[3] == "html in markdown\nBroken\nRaw"
    assert texts[4] == "inline\nBroken\nRaw"  # a lone image takes the nearest text of its section
    assert Path(items[4].image.uri).parent == (options.cache_dir / "inline").resolve()
    assert [(e.source.split(" -> ")[1], e.kind, e.severity) for e in errors] == [
        ("img/missing.png", Kind.NOT_FOUND, Severity.WARNING),  # missing: the page is whole
        ("img/broken.png", Kind.CORRUPT_IMAGE, Severity.ERROR),  # there but broken: an input lost
        ("https://example.com/x.png", Kind.URL_DISABLED, Severity.WARNING),  # a badge on the web
    ]
    assert all("the document's text is kept" in e.reason for e in errors if e.severity is Severity.WARNING)


def test_html_images_figures_and_bad_references(docs: Path, options: SourceOptions) -> None:
    doc = write(
        docs / "page.html",
        "<html><head><title>T</title><style>p { }</style></head><body>"
        "<h1>Shapes</h1>"
        "<p>Before the figure.</p>"
        "<figure><img src='img/blue.png' alt='blue'><figcaption>Fig. 1 &amp; a <b>blue</b> box</figcaption></figure>"
        "<p>A red <img src='img/red%20cat.jpg'> inline.</p>"
        "<h2>Empty</h2><div><img src='img/blue.png'></div>"
        "<script>var s = '<img src=\"img/red%20cat.jpg\">';</script>"
        "<noscript><img src='img/blue.png' alt='fallback'></noscript>"
        "<p><img alt='no source'> <img src='ftp://host/x.png'></p>"
        "</body></html>",
    )
    everything, errors = split(iter_html(doc, options))
    assert [(i.name, i.text) for i in everything if i.image is None] == [
        ("page.html", "Shapes\n\nBefore the figure.\n\nFig. 1 & a blue box\n\nA red inline."),  # no ids: the top
        ("page.html#chunk=2", "Empty"),
    ]
    items = [i for i in everything if i.image is not None]
    assert [i.text for i in items] == [
        "blue\nShapes\nFig. 1 & a blue box",
        "Shapes\nA red inline.",
        "Empty",
    ]
    assert [(e.kind, e.severity) for e in errors] == [
        (Kind.BAD_REFERENCE, Severity.WARNING),  # no src: nothing to miss
        (Kind.BAD_REFERENCE, Severity.ERROR),  # ftp: a reference no source reads
    ]


def test_document_without_images_and_unreadable_document(docs: Path, options: SourceOptions) -> None:
    plain = write(docs / "plain.md", "# Nothing\n\nJust words.\n")
    assert [(i.name, i.text) for i in iter_markdown(plain, options)] == [("plain.md#nothing", "Nothing\n\nJust words.")]
    latin = write(docs / "latin.html", "<p>caf\xe9 <img src='img/blue.png'></p>".encode("latin-1"))
    items, errors = split(iter_html(latin, options))
    assert [i.text for i in items] == ["caf\xe9", "caf\xe9"]  # a chunk, and the image with its context
    assert [(e.kind, e.severity) for e in errors] == [(Kind.NOT_TEXT, Severity.WARNING)]
    assert [e.kind for e in iter_html(docs / "missing.html", options)] == [Kind.NOT_FOUND]


# -- LlamaIndex documents and nodes ---------------------------------------------------------


def test_llama_index_documents_and_nodes(tmp_path: Path, options: SourceOptions) -> None:
    from llama_index.core.schema import Document, ImageDocument, ImageNode, MediaResource, TextNode

    red = write(tmp_path / "red.jpg", jpeg((200, 0, 0)))
    corrupt = write(tmp_path / "corrupt.png", png((0, 0, 0))[:60])
    blue = png((0, 0, 200))
    nodes = [
        ImageDocument(image=base64.b64encode(blue).decode(), text="A blue box", metadata={"file_path": "/docs/a.md"}),
        Document(text="Only words", metadata={"lang": "en"}, doc_id="words"),
        Document(text="Red by path", image_resource=MediaResource(path=red)),
        ImageNode(image_path=str(red), text="Red image node"),
        TextNode(text="A text node"),
        ImageNode(image_url="http://127.0.0.1:9/x.png", text="Remote"),
        Document(text=""),
        Document(text="Broken", image_resource=MediaResource(path=corrupt)),
    ]
    items, errors = split(iter_llama_nodes(nodes, options))
    assert [(i.text, i.modality) for i in items] == [
        ("A blue box", Modality.IMAGE_TEXT),
        ("Only words", Modality.TEXT),
        ("Red by path", Modality.IMAGE_TEXT),
        ("Red image node", Modality.IMAGE_TEXT),
        ("A text node", Modality.TEXT),
    ]
    inline, words, by_path, image_node, _ = items
    assert Path(inline.image.uri).read_bytes() == blue and inline.source == "/docs/a.md"
    assert Path(inline.image.uri).parent == (options.cache_dir / "inline").resolve()
    assert words.metadata["lang"] == "en" and words.metadata["node_id"] == nodes[1].node_id
    assert by_path.image.uri == image_node.image.uri == str(red) and by_path.source == str(red)
    assert [e.kind for e in errors] == [Kind.URL_DISABLED, Kind.INVALID, Kind.CORRUPT_IMAGE]
    assert (words.ref_doc_id, words.source, words.name) == ("words", "words", "words")  # named by its doc_id
    assert inline.ref_doc_id == nodes[0].doc_id and image_node.ref_doc_id == nodes[3].node_id
    assert (by_path.name, image_node.name) == ("red.jpg", "red.jpg#chunk=2")  # one source: names kept apart
    again = split(iter_llama_nodes([Document(text="Only words", metadata={"lang": "en"}, doc_id="words")], options))[0]
    assert again[0].id == words.id


# -- the dispatcher -------------------------------------------------------------------------


def test_open_sources_picks_the_source_by_path_type(
    tmp_path: Path, corpus: Path, images: Path, docs: Path, server: str
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", jpeg((200, 0, 0), (128, 96)))
    manifest = write(tmp_path / "data" / "m.jsonl", json.dumps({"image": "img/red.jpg", "text": "Red"}) + "\n")
    markdown = write(docs / "a.md", "# A\n\n![blue](img/blue.png)\n")
    html = write(docs / "b.html", "<p>Red <img src='img/red%20cat.jpg'></p>")
    write(tmp_path / "single.txt", "Single caption")
    single = write(tmp_path / "single.png", png((5, 5, 5)))
    unknown = write(tmp_path / "backup.zip", b"PK\x03\x04\x00")
    url = f"{server}/ok.png"
    paths = [corpus, manifest, pdf, markdown, html, single, url, unknown, tmp_path / "absent.pdf", "ftp://h/x.png"]
    results = list(open_sources(paths, cache_dir=tmp_path / "cache", allow_urls=True))
    items, errors = split(results)
    sources = [i.source for i in items]
    assert sum(s.startswith(str(corpus)) for s in sources) == 6  # 5 images and a text file
    assert sources.count(str(manifest.resolve())) == 1
    assert sources.count(str(pdf)) == 5  # 2 pages, 2 page text chunks, a figure
    assert sources.count(str(markdown)) == 2 and sources.count(str(html)) == 2  # a text chunk and an image each
    assert [i.text for i in items if i.source == str(single)] == ["Single caption"]
    assert sources[-1] == url
    tail = [(e.source, e.kind) for e in errors[-3:]]
    assert tail == [
        (str(unknown), Kind.UNSUPPORTED),
        (str(tmp_path / "absent.pdf"), Kind.NOT_FOUND),
        ("ftp://h/x.png", Kind.UNSUPPORTED),
    ]
    assert "supported:" in errors[-3].reason


def test_items_are_named_relative_to_the_path_they_were_read_from(
    tmp_path: Path, corpus: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = make_pdf(tmp_path / "doc.pdf", jpeg((200, 0, 0), (128, 96)))
    manifest = write(tmp_path / "data" / "m.jsonl", json.dumps({"image": "img/red.jpg", "text": "Red"}) + "\n")
    single = write(tmp_path / "single.png", png((5, 5, 5)))
    write(tmp_path / "docs" / "a.md", "# A\n\n![red](../data/img/red.jpg)\n")
    monkeypatch.chdir(tmp_path)  # a relative path names its items as well as an absolute one
    items, _ = split(open_sources([corpus, manifest, pdf, single, "docs/a.md"], cache_dir=tmp_path / "cache"))
    names = [item.name for item in items]
    assert names[:6] == ["a.jpg", "b.png", "e.jpg", "orphan.txt#line=0,1", "sub/c.jpg", "sub/d.jpg"]  # by path in it
    pdf_names = [n for n in names if n.startswith("doc.pdf")]
    assert {"doc.pdf#page=1", "doc.pdf#page=2", "doc.pdf#page=1&chunk=1", "doc.pdf#page=1&figure=1"} <= set(pdf_names)
    assert [n for n in names[6:] if not n.startswith("doc.pdf")] == [
        "m.jsonl#line=1",
        "single.png",
        "a.md#a",
        "a.md#image=1",
    ]
    assert len(set(names)) == len(names)  # unique


def test_missing_sources_and_peeking_for_items(tmp_path: Path, corpus: Path) -> None:
    assert missing_sources([corpus, tmp_path / "absent", "https://example.org/x.png", "ftp://h/x.png"]) == [
        str(tmp_path / "absent"),
        "ftp://h/x.png",
    ]
    (tmp_path / "empty").mkdir()
    found, results = peek_items(open_sources([tmp_path / "empty", tmp_path / "absent"]))
    assert not found and [e.kind for e in results] == [Kind.NOT_FOUND]
    found, results = peek_items(open_sources([tmp_path / "absent", corpus]))
    everything = list(results)
    assert found and everything[0].kind is Kind.NOT_FOUND and len(everything) == len(list(open_sources([corpus]))) + 1


def test_open_sources_refuses_unknown_options_and_a_bare_path_at_once() -> None:
    with pytest.raises(ValidationError):
        open_sources(["x"], alow_urls=True)
    with pytest.raises(TypeError):
        open_sources("folder")
