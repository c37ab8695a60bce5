"""Retrieval: LlamaIndex retrievers for text, image and composed queries over a Milvus collection.

Modes and evidence import without LlamaIndex; the retriever loads it on first use.
"""

from typing import Any

from .evidence import Evidence, evidence, merged_count
from .modes import Mode, PlainQuery, QueryError, QueryKind, Target, check_query, default_mode, searched_modalities

__all__ = [
    "Evidence",
    "Mode",
    "MultimodalRetriever",
    "PlainQuery",
    "QueryError",
    "QueryKind",
    "Target",
    "check_query",
    "default_mode",
    "evidence",
    "merged_count",
    "searched_modalities",
]


def __getattr__(name: str) -> Any:
    if name == "MultimodalRetriever":
        from .retriever import MultimodalRetriever

        return MultimodalRetriever
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
