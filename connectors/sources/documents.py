"""Markdown and HTML documents: each referenced image becomes an item with the text around it.

A document is read as a sequence of blocks (headings, paragraphs, list items, table cells,
figures). An image's text is its alt text and title, the nearest heading above it, and the text of
its own block; when the image stands alone in its block, the nearest text blocks before and after
it in the same section are used instead. An HTML ``<figure>`` is one block, so its
``<figcaption>`` is the image's context. Surrounding text is capped at ``context_chars``.

Markdown is parsed with markdown-it-py (CommonMark plus tables); raw HTML inside it, and HTML
documents, with the standard library's ``html.parser``. Relative references are resolved
against the document's folder; remote images are fetched only when ``allow_urls`` is on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

from rag.items import Severity, SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, SourceResult, make_item, missing_caption, read_file
from .options import SourceOptions
from .refs import load_image_ref

MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")


@dataclass
class _Image:
    src: str
    alt: str = ""
    title: str = ""


@dataclass
class _Block:
    text: str
    heading: bool = False
    images: list[_Image] = field(default_factory=list)


def iter_markdown(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield one item per image referenced in a Markdown document."""
    return _iter_document(Path(path), _markdown_blocks, options or SourceOptions())


def iter_html(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield one item per ``<img>`` in an HTML document."""
    return _iter_document(Path(path), _html_blocks, options or SourceOptions())


def _iter_document(
    path: Path, parse: Callable[[str], list[_Block]], options: SourceOptions
) -> Iterator[SourceResult]:
    doc = path.resolve()
    try:
        raw = read_file(doc)
    except BadInput as e:
        yield e.report(str(doc))
        return
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        content = raw.decode("utf-8-sig", errors="replace")
        yield SourceError(
            source=str(doc),
            reason=f"not valid UTF-8 ({e.reason} at byte {e.start}); undecodable bytes replaced",
            kind=Kind.UNREADABLE,
            severity=Severity.WARNING,
        )
    blocks = parse(content)
    if not any(block.images for block in blocks):
        reason = "no images referenced"
        yield SourceError(source=str(doc), reason=reason, kind=Kind.NO_IMAGES, severity=Severity.WARNING)
    heading = ""
    count = 0
    for index, block in enumerate(blocks):
        if block.heading:
            heading = block.text
        for image in block.images:
            count += 1
            context = _context(blocks, index, options.context_chars)
            text = "\n".join(_unique([image.alt, image.title, heading, context]))
            metadata = {"file_path": str(doc), "src": _shown(image.src), "alt": image.alt, "heading": heading}
            yield from _image_items(doc, image, count, text, {**metadata, "image_index": count}, options)


def _image_items(
    doc: Path, image: _Image, number: int, text: str, metadata: dict[str, object], options: SourceOptions
) -> Iterator[SourceResult]:
    where = f"{doc} -> {_shown(image.src) or f'image {number} (no src)'}"
    if not image.src.strip():
        yield SourceError(source=where, reason="image without a src", kind=Kind.BAD_REFERENCE)
        return
    try:
        loaded = load_image_ref(image.src, doc.parent, options, url_encoded=True)
    except BadInput as e:
        yield e.report(where)
        return
    yield from make_item(source=str(doc), where=where, options=options, text=text, image=loaded, metadata=metadata)
    if not text:
        yield missing_caption(where, "no alt text and no surrounding text; kept as an image-only item")


def _shown(src: str) -> str:
    """A reference as reports and metadata show it: data: URIs cut to their header."""
    if src[:5].lower() == "data:" and len(src) > 64:
        return f"{src[:48]}… ({len(src)} characters)"
    return src


def _context(blocks: Sequence[_Block], index: int, limit: int) -> str:
    """The image's own block text, else the nearest text blocks before and after it within its section."""
    block = blocks[index]
    if block.text and not block.heading:
        return _shorten(block.text, limit)
    before = next((b.text for b in _section(blocks[i] for i in range(index - 1, -1, -1)) if b.text), "")
    after = next((b.text for b in _section(blocks[i] for i in range(index + 1, len(blocks))) if b.text), "")
    return _shorten("\n".join(t for t in (before, after) if t), limit)


def _section(blocks: Iterable[_Block]) -> Iterator[_Block]:
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


def _squash(text: str) -> str:
    return " ".join(text.split())


# -- Markdown -------------------------------------------------------------------------------


def _markdown_blocks(content: str) -> list[_Block]:
    blocks: list[_Block] = []
    in_heading = False
    for token in MarkdownIt("commonmark").enable("table").parse(content):
        if token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline":
            blocks.append(_inline_block(token.children or [], in_heading))
        elif token.type == "html_block":
            blocks.extend(_html_blocks(token.content))
    return blocks


def _inline_block(children: list[Token], heading: bool) -> _Block:
    block = _Block(text="", heading=heading)
    words: list[str] = []
    for child in children:
        if child.type == "image":
            attrs = child.attrs
            src, title = str(attrs.get("src", "")), str(attrs.get("title", ""))
            block.images.append(_Image(src=src, alt=_plain(child.children or []), title=title))
        elif child.type == "html_inline":
            block.images.extend(image for b in _html_blocks(child.content) for image in b.images)
        else:
            words.append(_plain([child]))
    block.text = _squash("".join(words))
    return block


def _plain(tokens: list[Token]) -> str:
    """The visible text of inline tokens (emphasis and links unwrapped, breaks as spaces)."""
    out = []
    for token in tokens:
        if token.type in ("text", "code_inline"):
            out.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif token.type == "image":
            out.append(_plain(token.children or []))
    return "".join(out)


# -- HTML -----------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd div dl dt figcaption footer form header hr html "
    "li main nav ol p pre section table tbody td tfoot th thead tr ul".split()
)
_HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "title", "head"})


class _HtmlBlocks(HTMLParser):
    """Collects text blocks and the images inside them; a <figure> is kept as one block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self._words: list[str] = []
        self._images: list[_Image] = []
        self._heading = False
        self._skip_depth = 0
        self._figure_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif self._skip_depth:
            return
        elif tag == "img":
            a = {k: v or "" for k, v in attrs}
            self._images.append(_Image(src=a.get("src", ""), alt=a.get("alt", ""), title=a.get("title", "")))
        elif tag == "br":
            self._words.append(" ")
        elif tag == "figure":
            self._flush()
            self._figure_depth += 1
        elif tag in _HEADING_TAGS:
            self._flush()
            self._heading = True
        elif tag in _BLOCK_TAGS and not self._figure_depth:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "figure" and self._figure_depth:
            self._figure_depth -= 1
            if not self._figure_depth:
                self._flush()
        elif tag in _HEADING_TAGS:
            self._flush()
            self._heading = False
        elif tag in _BLOCK_TAGS and not self._figure_depth:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._words.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = _squash("".join(self._words))
        if text or self._images:
            self.blocks.append(_Block(text=text, heading=self._heading, images=self._images))
        self._words, self._images = [], []


def _html_blocks(content: str) -> list[_Block]:
    parser = _HtmlBlocks()
    parser.feed(content)
    parser.close()
    return parser.blocks

