"""Markdown and HTML documents: their text as chunks by section, and each referenced image as an item with the
text around it.

Every section (a heading and the blocks up to the next heading) becomes text-only chunks that fit the encoder's
window (``chunking``), anchored where a browser opens the section: in Markdown by GitHub's slug of the heading
(``#install``; a second "Install" is ``#install-1``), in HTML by the id (or ``<a name>``) at or just before the
heading, taken from the page and never made up. A section's further chunks add ``&chunk=N`` (``#install&chunk=2``),
which links drop; text before the first anchored heading has no fragment. Their metadata holds the heading path
(``Guide > Install``). Images are ``#image=N``, at most ``max_images_per_document`` per document.

A document is read as a sequence of blocks (headings, paragraphs, list items, table cells,
figures). An image's text is its alt text and title, the nearest heading above it, and the text of
its own block; when the image stands alone in its block, the nearest text blocks before and after
it in the same section are used instead. An HTML ``<figure>`` is one block, so its
``<figcaption>`` is the image's context. Surrounding text is capped at ``context_chars``.

Blocks come from ``markup``. Relative references are resolved
against the document's folder; remote images are fetched only when ``allow_urls`` is on. An image that is remote
(a badge) and not fetched, or missing, is a warning: the document's text and other images are stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, SourceResult, make_item, missing_caption, store_image
from .chunking import Chunker, Slugger
from .compressed import read_bytes
from .markup import Block, Image, html_blocks, markdown_blocks
from .options import SourceOptions
from .refs import load_image_ref

MARKDOWN_SUFFIXES = (".md", ".markdown")
#: Why a referenced image may be absent while its document is whole (remote, not fetched or failing; missing):
#: a warning. A local image that is there but broken stays an error.
_ABSENT_IMAGE = frozenset({Kind.URL_DISABLED, Kind.FETCH_FAILED, Kind.NOT_FOUND})
HTML_SUFFIXES = (".html", ".htm")


def iter_markdown(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield a Markdown document's text chunks and one item per image it references."""
    return _iter_document(Path(path), markdown_blocks, options or SourceOptions(), "slug")


def iter_html(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield an HTML document's text chunks and one item per ``<img>``."""
    return _iter_document(Path(path), html_blocks, options or SourceOptions(), "ids")


def _iter_document(
    path: Path, parse: Callable[[str], list[Block]], options: SourceOptions, anchors: str
) -> Iterator[SourceResult]:
    doc = path.resolve()
    try:
        content = yield from read_text(doc, options)
    except BadInput as e:
        yield e.report(str(doc))
        return
    yield from block_items(doc, parse(content), options, anchors)


def block_items(
    doc: Path, blocks: Sequence[Block], options: SourceOptions, anchors: str = "slug"
) -> Iterator[SourceResult]:
    """A document's items from its blocks: text chunks by section, then its images (Markdown, HTML, DOCX, RST).
    ``anchors`` says how sections are anchored: ``"slug"``, GitHub's slugs of their headings (Markdown, DOCX);
    ``"ids"``, the ids the document gives them (HTML, RST)."""
    chunker = Chunker(options)
    yield from _section_items(doc, blocks, chunker, anchors)
    yield from chunker.report(str(doc))
    yield from _images(doc, blocks, options)


def read_text(path: Path, options: SourceOptions) -> Generator[SourceError, None, str]:
    """Generator returning a file's text (``yield from``), unpacked if it is a ``.gz``: UTF-8, else Latin-1 with a
    warning; binary data and files over ``max_document_bytes`` raise ``BadInput``."""
    raw = read_bytes(path, options)
    if b"\x00" in raw[:8192]:
        raise BadInput(Kind.NOT_TEXT, "binary data, not text (NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        yield SourceError(
            source=str(path),
            reason=f"not valid UTF-8 ({e.reason} at byte {e.start}); read as Latin-1",
            kind=Kind.NOT_TEXT,
            severity=Severity.WARNING,
        )
        return raw.decode("latin-1")


def _section_items(doc: Path, blocks: Sequence[Block], chunker: Chunker, anchors: str) -> Iterator[SourceResult]:
    """Text chunks of each section, anchored by its heading (``#install``, then ``#install&chunk=2`` within a long
    section); text before the first anchored heading has no fragment (the document's top)."""
    path: list[tuple[int, str]] = []  # (level, heading) from the top
    texts: list[str] = []
    slugs = Slugger()
    anchor = ""
    for block in [*blocks, Block(text="", level=1)]:  # a last heading closes the last section
        if not block.heading:
            if block.text:
                texts.append(block.text)
            continue
        if texts:
            headings = [h for _, h in path]
            metadata = {"file_path": str(doc), "heading": headings[-1] if headings else "", "heading_path": headings}
            yield from chunker.items(
                "\n\n".join(texts), source=str(doc), where=str(doc), anchor=anchor, metadata=metadata, style="first"
            )
        while path and path[-1][0] >= block.level:
            path.pop()
        path.append((block.level, block.text))
        texts = [block.text] if block.text else []
        anchor = slugs.slug(block.text) if anchors == "slug" else block.anchor


def _images(doc: Path, blocks: Sequence[Block], options: SourceOptions) -> Iterator[SourceResult]:
    heading = ""
    count = 0
    cap = options.max_images_per_document
    for index, block in enumerate(blocks):
        if block.heading:
            heading = block.text
        for image in block.images:
            count += 1
            if count > cap:
                continue
            context = _context(blocks, index, options.context_chars)
            text = "\n".join(_unique([image.alt, image.title, heading, context]))
            metadata = {"file_path": str(doc), "src": _shown(image.src), "alt": image.alt, "heading": heading}
            yield from _image_items(doc, image, count, text, {**metadata, "image_index": count}, options)
    if count > cap:
        reason = f"{count} images, over the {cap}-image cap per document: {count - cap} left out"
        yield SourceError(source=str(doc), reason=reason, kind=Kind.TOO_MANY_IMAGES, severity=Severity.WARNING)


def _image_items(
    doc: Path, image: Image, number: int, text: str, metadata: dict[str, object], options: SourceOptions
) -> Iterator[SourceResult]:
    where = f"{doc} -> {_shown(image.src) or f'image {number} (no src)'}"
    if not image.src.strip():
        reason = "image without a src: left out, the document's text is kept"
        yield SourceError(source=where, reason=reason, kind=Kind.BAD_REFERENCE, severity=Severity.WARNING)
        return
    try:
        if image.data is not None:
            loaded = store_image(image.data, "figures", options)
        else:
            loaded = load_image_ref(image.src, doc.parent, options, url_encoded=True)
    except BadInput as e:
        problem = e.report(where)
        if e.kind in _ABSENT_IMAGE:  # a badge on the web, a picture not shipped: the page itself is whole
            reason = f"{e.reason}; the image is left out, the document's text is kept"
            problem = problem.model_copy(update={"reason": reason, "severity": Severity.WARNING})
        yield problem
        return
    yield from make_item(
        source=str(doc),
        where=where,
        options=options,
        text=text,
        image=loaded,
        metadata=metadata,
        anchor=f"image={number}",
    )
    if not text:
        yield missing_caption(where, "no alt text and no surrounding text; kept as an image-only item")


def _shown(src: str) -> str:
    """A reference as reports and metadata show it: data: URIs cut to their header."""
    if src[:5].lower() == "data:" and len(src) > 64:
        return f"{src[:48]}… ({len(src)} characters)"
    return src


def _context(blocks: Sequence[Block], index: int, limit: int) -> str:
    """The image's own block text, else the nearest text blocks before and after it within its section."""
    block = blocks[index]
    if block.text and not block.heading:
        return _shorten(block.text, limit)
    before = next((b.text for b in _section(blocks[i] for i in range(index - 1, -1, -1)) if b.text), "")
    after = next((b.text for b in _section(blocks[i] for i in range(index + 1, len(blocks))) if b.text), "")
    return _shorten("\n".join(t for t in (before, after) if t), limit)


def _section(blocks: Iterable[Block]) -> Iterator[Block]:
    for block in blocks:
        if block.heading:
            return
        yield block


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut + "…"


def _unique(parts: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for part in parts:
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return seen
