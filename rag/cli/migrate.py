"""``rag migrate``: copy a collection of the previous schema into the current one, its vectors kept."""

from __future__ import annotations

import json

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


@app.command()
def migrate(
    collection: CollectionOpt = None, uri: UriOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Copy a collection made by an older version of this library to the current schema, under the same name:
    vectors, names and blends kept, nothing encoded again. Until then the collection can be searched, not written."""
    from connectors.milvus.migrate import migrate as run

    settings = settings_from(collection=collection, milvus_uri=uri)
    options = store_options(settings)
    copied = checked(
        lambda: run(settings.milvus_uri, settings.collection, token=settings.milvus_token_value, options=options)
    )
    if as_json:
        print(json.dumps({"collection": settings.collection, "migrated": copied}))
    elif copied:
        console.print(f"migrated collection {settings.collection!r}: {copied} item(s) copied to the current schema")
    else:
        console.print(f"collection {settings.collection!r} has the current schema already: nothing to do")
