"""Multimodal retrieval-augmented generation: Visualized-BGE embeddings, Milvus storage, LlamaIndex retrieval.

The public API is importable from here (``from rag import VisualizedBGE``). Names load on first use, so that
``import rag`` stays cheap (torch and LlamaIndex take seconds); type checkers and IDEs see the real classes.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from rag.errors import RagError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from connectors.milvus.blend import BlendError
    from connectors.milvus.errors import (
        CollectionNotFoundError,
        EncoderMismatchError,
        NotSupportedError,
        SchemaOutdatedError,
        StoreError,
        StoreUnavailableError,
    )
    from connectors.milvus.filters import FilterError
    from rag.answer.engine import answer_engine
    from rag.answer.llm import LLMError
    from rag.embeddings.base import FusedNotSupportedError
    from rag.embeddings.hub import CheckpointError
    from rag.embeddings.inputs import ImageLoadError
    from rag.embeddings.llama_index import VisualizedBGEEmbedding
    from rag.embeddings.visualized_bge.encoder import VisualizedBGE
    from rag.knowledge.base import KnowledgeBase
    from rag.knowledge.vector_store import KnowledgeVectorStore
    from rag.retrieval.modes import QueryError
    from rag.retrieval.options import OptionError, QueryOptions
    from rag.retrieval.retriever import MultimodalRetriever
    from rag.runtime import RuntimeUnavailableError
    from rag.settings import Settings

#: Public name → the module that defines it.
_LAZY = {
    "KnowledgeBase": "rag.knowledge.base",
    "KnowledgeVectorStore": "rag.knowledge.vector_store",
    "MultimodalRetriever": "rag.retrieval.retriever",
    "QueryOptions": "rag.retrieval.options",
    "Settings": "rag.settings",
    "VisualizedBGE": "rag.embeddings.visualized_bge.encoder",
    "VisualizedBGEEmbedding": "rag.embeddings.llama_index",
    "answer_engine": "rag.answer.engine",
    # errors (all derive from RagError)
    "BlendError": "connectors.milvus.blend",
    "CheckpointError": "rag.embeddings.hub",
    "CollectionNotFoundError": "connectors.milvus.errors",
    "EncoderMismatchError": "connectors.milvus.errors",
    "FilterError": "connectors.milvus.filters",
    "FusedNotSupportedError": "rag.embeddings.base",
    "ImageLoadError": "rag.embeddings.inputs",
    "LLMError": "rag.answer.llm",
    "NotSupportedError": "connectors.milvus.errors",
    "OptionError": "rag.retrieval.options",
    "QueryError": "rag.retrieval.modes",
    "RuntimeUnavailableError": "rag.runtime",
    "SchemaOutdatedError": "connectors.milvus.errors",
    "StoreError": "connectors.milvus.errors",
    "StoreUnavailableError": "connectors.milvus.errors",
}

# Spelled out (not built from _LAZY) so that type checkers read it: each name is an explicit export.
__all__ = [
    "BlendError",
    "CheckpointError",
    "CollectionNotFoundError",
    "EncoderMismatchError",
    "FilterError",
    "FusedNotSupportedError",
    "ImageLoadError",
    "KnowledgeBase",
    "KnowledgeVectorStore",
    "LLMError",
    "MultimodalRetriever",
    "NotSupportedError",
    "OptionError",
    "QueryError",
    "QueryOptions",
    "RagError",
    "RuntimeUnavailableError",
    "SchemaOutdatedError",
    "Settings",
    "StoreError",
    "StoreUnavailableError",
    "VisualizedBGE",
    "VisualizedBGEEmbedding",
    "__version__",
    "answer_engine",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
