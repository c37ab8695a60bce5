"""Word (.docx) and PowerPoint (.pptx) files, read with python-docx and python-pptx.

DOCX: paragraphs and tables in document order, headings (``Heading N`` and ``Title`` styles) opening sections,
become text chunks by section exactly as Markdown does (``#install``, ``#install-2``); every embedded picture
becomes an image+text item (``#image=N``) with its paragraph's text, or the nearest text around it, and its
heading. PPTX: each slide's text (titles, text boxes, tables, notes) becomes chunks ``#slide=N`` (then
``#slide=N&chunk=2``, …); each picture an image+text item ``#slide=N&image=K`` with the slide's title and text.
Pictures are written once to ``cache_dir/figures``, named by their hash, as PDF figures are.

Both formats are zip files: one whose entries would unpack to more than ``max_document_bytes`` is refused before
it is opened (a zip bomb), and a file the libraries cannot read is one error, never a stopped run.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.items import SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, SourceResult, make_item, store_image
from .chunking import Chunker, clean_extracted
from .compressed import is_gzip, read_bytes
from .documents import block_items
from .markup import Block, Image
from .options import SourceOptions

OFFICE_SUFFIXES = (".docx", ".pptx")
_BLIP = "{http://schemas.openxmlformats.org/drawingml/2006/main}blip"
_EMBED = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed"


def iter_docx(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield a Word document's text chunks by section and one item per embedded picture."""
    options = options or SourceOptions()
    doc = Path(path).resolve()
    try:
        blocks = _docx_blocks(_open(doc, options, "docx"))
    except BadInput as e:
        yield e.report(str(doc))
        return
    yield from block_items(doc, blocks, options)


def iter_pptx(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield each slide's text chunks and one item per picture on it."""
    options = options or SourceOptions()
    doc = Path(path).resolve()
    try:
        slides = list(_open(doc, options, "pptx").slides)
    except BadInput as e:
        yield e.report(str(doc))
        return
    chunker = Chunker(options)
    for number, slide in enumerate(slides, start=1):
        try:
            title, text, pictures = _slide_content(slide)
        except Exception as e:  # a broken part of one slide costs that slide only
            where = f"{doc}#slide={number}"
            yield SourceError(source=where, reason=f"cannot read slide: {e}", kind=Kind.UNREADABLE_DOCUMENT)
            continue
        metadata = {"file_path": str(doc), "slide": number, "title": title}
        yield from chunker.items(
            text, source=str(doc), where=str(doc), anchor=f"slide={number}", metadata=metadata, style="first"
        )
        yield from _slide_pictures(doc, number, pictures, f"{title}\n{text}".strip(), metadata, options)
    yield from chunker.report(str(doc))


def _open(doc: Path, options: SourceOptions, kind: str) -> Any:
    """The document opened by its library, after the zip-bomb check; ``BadInput`` when it cannot be."""
    source: Path | io.BytesIO = io.BytesIO(read_bytes(doc, options)) if is_gzip(doc) else doc
    try:
        with zipfile.ZipFile(source) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
    except FileNotFoundError:
        raise BadInput(Kind.NOT_FOUND, "file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadInput(Kind.UNREADABLE_DOCUMENT, f"not a readable .{kind} file (corrupt zip: {e})") from None
    if unpacked > options.max_document_bytes:
        raise BadInput(
            Kind.UNREADABLE_DOCUMENT,
            f"unpacks to {unpacked:,} bytes, over the {options.max_document_bytes:,}-byte limit (a zip bomb?)",
        )
    try:
        if kind == "docx":
            import docx

            return docx.Document(source if isinstance(source, io.BytesIO) else str(doc))
        import pptx

        return pptx.Presentation(source if isinstance(source, io.BytesIO) else str(doc))
    except Exception as e:  # the libraries raise KeyError, lxml and package errors on broken files
        raise BadInput(Kind.UNREADABLE_DOCUMENT, f"not a readable .{kind} file: {type(e).__name__}: {e}") from None


def _docx_blocks(document: Any) -> list[Block]:
    from docx.table import Table

    blocks: list[Block] = []
    for part in document.iter_inner_content():
        if isinstance(part, Table):
            rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in part.rows]
            blocks.append(Block(text=clean_extracted("\n".join(r for r in rows if r.strip(" |")))))
            continue
        style = (part.style.name if part.style is not None else "") or ""
        level = _heading_level(style)
        blocks.append(Block(text=clean_extracted(part.text).strip(), level=level, images=_docx_pictures(part)))
    return blocks


def _heading_level(style: str) -> int:
    """1 for the title, 2-10 for Heading 1-9 (so that headings nest under the title), 0 for body text."""
    if style == "Title":
        return 1
    if style.startswith("Heading ") and style[8:].isdigit():
        return int(style[8:]) + 1
    return 0


def _docx_pictures(paragraph: Any) -> list[Image]:
    images = []
    for blip in paragraph._p.iter(_BLIP):
        rid = blip.get(_EMBED)
        related = paragraph.part.related_parts.get(rid) if rid else None
        if related is not None:
            images.append(Image(src=str(related.partname).lstrip("/"), data=related.blob))
    return images


def _slide_content(slide: Any) -> tuple[str, str, list[Any]]:
    """A slide's title, its whole text (shapes in order, tables by row, then the notes) and its pictures."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    title_shape = slide.shapes.title
    title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
    texts, pictures = [], []
    for shape in _shapes(slide.shapes):
        if shape.shape_type == MSO_SHAPE_TYPE.PICTURE:
            pictures.append(shape)
        if getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
            texts.append(shape.text_frame.text.strip())
        elif getattr(shape, "has_table", False):
            texts.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in shape.table.rows)
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        texts.append(slide.notes_slide.notes_text_frame.text.strip())
    return title, clean_extracted("\n\n".join(t for t in texts if t)), pictures


def _shapes(shapes: Any) -> Iterator[Any]:
    """Every shape, those inside groups included."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _slide_pictures(
    doc: Path, number: int, pictures: list[Any], text: str, metadata: dict[str, Any], options: SourceOptions
) -> Iterator[SourceResult]:
    for index, picture in enumerate(pictures[: options.max_images_per_document], start=1):
        anchor = f"slide={number}&image={index}"
        where = f"{doc}#{anchor}"
        try:
            loaded = store_image(picture.image.blob, "figures", options)
        except BadInput as e:
            yield e.report(where)
            continue
        except Exception as e:  # a picture whose part is missing or broken
            yield SourceError(source=where, reason=f"cannot read picture: {e}", kind=Kind.UNREADABLE_DOCUMENT)
            continue
        yield from make_item(
            source=str(doc),
            where=where,
            options=options,
            text=text[: options.context_chars],
            image=loaded,
            metadata={**metadata, "image_index": index},
            anchor=anchor,
        )
