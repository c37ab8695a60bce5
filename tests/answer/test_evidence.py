"""The evidence an LLM reads: a page item and its own chunks merged (its picture once, each passage once, the best
score), only the metadata a reader cites by, and pictures counted in the evidence budget by each provider's rule.
In process, no store and no model: nodes as the store makes them (``to_llama_node``) and a scripted LLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import CompletionResponse, CustomLLM, ImageBlock, LLMMetadata, TextBlock
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import NodeWithScore, QueryBundle
from PIL import Image

from connectors.milvus.schema import to_llama_node
from rag.answer import AnswerStatus, MultimodalSynthesizer, ollama_llm, openai_compatible_llm
from rag.answer.budget import PictureCost, count_tokens, openai_high_detail_tokens
from rag.answer.evidence import evidence_text, merge_pages
from rag.cli.answers import print_after_answer
from rag.items import ImageRef, KnowledgeItem

PAGE_TEXT = (
    "Shared MIME-info Database\nGlob patterns have a weight.\nThe default weight is 50,\nand the maximum is 100. "
    "Literal patterns are matched before all others."
)
CHUNKS = ["Glob patterns have a weight. The default weight is 50,", "and the maximum is 100."]


class Scripted(CustomLLM):
    """An LLM that answers every request with ``reply`` and keeps the prompts it was sent."""

    reply: str = "[1]"
    prompts: list[str] = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text=self.reply)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        yield self.complete(prompt)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 1024 x 1024 pictures: OpenAI counts 765 tokens for each at detail high (its docs' own example)."""
    root = tmp_path_factory.mktemp("evidence")
    paths = []
    for index, colour in enumerate(["red", "green", "blue", "white"]):
        Image.new("RGB", (1024, 1024), colour).save(root / f"page-{index}.png")
        paths.append(root / f"page-{index}.png")
    return paths


def stored(item: KnowledgeItem, score: float) -> NodeWithScore:
    return NodeWithScore(node=to_llama_node(item), score=score)


def page(picture: Path, score: float, number: int = 7, doc: str = "spec.pdf", text: str = PAGE_TEXT) -> NodeWithScore:
    return stored(
        KnowledgeItem.create(
            source=f"/srv/docs/{doc}",
            text=text,
            image=ImageRef(uri=str(picture), mime_type="image/png"),
            anchor=f"page={number}",
            name=f"{doc}#page={number}",
            metadata={"file_path": f"/srv/docs/{doc}", "page": number, "page_count": 17, "dpi": 144},
        ),
        score,
    )


def chunk(text: str, score: float, k: int, number: int = 7, doc: str = "spec.pdf") -> NodeWithScore:
    return stored(
        KnowledgeItem.create(
            source=f"/srv/docs/{doc}",
            text=text,
            anchor=f"page={number}&chunk={k}",
            name=f"{doc}#page={number}&chunk={k}",
            metadata={"file_path": f"/srv/docs/{doc}", "page": number, "page_count": 17, "chunk": k},
        ),
        score,
    )


def sent(synthesizer: MultimodalSynthesizer, nodes: list[NodeWithScore], query: QueryBundle | None = None):
    """The request's evidence text and pictures."""
    [_, user] = synthesizer.messages(query or QueryBundle("what weight?"), nodes)
    text = "".join(b.text for b in user.blocks if isinstance(b, TextBlock))
    return text.split("\nQuestion:")[0], [b for b in user.blocks if isinstance(b, ImageBlock)]


def test_a_page_and_its_own_chunks_become_one_item_with_one_picture_each_passage_once_and_the_best_score(
    pictures,
) -> None:
    extra = "A passage that the page's own text does not hold."
    results = [
        chunk(CHUNKS[0], 0.91, 2),
        chunk("Another document's words.", 0.88, 1, doc="other.pdf"),
        page(pictures[0], 0.80),
        chunk(CHUNKS[1], 0.75, 3),
        chunk(extra, 0.70, 4),
    ]
    merged = merge_pages(results)
    assert [r.node.metadata["name"] for r in merged] == ["spec.pdf#page=7", "other.pdf#page=7&chunk=1"]
    assert merged[0].score == 0.91  # the best of the page and its chunks, in the best one's place
    assert merged[0].node.metadata["merged_passages"] == [r.node.node_id for r in (results[0], results[3], results[4])]
    assert results[2].node.get_content() == PAGE_TEXT  # the retrieved page node is left as it was
    text, images = sent(MultimodalSynthesizer(), merged)
    assert len(images) == 1 and "[1] spec.pdf#page=7 (its picture is image #1)" in text
    assert text.count("Glob patterns have a weight.") == 1 and text.count("and the maximum is 100.") == 1
    assert text.count(extra) == 1  # a chunk the page's text does not hold is sent once too


def test_only_a_page_with_its_own_chunks_merges(pictures) -> None:
    figure = stored(
        KnowledgeItem.create(
            source="/srv/docs/spec.pdf",
            text="A chart of glob weights",
            image=ImageRef(uri=str(pictures[1]), mime_type="image/png"),
            anchor="page=7&figure=1",
            name="spec.pdf#page=7&figure=1",
            metadata={"page": 7, "figure": 1},
        ),
        0.95,
    )
    alone = [chunk(CHUNKS[0], 0.9, 2), chunk(CHUNKS[1], 0.8, 3), page(pictures[0], 0.7, number=8)]
    assert merge_pages(alone) == alone  # chunks without their page item, and another page, stay as they are
    merged = merge_pages([figure, page(pictures[0], 0.9), chunk(CHUNKS[0], 0.8, 2)])
    assert [r.node.metadata["name"] for r in merged] == ["spec.pdf#page=7&figure=1", "spec.pdf#page=7"]


def test_after_merging_the_numbers_the_llm_saw_are_the_numbers_cited(pictures, capsys) -> None:
    results = [page(pictures[0], 0.9), chunk(CHUNKS[0], 0.95, 2), chunk("Elsewhere.", 0.5, 1, number=9)]
    llm = Scripted(reply="The default is 50 [1]. See also [2]. And [3].", prompts=[])
    response = MultimodalSynthesizer(llm).synthesize("what weight?", results)
    assert response.status is AnswerStatus.ANSWERED
    assert [(c.rank, c.name, c.cited) for c in response.citations] == [
        (1, "spec.pdf#page=7", True),
        (2, "spec.pdf#page=9&chunk=1", True),
    ]
    assert response.citations[0].score == 0.95 and response.citations[0].passages == [results[1].node.node_id]
    assert response.citation_check is not None and response.citation_check.unknown_citations == [3]
    [prompt] = llm.prompts
    assert "[1] spec.pdf#page=7" in prompt and "[2] spec.pdf#page=9&chunk=1" in prompt and "\n[3] " not in prompt
    print_after_answer(response)  # what `rag ask` prints after the answer
    printed = capsys.readouterr().out
    assert "[1] spec.pdf#page=7  id=" in printed and "(+1 of its chunks, sent as part of the page)" in printed
    assert "[3] is not one of the 2 items the answer was given" in printed


def test_the_evidence_carries_what_a_reader_cites_by_and_no_bookkeeping(pictures) -> None:
    item = KnowledgeItem.create(
        source="/srv/docs/photos/bridge.jpg",
        text="The bridge at night",
        image=ImageRef(uri=str(pictures[0]), mime_type="image/png"),
        name="photos/bridge.jpg",
        tags=[],
        tenant="acme",
        content_hash="ab" * 32,
        metadata={
            "author": "Ada",
            "keywords": ["bridge", "night"],
            "place": {"city": "Lyon", "street": ""},
            "rating": 4.5,
            "note": "",
            "empty": [],
            "dpi": 144,
            "dtype": "float32",
            "file_path": "/srv/docs/photos/bridge.jpg",
        },
    )
    node = stored(item, 0.9)
    text = evidence_text(node)
    assert text.splitlines() == [
        "author: Ada",
        "keywords: bridge, night",
        "place: city=Lyon",
        "rating: 4.5",
        "",
        "The bridge at night",
    ]
    request, _ = sent(MultimodalSynthesizer(), [node])
    assert "[1] photos/bridge.jpg (its picture is image #1)" in request
    for noise in ("created_at", "modality", "tags", "dpi", "dtype", "acme", "ab" * 32, "/srv", "['", "{"):
        assert noise not in request, noise


def _items(pictures: list[Path]) -> list[NodeWithScore]:
    return [page(p, 0.9 - i / 10, number=i + 1, text=f"Page {i + 1} says a little.") for i, p in enumerate(pictures)]


@pytest.mark.parametrize(
    ("llm", "detail", "each"),
    [
        (openai_compatible_llm("vision", base_url="http://127.0.0.1:9/v1"), "high", 765),
        (openai_compatible_llm("vision", base_url="http://127.0.0.1:9/v1"), "low", 85),
        (ollama_llm("llava", base_url="http://127.0.0.1:9"), "high", 576),
    ],
    ids=["openai-high", "openai-low", "ollama"],
)
def test_a_budget_that_fits_n_pictures_sends_n_best_first(pictures, llm, detail, each) -> None:
    nodes = _items(pictures)
    texts = sum(count_tokens(evidence_text(n)) for n in nodes)
    cost = PictureCost.for_llm(llm, detail=detail)
    assert cost.tokens((1024, 1024)) == each
    for budget, kept in [(2 * each + texts, 2), (2 * each - 1, 1), (len(nodes) * each + texts, 4)]:
        text, images = sent(MultimodalSynthesizer(max_evidence_tokens=budget, picture_cost=cost), nodes)
        assert len(images) == kept, budget
        whole = all(f"Page {i} says a little." in text for i in range(1, 5))
        assert whole is (budget - kept * each >= texts)  # the texts share what the pictures leave
        assert text.count("its picture is left out: the evidence budget is spent") == len(nodes) - kept
        assert f"[{kept}] spec.pdf#page={kept} (its picture is image #{kept})" in text  # the best ranked kept
        assert all(image.detail == detail for image in images)


def test_the_questions_picture_is_counted_first_and_a_fixed_cost_wins(pictures) -> None:
    nodes = _items(pictures[:3])
    texts = sum(count_tokens(evidence_text(n)) for n in nodes)
    synthesizer = MultimodalSynthesizer(max_evidence_tokens=2 * 765 + texts)
    _, images = sent(synthesizer, nodes, QueryBundle("this one?", image_path=str(pictures[3])))
    assert len(images) == 2  # one item's picture, then the question's
    fixed = PictureCost.for_llm(openai_compatible_llm("qwen", base_url="http://127.0.0.1:9/v1"), fixed=1000)
    _, images = sent(MultimodalSynthesizer(max_evidence_tokens=2000 + texts, picture_cost=fixed), nodes)
    assert len(images) == 2


def test_a_missing_picture_costs_nothing_and_shifts_no_numbers(pictures, tmp_path) -> None:
    nodes = _items([pictures[0], tmp_path / "gone.png", pictures[1]])
    texts = sum(count_tokens(evidence_text(n)) for n in nodes)
    text, images = sent(MultimodalSynthesizer(max_evidence_tokens=2 * 765 + texts), nodes)
    assert len(images) == 2
    assert "[2] spec.pdf#page=2 (its picture could not be read)" in text
    assert "[3] spec.pdf#page=3 (its picture is image #2)" in text


def test_openai_tile_rule() -> None:
    assert openai_high_detail_tokens(1024, 1024) == 765  # 768 x 768: 4 tiles
    assert openai_high_detail_tokens(2048, 4096) == 1105  # 1024 x 2048, then 768 x 1536: 6 tiles
    assert openai_high_detail_tokens(724, 1024) == 1105  # an A4 page: 768 x 1086, 2 x 3 tiles
    assert openai_high_detail_tokens(4096, 100) == 765  # fitted into 2048 x 50, never scaled past 2048: 4 x 1 tiles
    assert PictureCost(detail="low").tokens((4096, 8192)) == 85 and PictureCost().tokens(None) == 1445
