"""A ``KnowledgeBase`` on the session's tiny model (loaded once), and a ``VisualizedBGEEmbedding`` over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import KnowledgeBase, VisualizedBGEEmbedding
from rag.embeddings.visualized_bge import VisualizedBGE
from tests.api.test_knowledge_base import tiny_settings


@pytest.fixture
def kb(tmp_path: Path, tiny_base: VisualizedBGE) -> Iterator[KnowledgeBase]:
    with KnowledgeBase(settings=tiny_settings(tmp_path)) as opened:
        opened._encoder = tiny_base  # the session's tiny model: loaded once
        yield opened


@pytest.fixture
def embed(tiny_base: VisualizedBGE) -> VisualizedBGEEmbedding:
    return VisualizedBGEEmbedding(encoder=tiny_base)
