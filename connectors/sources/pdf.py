"""PDFs: every page rendered to a PNG with its extracted text (``#page=N``), the page's text as chunks
(``#page=N&chunk=K``) and embedded images as items of their own (``#page=N&figure=K``). Every item's source is
the PDF itself, so a re-ingest of a PDF that lost pages drops the items of the lost pages.

Extracted text is cleaned (``chunking.clean_extracted``: ligatures, soft hyphens, words hyphenated at line ends).
A page whose text layer is empty or nearly so (a scan) is read from its rendering with OCR (``ocr``) unless
``ocr="off"``: that text becomes the page's, chunked like any, marked ``text_origin: ocr``; without the OCR extra
one warning per PDF counts such pages. A page where OCR finds nothing (or fails) is still stored as its picture.
OCR runs in the workers an ingest run lends (``later``) while the next pages render, several pages at once.

Pages are written once to ``cache_dir/pages/<pdf-sha>/page-0001-144dpi.png`` and reused on later
runs, so a rerun neither re-renders nor changes ids. Embedded images go to
``cache_dir/figures/<pdf-sha>/page-0001-figure-01.<ext>`` (JPEG and JPEG 2000 streams are kept as
they are); their text is what lies in a band of ``figure_context_pt`` above and below the image,
or the page's text when that band is empty. Images whose shorter side is under
``min_figure_pixels`` (icons, rules) are skipped. Pages larger than ``max_image_pixels`` at
``pdf_dpi`` are rendered at the resolution that fits. PDFium is not thread-safe: iterate one PDF
source per thread.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, LoadedImage, SourceResult, check_image, clean_text, make_item, write_atomic
from .chunking import Chunker, clean_extracted
from .compressed import is_gzip, read_bytes
from .later import Later, Pending, in_order, now
from .ocr import MIN_PAGE_CHARS, TEXT_ORIGIN, no_text_note, ocr_installed, ocr_result, start_ocr
from .options import SourceOptions

logger = logging.getLogger(__name__)


def iter_pdf(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield one item per page (rendered image + text) and, if ``pdf_figures``, one per embedded image."""
    return in_order(pdf_results(path, options or SourceOptions()))


def pdf_results(path: str | os.PathLike[str], options: SourceOptions) -> Iterator[Pending]:
    """``iter_pdf``'s results, the pages read with OCR still to come (``later``)."""
    pdf_path = Path(path).resolve()
    try:
        digest = _file_digest(pdf_path)
        doc = pdfium.PdfDocument(read_bytes(pdf_path, options) if is_gzip(pdf_path) else str(pdf_path))
    except FileNotFoundError:
        yield SourceError(source=str(pdf_path), reason="file not found", kind=Kind.NOT_FOUND)
        return
    except OSError as e:
        yield SourceError(source=str(pdf_path), reason=f"cannot read: {e.strerror or e}", kind=Kind.UNREADABLE)
        return
    except BadInput as e:
        yield e.report(str(pdf_path))
        return
    except pdfium.PdfiumError as e:
        reason = f"encrypted, a password is needed ({e})" if "password" in str(e).lower() else str(e)
        yield SourceError(source=str(pdf_path), reason=reason, kind=Kind.UNREADABLE_PDF)
        return
    try:
        if len(doc) == 0:
            yield SourceError(source=str(pdf_path), reason="PDF has no pages", kind=Kind.UNREADABLE_PDF)
        chunker = Chunker(options)
        unread = _Unread()
        for index in range(len(doc)):
            yield from _page_items(doc, index, pdf_path, digest, options, chunker, unread)
        yield now(lambda: chunker.report(str(pdf_path)))  # after the pages OCR reads, which chunk their text
        if unread.pages:
            note = no_text_note(unread.pages)
            yield SourceError(source=str(pdf_path), reason=note, kind=Kind.NO_TEXT_LAYER, severity=Severity.WARNING)
    finally:
        doc.close()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:32]


class _Unread:
    """Pages of one PDF that had no text layer and were not read with OCR (the extra is missing)."""

    pages = 0


@dataclass(frozen=True)
class _Figure:
    """An embedded image taken out of its page, waiting for the page's text (its fallback text)."""

    anchor: str
    where: str
    image: LoadedImage
    metadata: dict[str, object]
    nearby: str


def _page_items(
    doc: pdfium.PdfDocument,
    index: int,
    pdf_path: Path,
    digest: str,
    options: SourceOptions,
    chunker: Chunker,
    unread: _Unread,
) -> Iterator[Pending]:
    number = index + 1
    anchor = f"page={number}"
    where = f"{pdf_path}#{anchor}"
    metadata = {"file_path": str(pdf_path), "page": number, "page_count": len(doc)}
    try:
        page = doc[index]
    except pdfium.PdfiumError as e:
        yield SourceError(source=where, reason=f"cannot load page: {e}", kind=Kind.UNREADABLE_PDF)
        return
    try:  # everything PDFium does happens here, in the reader's thread; OCR may run elsewhere meanwhile
        textpage = page.get_textpage()
        text = clean_text(clean_extracted(textpage.get_text_range()))
        image = _rendered_page(page, number, digest, options)
        figures = (
            list(_figures(page, textpage, where, number, digest, metadata, options)) if options.pdf_figures else []
        )
    except BadInput as e:
        yield e.report(where)
        return
    except pdfium.PdfiumError as e:
        yield SourceError(source=where, reason=f"cannot read page: {e}", kind=Kind.UNREADABLE_PDF)
        return
    finally:
        page.close()
    page_items = _PageItems(str(pdf_path), where, anchor, image, metadata, figures, options, chunker)
    if len(text) < MIN_PAGE_CHARS and options.ocr != "off":  # a scan: its words are in its pixels only
        if ocr_installed():
            yield Later(start_ocr(image.data, options.max_image_pixels), partial(page_items.read, text))
            return
        unread.pages += 1
    yield from page_items(text, {})


@dataclass(frozen=True)
class _PageItems:
    """The items of one page, made once its text is known (from its text layer, or from OCR)."""

    source: str
    where: str
    anchor: str
    image: LoadedImage
    metadata: dict[str, object]
    figures: list[_Figure | SourceError]
    options: SourceOptions
    chunker: Chunker

    def read(self, layer: str, done: Future[str]) -> Iterator[SourceResult]:
        """The items with the text OCR found; where it found nothing (or failed), with the text layer's few
        characters, if any: the page is still its picture."""
        read, problems = ocr_result(done, self.where)
        text = clean_text(read)
        yield from self(text, {TEXT_ORIGIN: "ocr"}) if text else self(layer, {})
        yield from problems

    def __call__(self, text: str, origin: dict[str, object]) -> Iterator[SourceResult]:
        metadata = {**self.metadata, **origin}
        yield from make_item(
            source=self.source,
            where=self.where,
            options=self.options,
            text=text,
            image=self.image,
            metadata=metadata,
            anchor=self.anchor,
            chunked=True,  # the page's text is in its chunks, whole
        )
        yield from self.chunker.items(
            text, source=self.source, where=self.source, anchor=self.anchor, metadata=metadata, style="chunk"
        )
        for figure in self.figures:
            if isinstance(figure, SourceError):
                yield figure
                continue
            yield from make_item(
                source=self.source,
                where=figure.where,
                options=self.options,
                text=figure.nearby or text,
                image=figure.image,
                metadata={**figure.metadata, **origin} if not figure.nearby else figure.metadata,
                anchor=figure.anchor,
                chunked=not figure.nearby,
            )


def _rendered_page(page: pdfium.PdfPage, number: int, digest: str, options: SourceOptions) -> LoadedImage:
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        raise BadInput(Kind.UNREADABLE_PDF, f"page has no area ({width}x{height} pt)")
    scale = min(options.pdf_dpi / 72, math.sqrt(options.max_image_pixels / (width * height)))
    path = (options.cache_dir / "pages" / digest / f"page-{number:04d}-{round(scale * 72)}dpi.png").resolve()
    if path.is_file():
        data = path.read_bytes()
    else:
        buffer = io.BytesIO()
        page.render(scale=scale).to_pil().save(buffer, format="PNG")
        data = buffer.getvalue()
        write_atomic(path, data)
    return LoadedImage(path, data, "image/png", {"dpi": round(scale * 72)})


def _figures(
    page: pdfium.PdfPage,
    textpage: pdfium.PdfTextPage,
    page_where: str,
    number: int,
    digest: str,
    page_metadata: dict[str, object],
    options: SourceOptions,
) -> Iterator[_Figure | SourceError]:
    images = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,))
    for figure, obj in enumerate(images, start=1):
        anchor = f"page={number}&figure={figure}"
        where = f"{page_where.split('#', 1)[0]}#{anchor}"
        try:
            width, height = obj.get_px_size()
            if min(width, height) < options.min_figure_pixels:
                logger.debug("%s: %dx%d image skipped as too small to be a figure", where, width, height)
                continue
            if width * height > options.max_image_pixels:
                raise BadInput(Kind.IMAGE_TOO_LARGE, f"{width}x{height} embedded image exceeds the pixel limit")
            buffer = io.BytesIO()
            obj.extract(buffer)
            data = buffer.getvalue()
            info = check_image(data, options.max_image_pixels)
            left, bottom, right, top = obj.get_bounds()
        except BadInput as e:
            yield e.report(where)
            continue
        except (pdfium.PdfiumError, ValueError, OSError) as e:
            yield SourceError(source=where, reason=f"cannot extract embedded image: {e}", kind=Kind.UNREADABLE_PDF)
            continue
        margin = options.figure_context_pt
        nearby = clean_text(clean_extracted(textpage.get_text_bounded(bottom=bottom - margin, top=top + margin)))
        name = f"page-{number:04d}-figure-{figure:02d}{info.suffix}"
        path = (options.cache_dir / "figures" / digest / name).resolve()
        if not path.is_file():
            write_atomic(path, data)
        metadata = {
            **page_metadata,
            "figure": figure,
            "bbox": [round(v, 2) for v in (left, bottom, right, top)],
            "context": "nearby" if nearby else "page",
        }
        yield _Figure(anchor, where, LoadedImage(path, data, info.mime_type, {}), metadata, nearby)
