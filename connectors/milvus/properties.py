"""What this library records on a collection besides its rows: properties, tuned blends, and the stats that
report them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from connectors.milvus import schema
from connectors.milvus.blend import TUNED_BLENDS, TunedBlend
from connectors.milvus.core import StoreCore
from connectors.milvus.schema import Backend, EncoderInfo


class StoreStats(BaseModel):
    collection: str
    uri: str
    backend: Backend
    count: int
    dim: int
    encoder: EncoderInfo
    bm25: bool
    ingest_runtime: dict[str, Any] | None = Field(
        default=None, description="Device, dtype and why, as the last ingest into the collection ran (rag.runtime)."
    )
    tuned_blends: dict[str, TunedBlend] = Field(
        default_factory=dict,
        description="The blends `rag eval --tune` saved, by query kind: queries of that kind use them.",
    )


def properties(core: StoreCore) -> dict[str, Any]:
    """What this library recorded on the collection besides the encoder."""
    stored = core.client.describe_collection(core.collection).get("properties") or {}
    return schema.read_properties(stored)


def set_properties(core: StoreCore, values: Mapping[str, Any]) -> None:
    """Record JSON-serialisable values on the collection (Milvus collection properties), next to the encoder.
    No values: nothing to record (Milvus refuses an empty set of properties)."""
    core.writable()
    if not values:
        return
    core.client.alter_collection_properties(core.collection, properties=schema.write_properties(values))


def tuned_blends(core: StoreCore) -> dict[str, TunedBlend]:
    return _tuned(properties(core))


def save_tuned_blends(core: StoreCore, blends: Mapping[str, TunedBlend]) -> None:
    """Record ``blends`` (by query kind), keeping those saved for other kinds."""
    merged = {**tuned_blends(core), **blends}
    set_properties(core, {TUNED_BLENDS: {kind: blend.model_dump(mode="json") for kind, blend in merged.items()}})


def stats(core: StoreCore) -> StoreStats:
    recorded = properties(core)
    return StoreStats(
        collection=core.collection,
        uri=core.uri,
        backend=core.backend,
        count=core.count(""),
        dim=core.encoder.dim,
        encoder=core.encoder,
        bm25=core.bm25,
        ingest_runtime=recorded.get(schema.INGEST_RUNTIME),
        tuned_blends=_tuned(recorded),
    )


def _tuned(recorded: Mapping[str, Any]) -> dict[str, TunedBlend]:
    return {kind: TunedBlend.model_validate(value) for kind, value in (recorded.get(TUNED_BLENDS) or {}).items()}
