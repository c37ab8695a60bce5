"""Retrieval: LlamaIndex retrievers for text, image and composed queries over a Milvus collection."""

from .evidence import Evidence, evidence
from .modes import Mode, QueryKind, Target, default_mode
from .retriever import MultimodalRetriever

__all__ = ["Evidence", "Mode", "MultimodalRetriever", "QueryKind", "Target", "default_mode", "evidence"]
