"""The known retrieval corpus, a retriever over its three items of picture 1, and an LLM on the fake endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llama_index.core.llms import LLM
from llama_index.core.schema import QueryBundle

from connectors.milvus import MilvusStore
from rag.answer import openai_compatible_llm
from rag.retrieval import MultimodalRetriever
from tests.helpers.llm import FakeLLMServer
from tests.retrieval.corpus import Corpus, build

QUESTION = "Which picture shows the bridge, and what is near it?"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Corpus:
    """Built once for every module here: none of them writes to it."""
    return build(tmp_path_factory.mktemp("answer"), tiny_base)


@pytest.fixture(scope="session")
def store(corpus: Corpus) -> Iterator[MilvusStore]:
    with corpus.open() as opened:
        yield opened


@pytest.fixture
def retriever(store, tiny_base) -> MultimodalRetriever:
    # The three items of picture 1; the question's text also matches the bridge caption by BM25.
    return MultimodalRetriever(store, tiny_base, top_k=3, dedup_threshold=None)


def query(corpus: Corpus) -> QueryBundle:
    return QueryBundle(QUESTION, image_path=str(corpus.pictures[1]))


def llm(server: FakeLLMServer, **kwargs) -> LLM:
    kwargs.setdefault("timeout", 30.0)  # generous: a loaded machine imports the client slowly
    return openai_compatible_llm("vision-test", base_url=server.url, api_key="sk-test", max_retries=0, **kwargs)
