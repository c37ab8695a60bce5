"""``rag search`` and ``rag ask``: retrieve items for a query, and answer a question from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rag.cli.answers import checked_llm, merged_note, print_after_answer, streamed_answer
from rag.cli.common import (
    CollectionOpt,
    EncoderOpt,
    ExitCode,
    JsonOpt,
    UriOpt,
    VerboseOpt,
    WeightsOpt,
    app,
    checked,
    fail,
    load_encoder,
    open_store,
    require_collection,
    settings_from,
)

ModeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mode",
        "-m",
        help="query-to-target. Targets: any (every item: text chunks, pages, pictures), multimodal (items with a "
        "picture), image (pictures alone), text (text-only items). Modes: text-to-any, text-to-multimodal, "
        "text-to-text, image-to-any, image-to-image, image-to-multimodal, composed-to-any, composed-to-image, "
        "composed-to-multimodal, composed-to-text. Default: text-to-any for text, image-to-multimodal for an image, "
        "composed-to-multimodal for both.",
    ),
]
ImageOpt = Annotated[Optional[Path], typer.Option("--image", "-i", help="Query image (a local file).")]
TopKOpt = Annotated[
    Optional[int], typer.Option("--top-k", "-k", min=1, max=16384, help="How many items to retrieve [RAG_TOP_K, 10].")
]
FilterOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--filter",
        "-f",
        help="key=value pairs, comma-separated or one per --filter (a repeated key matches any of its values), or a "
        'JSON object such as \'{"created_at": {">=": "2024-01-01"}}\'. Keys: source, tags, modality (text, image, '
        "image+text), mime_type, … or metadata keys.",
    ),
]
BlendOpt = Annotated[
    Optional[str],
    typer.Option(
        "--blend",
        help="Search several signals in one query, fused by Milvus: fused=0.6,image=0.3,bm25=0.1 (fused: the item as "
        "a whole; image: the picture alone; bm25: words of the text; weights are scaled to sum to 1), or names alone "
        "for equal parts. Default: the blend `rag eval --tune` saved for the query's kind, unless --mode is given.",
    ),
]
HybridOpt = Annotated[
    bool, typer.Option("--hybrid", help="The mode's vector and BM25 over the items' text: the blend <vector>,bm25.")
]
FusionOpt = Annotated[
    Optional[str],
    typer.Option(
        "--fusion",
        help="How a blend is fused: weighted (the default for --blend) or rrf, reciprocal rank (the default for --hybrid).",
    ),
]
MinScoreOpt = Annotated[
    Optional[float],
    typer.Option(
        "--min-score",
        help="Drop results scoring below this, on the scale of their scores: cosine -1..1 for one vector, 0..1 for "
        "weighted blends (a blend of vectors alone tops out at 0.75). Refused with RRF, whose scores are positions "
        "(about 0.016).",
    ),
]
DedupOpt = Annotated[
    bool,
    typer.Option(
        "--dedup/--no-dedup",
        help="Merge true duplicates: the same item, or the same image bytes with the same text. The footer counts them.",
    ),
]
MergeSimilarOpt = Annotated[
    Optional[float],
    typer.Option(
        "--merge-similar",
        min=-1.0,
        max=1.0,
        help="Also merge results whose vectors have a cosine above this, e.g. 0.995 for re-encoded copies of a "
        "picture. Off by default: distinct items can be that close.",
    ),
]


def _checked_query(
    text: str,
    image: Path | None,
    *,
    text_name: str,
    mode: str | None,
    filters: list[str] | None,
    blend: str | None,
    hybrid: bool,
    fusion: str | None,
    min_score: float | None,
    merge_similar: float | None,
):
    """The query's inputs and the retriever's options, checked before any model or store is opened: a typo is
    reported at once. ``text_name`` is what the user called the text (``--text``, the question)."""
    from connectors.milvus.blend import Blend, BlendError, check_threshold, scale_of
    from connectors.milvus.filters import FilterError, parse_filters
    from rag.retrieval import Mode, PlainQuery, QueryError, check_query, default_mode, searched_modalities

    if mode is not None and mode not in {m.value for m in Mode}:
        raise fail(f"unknown mode {mode!r}; choose one of {', '.join(m.value for m in Mode)}")
    if fusion not in (None, "rrf", "weighted"):
        raise fail(f"--fusion must be rrf or weighted, not {fusion!r}")
    if blend is not None and hybrid:
        raise fail("give --blend or --hybrid, not both: --hybrid is the blend of the mode's vector and bm25")
    if not text.strip() and image is None:
        raise fail(f"give a query: {text_name} and/or --image")
    if image is not None and not image.is_file():
        raise fail(f"--image {image} is not a file")
    query = PlainQuery(text, str(image) if image is not None else None)
    chosen = Mode(mode) if mode is not None else default_mode(query)
    try:
        parsed_blend = Blend.parse(blend, fusion or "weighted") if blend is not None else None
    except BlendError as e:
        raise fail(f"--blend: {e}") from e
    asked = parsed_blend or (Blend.hybrid(fusion=fusion or "rrf") if hybrid else None)
    try:
        check_threshold(min_score, scale_of(asked))
    except BlendError as e:
        raise fail(f"--min-score: {e}") from e
    try:
        parsed = parse_filters(filters)
    except FilterError as e:
        raise fail(str(e)) from e
    try:
        check_query(query, chosen)
        searched_modalities(chosen, parsed)
    except QueryError as e:
        raise fail(e.naming(text=text_name, image="--image", mode="--mode")) from e
    options = {
        "mode": chosen if mode is not None else None,
        "filters": parsed,
        "blend": parsed_blend,
        "hybrid": hybrid,
        "fusion": fusion,
        "score_threshold": min_score,
        "dedup_threshold": merge_similar,
    }
    return query, options


def _retriever(store, encoder, **options):
    from connectors.milvus import StoreError
    from rag.retrieval import MultimodalRetriever

    try:
        return MultimodalRetriever(store, encoder, **options)
    except (ValueError, StoreError) as e:
        raise fail(str(e)) from e


def _bundle(query):
    from llama_index.core.schema import QueryBundle

    return QueryBundle(query.query_str, image_path=query.image_path)



@app.command(
    help="Find the items closest to a text, an image, or both.\n\n"
    "Scores: the cosine similarity (-1..1) when one vector is searched; with a weighted blend, the weighted mix of "
    "Milvus's normalised signal scores (0..1); with RRF (--hybrid), reciprocal-rank fusion (about 0.016: positions "
    "only). JSON output names the scale (score_scale)."
)
def search(
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    text: Annotated[str, typer.Option("--text", "-t", help="Query text.")] = "",
    image: ImageOpt = None,
    mode: ModeOpt = None,
    top_k: TopKOpt = None,
    filters: FilterOpt = None,
    blend: BlendOpt = None,
    hybrid: HybridOpt = False,
    fusion: FusionOpt = None,
    min_score: MinScoreOpt = None,
    dedup: DedupOpt = True,
    merge_similar: MergeSimilarOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    from connectors.milvus.blend import scale_of
    from rag.display import short_name, snippet
    from rag.retrieval import evidence, merged_count

    settings = settings_from(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, top_k=top_k)
    plain, options = _checked_query(
        text, image, text_name="--text", mode=mode, filters=filters, blend=blend, hybrid=hybrid, fusion=fusion,
        min_score=min_score, merge_similar=merge_similar,
    )
    require_collection(settings)
    model = load_encoder(settings)
    query = _bundle(plain)
    with open_store(settings, model) as store:
        retriever = _retriever(store, model, top_k=settings.top_k, dedup=dedup, **options)
        chosen = checked(lambda: retriever.resolve_mode(query))
        used = checked(lambda: retriever.resolve_blend(query))
        results = evidence(checked(lambda: retriever.retrieve(query)))
    scale = scale_of(used)
    tuned = used is not None and blend is None and not hybrid
    merged = merged_count(results)
    if as_json:
        print(json.dumps({
            "mode": chosen.value,
            "hybrid": used is not None and "bm25" in used.signals,
            "blend": {**used.to_dict(), "tuned": tuned} if used is not None else None,
            "score_scale": scale.value,
            "merged": merged,
            "results": [r.model_dump(mode="json") for r in results],
        }))
        return
    searched = f" · blend {used.describe()}{', tuned' if tuned else ''}" if used is not None else ""
    table = Table(
        title=Text(f"{chosen.value}{searched} in {settings.collection}"),
        caption=f"scores: {scale.meaning}; items named as ingested (--json: full paths)",
    )
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("item", no_wrap=True)
    table.add_column("text", overflow="fold")
    for r in results:
        table.add_row(str(r.rank), f"{r.score:.4f}", Text(short_name(r.name)), Text(snippet(r.text)))
    Console().print(table if results else "no matching items")
    if merged:
        Console().print(merged_note(merged))


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    image: ImageOpt = None,
    mode: ModeOpt = None,
    top_k: TopKOpt = None,
    filters: FilterOpt = None,
    blend: BlendOpt = None,
    hybrid: HybridOpt = False,
    fusion: FusionOpt = None,
    min_score: MinScoreOpt = None,
    dedup: DedupOpt = True,
    merge_similar: MergeSimilarOpt = None,
    rerank: Annotated[
        Optional[int], typer.Option("--rerank", min=1, help="Let the LLM rerank the candidates and keep this many.")
    ] = None,
    llm_provider: Annotated[Optional[str], typer.Option(help="openai (compatible) or ollama [RAG_LLM_PROVIDER].")] = None,
    llm_base_url: Annotated[Optional[str], typer.Option(help="LLM endpoint [RAG_LLM_BASE_URL].")] = None,
    llm_model: Annotated[Optional[str], typer.Option(help="LLM model; none: list the evidence [RAG_LLM_MODEL].")] = None,
    llm_api_key: Annotated[Optional[str], typer.Option(help="LLM API key [RAG_LLM_API_KEY].")] = None,
    llm_timeout: Annotated[Optional[float], typer.Option(help="Seconds per LLM request [RAG_LLM_TIMEOUT].")] = None,
    max_image_side: Annotated[
        Optional[int], typer.Option(help="Downscale images sent to the LLM to this side [RAG_LLM_MAX_IMAGE_SIDE].")
    ] = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer a question from the collection, citing the items used; the answer is printed as the LLM writes it,
    then the items it cites and the check of its citations. Exit 4 if the LLM failed (the evidence is printed)."""
    settings = settings_from(
        collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, top_k=top_k, llm_provider=llm_provider,
        llm_base_url=llm_base_url, llm_model=llm_model, llm_api_key=llm_api_key, llm_timeout=llm_timeout,
        llm_max_image_side=max_image_side,
    )
    plain, options = _checked_query(
        question, image, text_name="the question", mode=mode, filters=filters, blend=blend, hybrid=hybrid,
        fusion=fusion, min_score=min_score, merge_similar=merge_similar,
    )
    require_collection(settings)
    from rag.answer import answer_engine

    llm = checked_llm(settings)
    model = load_encoder(settings)
    query = _bundle(plain)
    with open_store(settings, model) as store:
        retriever = _retriever(store, model, top_k=settings.top_k, dedup=dedup, **options)
        engine = answer_engine(
            retriever, llm, max_image_side=settings.llm_max_image_side, rerank_top_n=rerank, streaming=True
        )
        streamed = checked(lambda: engine.query(query))
        response = streamed_answer(streamed, echo=not as_json)
    if as_json:
        print(json.dumps(response.to_dict()))
    else:
        print_after_answer(response)
    if response.failed:
        raise typer.Exit(ExitCode.LLM_FAILED)
