"""The evidence an LLM reads: a page and its own chunks merged into one item, and only what helps a reader cite.

**Merging.** A PDF page is stored as an item of its own (``spec.pdf#page=7``: its picture and its whole text)
and as text chunks (``spec.pdf#page=7&chunk=2``). When a page item and chunks of that page (same document,
same ``page``) are retrieved together, they become one item: the page's picture once, the page's text, and
any chunk text the page's text does not already hold (compared with white space folded), so no passage
reaches the LLM twice. The merged item takes the place of the best ranked of them and the best score (and,
after a cross-encoder, that result's rerank score); the chunks' ids are listed under ``merged_passages``.
Chunks retrieved without their page item, and a page's figures (pictures of their own), stay items.

**What an item carries.** Its heading names it (``[3] spec.pdf#page=7``: document, page, anchor); then come
the metadata a reader cites by, its caption (an image's text) or its text. Ingest bookkeeping (``created_at``,
``modality``, ``dpi``, content hashes, ``ref_doc_id``, the tenant, rerank notes...) and empty values are left
out, and lists read as ``a, b`` rather than Python's ``['a', 'b']``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore

from connectors.milvus.schema import (
    ANCHOR,
    CONTENT_HASH,
    CREATED_AT,
    DOCUMENT,
    FILE_NAME,
    HAS_IMAGE,
    IMAGE_SHA256,
    IMAGE_URI,
    MIME_TYPE,
    MODALITY,
    NAME,
    REF_DOC_ID,
    SOURCE,
    TENANT,
)
from rag.items import PATH_METADATA, UPLOAD_NAME, document_of, item_name
from rag.retrieval.evidence import MERGED_DUPLICATES, MERGED_PASSAGES, RERANK_SCORE, RETRIEVAL_SCORE

from .response import RERANK_ERROR, RERANK_REASON

#: Metadata that says how an item was stored, not what it says: never sent to the LLM. The name (document,
#: anchor, hence page and chunk) is the item's heading.
BOOKKEEPING = frozenset(
    {
        SOURCE,
        NAME,
        ANCHOR,
        DOCUMENT,
        FILE_NAME,
        MODALITY,
        MIME_TYPE,
        IMAGE_URI,
        IMAGE_SHA256,
        HAS_IMAGE,
        CREATED_AT,
        REF_DOC_ID,
        CONTENT_HASH,
        TENANT,
        UPLOAD_NAME,
        *PATH_METADATA,
        "line",  # a manifest's line number
        "node_id",  # the LlamaIndex node a reader's document came from
        "page",
        "page_count",
        "chunk",
        "slide",
        "figure",
        "image_index",
        "bbox",
        "context",
        "rows",
        "src",
        "dpi",
        "dtype",
        "width",
        "height",
        "text_origin",
        "heading_path",
        MERGED_DUPLICATES,
        MERGED_PASSAGES,
        RERANK_SCORE,
        RETRIEVAL_SCORE,
        RERANK_REASON,
        RERANK_ERROR,
    }
)
PAGE = "page"


def evidence_name(result: NodeWithScore) -> str:
    """What the evidence calls an item: its name with its anchor (``spec.pdf#page=7``), as citations show it."""
    node = result.node
    return item_name(str(node.metadata.get(SOURCE, "")), node.metadata)


def evidence_text(result: NodeWithScore) -> str:
    """The item as the LLM reads it: the metadata a reader cites by (one ``key: value`` line each), then its text."""
    node = result.node
    lines = [
        f"{key}: {shown}"
        for key, value in node.metadata.items()
        if key not in BOOKKEEPING and key not in node.excluded_llm_metadata_keys and (shown := readable(value))
    ]
    text = node.get_content(metadata_mode=MetadataMode.NONE).strip()
    return "\n".join([*lines, "", text] if lines else [text]).strip()


def readable(value: Any) -> str:
    """A metadata value as a person writes it: lists ``a, b``, mappings ``k=v, …``, nothing for empty values."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={shown}" for k, v in value.items() if (shown := readable(v)))
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(shown for v in value if (shown := readable(v)))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).strip()


def merge_pages(results: Sequence[NodeWithScore]) -> list[NodeWithScore]:
    """The results with each retrieved page item and its own retrieved chunks as one item (see the module)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, result in enumerate(results):
        if (key := _page_key(result)) is not None:
            groups.setdefault(key, []).append(index)
    merged: dict[int, NodeWithScore] = {}
    absorbed: set[int] = set()
    for members in groups.values():
        pages = [i for i in members if _is_page_item(results[i])]
        chunks = [i for i in members if _is_chunk(results[i])]
        if not pages or not chunks:
            continue
        together = [pages[0], *chunks]
        best = max(together, key=lambda i: _score(results[i]))
        merged[min(together)] = _merged(results[pages[0]], [results[i] for i in chunks], results[best])
        absorbed.update(together)
    return [merged.get(i, result) for i, result in enumerate(results) if i in merged or i not in absorbed]


def _page_key(result: NodeWithScore) -> tuple[str, str] | None:
    page = result.node.metadata.get(PAGE)
    if page is None or page == "":
        return None
    return document_of(evidence_name(result)), str(page)


def _is_page_item(result: NodeWithScore) -> bool:
    """The page itself: its picture, anchored at the page (``page=7``), not one of its figures or chunks."""
    metadata = result.node.metadata
    anchor = str(metadata.get(ANCHOR) or evidence_name(result).partition("#")[2])
    return isinstance(result.node, ImageNode) and anchor == f"{PAGE}={metadata[PAGE]}"


def _is_chunk(result: NodeWithScore) -> bool:
    return not isinstance(result.node, ImageNode)


def _score(result: NodeWithScore) -> float:
    return float("-inf") if result.score is None else result.score


def _merged(page: NodeWithScore, chunks: list[NodeWithScore], best: NodeWithScore) -> NodeWithScore:
    node = page.node.model_copy(deep=True)  # the retrieved node itself is left as it was
    text = node.get_content(metadata_mode=MetadataMode.NONE)
    seen = _folded(text)
    extra = []
    for chunk in chunks:
        passage = chunk.node.get_content(metadata_mode=MetadataMode.NONE).strip()
        if passage and _folded(passage) not in seen:
            extra.append(passage)
            seen += "\n" + _folded(passage)
    node.set_content("\n\n".join([text.strip(), *extra]).strip())
    metadata = node.metadata
    for key in (RERANK_SCORE, RETRIEVAL_SCORE):
        metadata.pop(key, None)
        if key in best.node.metadata:
            metadata[key] = best.node.metadata[key]
    duplicates = [d for r in (page, *chunks) for d in r.node.metadata.get(MERGED_DUPLICATES, [])]
    if duplicates:
        metadata[MERGED_DUPLICATES] = list(dict.fromkeys(duplicates))
    metadata[MERGED_PASSAGES] = [chunk.node.node_id for chunk in chunks]
    for key in (MERGED_DUPLICATES, MERGED_PASSAGES, RERANK_SCORE, RETRIEVAL_SCORE):
        if key in metadata and key not in node.excluded_llm_metadata_keys:
            node.excluded_llm_metadata_keys.append(key)
    return NodeWithScore(node=node, score=best.score)


def _folded(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
