"""The vector and BM25 indexes of an open collection: which one searches the vectors, and Lite's index upkeep."""

from __future__ import annotations

import logging

from pymilvus import MilvusClient

from connectors.milvus import schema
from connectors.milvus.core import StoreCore

logger = logging.getLogger(__name__)


def graph_index(core: StoreCore) -> bool:
    """Whether the vectors are searched through a graph (HNSW), which a selective filter can cut short."""
    if core.index_type is None:
        core.index_type = core.client.describe_index(core.collection, schema.FUSED)["index_type"]
    return core.index_type != "FLAT"


def settle_index(core: StoreCore) -> None:
    """Milvus Lite: switch the vector index to the one for the collection's size, and have every segment
    indexed before returning. Lite indexes a flushed segment in the background and searches it
    exhaustively meanwhile; dropping an index drains that background work, and loading builds what is
    missing. A BM25 index is built at search time, so dropping and re-creating it costs nothing."""
    wanted = core.backend.dense_index(core.count(""))
    if wanted["index_type"] == "FLAT" and not graph_index(core):
        return  # exact search has nothing to build
    # Building an index takes minutes at scale: these calls wait without the store's timeout.
    core.client.release_collection(core.collection)
    try:
        if graph_index(core) != (wanted["index_type"] != "FLAT"):
            fields, params = (schema.FUSED, schema.IMAGE), MilvusClient.prepare_index_params()
            for name in fields:
                _drop_lite_index(core, name)
                params.add_index(field_name=name, index_name=name, **wanted)
            logger.info("%s: %s index for the vectors", core.collection, wanted["index_type"])
        elif core.bm25:
            params = MilvusClient.prepare_index_params()
            schema.add_sparse_index(params, bm25_stats=core.terms is not None)
            _drop_lite_index(core, schema.SPARSE)
        else:
            params = None
        if params is not None:  # Lite builds it as the collection loads: pymilvus has nothing to wait for
            core.client.create_index(core.collection, params, timeout=None, sync=False)
        core.index_type = wanted["index_type"]
    finally:
        core.client.load_collection(core.collection, timeout=None)


def _drop_lite_index(core: StoreCore, field: str) -> None:
    # Milvus Lite names a field's index "<field>_idx" when dropping; any other name drops every index.
    core.client.drop_index(core.collection, f"{field}_idx", timeout=None)  # waits for Lite's background builds
