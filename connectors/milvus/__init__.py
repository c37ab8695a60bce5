"""Milvus knowledge store: schema, filter compiler and store (Milvus Lite or server, chosen by URI)."""

from connectors.milvus.blend import Blend, BlendError, ScoreScale, TunedBlend
from connectors.milvus.filters import FilterError, Filters, compile_filter
from connectors.milvus.schema import Backend, EncoderInfo, ItemTooLargeError, item_problems, to_llama_node
from connectors.milvus.store import (
    CollectionNotFoundError,
    EncoderMismatchError,
    Hit,
    MilvusStore,
    NotSupportedError,
    StoreError,
    StoreLockedError,
    StoreStats,
    list_collections,
)

__all__ = [
    "Backend",
    "Blend",
    "BlendError",
    "CollectionNotFoundError",
    "EncoderInfo",
    "EncoderMismatchError",
    "FilterError",
    "Filters",
    "Hit",
    "ItemTooLargeError",
    "MilvusStore",
    "NotSupportedError",
    "ScoreScale",
    "StoreError",
    "StoreLockedError",
    "StoreStats",
    "TunedBlend",
    "compile_filter",
    "item_problems",
    "list_collections",
    "to_llama_node",
]
