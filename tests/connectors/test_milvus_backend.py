"""RAG_MILVUS_BACKEND: the code path forced. ``server`` against a standalone ``milvus-lite server`` takes a Milvus
server's path (Milvus's BM25 function, server-side hybrid search), which the contract suite then runs in
(tests/connectors/test_milvus_store.py, ``server``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.milvus import Backend, Blend, ConnectOptions, MilvusStore, StoreError
from rag.settings import Settings
from tests.conftest import database_of
from tests.milvus_server import MilvusLiteServer

from .milvus_corpus import ENCODER, text_item, unit_vectors

TEXTS = ["a lighthouse on the coast", "a bridge over the river", "a red carriage at night", "fish in the river"]


def _filled(uri: str, backend: str) -> MilvusStore:
    store = MilvusStore.open(uri, "kb", encoder_info=ENCODER, options=ConnectOptions(backend=backend))  # type: ignore[arg-type]
    items = [text_item(i, text=text) for i, text in enumerate(TEXTS)]
    store.upsert(items, unit_vectors(len(items), seed=1))
    store.flush()
    return store


def test_the_setting_reaches_the_connection() -> None:
    assert ConnectOptions.from_settings(Settings(milvus_backend="server")).backend == "server"
    assert ConnectOptions.from_settings(Settings()).backend == "auto"


def test_server_on_a_lite_path_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="RAG_MILVUS_BACKEND=server needs a Milvus server's URI"):
        MilvusStore.open(tmp_path / "milvus.db", "kb", encoder_info=ENCODER, options=ConnectOptions(backend="server"))
    assert not (tmp_path / "milvus.db").exists()  # refused before anything was created


def test_auto_takes_lites_path_on_a_lite_server_and_server_forces_milvus_bm25_and_hybrid_search(
    milvus_server: MilvusLiteServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _filled(database_of(milvus_server.uri, request.node.nodeid + "auto"), "auto") as auto:
        assert auto.backend is Backend.LITE and auto.keeps_bm25_statistics
    with _filled(database_of(milvus_server.uri, request.node.nodeid), "server") as store:
        assert store.backend is Backend.SERVER
        assert store.supports_bm25 and not store.keeps_bm25_statistics  # Milvus's BM25 function, in the schema
        assert [hit.item.text for hit in store.text_search("lighthouse", k=1)] == [TEXTS[0]]
        river = {hit.item.text for hit in store.text_search("river", k=4) if hit.score > 0}
        assert river == {TEXTS[1], TEXTS[3]}
        calls: list[dict[str, Any]] = []
        original = store._core.client.hybrid_search

        def spy(*args: Any, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(store._core.client, "hybrid_search", spy)
        query = unit_vectors(len(TEXTS), seed=1)[2]  # the carriage's own vector
        hits = store.hybrid_search(query, "carriage", blend=Blend.parse("fused,bm25", "rrf"), k=2)
        assert hits[0].item.text == TEXTS[2]  # first by both signals
        assert len(calls) == 1 and len(calls[0]["reqs"]) == 2  # one server-side hybrid search, a request per signal
        weighted = store.hybrid_search(query, "carriage", blend=Blend.parse("fused=0.7,bm25=0.3"), k=3)
        assert weighted[0].item.text == TEXTS[2] and len(calls) == 2
        assert all(0 <= hit.score <= 1 for hit in weighted)  # Milvus's norm_score: the weighted scale
