"""The cross-encoder reranker: scores equal transformers' own model on the same pairs (float32, 1e-4), pairs are cut
as FlagEmbedding's FlagReranker cuts them, bad models are refused, and as a LlamaIndex postprocessor it reorders,
keeps every kind of node and carries each score."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, TextNode
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rag.embeddings.cross_encoder import CrossEncoder
from rag.embeddings.hub import CheckpointError
from rag.retrieval.evidence import evidence
from rag.retrieval.rerank import CrossEncoderReranker, rerank_text
from rag.runtime import Runtime

from .tiny_reranker import build_reranker

FLOAT32 = Runtime(device="cpu", dtype="float32", batch_size=3, workers=1)
QUERY = "the red bridge at night"
PASSAGES = [
    "a cat sitting on the sofa",
    "the bridge spanning the river at night, dark background",
    "red",
    "photo of the hudson river between the highland and poughkeepsie sides, taken at mid night",
    "a whale logo",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_reranker(tmp_path_factory.mktemp("reranker"))


@pytest.fixture(scope="module")
def cross_encoder(folder: Path) -> CrossEncoder:
    return CrossEncoder.from_pretrained(folder, runtime=FLOAT32)


def reference_logits(folder: Path, query: str, passages: list[str]) -> list[float]:
    """transformers' own model on the tokenizer's own pairs, all in one padded batch."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    batch = tokenizer([query] * len(passages), passages, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[:, 0].tolist()


def test_scores_equal_transformers_own_model_in_float32(folder: Path, cross_encoder: CrossEncoder) -> None:
    expected = reference_logits(folder, QUERY, PASSAGES)
    ours = cross_encoder.score(QUERY, PASSAGES)
    assert ours == pytest.approx(expected, abs=1e-4)
    assert max(expected) - min(expected) > 0.1  # the scores differ, so the order is tested too
    normalized = cross_encoder.score(QUERY, PASSAGES, normalize=True)
    assert normalized == pytest.approx([1 / (1 + math.exp(-x)) for x in expected], abs=1e-5)


def flag_reranker_logit(folder: Path, query: str, passage: str) -> float:
    """FlagReranker's formula, one pair at a time without padding: the query's tokens cut to 3/4 of 512, the
    passage's to 512, then [CLS] query [SEP] passage [SEP] cut from the passage's end to 512; the raw logit."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    q = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(query))[: 512 * 3 // 4]
    p = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(passage))[:512]
    p = p[: 512 - len(q) - 3]
    ids = [tokenizer.cls_token_id, *q, tokenizer.sep_token_id, *p, tokenizer.sep_token_id]
    types = [0] * (len(q) + 2) + [1] * (len(p) + 1)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types]))
    return float(out.logits.view(-1)[0])


def test_long_pairs_are_cut_as_flag_reranker_cuts_them(folder: Path, cross_encoder: CrossEncoder) -> None:
    long_query = " ".join(["red bridge"] * 250)  # 500 tokens: cut to 384
    long_passage = " ".join(["the river at night"] * 200)  # 800 tokens: cut to fit 512 with the query
    pairs = [(QUERY, long_passage), (long_query, "a cat"), (long_query, long_passage), (QUERY, "red")]
    for query, passage in pairs:
        [ours] = cross_encoder.score(query, [passage])
        assert ours == pytest.approx(flag_reranker_logit(folder, query, passage), abs=1e-4)
    [pair] = cross_encoder.pairs(long_query, [long_passage])
    assert len(pair["input_ids"]) == 512
    # Length-sorted batches with padding give what each pair gives alone.
    passages = [long_passage, "a cat", PASSAGES[3], "red", long_passage[:300]]
    batched = cross_encoder.score(QUERY, passages)
    assert batched == pytest.approx([cross_encoder.score(QUERY, [p])[0] for p in passages], abs=1e-4)


def test_models_that_are_not_one_label_classifiers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a cross-encoder"):
        CrossEncoder.from_pretrained(build_reranker(tmp_path / "bare", head=False), runtime=FLOAT32)
    with pytest.raises(CheckpointError, match="2 labels"):
        CrossEncoder.from_pretrained(build_reranker(tmp_path / "two", labels=2), runtime=FLOAT32)
    with pytest.raises(CheckpointError, match="not a model folder"):
        CrossEncoder.from_pretrained(tmp_path / "nowhere", runtime=FLOAT32)


def test_the_postprocessor_reorders_keeps_pictures_and_carries_both_scores(cross_encoder: CrossEncoder) -> None:
    picture = ImageNode(text="", image_path="/pics/red-bridge.png", metadata={"source": "/pics/red-bridge.png"})
    nodes = [NodeWithScore(node=TextNode(text=p, id_=f"t{i}"), score=0.5 - i / 10) for i, p in enumerate(PASSAGES)]
    nodes.append(NodeWithScore(node=picture, score=0.01))
    reranker = CrossEncoderReranker(cross_encoder.name, encoder=cross_encoder, top_n=len(nodes))
    ranked = reranker.postprocess_nodes(list(nodes), QueryBundle(QUERY))
    assert rerank_text(picture) == "red-bridge.png"  # a bare picture is scored on its name
    expected = dict(zip(range(len(nodes)), cross_encoder.score(QUERY, [*PASSAGES, "red-bridge.png"])))
    assert len(ranked) == len(nodes) and picture in [r.node for r in ranked]  # nothing dropped
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert sorted(scores) == pytest.approx(sorted(expected.values()), abs=1e-6)
    shown = evidence(ranked)
    assert [e.rerank_score for e in shown] == scores
    retrieval = {n.node.node_id: 0.5 - i / 10 for i, n in enumerate(nodes[:-1])} | {picture.node_id: 0.01}
    assert {e.id: e.score for e in shown} == pytest.approx(retrieval)  # the retrieval's score stays `score`
    assert all("rerank_score" not in e.metadata and "retrieval_score" not in e.metadata for e in shown)
    top = CrossEncoderReranker(cross_encoder.name, encoder=cross_encoder, top_n=2, normalize=True)
    best = top.postprocess_nodes([NodeWithScore(node=TextNode(text=p)) for p in PASSAGES], QueryBundle(QUERY))
    assert len(best) == 2 and all(0.0 < r.score < 1.0 for r in best)


def test_a_query_without_text_is_refused(cross_encoder: CrossEncoder) -> None:
    reranker = CrossEncoderReranker(cross_encoder.name, encoder=cross_encoder)
    with pytest.raises(ValueError, match="has none"):
        reranker.postprocess_nodes([NodeWithScore(node=TextNode(text="a"))], QueryBundle("", image_path="x.png"))


@pytest.mark.parametrize("name", ["none", "off", "None"])
def test_none_switches_off_the_reranker_the_settings_name(folder: Path, name: str) -> None:
    from rag.retrieval.rerank import reranker_from_settings
    from rag.settings import Settings

    settings = Settings(reranker=str(folder))
    assert reranker_from_settings(settings, name) is None
    assert reranker_from_settings(Settings(), None) is None
