"""``rag delete``, ``rag collections`` and ``rag drop``: what a collection holds, and taking things out of it."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rag.access import AuditLog
from rag.cli.common import (
    CollectionOpt,
    JsonOpt,
    UriOpt,
    VerboseOpt,
    app,
    checked,
    console,
    fail,
    open_store,
    require_collection,
    settings_from,
    store_options,
)
from rag.cli.options import checked_options

FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        help="Which items: key=value pairs or a JSON object, as `rag search --filter` takes them "
        "(source=guide/install.md, tags=draft, ...).",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking (needed where no terminal can ask).")]


def _confirmed(question: str, yes: bool, what: str) -> None:
    """Go on when ``--yes`` was given or the user says yes on a terminal; otherwise stop with what to do."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise fail(f"{what}: nothing was changed. There is no terminal to confirm on: add --yes to go ahead")
    if not typer.confirm(question, default=False, err=True):
        console.print("nothing was changed")
        raise typer.Exit(0)


@app.command()
def delete(
    filters: FilterOpt = None,
    every: Annotated[
        bool, typer.Option("--all", help="Delete every item of the collection (it stays, empty).")
    ] = False,
    yes: YesOpt = False,
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Delete the items a filter matches (the filter of `rag search`); says how many, asks first. Files on disk
    are not touched: a later `rag ingest` of their folder brings them back."""
    from rag.retrieval.options import QueryOptions

    given = [value for value in filters or [] if value.strip()]
    if every and given:
        raise fail("give --filter or --all, not both")
    if not every and not given:
        raise fail("give --filter to say which items to delete (e.g. -f source=notes.md), or --all for every item")
    parsed = checked_options(QueryOptions, {"filters": given}).parsed_filters if given else None
    settings = settings_from(collection=collection, milvus_uri=uri)
    require_collection(settings)
    # Every item has an id: matching a non-empty one is how "all" is said to a store that refuses empty filters.
    matching = parsed if parsed is not None else {"id": {"!=": ""}}
    shown = ", ".join(given) if given else "--all"
    with open_store(settings) as store:
        count = checked(lambda: store.count(matching))
        if count == 0:
            _done(
                as_json,
                settings.collection,
                shown,
                0,
                f"no item matches {shown} in {settings.collection!r}: nothing deleted",
            )
            return
        console.print(f"{count} item(s) match {escape(shown)} in collection {escape(repr(settings.collection))}")
        _confirmed(f"delete these {count} item(s)?", yes, f"{count} item(s) match")
        deleted = checked(lambda: store.delete(filter=matching))
    AuditLog(settings.data_dir).record("delete", None, collection=settings.collection, filter=shown, deleted=deleted)
    _done(as_json, settings.collection, shown, deleted, f"deleted {deleted} item(s) from {settings.collection!r}")


def _done(as_json: bool, collection: str, shown: str, deleted: int, message: str) -> None:
    if as_json:
        print(json.dumps({"collection": collection, "filter": shown, "deleted": deleted}))
    else:
        console.print(escape(message))


@app.command()
def collections(uri: UriOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """List the collections: name, item count, encoder and when the last ingest into each finished."""
    from connectors.milvus.catalog import describe_collections

    settings = settings_from(milvus_uri=uri)
    found = checked(
        lambda: describe_collections(
            settings.milvus_uri, token=settings.milvus_token_value, options=store_options(settings)
        ),
    )
    if as_json:
        print(json.dumps([info.model_dump(mode="json") for info in found]))
        return
    if not found:
        console.print(f"no collections at {escape(str(settings.milvus_uri))}: `rag ingest` creates one")
        return
    table = Table("collection", "items", "encoder", "last ingest", "note")
    for info in found:
        table.add_row(
            Text(info.name),
            "?" if info.count is None else str(info.count),
            Text(f"{info.encoder.variant} ({info.encoder.dim})" if info.encoder else "-"),
            info.last_ingest.strftime("%Y-%m-%d %H:%M:%S UTC") if info.last_ingest else "-",
            Text(info.note),
        )
    Console().print(table)


@app.command()
def drop(
    yes: YesOpt = False,
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Drop a collection with everything in it (its BM25 statistics too); asks first. Files on disk are kept."""
    from connectors.milvus.catalog import describe_collections, drop_collection

    settings = settings_from(collection=collection, milvus_uri=uri)
    require_collection(settings)
    options = store_options(settings)
    token = settings.milvus_token_value
    infos = checked(lambda: describe_collections(settings.milvus_uri, token=token, options=options))
    count = next((info.count for info in infos if info.name == settings.collection), None)
    held = "an unknown number of" if count is None else str(count)
    console.print(f"collection {escape(repr(settings.collection))} holds {held} item(s)")
    _confirmed(f"drop collection {settings.collection!r} and its {held} item(s)?", yes, "dropping needs a confirmation")
    dropped = checked(lambda: drop_collection(settings.milvus_uri, settings.collection, token=token, options=options))
    AuditLog(settings.data_dir).record("drop", None, collection=settings.collection, deleted=dropped)
    if as_json:
        print(json.dumps({"collection": settings.collection, "dropped": True, "items": dropped}))
    else:
        console.print(f"dropped collection {escape(repr(settings.collection))} ({dropped} item(s))")
