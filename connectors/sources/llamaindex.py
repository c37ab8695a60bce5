"""LlamaIndex documents and nodes: ``Document``/``ImageDocument``/``Node`` and ``TextNode``/``ImageNode``.

llama-index-core 0.14 keeps a ``Node``'s (and so a ``Document``'s) content in ``text_resource`` and
``image_resource`` (``MediaResource``: base64 ``data``, ``path`` or ``url``), while the older
``ImageNode`` keeps ``text`` and ``image`` (base64), ``image_path`` or ``image_url``. Inline image
data is written to ``cache_dir/inline`` so the item's image is a file; URLs are fetched only when
``allow_urls`` is on. An item's source is the node's ``file_path`` metadata when present, else the
image's path or URL, else ``"llama_index"``; the node's metadata and id go to the item's metadata.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rag.items import SourceError
from rag.items import SourceErrorKind as Kind

from ._common import BadInput, LoadedImage, SourceResult, load_image_file, make_item, store_image
from .options import SourceOptions
from .refs import load_image_ref

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode


def iter_llama_nodes(nodes: Iterable[BaseNode], options: SourceOptions | None = None) -> Iterator[SourceResult]:
    """Yield one item per LlamaIndex document or node that has text, an image, or both."""
    options = options or SourceOptions()
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
        metadata = {**node.metadata, "node_id": node.node_id}
        source = _source(node, image)
        yield from make_item(source=source, where=where, options=options, text=text, image=image, metadata=metadata)


def _source(node: BaseNode, image: LoadedImage | None) -> str:
    if node.metadata.get("file_path"):
        return str(node.metadata["file_path"])
    if image is not None:
        return str(image.metadata.get("url", image.path))
    return "llama_index"


def _node_content(node: BaseNode, options: SourceOptions) -> tuple[str, LoadedImage | None]:
    from llama_index.core.schema import ImageNode, Node, TextNode  # here: importing it takes over a second

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
