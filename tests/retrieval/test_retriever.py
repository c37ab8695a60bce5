"""Every retrieval mode on Milvus Lite with the tiny parity encoder, on a corpus whose answers are known.

The tiny model's weights are random, so it matches like with like (the same picture, the same
caption, the same image+text pair) but not across modalities: cross-modal modes are checked
against the ranking computed from the encoder's own vectors, and with BM25 hybrid search.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from connectors.milvus import BlendError, EncoderInfo, EncoderMismatchError, FilterError, MilvusStore, NotSupportedError
from rag.retrieval import Mode, MultimodalRetriever, default_mode, evidence
from rag.retrieval.options import QueryOptions
from rag.settings import Settings

from .corpus import CAPTIONS, COPIES, LIGHTHOUSE, NOTES, Corpus, build, image_item, ingest_items

EXACT = 0.999999  # the tiny model puts distinct items within 1e-4 cosine of each other; copies are closer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, tiny_base) -> Corpus:
    return build(tmp_path_factory.mktemp("retrieval"), tiny_base)


@pytest.fixture(scope="module")
def store(corpus: Corpus) -> Iterator[MilvusStore]:
    with corpus.open() as opened:
        yield opened


def retriever(store: MilvusStore, encoder, **kwargs) -> MultimodalRetriever:
    return MultimodalRetriever(store, encoder, **kwargs)


def sources(results: list[NodeWithScore]) -> list[str]:
    return [r.node.metadata["source"] for r in results]


def image_of(result: NodeWithScore) -> str:
    assert isinstance(result.node, ImageNode)
    return result.node.image_path


def test_default_mode_follows_the_bundle() -> None:
    assert default_mode(QueryBundle("a bridge")) is Mode.TEXT_TO_ANY
    assert default_mode(QueryBundle("", image_path="q.png")) is Mode.IMAGE_TO_MULTIMODAL
    assert default_mode(QueryBundle("in red", image_path="q.png")) is Mode.COMPOSED_TO_MULTIMODAL
    with pytest.raises(ValueError, match="neither text"):
        default_mode(QueryBundle("  "))


def test_modes_name_their_query_field_and_target() -> None:
    table = {m.value: (m.query.value, m.field, m.target.value) for m in Mode}
    assert table == {
        "text-to-any": ("text", "fused", "any"),
        "image-to-any": ("image", "fused", "any"),
        "composed-to-any": ("composed", "fused", "any"),
        "text-to-multimodal": ("text", "fused", "multimodal"),
        "text-to-text": ("text", "fused", "text"),
        "image-to-image": ("image", "image", "image"),
        "image-to-multimodal": ("image", "fused", "multimodal"),
        "composed-to-image": ("composed", "image", "image"),
        "composed-to-multimodal": ("composed", "fused", "multimodal"),
        "composed-to-text": ("composed", "fused", "text"),
    }


def test_nodes_carry_image_text_metadata_and_score(store, tiny_base, corpus) -> None:
    [top] = retriever(store, tiny_base, top_k=1).retrieve(QueryBundle(CAPTIONS[1], image_path=str(corpus.pictures[2])))
    node = top.node
    assert isinstance(node, ImageNode) and node.node_id == corpus.id("grid/2-1")
    assert (node.image_path, node.image_mimetype, node.text) == (str(corpus.pictures[2]), "image/png", CAPTIONS[1])
    assert node.metadata["source"] == "grid/2-1" and node.metadata["tags"] == ["grid"]
    assert node.metadata["modality"] == "image+text"
    assert top.score == pytest.approx(1.0, abs=1e-4)
    [item] = evidence([top])
    assert (item.rank, item.id, item.source, item.image, item.text) == (
        1,
        node.node_id,
        "grid/2-1",
        str(corpus.pictures[2]),
        CAPTIONS[1],
    )


@pytest.mark.parametrize("picture, caption", [(0, 0), (0, 2), (1, 1), (2, 0)])
def test_composed_to_multimodal_finds_the_exact_pair(store, tiny_base, corpus, picture, caption) -> None:
    # The grid has the same picture with other captions and the same caption with other pictures.
    results = retriever(store, tiny_base, top_k=3).retrieve(
        QueryBundle(CAPTIONS[caption], image_path=str(corpus.pictures[picture]))
    )
    assert sources(results)[0] == f"grid/{picture}-{caption}"


@pytest.mark.parametrize("picture", [0, 1, 2])
def test_image_to_multimodal_finds_items_with_that_picture(store, tiny_base, corpus, picture) -> None:
    results = retriever(store, tiny_base, top_k=3).retrieve(QueryBundle("", image_path=str(corpus.pictures[picture])))
    assert {image_of(r) for r in results} == {str(corpus.pictures[picture])}


def test_image_to_multimodal_finds_an_uncaptioned_picture(store, tiny_base, corpus) -> None:
    results = retriever(store, tiny_base).retrieve(QueryBundle("", image_path=str(corpus.pictures[5])))
    assert sources(results)[0] == "uncaptioned" and results[0].score == pytest.approx(1.0, abs=1e-4)


def test_image_to_image_ignores_captions_and_merges_the_same_picture_when_asked(store, tiny_base, corpus) -> None:
    query = QueryBundle("", image_path=str(corpus.pictures[0]))
    # One picture under three captions: three distinct items, all kept by default.
    every = retriever(store, tiny_base, mode="image-to-image", top_k=3).retrieve(query)
    assert sorted(sources(every)) == ["grid/0-0", "grid/0-1", "grid/0-2"]
    assert all(r.score == pytest.approx(1.0, abs=1e-4) for r in every)  # the picture alone: captions do not count
    unique = retriever(store, tiny_base, mode=Mode.IMAGE_TO_IMAGE, top_k=3, dedup_threshold=EXACT).retrieve(query)
    assert image_of(unique[0]) == str(corpus.pictures[0])
    assert [image_of(r) for r in unique[1:]].count(str(corpus.pictures[0])) == 0
    assert len(unique) == 3  # fetched further to fill k after merging
    assert len(unique[0].node.metadata["merged_duplicates"]) == 2


def test_image_to_image_never_returns_text_only_items(store, tiny_base, corpus) -> None:
    results = retriever(store, tiny_base, mode="image-to-image", top_k=50, dedup=False).retrieve(
        QueryBundle("", image_path=str(corpus.pictures[3]))
    )
    assert len(results) == 13 and all(isinstance(r.node, ImageNode) for r in results)


@pytest.mark.parametrize("picture", [0, 2])
def test_composed_to_image_finds_the_reference_picture(store, tiny_base, corpus, picture) -> None:
    results = retriever(store, tiny_base, mode="composed-to-image", top_k=2).retrieve(
        QueryBundle("make it red", image_path=str(corpus.pictures[picture]))
    )
    assert image_of(results[0]) == str(corpus.pictures[picture])


def test_text_to_text_finds_the_exact_note(store, tiny_base) -> None:
    results = retriever(store, tiny_base, mode="text-to-text", top_k=5).retrieve(NOTES[1])
    assert sources(results)[0] == "notes/1" and len(results) == 3
    assert all(isinstance(r.node, TextNode) and not isinstance(r.node, ImageNode) for r in results)


def test_a_retriever_from_options_takes_its_count_from_the_settings(store, tiny_base) -> None:
    options = QueryOptions(mode="text-to-text", filters="tags=note", min_score=-1)
    made = MultimodalRetriever.from_options(store, tiny_base, options, settings=Settings(top_k=2))
    assert made.top_k == 2 and made.filters == {"tags": "note"} and made.score_threshold == -1
    results = made.retrieve(NOTES[1])
    assert sources(results) == ["notes/1", sources(results)[1]] and len(results) == 2
    asked = MultimodalRetriever.from_options(store, tiny_base, options.model_copy(update={"top_k": 1}))
    assert asked.top_k == 1


def _ranking(encoder, query: np.ndarray, items) -> list[float]:
    """Scores of ``items`` for ``query``, best first, from the encoder's own vectors (as ingest makes them)."""
    pictures = [item for item in items if item.image is not None]
    texts = [item for item in items if item.image is None]
    vectors = []
    if pictures:
        vectors += list(encoder.encode_fused([i.image.uri for i in pictures], [i.text for i in pictures]))
    if texts:
        vectors += list(encoder.encode_text([i.text for i in texts]))
    return sorted((float(query @ v) for v in vectors), reverse=True)


def test_text_to_multimodal_ranks_by_the_fused_vectors(store, tiny_base, corpus) -> None:
    query = "a bridge over a river"
    results = retriever(store, tiny_base, mode="text-to-multimodal", top_k=4, dedup=False).retrieve(query)
    with_image = [item for item in corpus.items.values() if item.image is not None]
    expected = _ranking(tiny_base, tiny_base.encode_text([query])[0], with_image)[:4]
    np.testing.assert_allclose([r.score for r in results], expected, atol=1e-4)
    assert all(isinstance(r.node, ImageNode) for r in results)


def test_composed_to_text_ranks_text_items_by_the_fused_query(store, tiny_base, corpus) -> None:
    bundle = QueryBundle("what keeps the light burning?", image_path=str(corpus.pictures[3]))
    results = retriever(store, tiny_base, mode="composed-to-text", top_k=3).retrieve(bundle)
    query = tiny_base.encode_fused([bundle.image_path], [bundle.query_str])[0]
    notes = [corpus.items[f"notes/{k}"] for k in range(3)]
    np.testing.assert_allclose([r.score for r in results], _ranking(tiny_base, query, notes), atol=1e-4)
    assert set(sources(results)) == {"notes/0", "notes/1", "notes/2"}


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_hybrid_brings_the_words_match_first(store, tiny_base, corpus, fusion) -> None:
    # Dense search alone ranks the notes by the tiny model's noise; BM25 knows which one says "lighthouse".
    bundle = QueryBundle("lighthouse lamp", image_path=str(corpus.pictures[0]))
    dense = retriever(store, tiny_base, mode="composed-to-text").retrieve(bundle)
    assert sources(dense)[0] != "notes/0"
    hybrid = retriever(store, tiny_base, mode="composed-to-text", hybrid=True, fusion=fusion).retrieve(bundle)
    assert sources(hybrid)[0] == "notes/0"
    text_query = retriever(store, tiny_base, hybrid=True, fusion=fusion).retrieve("rocky cliff")
    assert sources(text_query)[0] == "lighthouse"
    pictures = retriever(store, tiny_base, mode="text-to-multimodal", hybrid=True, fusion=fusion).retrieve(
        "rocky cliff"
    )
    assert sources(pictures)[0] == "lighthouse" and all(isinstance(r.node, ImageNode) for r in pictures)
    notes = retriever(store, tiny_base, hybrid=True, fusion=fusion).retrieve("keeper polished lamp")
    assert sources(notes)[0] == "notes/0"  # the default text search reaches text-only items


def test_hybrid_with_an_image_only_query_searches_dense(store, tiny_base, corpus) -> None:
    results = retriever(store, tiny_base, hybrid=True).retrieve(QueryBundle("", image_path=str(corpus.pictures[5])))
    assert sources(results)[0] == "uncaptioned" and results[0].score == pytest.approx(1.0, abs=1e-4)


def test_hybrid_without_bm25_is_refused(corpus, tiny_base) -> None:
    items = [corpus.items["lighthouse"], corpus.items["notes/0"]]
    ingest_items(corpus.db, "no_bm25", tiny_base, items, bm25=False)
    with corpus.open("no_bm25") as plain:
        for asked in ({"hybrid": True}, {"blend": "fused=0.5,bm25=0.5"}):
            with pytest.raises(NotSupportedError, match="created without it"):
                retriever(plain, tiny_base, mode="text-to-text", **asked)
        assert sources(retriever(plain, tiny_base, mode="text-to-text").retrieve(NOTES[0])) == ["notes/0"]


def test_copies_of_one_item_are_merged_and_reported(store, tiny_base, corpus) -> None:
    # The same picture bytes and caption from two sources: true duplicates.
    bundle = QueryBundle(COPIES, image_path=str(corpus.pictures[4]))
    both = retriever(store, tiny_base, top_k=2, dedup=False).retrieve(bundle)
    assert sorted(sources(both)) == ["copies/a", "copies/b"]
    one = retriever(store, tiny_base, top_k=2).retrieve(bundle)
    other = {"copies/a": "copies/b", "copies/b": "copies/a"}[sources(one)[0]]
    assert other not in sources(one) and len(one) == 2
    assert one[0].node.metadata["merged_duplicates"] == [corpus.id(other)]
    assert "merged_duplicates" not in one[0].node.get_content(metadata_mode=MetadataMode.LLM)
    [first, second] = evidence(one)
    assert (
        first.duplicates == [corpus.id(other)] and second.duplicates == [] and "merged_duplicates" not in first.metadata
    )


def test_distinct_items_are_never_merged_by_default(store, tiny_base, corpus) -> None:
    # The tiny model puts every item within 0.995 cosine of the others; only the copies are duplicates.
    results = retriever(store, tiny_base, top_k=50).retrieve(CAPTIONS[0])
    assert len(results) == len(corpus.items) - 1
    assert sum(len(r.node.metadata.get("merged_duplicates", [])) for r in results) == 1


def test_top_k_and_score_threshold(store, tiny_base, corpus) -> None:
    bundle = QueryBundle(CAPTIONS[0], image_path=str(corpus.pictures[1]))
    assert len(retriever(store, tiny_base, top_k=7).retrieve(bundle)) == 7
    scores = [r.score for r in retriever(store, tiny_base, top_k=3).retrieve(bundle)]
    cut = (scores[0] + scores[1]) / 2
    kept = retriever(store, tiny_base, top_k=3, score_threshold=cut).retrieve(bundle)
    assert sources(kept) == ["grid/1-0"]
    with pytest.raises(BlendError, match="outside the cosine scale"):
        retriever(store, tiny_base, score_threshold=1.01)


def test_filters_dict_and_metadata_filters(store, tiny_base, corpus) -> None:
    bundle = QueryBundle(CAPTIONS[0], image_path=str(corpus.pictures[0]))
    only_coast = retriever(store, tiny_base, filters={"tags": "coast"}).retrieve(bundle)
    assert sources(only_coast) == ["lighthouse"]
    either = MetadataFilters(
        filters=[MetadataFilter(key="source", value="copies/a"), MetadataFilter(key="source", value="grid/2-2")],
        condition=FilterCondition.OR,
    )
    assert sorted(sources(retriever(store, tiny_base, filters=either).retrieve(bundle))) == ["copies/a", "grid/2-2"]
    # The mode's own condition (items with an image) still holds: the note tagged "note" is not an answer.
    assert (
        retriever(store, tiny_base, filters={"tags": ["note", "coast"]}).retrieve(bundle)[0].node.metadata["source"]
        == "lighthouse"
    )
    # A modality the mode returns narrows it; one it never returns is refused with the modes that return it.
    assert sources(retriever(store, tiny_base, filters={"modality": "image"}).retrieve(bundle)) == ["uncaptioned"]
    with pytest.raises(ValueError, match="set mode to composed-to-any or composed-to-text"):
        retriever(store, tiny_base, filters={"modality": "text"}).retrieve(bundle)


def test_a_bad_filter_fails_when_the_retriever_is_made(store, tiny_base) -> None:
    with pytest.raises(FilterError):
        retriever(store, tiny_base, filters={"created_at": {"~~": 1}})


HOSTILE = [
    '" or 1==1 or "',
    "' or ''='",
    'a"b',
    "back\\slash",
    'x\\" or id != "',
    "line\nbreak",
    ") or (true",
    "ünï 😀",
]


@pytest.fixture(scope="module")
def hostile(corpus: Corpus, tiny_base) -> Iterator[MilvusStore]:
    items = [
        image_item(value, f"caption {k}", corpus.pictures[k % 3], metadata={"label": value, 'we"ird key': value})
        for k, value in enumerate(HOSTILE)
    ]
    ingest_items(corpus.db, "hostile", tiny_base, items)
    with corpus.open("hostile") as opened:
        yield opened


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_filter_values_match_only_themselves(hostile, tiny_base, corpus, value) -> None:
    query = tiny_base.encode_text(["caption"])[0]  # the filters decide here, not the query
    mode = Mode.TEXT_TO_MULTIMODAL
    for filters in (
        {"source": value},
        {"label": value},
        {'metadata.we"ird key': value},
        MetadataFilters(filters=[MetadataFilter(key="label", value=value, operator=FilterOperator.EQ)]),
    ):
        assert sources(retriever(hostile, tiny_base, filters=filters, top_k=20).search(query, mode)) == [value]
    others = retriever(hostile, tiny_base, filters={"source": {"!=": value}}, top_k=20).search(query, mode)
    assert value not in sources(others) and len(others) == len(HOSTILE) - 1


def test_a_mode_without_its_input_is_refused(store, tiny_base) -> None:
    with pytest.raises(ValueError, match="needs a query image"):
        retriever(store, tiny_base, mode="composed-to-image").retrieve("only words")
    with pytest.raises(ValueError, match="needs query text"):
        retriever(store, tiny_base, mode="text-to-text").retrieve(QueryBundle("", image_path="q.png"))
    with pytest.raises(ValueError, match="is a URL"):
        retriever(store, tiny_base).retrieve(QueryBundle("", image_path="https://example.invalid/q.png"))
    with pytest.raises(ValueError):
        retriever(store, tiny_base, mode="text-to-everything")


def test_an_explicit_mode_uses_only_its_part_of_the_bundle(store, tiny_base, corpus) -> None:
    bundle = QueryBundle("words the image-only mode ignores", image_path=str(corpus.pictures[5]))
    results = retriever(store, tiny_base, mode="image-to-multimodal").retrieve(bundle)
    assert sources(results)[0] == "uncaptioned" and results[0].score == pytest.approx(1.0, abs=1e-4)


def test_a_collection_of_another_encoder_is_refused(corpus, tiny_base) -> None:
    other = EncoderInfo(variant="other", dim=tiny_base.dim, fingerprint="not-the-same")
    with MilvusStore.open(corpus.db, "other_encoder", encoder_info=other) as store:
        with pytest.raises(EncoderMismatchError, match="not comparable"):
            MultimodalRetriever(store, tiny_base)


def test_async_retrieve(store, tiny_base, corpus) -> None:
    bundle = QueryBundle(LIGHTHOUSE, image_path=str(corpus.pictures[3]))
    results = asyncio.run(retriever(store, tiny_base, top_k=2).aretrieve(bundle))
    assert sources(results)[0] == "lighthouse"


def test_embed_then_search_equals_retrieve(store, tiny_base, corpus) -> None:
    r = retriever(store, tiny_base, top_k=3)
    bundle = QueryBundle(CAPTIONS[2], image_path=str(corpus.pictures[1]))
    mode = r.resolve_mode(bundle)
    assert sources(r.search(r.embed(bundle, mode), mode)) == sources(r.retrieve(bundle))


def test_composed_queries_need_an_encoder_with_fused_vectors(tmp_path, corpus) -> None:
    from rag.embeddings import FusedNotSupportedError
    from rag.embeddings.clip import CLIPEncoder
    from tests.embeddings.tiny_transformers import build_clip

    clip = CLIPEncoder.from_pretrained(build_clip(tmp_path / "clip"), dtype="float32")
    ingest_items(corpus.db, "clip", clip, [corpus.items["lighthouse"], corpus.items["notes/0"]])
    with corpus.open("clip") as store:
        clip_retriever = MultimodalRetriever(store, clip)
        with pytest.raises(FusedNotSupportedError, match="no joint image\\+text embedding"):
            clip_retriever.retrieve(QueryBundle(LIGHTHOUSE, image_path=str(corpus.pictures[3])))
        assert sources(clip_retriever.retrieve(QueryBundle("", image_path=str(corpus.pictures[3])))) == ["lighthouse"]
