"""Milvus knowledge store: schema, filter compiler and store (Milvus Lite or server, chosen by URI)."""

from connectors.milvus.blend import Blend, BlendError, ScoreScale, TunedBlend
from connectors.milvus.filters import FilterError, Filters, compile_filter, parse_filters
from connectors.milvus.schema import Backend, EncoderInfo, ItemTooLargeError, item_problems, to_llama_node
from connectors.milvus.store import (
    CollectionNotFoundError,
    DatabaseNotFoundError,
    EncoderMismatchError,
    Hit,
    MilvusStore,
    NotSupportedError,
    StoreError,
    StoreLockedError,
    StoreStats,
    list_collections,
    require_collection,
)

__all__ = [
    "Backend",
    "Blend",
    "BlendError",
    "CollectionNotFoundError",
    "DatabaseNotFoundError",
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
    "parse_filters",
    "require_collection",
    "to_llama_node",
]
