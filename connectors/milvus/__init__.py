"""Milvus knowledge store: schema, filter compiler and store (Milvus Lite, shared or in-process, or a Milvus server)."""

from connectors.milvus.blend import Blend, BlendError, ScoreScale, TunedBlend
from connectors.milvus.connection import ConnectOptions, is_unreachable, quiet_logs
from connectors.milvus.filters import FilterError, Filters, compile_filter, parse_filters
from connectors.milvus.schema import Backend, EncoderInfo, ItemTooLargeError, item_problems, to_llama_node
from connectors.milvus.store import (
    CollectionNotFoundError,
    DatabaseNotFoundError,
    EncoderMismatchError,
    Hit,
    MilvusStore,
    NotSupportedError,
    SchemaOutdatedError,
    StoreError,
    StoreLockedError,
    StoreStats,
    StoreUnavailableError,
    list_collections,
    require_collection,
)

__all__ = [
    "Backend",
    "Blend",
    "BlendError",
    "CollectionNotFoundError",
    "ConnectOptions",
    "DatabaseNotFoundError",
    "EncoderInfo",
    "EncoderMismatchError",
    "FilterError",
    "Filters",
    "Hit",
    "ItemTooLargeError",
    "MilvusStore",
    "NotSupportedError",
    "SchemaOutdatedError",
    "ScoreScale",
    "StoreError",
    "StoreLockedError",
    "StoreStats",
    "StoreUnavailableError",
    "TunedBlend",
    "compile_filter",
    "is_unreachable",
    "item_problems",
    "list_collections",
    "parse_filters",
    "quiet_logs",
    "require_collection",
    "to_llama_node",
]
