"""LlamaIndex documents and nodes: ``Document``/``ImageDocument``/``Node`` and ``TextNode``/``ImageNode``.

llama-index-core 0.14 keeps a ``Node``'s (and so a ``Document``'s) content in ``text_resource`` and
``image_resource`` (``MediaResource``: base64 ``data``, ``path`` or ``url``), while the older
``ImageNode`` keeps ``text`` and ``image`` (base64), ``image_path`` or ``image_url``. Inline image
data is written to ``cache_dir/inline`` so the item's image is a file; URLs are fetched only when
``allow_urls`` is on.

Identity follows LlamaIndex: an item's document (``ref_doc_id``) is the node's ``ref_doc_id``, else its own id
(a ``Document``'s ``doc_id``), so re-ingesting a document replaces its items and nothing else. Pages read as
separate ``Document``s (``SimpleDirectoryReader`` gives one per PDF page) are separate documents. An item's source
is the node's ``file_path`` metadata when present (pages of one file share it), else the image's path or URL,
else the document's id; it is named by its file (``report.pdf#page=3``, from ``page_label``) or by its
document's id. A text-only ``Document`` is chunked like a file, to the encoder's window
(``SourceOptions.text_window``). Nodes are stored as they were split, one item each (a text over the window is
kept whole, with a warning: its vector reads the start), named like chunks, in the order given, after the other
items of their source (``report.pdf#page=3``, ``report.pdf#page=3&chunk=2``), so names stay unique and a document
split again the same way keeps its ids (nothing encoded again) whatever ids the splitter gave the nodes. The
node's metadata and id go to the item's metadata.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.items import ImageRef, KnowledgeItem, SourceError, default_name
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, LoadedImage, SourceResult, fit_text, load_image_file, make_item, store_image
from .chunking import Chunker
from .options import SourceOptions
from .refs import load_image_ref

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode


def iter_llama_nodes(nodes: Iterable[BaseNode], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield the items of each LlamaIndex document or node that has text, an image, or both."""
    from llama_index.core.schema import Document  # here: importing it takes over a second

    options = options or SourceOptions()
    chunkers: dict[str, tuple[Chunker, str]] = {}  # source -> its anchors and chunk cap, and where to report it
    for node in nodes:
        where = f"llama_index:{type(node).__name__}:{node.node_id}"
        try:
            text, image = _node_content(node, options)
        except BadInput as e:
            yield e.report(where)
            continue
        text = text.strip()
        if image is None and not text:
            yield SourceError(source=where, reason="node has neither text nor an image", kind=Kind.INVALID)
            continue
        document = node.ref_doc_id or node.node_id
        source = _source(node, image, document)
        chunker = chunkers.setdefault(source, (Chunker(options), where))[0]
        metadata = {**node.metadata, "node_id": node.node_id}
        page = str(node.metadata.get("page_label") or "").strip()
        anchor = f"page={page}" if page else ""
        identity: dict[str, Any] = {"source": source, "ref_doc_id": document, "metadata": metadata}
        if isinstance(node, Document) and image is None:
            yield from chunker.items(text, where=where, anchor=anchor, style="first", **identity)
            continue
        anchor, _ = chunker.next_anchor(anchor)  # a node as it was split: numbered after its source's others
        yield from make_item(where=where, options=options, text=text, image=image, anchor=anchor, **identity)
    for chunker, where in chunkers.values():
        yield from chunker.report(where)


def node_item(node: BaseNode, options: SourceOptions) -> KnowledgeItem:
    """The node as one item under its own id (``node.node_id``), as a LlamaIndex vector store keeps it: text (its
    content without metadata) and image as they are, its document ``ref_doc_id`` (else its own id). Raises
    :class:`BadInput` for a node without text or image, or whose image cannot be read."""
    text, image = _node_content(node, options)
    text = fit_text(text.strip())
    if image is None and not text:
        raise BadInput(Kind.INVALID, "node has neither text nor an image")
    document = node.ref_doc_id or node.node_id
    page = str(node.metadata.get("page_label") or "").strip()
    anchor = f"page={page}&node={node.node_id}" if page else f"node={node.node_id}"
    source = _source(node, image, document)
    return KnowledgeItem(
        id=node.node_id,
        text=text,
        image=ImageRef(uri=str(image.path), mime_type=image.mime_type, sha256=hashlib.sha256(image.data).hexdigest())
        if image is not None
        else None,
        source=source,
        anchor=anchor,
        name=default_name(source, anchor),
        ref_doc_id=document,
        metadata={**node.metadata, "node_id": node.node_id},
    )


def _source(node: BaseNode, image: LoadedImage | None, document: str) -> str:
    file_path = node.metadata.get("file_path")
    if isinstance(file_path, str) and file_path:
        return file_path if "://" in file_path else os.path.abspath(file_path)
    if image is not None:
        return str(image.metadata.get("url", image.path))
    return document


def _node_content(node: BaseNode, options: SourceOptions) -> tuple[str, LoadedImage | None]:
    from llama_index.core.schema import ImageNode, Node, TextNode

    if isinstance(node, ImageNode):
        return node.text, _load(node.image, node.image_path, node.image_url, options)
    if isinstance(node, TextNode):
        return node.text, None
    if isinstance(node, Node):
        text = (node.text_resource.text or "") if node.text_resource else ""
        resource = node.image_resource
        if resource is None:
            return text, None
        return text, _load(resource.data, resource.path, str(resource.url) if resource.url else None, options)
    raise BadInput(Kind.UNSUPPORTED, f"unsupported node type {type(node).__name__}")


def _load(
    b64: str | bytes | None, path: str | Path | None, url: str | None, options: SourceOptions
) -> LoadedImage | None:
    """The node's image from base64 data, a path, or a URL, in that order of preference."""
    if b64:
        try:
            data = base64.b64decode(b64, validate=True)
        except binascii.Error as e:
            raise BadInput(Kind.NOT_AN_IMAGE, f"image data is not valid base64: {e}") from None
        return store_image(data, "inline", options)
    if path:
        return load_image_file(Path(path), options)
    if url:
        return load_image_ref(url, Path.cwd(), options, url_encoded=True)
    return None
