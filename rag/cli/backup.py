"""``rag backup`` and ``rag restore``: a collection with its vectors, properties and uploads, to a folder and back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rag.cli.common import (
    CollectionOpt,
    JsonOpt,
    UriOpt,
    VerboseOpt,
    app,
    checked,
    console,
    settings_from,
    store_options,
)

if TYPE_CHECKING:
    from connectors.milvus.backup import BackupResult

FolderArg = Annotated[Path, typer.Argument(help="The backup folder.")]


@app.command()
def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder to write the backup to.")],
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Copy a collection to a folder: its items with their vectors, its properties (encoder, blends) and the uploaded
    files its items point to. Read in one pass; writes made meanwhile may or may not be included."""
    from connectors.milvus.backup import backup as run

    settings = settings_from(collection=collection, milvus_uri=uri)
    done = checked(
        lambda: run(
            settings.milvus_uri,
            settings.collection,
            dest,
            data_dir=settings.data_dir,
            token=settings.milvus_token_value,
            options=store_options(settings),
        )
    )
    _report(done, "backed up collection {name!r} to {path}", as_json)


@app.command()
def restore(
    dest: FolderArg,
    collection: Annotated[
        str | None, typer.Option("--collection", "-c", help="Restore under this name (default: the backed-up one).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing collection of that name (once the copy is complete).")
    ] = False,
    uri: UriOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Recreate a collection from a `rag backup` folder, vectors kept (nothing encoded again), uploads copied under
    RAG_DATA_DIR. An existing collection of that name is refused (exit 2) unless --replace."""
    from connectors.milvus.backup import restore as run

    settings = settings_from(milvus_uri=uri)
    done = checked(
        lambda: run(
            dest,
            settings.milvus_uri,
            collection,
            data_dir=settings.data_dir,
            replace=replace,
            token=settings.milvus_token_value,
            options=store_options(settings),
        )
    )
    _report(done, "restored collection {name!r} from {path}", as_json)


def _report(done: BackupResult, what: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(done.as_dict()))
        return
    head = what.format(name=done.collection, path=done.path)
    console.print(f"{head}: {done.items} item(s), {done.uploads} upload(s)")
