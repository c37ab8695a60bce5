"""reStructuredText documents, read by docutils: sections as Markdown's headings, anchored by the ids docutils
gives them (those of the HTML it would render: ``#installation``, ``#installation-1`` for a second one).

The document tree becomes ``markup`` blocks (section titles with their depth and id, paragraphs, list items,
literal blocks, table cells, figures with their captions) and goes on as a Markdown document does
(``documents.block_items``). Directives that reach outside the file (``include``, ``raw``, ``csv-table`` with a
``:file:``) are off: a document cannot make the reader open other files. Parse problems never stop the reading;
docutils keeps what it understood.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._common import BadInput, SourceResult
from .documents import block_items, read_text
from .markup import Block, Image, squash
from .options import SourceOptions

RST_SUFFIXES = (".rst", ".rest")

_SETTINGS = {
    "doctitle_xform": False,  # the first title stays a section, with its id
    "file_insertion_enabled": False,
    "raw_enabled": False,
    "report_level": 5,
    "halt_level": 5,
    "warning_stream": False,
    "_disable_config": True,
    "input_encoding": "unicode",
}


def iter_rst(path: str | os.PathLike[str], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield a reStructuredText document's text chunks by section and one item per image it references."""
    options = options or SourceOptions()
    doc = Path(path).resolve()
    try:
        content = yield from read_text(doc, options)
    except BadInput as e:
        yield e.report(str(doc))
        return
    yield from block_items(doc, rst_blocks(content), options, anchors="ids")


def rst_blocks(content: str) -> list[Block]:
    """A reStructuredText document's blocks, section titles carrying their depth and docutils' id."""
    from docutils.core import publish_doctree

    tree = publish_doctree(content, settings_overrides=_SETTINGS)
    blocks: list[Block] = []
    _visit(tree, 0, blocks)
    return blocks


def _visit(node: object, depth: int, blocks: list[Block]) -> None:
    from docutils import nodes

    for child in getattr(node, "children", ()):
        if isinstance(child, (nodes.system_message, nodes.comment, nodes.raw, nodes.substitution_definition)):
            continue
        if isinstance(child, nodes.section):
            _visit(child, depth + 1, blocks)
        elif isinstance(child, nodes.title) and isinstance(node, nodes.section):
            ids = node.get("ids") or [""]
            blocks.append(Block(text=squash(child.astext()), level=min(max(depth, 1), 6), anchor=ids[0]))
        elif isinstance(child, nodes.image):
            blocks.append(Block(text="", images=[_image(child)]))
        elif isinstance(child, nodes.figure):
            caption = " ".join(squash(c.astext()) for c in child.children if not isinstance(c, nodes.image))
            images = [_image(i) for i in child.findall(nodes.image)]
            blocks.append(Block(text=caption.strip(), images=images))
        elif isinstance(child, nodes.literal_block):
            if child.astext().strip():
                blocks.append(Block(text=child.astext().strip("\n"), code=True))
        elif isinstance(child, nodes.TextElement):
            images = [_image(i) for i in child.findall(nodes.image)]
            text = squash(child.astext())
            if text or images:
                blocks.append(Block(text=text, images=images))
        else:
            _visit(child, depth, blocks)


def _image(node: Any) -> Image:
    get = node.get
    return Image(src=str(get("uri", "")), alt=str(get("alt", "")), title=str(get("title", "")))
