"""The ``rag`` command: a thin shell over the library.

Rich reads ``[word]`` as markup: every string from the user or the data is printed escaped or as ``Text``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rag.settings import Settings

app = typer.Typer(help="Multimodal RAG over images and text: ingest, search, ask.", no_args_is_help=True)
console = Console(stderr=True)


def _verbose(value: bool) -> None:
    if value:
        logging.getLogger().setLevel(logging.INFO)


CollectionOpt = Annotated[Optional[str], typer.Option("--collection", "-c", help="Collection name [RAG_COLLECTION].")]
UriOpt = Annotated[
    Optional[str], typer.Option("--uri", help="Milvus Lite file (*.db) or http://host:19530 [RAG_MILVUS_URI].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
EncoderOpt = Annotated[
    Optional[str], typer.Option("--encoder", help="visualized-bge, clip or bridgetower [RAG_ENCODER].")
]
WeightsOpt = Annotated[
    Optional[str], typer.Option("--weights", help="Variant, .pth, hub id or model folder [RAG_WEIGHTS].")
]
# Accepted after the command as well as before it (`rag -v search ...`, `rag search ... -v`); it acts through
# its callback, so the commands ignore the value they are passed.
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log progress details.", callback=_verbose, expose_value=False)
]


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise _fail(problems) from e


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _open_store(settings: Settings, encoder=None, create: bool = False):
    from connectors.milvus import EncoderInfo, MilvusStore, StoreError

    info = EncoderInfo.of(encoder, encoder.name) if encoder is not None else None
    try:
        return MilvusStore.open(
            settings.milvus_uri, settings.collection, encoder_info=info, create=create, token=settings.milvus_token_value
        )
    except StoreError as e:
        raise _fail(str(e)) from e


def _require_collection(settings: Settings) -> None:
    """Stop at once, before any model loads, when the database or the collection is missing (nothing is created)."""
    from connectors.milvus import StoreError, require_collection

    try:
        require_collection(settings.milvus_uri, settings.collection, token=settings.milvus_token_value)
    except StoreError as e:
        raise _fail(str(e)) from e


def _load_encoder(settings: Settings, purpose: str = "query", expected_items: int | None = None, runtime=None):
    from rag.embeddings import CheckpointError
    from rag.embeddings.registry import load_encoder, runtime_from_settings
    from rag.runtime import RuntimeUnavailableError

    try:
        runtime = runtime or runtime_from_settings(settings, purpose, expected_items)  # type: ignore[arg-type]
        return load_encoder(settings, runtime)
    except RuntimeUnavailableError as e:
        raise _fail(str(e)) from e
    except CheckpointError as e:
        if settings.encoder == "visualized-bge":
            hint = (
                "Point RAG_WEIGHTS at a local Visualized-BGE .pth (with RAG_TEXT_MODEL and RAG_VISION_CONFIG "
                "for a checkpoint under another name), or pass --weights."
            )
        else:
            hint = (
                f"Point RAG_WEIGHTS at a local {settings.encoder} model folder (config.json, weights, tokenizer, "
                "preprocessor_config.json), or pass --weights."
            )
        raise _fail(f"{e}\n{hint}") from e


def _logging(verbose: bool) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"rag (mmrag) {version('mmrag')}")
        raise typer.Exit()


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress details.", callback=_logging, expose_value=False)
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True, expose_value=False),
    ] = False,
) -> None:
    pass


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Folders, manifests (.jsonl/.csv), PDFs, .md/.html, URLs.")],
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Items per batch [RAG_BATCH_SIZE].")] = None,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", help="Fetch http(s) images.")] = False,
    report: Annotated[Optional[Path], typer.Option(help="JSONL file listing every problem met.")] = None,
    as_json: JsonOpt = False,
    engine: Annotated[
        str, typer.Option(help="local: this process; ray: a Ray cluster (pip install 'mmrag\\[ray]').")
    ] = "local",
    ray_address: Annotated[
        Optional[str],
        typer.Option(help="--engine ray: auto, ray://host:10001 or host:6379; default: a local Ray.", show_default=False),
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option(min=1, help="--engine ray: encoder actors; default: one per GPU, else per node.")
    ] = None,
    gpus_per_worker: Annotated[
        Optional[float], typer.Option(min=0, help="--engine ray: GPUs per encoder actor (0.5: two on a GPU).")
    ] = None,
    cpus_per_worker: Annotated[
        Optional[float], typer.Option(min=0.01, help="--engine ray: CPUs per encoder actor (its torch threads).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Embed a corpus and store it; re-running adds only what changed. Exit 1 if anything was skipped, or if the
    sources hold no item (then nothing is created)."""
    import threading
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    from connectors.sources import SourceOptions, count_items, open_sources, peek_items

    settings = _settings(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, batch_size=batch_size)
    ray_flags = {"--ray-address": ray_address, "--workers": workers, "--gpus-per-worker": gpus_per_worker,
                 "--cpus-per-worker": cpus_per_worker}
    if engine not in ("local", "ray"):
        raise _fail(f"--engine must be local or ray, not {engine!r}")
    if engine == "local" and (given := [flag for flag, value in ray_flags.items() if value is not None]):
        raise _fail(f"{', '.join(given)} apply to --engine ray")
    _check_sources(sources)
    options = SourceOptions(
        cache_dir=settings.data_dir,
        allow_urls=allow_urls or settings.allow_urls,
        max_download_bytes=settings.url_max_bytes,
        url_timeout=settings.url_timeout,
        decode_check=False,  # the preprocessing workers decode every image and report the broken ones
    )
    found, results = peek_items(open_sources(sources, **options.model_dump()))
    if not found:
        _no_items(sources, list(results), settings.collection, report, as_json)
    ray_options = None
    if engine == "ray":
        ray_options = _connect_ray(settings, ray_address, workers, gpus_per_worker, cpus_per_worker)
    report_path = report or settings.data_dir / "reports" / f"ingest-{settings.collection}.jsonl"
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} items/s  {task.fields[skipped]} skipped  {task.fields[warnings]} warnings"),
        TimeRemainingColumn(),
        console=console,
        transient=as_json,
    ) as progress:
        task = progress.add_task("loading the encoder", total=None, rate=0.0, skipped=0, warnings=0)
        # Counting a folder or a manifest is cheap: the bar gets its total (and an ETA) while the model loads.
        counted: list[int | None] = []
        counter = threading.Thread(target=lambda: counted.append(count_items(sources, options)), daemon=True)
        counter.start()
        if ray_options is None:
            model = _load_encoder(settings, "batch", counted[0] if counted else None)
        else:  # the actors load their own; this copy gives the collection's fingerprint and the image transform
            from rag.runtime import resolve_runtime

            model = _load_encoder(settings, runtime=resolve_runtime("cpu", "float32", workers=1))
        description = f"ingest → {escape(settings.collection)}"
        progress.update(task, description=description, total=counted[0] if counted else None)

        started = time.perf_counter()

        def on_progress(current, done: bool = False) -> None:
            total = progress.tasks[task].total
            if done or (total is not None and current.processed > total):  # the count was a guess: the bar ends full
                total = current.processed
            elif total is None and counted:
                total = counted[0]
            summary = current.summary()
            rate = summary["items_per_second"] if done else current.added / max(time.perf_counter() - started, 1e-9)
            progress.update(
                task, total=total, completed=current.processed, rate=rate, skipped=summary["skipped"],
                warnings=summary["warnings"],
            )

        with _open_store(settings, model, create=True) as store:
            if ray_options is None:
                from rag.ingest import ingest as run_ingest

                result = run_ingest(results, model, store, on_progress=on_progress)
            else:
                result = _ingest_on_ray(results, settings, store, model, ray_options, on_progress)
        on_progress(result, done=True)
    result.write_jsonl(report_path)
    summary = {**result.summary(), "collection": settings.collection, "report": str(report_path)}
    _print_summary(result, summary, as_json)
    if result.skipped:
        raise typer.Exit(1)


def _check_sources(sources: list[str]) -> None:
    """Refuse sources that do not exist, before anything is loaded or created."""
    from connectors.sources import missing_sources

    missing = missing_sources(sources)
    if missing:
        raise _fail(f"no such file or folder: {', '.join(missing)} (give folders, files or http(s) URLs)")


def _no_items(sources: list[str], problems: list, collection: str, report: Path | None, as_json: bool) -> None:
    """Say that the sources hold no item, list why, and stop with status 1: no model loaded, nothing created."""
    from rag.ingest import IngestReport

    result = IngestReport(problems=problems)
    if report is not None:
        result.write_jsonl(report)
    summary = {**result.summary(), "collection": collection, "report": str(report) if report else None}
    _print_summary(result, summary, as_json)
    console.print(
        f"[bold red]no items found[/] in {escape(', '.join(sources))}: nothing was ingested, and collection "
        f"{escape(repr(collection))} was neither created nor changed"
    )
    raise typer.Exit(1)


def _print_summary(result, summary: dict, as_json: bool) -> None:
    from rag.display import ingest_summary

    if as_json:
        print(json.dumps(summary))
        return
    for line in ingest_summary(summary, result.problems):
        console.print(line)


def _connect_ray(settings: Settings, address, workers, gpus_per_worker, cpus_per_worker):
    """The Ray engine's options, connected and checked against the cluster before any model is loaded."""
    from connectors.milvus.schema import Backend
    from rag.ingest import ray_engine

    options = ray_engine.RayOptions(
        address=address, workers=workers, gpus_per_worker=gpus_per_worker or 0.0, cpus_per_worker=cpus_per_worker
    )
    if options.gpus_per_worker and settings.device.strip().lower() == "cpu":
        raise _fail("--gpus-per-worker asks for GPUs, and RAG_DEVICE=cpu keeps the encoder off them: set RAG_DEVICE=auto")
    try:
        ray_engine.connect(options, Backend.of(settings.milvus_uri))
    except (ImportError, ray_engine.RayEngineError) as e:
        raise _fail(str(e)) from e
    return options


def _ingest_on_ray(items, settings: Settings, store, model, options, on_progress):
    from rag.ingest import ray_engine

    try:
        return ray_engine.ingest(
            items, settings, store, image_transform=model.image_transform, options=options, on_progress=on_progress
        )
    except ray_engine.RayEngineError as e:
        raise _fail(str(e)) from e


@app.command()
def stats(
    collection: CollectionOpt = None, uri: UriOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Count, vector dimension and encoder of a collection, the device and dtype its last ingest ran on, and the
    blends `rag eval --tune` saved for its queries."""
    settings = _settings(collection=collection, milvus_uri=uri)
    with _open_store(settings) as store:
        info = store.stats()
    data = info.model_dump(mode="json")
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title=Text(f"collection {info.collection}"), show_header=False)
    runtime = data.pop("ingest_runtime", None)
    data.pop("tuned_blends")
    for key, value in data.items():
        table.add_row(key, Text(json.dumps(value) if isinstance(value, dict) else str(value)))
    if runtime:
        table.add_row("ingested on", Text(f"{runtime['device']} {runtime['dtype']}, batch {runtime['batch_size']}"))
        table.add_row("because", Text(str(runtime["reason"])))
    for kind, tuned in info.tuned_blends.items():
        scores = f"nDCG@10 {tuned.metrics.get('ndcg@10', 0):.3f}, MRR@10 {tuned.metrics.get('mrr@10', 0):.3f}"
        when = tuned.tuned_at.strftime("%Y-%m-%d")
        table.add_row(
            f"blend for {kind} queries", Text(f"{tuned.blend.describe()} · {scores} on {tuned.queries} queries, {when}")
        )
    Console().print(table)


ModeOpt = Annotated[
    Optional[str],
    typer.Option(
        "--mode",
        "-m",
        help="query-to-target: text-to-multimodal, text-to-text, image-to-image, image-to-multimodal, composed-to-image, "
        "composed-to-multimodal, composed-to-text. Default: from the query (text, image or both → …-to-multimodal).",
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
        'JSON object such as \'{"created_at": {">=": "2024-01-01"}}\'. Keys: source, tags, modality, mime_type, … '
        "or metadata keys.",
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
    from rag.retrieval import Mode, PlainQuery, QueryError, check_query, default_mode

    if mode is not None and mode not in {m.value for m in Mode}:
        raise _fail(f"unknown mode {mode!r}; choose one of {', '.join(m.value for m in Mode)}")
    if fusion not in (None, "rrf", "weighted"):
        raise _fail(f"--fusion must be rrf or weighted, not {fusion!r}")
    if blend is not None and hybrid:
        raise _fail("give --blend or --hybrid, not both: --hybrid is the blend of the mode's vector and bm25")
    if not text.strip() and image is None:
        raise _fail(f"give a query: {text_name} and/or --image")
    if image is not None and not image.is_file():
        raise _fail(f"--image {image} is not a file")
    query = PlainQuery(text, str(image) if image is not None else None)
    chosen = Mode(mode) if mode is not None else default_mode(query)
    try:
        parsed_blend = Blend.parse(blend, fusion or "weighted") if blend is not None else None
    except BlendError as e:
        raise _fail(f"--blend: {e}") from e
    asked = parsed_blend or (Blend.hybrid(fusion=fusion or "rrf") if hybrid else None)
    try:
        check_threshold(min_score, scale_of(asked))
    except BlendError as e:
        raise _fail(f"--min-score: {e}") from e
    try:
        check_query(query, chosen)
    except QueryError as e:
        raise _fail(e.naming(text=text_name, image="--image")) from e
    try:
        parsed = parse_filters(filters)
    except FilterError as e:
        raise _fail(str(e)) from e
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
        raise _fail(str(e)) from e


def _bundle(query):
    from llama_index.core.schema import QueryBundle

    return QueryBundle(query.query_str, image_path=query.image_path)


def _run(action):
    """Run a retrieval or answer call, turning the errors a user can fix into a clear message."""
    from connectors.milvus import StoreError

    try:
        return action()
    except (ValueError, OSError, NotImplementedError, StoreError) as e:
        raise _fail(str(e)) from e


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

    settings = _settings(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, top_k=top_k)
    plain, options = _checked_query(
        text, image, text_name="--text", mode=mode, filters=filters, blend=blend, hybrid=hybrid, fusion=fusion,
        min_score=min_score, merge_similar=merge_similar,
    )
    _require_collection(settings)
    model = _load_encoder(settings)
    query = _bundle(plain)
    with _open_store(settings, model) as store:
        retriever = _retriever(store, model, top_k=settings.top_k, dedup=dedup, **options)
        chosen = _run(lambda: retriever.resolve_mode(query))
        used = _run(lambda: retriever.resolve_blend(query))
        results = evidence(_run(lambda: retriever.retrieve(query)))
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
        Console().print(_merged_note(merged))


def _merged_note(merged: int) -> str:
    return f"{merged} duplicate{'s' if merged != 1 else ''} merged (same item, or same image and text); --no-dedup lists them"


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
    """Answer a question from the collection, citing the items used. Exit 1 if the LLM failed (the evidence is printed)."""
    settings = _settings(
        collection=collection, milvus_uri=uri, encoder=encoder, weights=weights, top_k=top_k, llm_provider=llm_provider,
        llm_base_url=llm_base_url, llm_model=llm_model, llm_api_key=llm_api_key, llm_timeout=llm_timeout,
        llm_max_image_side=max_image_side,
    )
    plain, options = _checked_query(
        question, image, text_name="the question", mode=mode, filters=filters, blend=blend, hybrid=hybrid,
        fusion=fusion, min_score=min_score, merge_similar=merge_similar,
    )
    _require_collection(settings)
    from rag.answer import AnswerStatus, answer_engine, llm_from_settings

    try:
        llm = llm_from_settings(settings)
    except (ValidationError, ImportError) as e:
        raise _fail(str(e)) from e
    model = _load_encoder(settings)
    query = _bundle(plain)
    with _open_store(settings, model) as store:
        retriever = _retriever(store, model, top_k=settings.top_k, dedup=dedup, **options)
        engine = answer_engine(retriever, llm, max_image_side=settings.llm_max_image_side, rerank_top_n=rerank)
        response = _run(lambda: engine.query(query))
    if as_json:
        print(json.dumps(response.to_dict()))
    else:
        _print_answer(response)
    if response.status is AnswerStatus.LLM_ERROR:
        raise typer.Exit(1)


def _print_answer(response) -> None:
    from rag.answer import AnswerStatus
    from rag.retrieval import merged_count

    typer.echo(str(response))
    merged = merged_count(response.citations)
    if response.status is AnswerStatus.ANSWERED:
        cited = response.cited
        typer.echo("\nCited:" if cited else "\nThe answer cites no item; the evidence was:")
        for c in cited or response.citations:
            reason = f"  (rerank: {c.rerank_reason})" if c.rerank_reason else ""
            typer.echo(f"[{c.rank}] {c.name}  id={c.id}  image={c.image or '-'}{reason}")
    if merged:
        typer.echo(_merged_note(merged))
    if response.rerank_error:
        console.print(f"[yellow]warning:[/] {escape(response.rerank_error)}")


# -- analyses: similarity, zero-shot classification, embedding map, retrieval evaluation -----------


def _checked(action):
    """Run an analysis, turning the errors a user can fix (bad input, missing extra, store) into a message."""
    from connectors.milvus import StoreError

    try:
        return action()
    except (ValueError, OSError, ImportError, NotImplementedError, StoreError) as e:
        raise _fail(str(e)) from e


def _embedding_progress(description: str, transient: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


@app.command()
def similarity(
    images: Annotated[list[Path], typer.Argument(help="Images to compare.", exists=True, dir_okay=False)],
    text: Annotated[
        Optional[list[str]],
        typer.Option("--text", "-t", help="One text per image, in order (repeat); none: compare the images alone."),
    ] = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Image vs image, fused vs image, text vs fused, fused vs fused: cosine and Euclidean distance side by side."""
    from rich import box

    from rag.analysis import similarity_report

    texts = text or []
    if texts and len(texts) != len(images):
        raise _fail(f"give one --text per image, or none: {len(images)} images and {len(texts)} texts")
    model = _load_encoder(_settings(encoder=encoder, weights=weights))
    report = _checked(lambda: similarity_report(model, images, texts))
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    table = Table(title=Text(f"similarity ({report.encoder})"), box=box.SIMPLE_HEAD)
    for column in ("comparison", "left", "right", "cosine", "euclidean", "rank by cos", "rank by dist"):
        justify = "left" if column in ("comparison", "left", "right") else "right"
        table.add_column(column, justify=justify, overflow="fold")
    for row, by_cos, by_dist in zip(report.rows, report.cosine_ranks, report.distance_ranks):
        table.add_row(
            row.kind, Text(row.left), Text(row.right), f"{row.cosine:.4f}", f"{row.euclidean:.4f}", str(by_cos),
            str(by_dist),
        )
    Console().print(table)
    Console().print(
        f"unit vectors: max |d² − (2 − 2·cos)| = {report.identity_error:.1e}; Spearman ρ of the two rankings = "
        f"{report.rank_correlation:.4f}" + (" (identical order)" if report.cosine_ranks == report.distance_ranks else "")
    )
    for kind, reason in report.skipped.items():
        console.print(f"[yellow]skipped[/] {kind}: {escape(reason)}")


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(help="Images to classify.", exists=True, dir_okay=False)],
    label: Annotated[list[str], typer.Option("--label", "-l", help="A candidate label (repeat).")],
    template: Annotated[str, typer.Option(help="Prompt made of each label.")] = "a photo of a {label}",
    scale: Annotated[
        Optional[float], typer.Option(help="Logit scale (cosine × scale → softmax); default: the model's own, else 100.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels shown per image.")] = 5,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Zero-shot classification: probabilities of the labels for each image, from "a photo of a {label}" prompts."""
    from rag.analysis import classify as run_classify
    from rag.analysis.classify import prompts

    _checked(lambda: prompts(label, template))
    model = _load_encoder(_settings(encoder=encoder, weights=weights))
    results = _checked(lambda: run_classify(model, images, label, template=template, scale=scale, top_k=top_k))
    if as_json:
        print(json.dumps({str(image): [vars(p) for p in preds] for image, preds in zip(images, results)}))
        return
    for image, predictions in zip(images, results):
        table = Table(title=Text(image.name))
        for column in ("label", "probability", "cosine"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for p in predictions:
            table.add_row(Text(p.label), f"{p.probability:.3f}", f"{p.cosine:.4f}")
        Console().print(table)


@app.command(name="map")
def embedding_map(
    sources: Annotated[
        Optional[list[str]], typer.Argument(help="Folders/manifests to embed; none: map the collection's stored vectors.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image to write: .png, .jpg, .webp, .svg or .pdf.")
    ] = Path("embedding-map.png"),
    method: Annotated[str, typer.Option(help="pca, tsne (scikit-learn) or umap (umap-learn).")] = "pca",
    field: Annotated[str, typer.Option(help="Which vector: image or fused.")] = "image",
    color_by: Annotated[
        str, typer.Option(help="modality, tag, folder, or a metadata key such as kind.")
    ] = "modality",
    thumbnails: Annotated[bool, typer.Option("--thumbnails", help="Draw each item's image at its point.")] = False,
    names: Annotated[bool, typer.Option("--names", help="Write each item's name by its point.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed of t-SNE and UMAP.")] = 0,
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Project a collection or a corpus to 2-D and save a scatter plot coloured by a label."""
    from rag.analysis.embedding_map import METHODS, check_color_by, map_format

    if method not in METHODS:
        raise _fail(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if field not in ("image", "fused"):
        raise _fail(f"--field must be image or fused, not {field!r}")
    _checked(lambda: map_format(output))
    from rag.analysis import embed_items, project, save_map, stored_vectors

    settings = _settings(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights)
    if sources:
        from connectors.sources import SourceOptions, open_sources
        from rag.display import problem_line
        from rag.items import SourceError

        _check_sources(sources)
        options = SourceOptions(cache_dir=settings.data_dir)
        items = []
        for entry in open_sources(sources, **options.model_dump()):
            if isinstance(entry, SourceError):
                console.print(problem_line(entry))
            else:
                items.append(entry)
        if not items:
            raise _fail(f"no items found in {', '.join(sources)}")
        _checked(lambda: check_color_by(items, color_by))
        model = _load_encoder(settings)
        with _embedding_progress("embed", transient=False) as progress:
            task = progress.add_task("embed", total=len(items))
            embedded = _checked(
                lambda: embed_items(
                    model,
                    items,
                    field=field,
                    color_by=color_by,
                    batch_size=settings.batch_size,
                    on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                )
            )
        title = f"{', '.join(sources)} · {model.name}"
    else:
        with _open_store(settings) as store:
            embedded = _checked(lambda: stored_vectors(store, field=field, color_by=color_by))
            title = f"{settings.collection} · {store.encoder.variant}"
    coords = _checked(lambda: project(embedded.vectors, method, seed=seed))
    path = _checked(
        lambda: save_map(
            embedded, coords, output, title=f"{title} · {field} vectors · {method}", thumbnails=thumbnails, annotate=names
        )
    )
    console.print(Text(f"{len(embedded)} points, {len(set(embedded.labels))} groups by {color_by} → {path}"))


@app.command(name="eval")
def evaluate(
    queries: Annotated[Path, typer.Option("--queries", "-q", help="JSONL: text and/or image, relevant ids.", exists=True)],
    collection: Annotated[
        Optional[list[str]],
        typer.Option(
            "--collection",
            "-c",
            help="NAME, or NAME=ENCODER[:WEIGHTS] when its encoder is not --encoder's (repeat to compare).",
        ),
    ] = None,
    mode: Annotated[Optional[list[str]], typer.Option("--mode", "-m", help="Only these modes (repeat).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the JSON here.")] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Search the weights of fused, image and bm25 per query kind (text, image, composed), report the best "
            "blend beside each signal alone, and save it on the collection: later queries of that kind use it.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --tune: report the blends, save nothing.")] = False,
    uri: UriOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 per retrieval mode, for one or more collections on the same queries;
    with --tune, the best blend per query kind."""
    from rag.analysis import MODES, evaluate_collection, load_queries

    asked = _checked(lambda: load_queries(queries))
    if tune and mode:
        raise _fail("--tune searches every signal of each query kind; leave --mode out")
    if dry_run and not tune:
        raise _fail("--dry-run goes with --tune")
    unknown = sorted(set(mode or []) - {m.name for m in MODES})
    if unknown:
        raise _fail(f"unknown mode(s) {', '.join(unknown)}; modes: {', '.join(m.name for m in MODES)}")
    modes = [m for m in MODES if not mode or m.name in mode]
    every = [
        _settings(collection=name, milvus_uri=uri, encoder=kind or encoder, weights=own if kind else own or weights)
        for name, kind, own in map(_collection_spec, collection or [None])
    ]
    for settings in every:
        _require_collection(settings)
    encoders: dict[tuple[str | None, str | None], object] = {}
    results: list = []
    to_save = []
    for settings in every:
        key = (settings.encoder, settings.weights)
        if key not in encoders:
            encoders[key] = _load_encoder(settings)
        model = encoders[key]
        with _open_store(settings, model) as store:
            if tune:
                from rag.analysis.tuning import tune_blends

                tuned = _checked(lambda: tune_blends(model, store, asked))
                results += tuned
                to_save.append((settings, tuned))
            else:
                results += _checked(lambda: evaluate_collection(model, store, asked, modes))
    saved: dict[str, list[str]] = {}
    if tune and not dry_run:  # only once every collection is tuned: an error above leaves them all as they were
        from rag.analysis.tuning import save_tuned

        for settings, tuned in to_save:
            with _open_store(settings) as store:
                saved[settings.collection] = sorted(_checked(lambda: save_tuned(store, tuned)))
    data = {"queries": str(queries), "count": len(asked), "results": [r.to_dict() for r in results]}
    if tune:
        data["saved"] = saved
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(data, indent=2), encoding="utf-8")
    if as_json:
        print(json.dumps(data))
        return
    if tune:
        _print_tuning(results, saved, dry_run, f"{len(asked)} queries from {queries.name}")
    else:
        _print_evaluation(results, f"{len(asked)} queries from {queries.name}")


def _print_evaluation(results: list, source: str) -> None:
    from rich import box

    from rag.analysis.evaluation import METRICS

    used = {r.collection: r.encoder for r in results}
    table = Table(
        title=Text(f"retrieval evaluation · {source}"),
        caption=Text("; ".join(f"{name}: {encoder_name}" for name, encoder_name in used.items())),
        box=box.SIMPLE_HEAD,
    )
    for column in ("collection", "mode", "n", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10"):
        table.add_column(column, justify="left" if column in ("collection", "mode") else "right", no_wrap=True)
    for r in results:
        scores = ["n/a"] * 5 if r.skipped else [f"{r.metrics[m]:.3f}" for m in METRICS]
        table.add_row(Text(r.collection), r.mode, str(r.queries), *scores)
    Console().print(table)
    for r in results:
        if r.skipped:
            console.print(f"[yellow]skipped[/] {escape(r.collection)} {r.mode}: {escape(r.skipped)}")


def _print_tuning(results: list, saved: dict[str, list[str]], dry_run: bool, source: str) -> None:
    from rich import box

    from connectors.milvus.blend import Blend
    from rag.analysis.evaluation import METRICS

    collections = sorted({r.collection for r in results})
    several = len(collections) > 1
    title = f"blend tuning · {source}" + ("" if several else f" · collection {collections[0]}" if collections else "")
    table = Table(title=Text(title), box=box.SIMPLE_HEAD)
    columns = (["collection"] if several else []) + ["kind (n)", "search", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("collection", "kind (n)", "search") else "right")
    for r in results:
        rows = [(Text(f"{signal} alone"), scores) for signal, scores in r.alone.items()]
        if r.best is not None:
            rows.append((Text(f"★ {Blend.of(r.best).describe()}", style="bold"), r.metrics))
        for label, scores in rows:
            cells = [f"{r.kind} ({r.queries})", label, *(f"{scores[m]:.3f}" for m in METRICS)]
            table.add_row(*([Text(r.collection)] if several else []), *cells)
    Console().print(table)
    for r in results:
        if r.skipped:
            console.print(f"[yellow]not tuned[/] {escape(r.collection)} {r.kind}: {escape(r.skipped)}")
    if dry_run:
        console.print("--dry-run: nothing saved")
    for name, kinds in saved.items():
        if kinds:
            console.print(
                Text(
                    f"saved on collection {name!r} for {', '.join(kinds)} queries: they use these blends unless "
                    "--blend or --mode says otherwise (rag stats lists them)"
                )
            )


def _collection_spec(spec: str | None) -> tuple[str | None, str | None, str | None]:
    """``NAME[=ENCODER[:WEIGHTS]]`` → (name, encoder, weights); None parts fall back to settings."""
    if spec is None:
        return None, None, None
    name, _, encoder_spec = spec.partition("=")
    kind, _, weights = encoder_spec.partition(":")
    if kind and kind not in ("visualized-bge", "clip", "bridgetower"):
        raise _fail(f"--collection {spec}: the encoder must be visualized-bge, clip or bridgetower, not {kind!r}")
    return name, kind or None, weights or None


@app.command()
def serve(
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    host: Annotated[Optional[str], typer.Option(help="Address to bind; loopback by default [RAG_SERVER_HOST].")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [RAG_SERVER_PORT].")] = None,
    token: Annotated[
        Optional[str], typer.Option(help="Bearer token every /api route requires [RAG_SERVER_TOKEN, preferred].")
    ] = None,
    show_paths: Annotated[
        bool,
        typer.Option(
            "--show-paths",
            help="Show clients this machine's paths (sources, image files) and the Milvus URI [RAG_SERVER_SHOW_PATHS].",
        ),
    ] = False,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the web page and the HTTP API (search, ask, ingest, stats, images) for one existing collection."""
    settings = _settings(
        collection=collection, milvus_uri=uri, server_host=host, server_port=port, server_token=token,
        server_show_paths=show_paths or None, encoder=encoder, weights=weights,
    )
    _require_collection(settings)
    try:
        from rag.server import serve as run_server
    except ImportError as e:
        raise _fail(str(e)) from e
    logging.getLogger("rag").setLevel(logging.INFO)
    run_server(settings)


def main() -> None:
    """The ``rag`` command: run it, then leave without tearing the interpreter down.

    With torch loaded, the interpreter's clean-up takes about a second and does nothing a finished
    command needs: every command has closed its store and written its output by then.
    """
    import os
    import sys

    try:
        app()
        code: object = 0
    except SystemExit as e:
        code = e.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
