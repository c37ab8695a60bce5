"""OCR: scanned PDF pages and pictures of text read with RapidOCR (the OCR extra), small crops to keep it quick."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from connectors.sources import SourceOptions, iter_folder, iter_pdf
from connectors.sources import ocr as ocr_module
from connectors.sources.ocr import OcrUnavailableError, read_pixels, require_ocr
from rag.items import KnowledgeItem, Severity
from rag.items import SourceErrorKind as Kind
from tests.helpers.documents import scanned_pdf, text_picture

from .test_sources import split, write

needs_ocr = pytest.mark.skipif(not ocr_module.ocr_installed(), reason="the OCR extra (mmrag[ocr]) is not installed")
WORDS = "Freight wagons leave at dawn"


def words_of(text: str) -> set[str]:
    return {w.strip(".,").lower() for w in text.split()}


@needs_ocr
@pytest.mark.slow
def test_a_scanned_page_is_read_with_ocr_and_a_blank_one_stays_a_picture(tmp_path: Path) -> None:
    blank = Image.new("RGB", (540, 80), "white")
    pdf = scanned_pdf(tmp_path / "scan.pdf", [text_picture(WORDS), blank])
    options = SourceOptions(cache_dir=tmp_path / "cache", pdf_figures=False, pdf_dpi=150)
    items, problems = split(iter_pdf(pdf, options))
    assert problems == []
    page = next(i for i in items if i.anchor == "page=1")
    assert page.image is not None and page.metadata["text_origin"] == "ocr"
    assert words_of(page.text) >= words_of(WORDS)  # every word of the scan
    chunk = next(i for i in items if i.anchor == "page=1&chunk=1")
    assert chunk.text == page.text and chunk.metadata["text_origin"] == "ocr"  # chunked, so BM25 and the LLM see it
    second = [i for i in items if i.anchor.startswith("page=2")]
    assert [(i.anchor, i.text, i.image is not None) for i in second] == [("page=2", "", True)]
    assert "text_origin" not in second[0].metadata
    off = split(iter_pdf(pdf, options.model_copy(update={"ocr": "off"})))[0]
    assert [i.text for i in off] == ["", ""]


@needs_ocr
@pytest.mark.slow
def test_ocr_all_reads_pictures_of_text_and_keeps_their_caption(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    text_picture(WORDS).save(buffer, "PNG")
    write(tmp_path / "slide.png", buffer.getvalue())
    write(tmp_path / "slide.txt", "Timetable slide")
    options = SourceOptions(cache_dir=tmp_path / "cache", ocr="all")
    [item] = [r for r in iter_folder(tmp_path, options) if isinstance(r, KnowledgeItem)]
    assert item.text.startswith("Timetable slide\n\n") and words_of(item.text) >= words_of(WORDS)
    assert item.metadata["text_origin"] == "caption+ocr"
    auto = [
        r for r in iter_folder(tmp_path, options.model_copy(update={"ocr": "auto"})) if isinstance(r, KnowledgeItem)
    ]
    assert [i.text for i in auto] == ["Timetable slide"]  # auto leaves pictures alone


def test_the_pixel_guard_refuses_ocr_of_a_huge_scan() -> None:
    from connectors.sources import BadInput

    with pytest.raises(BadInput, match="exceeds the 4000-pixel limit") as caught:
        read_pixels(Image.new("L", (100, 100)), max_pixels=4000)
    assert caught.value.kind is Kind.IMAGE_TOO_LARGE


def test_without_the_extra_auto_counts_unread_pages_once_and_all_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ocr_module, "ocr_installed", lambda: False)
    monkeypatch.setattr("connectors.sources.pdf.ocr_installed", lambda: False)
    blank = Image.new("RGB", (300, 60), "white")
    pdf = scanned_pdf(tmp_path / "scan.pdf", [blank, blank, blank])
    items, problems = split(iter_pdf(pdf, SourceOptions(cache_dir=tmp_path / "cache", pdf_figures=False)))
    assert len(items) == 3  # every page is still its picture
    assert [(p.kind, p.severity) for p in problems] == [(Kind.NO_TEXT_LAYER, Severity.WARNING)]
    assert problems[0].reason.startswith("3 pages without a text layer") and "mmrag[ocr]" in problems[0].reason
    with pytest.raises(OcrUnavailableError, match=r"pip install 'mmrag\[ocr\]'"):
        require_ocr("all")
    require_ocr("auto")  # auto and off need nothing
