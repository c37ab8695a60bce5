"""``rag search`` and ``rag ask``: retrieve items for a query, and answer a question from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.console import Console
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
from rag.cli.options import LLM_FLAGS, with_options, with_settings
from rag.retrieval.options import AnswerOptions, QueryOptions

if TYPE_CHECKING:
    from llama_index.core.schema import QueryBundle

    from connectors.milvus import MilvusStore
    from rag.answer import StreamingAnswerResponse
    from rag.embeddings.base import Encoder
    from rag.retrieval import MultimodalRetriever, PlainQuery
    from rag.settings import Settings

ImageOpt = Annotated[Path | None, typer.Option("--image", "-i", help="Query image (a local file).")]


def _checked_query(text: str, image: Path | None, options: QueryOptions, *, text_name: str) -> PlainQuery:
    """The query's inputs, checked against the mode before any model or store is opened: a typo is reported at
    once. ``text_name`` is what the user called the text (``--text``, the question)."""
    from rag.retrieval import PlainQuery, QueryError, check_query, default_mode, searched_modalities

    if not text.strip() and image is None:
        raise fail(f"give a query: {text_name} and/or --image")
    if not text.strip() and options.reranker:
        raise fail(f"--reranker scores the query's text against each result's: give {text_name}")
    if image is not None and not image.is_file():
        raise fail(f"--image {image} is not a file")
    query = PlainQuery(text, str(image) if image is not None else None)
    try:
        mode = options.mode or default_mode(query)
        check_query(query, mode)
        searched_modalities(mode, options.parsed_filters)
    except QueryError as e:
        raise fail(e.naming(text=text_name, image="--image", mode="--mode")) from e
    return query


def _retriever(store: MilvusStore, encoder: Encoder, options: QueryOptions, settings: Settings) -> MultimodalRetriever:
    from connectors.milvus import StoreError
    from rag.embeddings.hub import CheckpointError
    from rag.retrieval import MultimodalRetriever

    try:
        return MultimodalRetriever.from_options(store, encoder, options, settings=settings)
    except (ValueError, StoreError) as e:
        raise fail(e) from e
    except CheckpointError as e:  # the cross-encoder (--reranker) cannot be loaded: said before anything is searched
        raise fail(f"--reranker: {e}") from e


def _bundle(query: PlainQuery) -> QueryBundle:
    from llama_index.core.schema import QueryBundle

    return QueryBundle(query.query_str, image_path=query.image_path)


@app.command(
    help="Find the items closest to a text, an image, or both.\n\n"
    "Scores: the cosine similarity (-1..1) when one vector is searched; with a weighted blend, the weighted mix of "
    "Milvus's normalised signal scores (0..1); with RRF (--hybrid), reciprocal-rank fusion (about 0.016: positions "
    "only). JSON output names the scale (score_scale)."
)
@with_options(QueryOptions)
def search(
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    text: Annotated[str, typer.Option("--text", "-t", help="Query text.")] = "",
    image: ImageOpt = None,
    *,
    options: QueryOptions,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="Every column (rerank score, kind, text); default below 140 columns: compact."),
    ] = False,
    question: Annotated[str | None, typer.Argument(hidden=True, show_default=False)] = None,
    verbose: VerboseOpt = False,
) -> None:
    from connectors.milvus.blend import scale_of
    from rag.display import results_table
    from rag.retrieval import evidence, merged_count

    if question:
        raise fail(f'give the question with -t: rag search -t "{question}" (or an image with -i)')

    settings = settings_from(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights)
    plain = _checked_query(text, image, options, text_name="--text")
    require_collection(settings)
    model = load_encoder(settings)
    query = _bundle(plain)
    with open_store(settings, model) as store:
        retriever = _retriever(store, model, options, settings)
        chosen = checked(lambda: retriever.resolve_mode(query))
        used = checked(lambda: retriever.resolve_blend(query))
        results = evidence(checked(lambda: retriever.retrieve(query)))
    scale = scale_of(used)
    tuned = used is not None and options.blend is None and not options.hybrid
    merged = merged_count(results)
    if as_json:
        print(
            json.dumps(
                {
                    "mode": chosen.value,
                    "hybrid": used is not None and "bm25" in used.signals,
                    "blend": {**used.to_dict(), "tuned": tuned} if used is not None else None,
                    "score_scale": scale.value,
                    "merged": merged,
                    "results": [r.model_dump(mode="json") for r in results],
                }
            )
        )
        return
    searched = f" · blend {used.describe()}{', tuned' if tuned else ''}" if used is not None else ""
    console = Console()
    table = results_table(
        results,
        title=Text(f"{chosen.value}{searched} in {settings.collection}"),
        caption=f"scores: {scale.meaning}; items named as ingested (--json: full paths)",
        width=console.width,
        wide=wide,
    )
    console.print(table if results else "no matching items")
    if merged:
        console.print(merged_note(merged))


@app.command()
@with_options(AnswerOptions)
@with_settings(LLM_FLAGS, param="llm_settings")
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    image: ImageOpt = None,
    *,
    options: AnswerOptions,
    llm_settings: dict[str, object],
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Answer a question from the collection, citing the items used; the answer is printed as the LLM writes it,
    then the items it cites and the check of its citations. Exit 4 if the LLM failed (the evidence is printed)."""
    settings = settings_from(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, **llm_settings)
    plain = _checked_query(question, image, options, text_name="the question")
    require_collection(settings)
    from rag.answer import answer_engine

    answering = checked_llm(settings)
    model = load_encoder(settings)
    query = _bundle(plain)
    with open_store(settings, model) as store:
        retriever = _retriever(store, model, options, settings)
        engine = answer_engine(
            retriever,
            answering,
            options,
            max_image_side=settings.llm_max_image_side,
            streaming=True,
            max_evidence_tokens=settings.llm_max_evidence_tokens,
            settings=settings,
        )
        streamed = cast("StreamingAnswerResponse", checked(lambda: engine.query(query)))
        response = streamed_answer(streamed, echo=not as_json)
    if as_json:
        print(json.dumps(response.to_dict()))
    else:
        print_after_answer(response)
    if response.failed:
        raise typer.Exit(ExitCode.LLM_FAILED)
