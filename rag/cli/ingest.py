"""``rag ingest`` and ``rag stats``: put a corpus into a collection, and describe one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from rag.access import AuditLog
from rag.access.tenants import tagged
from rag.cli.common import (
    CollectionOpt,
    EncoderOpt,
    ExitCode,
    JsonOpt,
    UriOpt,
    VerboseOpt,
    WeightsOpt,
    app,
    console,
    fail,
    load_encoder,
    open_store,
    settings_from,
    store_unavailable,
)
from rag.cli.ray import connect_ray, ingest_on_ray
from rag.cli.sync import audited, begin_prune, check_watchable, finish_prune, watch_sources

if TYPE_CHECKING:  # loaded by the commands that need them: `rag --help` starts without them
    from connectors.milvus import MilvusStore
    from rag.ingest import IngestReport


@app.command()
def ingest(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Folders (read whole), manifests (.jsonl/.csv), PDFs, .md/.html, .txt, .docx, .pptx, images, URLs."
        ),
    ],
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Items per batch [RAG_BATCH_SIZE].")] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            min=8,
            help="Tokens per document text chunk, special tokens included; default and most: the "
            "encoder's window (512; CLIP 77) [RAG_CHUNK_SIZE].",
            show_default=False,
        ),
    ] = None,
    chunk_overlap: Annotated[
        int | None,
        typer.Option(
            min=0, help="Tokens a chunk repeats from the one before [RAG_CHUNK_OVERLAP: 32].", show_default=False
        ),
    ] = None,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", help="Fetch http(s) images.")] = False,
    ocr: Annotated[
        str | None,
        typer.Option(
            help="Read text from pixels (pip install 'mmrag\\[ocr]'): auto, PDF pages without a text layer; all, "
            "pictures too; off [RAG_OCR: auto].",
            show_default=False,
        ),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="JSONL file listing every problem met.")] = None,
    as_json: JsonOpt = False,
    engine: Annotated[
        str, typer.Option(help="local: this process; ray: a Ray cluster (pip install 'mmrag\\[ray]').")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: auto, ray://host:10001 or host:6379; default: a local Ray.", show_default=False
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="--engine ray: encoder actors; default: one per GPU, else per node.")
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option(min=0, help="--engine ray: GPUs per encoder actor (0.5: two on a GPU).")
    ] = None,
    cpus_per_worker: Annotated[
        float | None, typer.Option(min=0.01, help="--engine ray: CPUs per encoder actor (its torch threads).")
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Mirror the sources: also delete the stored items of files gone from the folders and files named "
            "(never anything outside them). Refuses (exit 3) when the sources give no item or more than half of the "
            "items in scope would go, unless --yes.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="With --prune: list what would be added, replaced and deleted; write nothing."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --prune: delete past the safety valve.")] = False,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            help="The tenant the items belong to on a shared server (`rag tokens add --tenant`); default: default.",
            show_default=False,
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="After ingesting, keep running: apply files created, changed, renamed and deleted within seconds "
            "(Ctrl-C stops, with a summary).",
        ),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Embed a corpus and store it; re-running adds only what changed. Exit 1 if anything was skipped, 3 if the
    sources hold no item (then nothing is created) or --prune refused to delete."""
    import threading
    import time

    from connectors.sources import count_items, open_sources, peek_items

    settings = settings_from(
        collection=collection,
        milvus_uri=uri,
        encoder=encoder,
        weights=weights,
        batch_size=batch_size,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
    )
    ray_flags = {
        "--ray-address": ray_address,
        "--workers": workers,
        "--gpus-per-worker": gpus_per_worker,
        "--cpus-per-worker": cpus_per_worker,
    }
    _check_flags(engine, ray_flags, sync_flags={"--dry-run": dry_run, "--yes": yes}, prune=prune)
    if tenant is not None:
        _check_tenant(tenant)
    if watch:
        check_watchable(sources)
    check_sources(sources)
    from rag.knowledge import source_options

    ocr_mode = _ocr_mode(ocr or settings.ocr)
    options = source_options(settings, allow_urls=allow_urls, ocr=ocr_mode)  # as KnowledgeBase.ingest reads them
    found, results = peek_items(open_sources(sources, options))
    pruning = None
    if prune:
        pruning, results = begin_prune(
            settings, sources, found, results, yes=yes, dry_run=dry_run, as_json=as_json, tenant=tenant
        )
    results = tagged(results, tenant)
    if not found and not watch:
        _no_items(sources, list(results), settings.collection, report, as_json)
    ray_options = None
    if engine == "ray":
        ray_options = connect_ray(settings, ray_address, workers, gpus_per_worker, cpus_per_worker)
    report_path = report or settings.data_dir / "reports" / f"ingest-{settings.collection}.jsonl"
    with _progress_bar(as_json) as progress:
        task = progress.add_task("loading the encoder", total=None, rate=0.0, skipped=0, warnings=0)
        # Counting a folder or a manifest is cheap: the bar gets its total (and an ETA) while the model loads.
        counted: list[int | None] = []
        counter = threading.Thread(target=lambda: counted.append(count_items(sources, options)), daemon=True)
        counter.start()
        if ray_options is None:
            model = load_encoder(settings, "batch", counted[0] if counted else None)
        else:  # the actors load their own; this copy gives the collection's fingerprint and the image transform
            from rag.runtime import resolve_runtime

            model = load_encoder(settings, runtime=resolve_runtime("cpu", "float32", workers=1))
        description = f"ingest → {escape(settings.collection)}"
        progress.update(task, description=description, total=counted[0] if counted else None)

        started = time.perf_counter()
        latest: list = []

        def on_progress(current: IngestReport, done: bool = False) -> None:
            latest[:] = [current]
            total = progress.tasks[task].total
            if done or (total is not None and current.processed > total):  # the count was a guess: the bar ends full
                total = current.processed
            elif total is None and counted:
                total = counted[0]
            summary = current.summary()
            rate = summary["items_per_second"] if done else current.added / max(time.perf_counter() - started, 1e-9)
            progress.update(
                task,
                total=total,
                completed=current.processed,
                rate=rate,
                skipped=summary["skipped"],
                warnings=summary["warnings"],
                description=f"{description}: indexing" if current.indexing else description,
            )

        try:
            with open_store(settings, model, create=True) as store:
                _refuse_foreign(store, sources, tenant)
                if ray_options is None:
                    from rag.ingest import ingest as run_ingest

                    donors = pruning.donors(store) if pruning is not None else None
                    result = run_ingest(results, model, store, on_progress=on_progress, donors=donors)
                else:
                    result = ingest_on_ray(results, settings, store, model, ray_options, on_progress)
                refused = finish_prune(pruning, store, result)
        except Exception as e:
            _store_went_away(e, latest, settings.collection)
            raise
        on_progress(result, done=True)
    result.write_jsonl(report_path, collection=settings.collection)
    summary = {**result.summary(), "collection": settings.collection, "report": str(report_path)}
    AuditLog(settings.data_dir).record("ingest", None, files=sources, **audited(summary), tenant=tenant)
    _print_summary(result, summary, as_json)
    if watch:
        watch_sources(settings, sources, model, options, as_json, tenant=tenant)
    if refused:
        raise fail(refused, ExitCode.NO_ITEMS)
    if result.skipped:
        raise typer.Exit(ExitCode.ITEMS_SKIPPED)


def _check_flags(engine: str, ray_flags: dict[str, Any], *, sync_flags: dict[str, bool], prune: bool) -> None:
    """Refuse flags that do not go together, before anything is read or loaded."""
    if engine not in ("local", "ray"):
        raise fail(f"--engine must be local or ray, not {engine!r}")
    if engine == "local" and (given := [flag for flag, value in ray_flags.items() if value is not None]):
        raise fail(f"{', '.join(given)} apply to --engine ray")
    if not prune and (given := [flag for flag, value in sync_flags.items() if value]):
        raise fail(f"{', '.join(given)}: only with --prune")


def _store_went_away(error: Exception, latest: list, collection: str) -> None:
    """Stop with one paragraph (exit 5) when ``error`` says the store went away, naming what was stored so far."""
    from connectors.milvus import is_unreachable

    if not is_unreachable(error):
        return
    if latest:
        done = latest[0].summary()
        stored = (
            f"{done['added']} new and {done['replaced']} replaced item(s) in collection {collection!r} "
            f"({done['unchanged']} were there already, {done['skipped']} skipped; {latest[0].processed} items read)"
        )
    else:
        stored = f"nothing new in collection {collection!r}"
    raise store_unavailable(error, stored) from error


@contextmanager
def _progress_bar(transient: bool) -> Iterator[Progress]:
    """The ingest progress bar; a run that stops on an error takes its bar away, leaving the message last."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.2f} items/s  {task.fields[skipped]} skipped  {task.fields[warnings]} warnings"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    ) as progress:
        try:
            yield progress
        except BaseException:
            progress.live.transient = True
            raise


def _check_tenant(tenant: str) -> None:
    from rag.access import TokenError, check_tenant

    try:
        check_tenant(tenant)
    except TokenError as e:
        raise fail(e) from e


def _refuse_foreign(store: MilvusStore, sources: list[str], tenant: str | None) -> None:
    """Stop (exit 2) before writing when items of these sources belong to another tenant."""
    from rag.ingest.tenancy import foreign_items
    from rag.items import DEFAULT_TENANT

    taken = foreign_items(store, sources, tenant or DEFAULT_TENANT)
    if taken:
        raise fail(
            f"{taken} stored item(s) of these sources belong to another tenant than {tenant or DEFAULT_TENANT!r}: a "
            "file belongs to one tenant. Ingest a copy from another folder, or delete those items first (rag delete)"
        )


def check_sources(sources: list[str]) -> None:
    """Refuse sources that do not exist, before anything is loaded or created."""
    from connectors.sources import missing_sources

    missing = missing_sources(sources)
    if missing:
        raise fail(f"no such file or folder: {', '.join(missing)} (give folders, files or http(s) URLs)")


def _no_items(sources: list[str], problems: list, collection: str, report: Path | None, as_json: bool) -> None:
    """Say that the sources hold no item, list why, and stop (exit 3): no model loaded, nothing created."""
    from rag.ingest import IngestReport

    result = IngestReport(problems=problems)
    if report is not None:
        result.write_jsonl(report, collection=collection)
    summary = {**result.summary(), "collection": collection, "report": str(report) if report else None}
    _print_summary(result, summary, as_json)
    console.print(
        f"[bold red]no items found[/] in {escape(', '.join(sources))}: nothing was ingested, and collection "
        f"{escape(repr(collection))} was neither created nor changed"
    )
    raise typer.Exit(ExitCode.NO_ITEMS)


def _print_summary(result: IngestReport, summary: dict[str, Any], as_json: bool) -> None:
    from rag.display import ingest_summary

    if as_json:
        print(json.dumps(summary))
        return
    for line in ingest_summary(summary, result.problems):
        console.print(line)


@app.command()
def stats(
    collection: CollectionOpt = None, uri: UriOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Count, vector dimension and encoder of a collection, the device and dtype its last ingest ran on, and the
    blends `rag eval --tune` saved for its queries."""
    settings = settings_from(collection=collection, milvus_uri=uri)
    with open_store(settings) as store:
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


def _ocr_mode(mode: str) -> str:
    """``--ocr`` checked: one of the three modes, and ``all`` only with the OCR extra installed (exit 2)."""
    from connectors.sources.ocr import OcrUnavailableError, require_ocr

    if mode not in ("auto", "all", "off"):
        raise fail(f"--ocr must be auto, all or off, not {mode!r}")
    try:
        require_ocr(mode)
    except OcrUnavailableError as e:
        raise fail(e) from None
    return mode
