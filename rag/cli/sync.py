"""``rag ingest --prune`` (with ``--dry-run`` and ``--yes``): the steps before and after the ingest run itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from rag.access import AuditLog
from rag.cli.common import ExitCode, checked, console, fail, open_store, said, store_options

if TYPE_CHECKING:
    from connectors.milvus import MilvusStore
    from connectors.sources import SourceOptions
    from rag.embeddings.base import Encoder
    from rag.ingest import IngestReport
    from rag.ingest.ledger import SourceResult
    from rag.ingest.sync import Preview, Pruning
    from rag.settings import Settings


def begin_prune(
    settings: Settings,
    sources: list[str],
    found: bool,
    results: Iterator[SourceResult],
    *,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    tenant: str | None = None,
) -> tuple[Pruning, Iterator[SourceResult]]:
    """List what is stored in scope (before any model loads), apply the safety valve to the files already gone,
    and stop here for ``--dry-run`` or when the sources hold no item; else the prune and the results to ingest.
    Stored files whose items are another tenant's than ``tenant`` are out of scope: never listed nor deleted."""
    from rag.ingest.sync import PruneRefusedError, Pruning, preview, prune
    from rag.ingest.tenancy import foreign_sources
    from rag.items import DEFAULT_TENANT

    store = _existing_store(settings)
    try:
        pruning = checked(lambda: Pruning(store, sources, yes=yes))
        if store is not None:
            pruning.leave(checked(lambda: foreign_sources(store, pruning.stored.ids, tenant or DEFAULT_TENANT)))
        stored = pruning.stored
        if dry_run:
            _print_preview(preview(results, store, stored), settings.collection, as_json)
            raise typer.Exit(ExitCode.OK)
        try:
            pruning.check_before(found)
        except PruneRefusedError as e:
            raise fail(e, ExitCode.NO_ITEMS) from e
        if not found and store is not None and stored.count:  # --yes: the sources are empty, and so is the scope
            deleted = checked(lambda: prune(store, stored.ids))
            message = f"pruned {deleted} item(s) of {len(stored.ids)} file(s): {', '.join(sources)} gave no items"
            _print_done(as_json, settings.collection, deleted, message)
            raise typer.Exit(ExitCode.OK)
    finally:
        if store is not None:
            store.close()
    return pruning, pruning.watch(results)


def finish_prune(pruning: Pruning | None, store: MilvusStore, report: IngestReport) -> str | None:
    """After the run: delete the items of the sources gone (in ``report.removed``); why it refused to, or None."""
    from rag.ingest.sync import PruneRefusedError

    if pruning is None:
        return None
    try:
        pruning.finish(store, report)
    except PruneRefusedError as e:
        return said(e)
    return None


def _existing_store(settings: Settings) -> MilvusStore | None:
    """The collection opened without an encoder, or None when it does not exist yet (nothing to prune)."""
    from connectors.milvus import CollectionNotFoundError, MilvusStore

    def opened() -> MilvusStore | None:
        try:
            return MilvusStore.open(
                settings.milvus_uri,
                settings.collection,
                create=False,
                token=settings.milvus_token_value,
                options=store_options(settings),
            )
        except CollectionNotFoundError:  # no database or no collection yet
            return None

    return checked(opened)


def _print_preview(outcome: Preview, collection: str, as_json: bool) -> None:
    summary = {**outcome.summary(), "collection": collection}
    if as_json:
        print(json.dumps(summary))
        return
    console.print(f"dry run: nothing was written to {escape(repr(collection))}")
    for label, sources in (("add", outcome.added), ("replace", outcome.replaced), ("delete", outcome.deleted)):
        for source in sources:
            console.print(f"  would {label} {escape(source)}")
    for new, old in outcome.renamed:
        console.print(f"  would rename {escape(old)} -> {escape(new)} (nothing encoded)")
    console.print(
        f"{len(outcome.added)} to add, {len(outcome.replaced)} to replace, {len(outcome.renamed)} to rename, "
        f"{len(outcome.unchanged)} unchanged, "
        f"{len(outcome.deleted)} to delete ({outcome.items_deleted} item(s))"
    )


def _print_done(as_json: bool, collection: str, deleted: int, message: str) -> None:
    if as_json:
        print(json.dumps({"collection": collection, "added": 0, "removed": deleted, "pruned": True}))
    else:
        console.print(escape(message))


def check_watchable(sources: list[str]) -> None:
    """``--watch`` follows folders and files: refuse URLs at once (exit 2)."""
    urls = [source for source in sources if source.lower().startswith(("http://", "https://"))]
    if urls:
        raise fail(f"--watch follows folders and files, not URLs: {', '.join(urls)}")


def audited(summary: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of an ingest's summary: its collection and counts."""
    kept = ("collection", "added", "unchanged", "replaced", "removed", "skipped")
    return {key: summary[key] for key in kept if key in summary}


def watch_sources(
    settings: Settings,
    sources: list[str],
    encoder: Encoder,
    options: SourceOptions,
    as_json: bool,
    *,
    tenant: str | None = None,
) -> None:
    """Keep applying the changes under ``sources`` (as ``tenant``'s items) until Ctrl-C; then print what was done
    and exit 0. Each batch is written to the audit log as an ingest of the paths it names."""
    from rag.ingest.watch import Watcher, WatchError

    audit = AuditLog(settings.data_dir)

    def on_batch(report: IngestReport, paths: list[str]) -> None:
        done = report.summary()
        counts = audited({**done, "collection": settings.collection})
        audit.record("ingest", None, files=paths, **counts, tenant=tenant, watch=True)
        console.print(
            f"{time.strftime('%H:%M:%S')} {len(paths)} change(s): +{done['added']} added, {done['replaced']} replaced, "
            f"-{done['removed']} removed, {done['skipped']} skipped"
        )
        for problem in report.skipped:
            console.print(f"  error {escape(problem.source)}: {escape(problem.reason)}")

    store = open_store(settings, encoder, create=True)
    try:
        watcher = Watcher(sources, encoder, store, options, tenant=tenant)
    except WatchError as e:
        store.close()
        raise fail(e) from e
    ready = lambda: console.print(f"watching {escape(', '.join(sources))} for changes (Ctrl-C stops)")  # noqa: E731
    try:
        checked(lambda: watcher.run(on_batch=on_batch, on_ready=ready))
    except KeyboardInterrupt:
        pass  # Ctrl-C during a batch: what it wrote stays (every write is idempotent), the rest waits for a rerun
    finally:
        store.close()
    totals = watcher.totals.summary()
    if as_json:
        print(json.dumps({"collection": settings.collection, "watch": totals}))
    else:
        console.print(
            f"stopped watching: {totals['batches']} batch(es), {totals['added']} added, {totals['replaced']} replaced, "
            f"{totals['removed']} removed, {totals['skipped']} skipped"
        )
    raise typer.Exit(ExitCode.OK)
