"""One search over everything: text chunks and pictures in one ranking, modality filters, and blends that treat
items without a picture fairly. Vectors with known cosines give every ranking an independent oracle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.milvus import MilvusStore
from rag.retrieval import Mode, MultimodalRetriever, QueryError, searched_modalities

from .synthetic import Synthetic, normalised

QUERY = "how are tracking faults reported?"
WORDS = "tracking faults are reported by the watchdog"


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    data = Synthetic()
    data.add_text("report.docx#tracking-faults", QUERY, 0.95, text=WORDS)  # the exact match, a text chunk
    data.add("dashboard.png", QUERY, 0.9, 0.85)
    data.add("page.pdf#page=7", QUERY, 0.7, 0.6)
    data.add("photo.jpg", QUERY, 0.5, 0.95, text="")  # a picture without a caption
    data.add_text("notes.txt#chunk=2", QUERY, 0.3)
    return data


@pytest.fixture(scope="module")
def store(synthetic: Synthetic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStore]:
    with synthetic.store(tmp_path_factory.mktemp("any") / "milvus.db") as opened:
        yield opened


def search(store: MilvusStore, synthetic: Synthetic, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("top_k", 10)
    return MultimodalRetriever(store, synthetic.encoder(), **kwargs).retrieve(QUERY)


def sources(results: list[Any]) -> list[str]:
    return [r.node.metadata["source"] for r in results]


def test_a_default_text_search_ranks_text_chunks_and_pictures_in_one_list(store, synthetic) -> None:
    results = search(store, synthetic)
    assert sources(results) == [
        "report.docx#tracking-faults",
        "dashboard.png",
        "page.pdf#page=7",
        "photo.jpg",
        "notes.txt#chunk=2",
    ]
    assert [r.score for r in results] == pytest.approx([0.95, 0.9, 0.7, 0.5, 0.3], abs=1e-5)
    assert [r.node.metadata["modality"] for r in results[:2]] == ["text", "image+text"]
    # The picture-only modes still leave text out.
    assert sources(search(store, synthetic, mode="text-to-multimodal"))[0] == "dashboard.png"


@pytest.mark.parametrize(
    "modality, expected",
    [
        ("text", ["report.docx#tracking-faults", "notes.txt#chunk=2"]),
        ("image+text", ["dashboard.png", "page.pdf#page=7"]),
        ("image", ["photo.jpg"]),
        (["image", "text"], ["report.docx#tracking-faults", "photo.jpg", "notes.txt#chunk=2"]),
        ({"!=": "text"}, ["dashboard.png", "page.pdf#page=7", "photo.jpg"]),
    ],
)
def test_the_modality_filter_narrows_a_search_over_everything(store, synthetic, modality, expected) -> None:
    assert sources(search(store, synthetic, filters={"modality": modality})) == expected


def test_a_modality_filter_narrows_the_modes_that_can_return_it(store, synthetic) -> None:
    pictures = search(store, synthetic, mode="text-to-multimodal", filters={"modality": ["image", "text"]})
    assert sources(pictures) == ["photo.jpg"]
    assert sources(search(store, synthetic, mode="text-to-text", filters={"modality": "text", "tags": "absent"})) == []
    texts = search(store, synthetic, mode="text-to-text", filters={"modality": "text"})
    assert sources(texts) == ["report.docx#tracking-faults", "notes.txt#chunk=2"]


@pytest.mark.parametrize(
    "mode, modality, able",
    [
        ("text-to-multimodal", "text", "text-to-any or text-to-text"),
        ("text-to-text", "image", "text-to-any or text-to-multimodal"),
        ("image-to-image", "text", "image-to-any"),
        ("composed-to-text", "image+text", "composed-to-any or composed-to-image or composed-to-multimodal"),
    ],
)
def test_a_modality_the_mode_never_returns_is_refused_in_words_of_the_caller(store, synthetic, mode, modality, able):
    with pytest.raises(QueryError) as refused:
        MultimodalRetriever(store, synthetic.encoder(), mode=mode, filters={"modality": modality})
    assert f"set mode to {able}" in str(refused.value) and "MetadataFilters" not in str(refused.value)
    assert f"set --mode to {able}" in refused.value.naming(mode="--mode")


def test_unknown_modalities_and_operators_are_refused() -> None:
    with pytest.raises(QueryError, match="unknown value.*'txt'; the values are image\\+text, image, text"):
        searched_modalities(Mode.TEXT_TO_ANY, {"modality": "txt"})
    with pytest.raises(QueryError, match="use ==, !=, in or nin"):
        searched_modalities(Mode.TEXT_TO_ANY, {"modality": {"text_match": "te"}})
    with pytest.raises(QueryError, match="lets no item through"):
        searched_modalities(Mode.TEXT_TO_ANY, {"modality": {"in": ["text"], "nin": ["text"]}})
    assert searched_modalities(Mode.TEXT_TO_ANY, {"tags": "x"}) == searched_modalities(Mode.TEXT_TO_ANY, None)


@pytest.mark.parametrize("weights", [{"fused": 0.5, "image": 0.5}, {"fused": 0.2, "image": 0.8}, {"image": 1.0}])
def test_a_blend_scores_an_item_without_a_picture_by_its_one_vector(store, synthetic, weights) -> None:
    # Decision: for the image signal, a text-only item answers with its text vector (stored in its image field),
    # so its blended score is what its text earns on every vector signal: no penalty, no bonus for lacking a picture.
    scores = {r.node.metadata["source"]: r.score for r in search(store, synthetic, blend=weights)}
    share = {signal: weight / sum(weights.values()) for signal, weight in weights.items()}
    for source, cosine in (("report.docx#tracking-faults", 0.95), ("notes.txt#chunk=2", 0.3)):
        assert scores[source] == pytest.approx(normalised("fused", cosine), abs=1e-5), source
    for source, (fused, image) in (("dashboard.png", (0.9, 0.85)), ("photo.jpg", (0.5, 0.95))):
        pairs = (("fused", fused), ("image", image))
        expected = sum(share.get(signal, 0) * normalised(signal, cosine) for signal, cosine in pairs)
        assert scores[source] == pytest.approx(expected, abs=1e-5), source


def test_an_exact_text_chunk_stays_first_under_a_blend(store, synthetic) -> None:
    assert sources(search(store, synthetic, blend="fused=0.5,image=0.5"))[0] == "report.docx#tracking-faults"
    assert sources(search(store, synthetic, blend="fused,image", fusion="rrf"))[0] == "report.docx#tracking-faults"
    # The pictures alone still leave text out, blend or not.
    pictures = search(store, synthetic, mode="text-to-multimodal", blend="fused=0.5,image=0.5")
    assert "report.docx#tracking-faults" not in sources(pictures)


def test_bm25_and_hybrid_reach_text_chunks(store, synthetic) -> None:
    encoder = synthetic.encoder()
    words = MultimodalRetriever(store, encoder, blend="bm25=1", top_k=3)
    assert sources(words.search(synthetic.query(QUERY), Mode.TEXT_TO_ANY, WORDS))[0] == "report.docx#tracking-faults"
    assert sources(search(store, synthetic, hybrid=True))[0] == "report.docx#tracking-faults"
