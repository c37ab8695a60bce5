"""A process that outlives its Milvus server (``rag serve``, a notebook) reaches the server again once it is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.milvus import MilvusStore, StoreUnavailableError
from tests.milvus_server import MilvusLiteServer

from .milvus_corpus import ENCODER, text_item, unit_vectors

pytestmark = pytest.mark.slow  # two server starts


def test_a_store_opened_after_the_server_came_back_is_served(tmp_path: Path) -> None:
    server = MilvusLiteServer(tmp_path / "milvus").start()
    try:
        first = MilvusStore.open(server.uri, "kb", encoder_info=ENCODER)
        first.upsert([text_item(i) for i in range(3)], unit_vectors(3, seed=1), unit_vectors(3, seed=2))
        assert first.count() == 3
        server.stop()
        with pytest.raises(StoreUnavailableError):
            first.count()
        server.start()
        # Before the fix, gRPC's process-wide subchannel pool handed the new client the dead server's failed
        # subchannel, and this open was refused at once with "Fail connecting to server".
        with MilvusStore.open(server.uri, "kb", create=False) as again:
            assert again.count() == 3
        assert first.count() == 3  # the store opened before the outage recovers too
        first.close()
    finally:
        server.stop()
