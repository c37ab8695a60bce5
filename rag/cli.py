"""The ``rag`` command: a thin shell over the library."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rag.settings import Settings

app = typer.Typer(help="Multimodal RAG over images and text: ingest, search, ask.", no_args_is_help=True)
console = Console(stderr=True)

CollectionOpt = Annotated[Optional[str], typer.Option("--collection", "-c", help="Collection name [RAG_COLLECTION].")]
UriOpt = Annotated[
    Optional[str], typer.Option("--uri", help="Milvus Lite file (*.db) or http://host:19530 [RAG_MILVUS_URI].")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _open_store(settings: Settings, encoder=None, create: bool = False):
    from connectors.milvus import EncoderInfo, MilvusStore, StoreError

    info = EncoderInfo.of(encoder, encoder.name) if encoder is not None else None
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    try:
        return MilvusStore.open(settings.milvus_uri, settings.collection, encoder_info=info, create=create, token=token)
    except StoreError as e:
        raise _fail(str(e)) from e


def _load_encoder(settings: Settings):
    from rag.embeddings import CheckpointError
    from rag.embeddings.registry import load_encoder

    try:
        return load_encoder(settings)
    except CheckpointError as e:
        raise _fail(
            f"{e}\nPoint RAG_WEIGHTS at a local Visualized-BGE .pth (with RAG_TEXT_MODEL and RAG_VISION_CONFIG "
            "for a checkpoint under another name), or pass --weights."
        ) from e


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Folders, manifests (.jsonl/.csv), PDFs, .md/.html, URLs.")],
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    weights: Annotated[Optional[str], typer.Option(help="Checkpoint path or variant [RAG_WEIGHTS].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Items per batch [RAG_BATCH_SIZE].")] = None,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", help="Fetch http(s) images.")] = False,
    report: Annotated[Optional[Path], typer.Option(help="JSONL file listing every problem met.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed a corpus and store it; re-running adds only what changed. Exit 1 if anything was skipped."""
    from connectors.sources import SourceOptions, open_sources
    from rag.ingest import ingest as run_ingest

    settings = _settings(collection=collection, milvus_uri=uri, weights=weights, batch_size=batch_size)
    encoder = _load_encoder(settings)
    options = SourceOptions(
        cache_dir=settings.data_dir,
        allow_urls=allow_urls or settings.allow_urls,
        max_download_bytes=settings.url_max_bytes,
        url_timeout=settings.url_timeout,
    )
    report_path = report or settings.data_dir / "reports" / f"ingest-{settings.collection}.jsonl"
    with _open_store(settings, encoder, create=True) as store, Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed} items  {task.fields[rate]:.2f} items/s  {task.fields[problems]} problems"),
        TimeElapsedColumn(),
        console=console,
        transient=as_json,
    ) as progress:
        task = progress.add_task(f"ingest → {settings.collection}", total=None, rate=0.0, problems=0)

        def on_progress(done: int, problems: int) -> None:
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(task, completed=done, rate=done / elapsed, problems=problems)

        result = run_ingest(
            open_sources(sources, **options.model_dump()),
            encoder,
            store,
            batch_size=settings.batch_size,
            on_progress=on_progress,
        )
    result.write_jsonl(report_path)
    summary = {**result.summary(), "collection": settings.collection, "report": str(report_path)}
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(result, summary)
    if result.skipped:
        raise typer.Exit(1)


def _print_summary(result, summary: dict) -> None:
    table = Table(title="ingest", show_header=False)
    for key in ("collection", "added", "unchanged", "replaced", "skipped", "warnings", "items_per_second", "report"):
        table.add_row(key, str(summary[key]))
    console.print(table)
    for problem in result.problems[:20]:
        colour = "red" if problem.severity.value == "error" else "yellow"
        console.print(f"[{colour}]{problem.severity.value}[/] {problem.source}: {problem.reason}")
    if len(result.problems) > 20:
        console.print(f"… and {len(result.problems) - 20} more in {summary['report']}")


@app.command()
def stats(collection: CollectionOpt = None, uri: UriOpt = None, as_json: JsonOpt = False) -> None:
    """Count, vector dimension and encoder of a collection."""
    settings = _settings(collection=collection, milvus_uri=uri)
    with _open_store(settings) as store:
        info = store.stats()
    data = info.model_dump(mode="json")
    if as_json:
        print(json.dumps(data))
        return
    table = Table(title=f"collection {info.collection}", show_header=False)
    for key, value in data.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)


if __name__ == "__main__":
    app()
