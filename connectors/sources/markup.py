"""Markdown and HTML read as blocks: headings with their level, paragraphs, list items, table cells, code, and the
images inside each. Markdown is parsed with markdown-it-py (CommonMark plus tables); raw HTML inside it, and HTML
documents, with the standard library's ``html.parser``."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from markdown_it.token import Token


@dataclass
class Image:
    src: str
    alt: str = ""
    title: str = ""
    data: bytes | None = None  # the picture itself, where the document embeds it (DOCX)


@dataclass
class Block:
    text: str
    level: int = 0  # 1-6 for a heading
    #: A heading's fragment as its document gives it: the HTML id (or ``<a name>``) at or just before the heading,
    #: docutils' section id; empty where the document has none (Markdown headings are slugged by the reader).
    anchor: str = ""
    images: list[Image] = field(default_factory=list)
    code: bool = False

    @property
    def heading(self) -> bool:
        return self.level > 0


def squash(text: str) -> str:
    return " ".join(text.split())


# -- Markdown -------------------------------------------------------------------------------


def markdown_blocks(content: str) -> list[Block]:
    """A Markdown document's blocks: headings (with their level), paragraphs, list items, table cells, code."""
    blocks: list[Block] = []
    level = 0
    for token in MarkdownIt("commonmark").enable("table").parse(content):
        if token.type == "heading_open":
            level = int(token.tag[1:])
        elif token.type == "heading_close":
            level = 0
        elif token.type == "inline":
            blocks.append(_inline_block(token.children or [], level))
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(Block(text=token.content.strip("\n"), code=True))
        elif token.type == "html_block":
            blocks.extend(html_blocks(token.content))
    return blocks


def _inline_block(children: list[Token], level: int) -> Block:
    block = Block(text="", level=level)
    words: list[str] = []
    for child in children:
        if child.type == "image":
            attrs = child.attrs
            src, title = str(attrs.get("src", "")), str(attrs.get("title", ""))
            block.images.append(Image(src=src, alt=_plain(child.children or []), title=title))
        elif child.type == "html_inline":
            block.images.extend(image for b in html_blocks(child.content) for image in b.images)
        else:
            words.append(_plain([child]))
    block.text = squash("".join(words))
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
        self.blocks: list[Block] = []
        self._words: list[str] = []
        self._images: list[Image] = []
        self._level = 0
        self._skip_depth = 0
        self._figure_depth = 0
        self._last_id = ""  # the last id (or <a name>) met: a heading's anchor is the one at or just before it

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        target = named.get("id") or (named.get("name") if tag == "a" else None)
        if target and target.strip() and not self._skip_depth:
            self._last_id = target.strip()
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif self._skip_depth:
            return
        elif tag == "img":
            a = {k: v or "" for k, v in attrs}
            self._images.append(Image(src=a.get("src", ""), alt=a.get("alt", ""), title=a.get("title", "")))
        elif tag == "br":
            self._words.append(" ")
        elif tag == "figure":
            self._flush()
            self._figure_depth += 1
        elif tag in _HEADING_TAGS:
            self._flush()
            self._level = int(tag[1])
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
            self._level = 0
        elif tag in _BLOCK_TAGS and not self._figure_depth:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._words.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text = squash("".join(self._words))
        if text or self._images:
            anchor = self._last_id if self._level else ""
            self.blocks.append(Block(text=text, level=self._level, images=self._images, anchor=anchor))
        self._words, self._images = [], []


def html_blocks(content: str) -> list[Block]:
    """An HTML document's blocks; a ``<figure>`` is one block, its caption the text of its images."""
    parser = _HtmlBlocks()
    parser.feed(content)
    parser.close()
    return parser.blocks
