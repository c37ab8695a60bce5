"""The collections at one URI, described without opening each as a store, and dropped with what belongs to them.

A collection of this library records its encoder and schema version as properties, and the time of its last ingest
(:data:`LAST_INGEST`, written by the ingest ledger). Describing reads those and counts the rows; it works for a
collection of an older schema too (it names the migration) and for collections of other programs (they are listed
as such). Dropping takes the BM25 statistics kept beside a collection on Milvus Lite with it.
"""

from __future__ import annotations

import os
from datetime import datetime

from pydantic import BaseModel, Field
from pymilvus import MilvusException

from connectors.milvus import schema
from connectors.milvus.bm25 import SUFFIX as BM25_SUFFIX
from connectors.milvus.connection import Connection, ConnectOptions
from connectors.milvus.lifecycle import no_collection, ours

#: Collection property (``schema.write_properties``): when the last ingest into the collection finished (UTC, ISO).
LAST_INGEST = "last_ingest"


class CollectionInfo(BaseModel):
    """One collection as ``rag collections`` lists it."""

    name: str
    count: int | None = Field(description="Items stored; None where the collection could not be counted.")
    encoder: schema.EncoderInfo | None = Field(description="The encoder its vectors came from; None: not ours.")
    schema_version: str | None = None
    last_ingest: datetime | None = Field(default=None, description="When the last ingest into it finished (UTC).")
    note: str = Field(default="", description="What to know before using it (an older schema, not ours).")


def describe_collections(
    uri: str | os.PathLike[str], *, token: str | None = None, options: ConnectOptions | None = None
) -> list[CollectionInfo]:
    """Every collection at ``uri`` (the BM25 statistics beside ours left out), by name; creates nothing."""
    client = Connection(uri, token=token, create=False, options=options or ConnectOptions.from_settings())
    try:
        return [_describe(client, name) for name in sorted(ours(client.list_collections()))]
    finally:
        client.close()


def drop_collection(
    uri: str | os.PathLike[str], collection: str, *, token: str | None = None, options: ConnectOptions | None = None
) -> int:
    """Drop ``collection`` and its BM25 statistics; returns how many items it held. A missing collection raises
    :class:`CollectionNotFoundError` naming those that exist. Works whatever the collection's schema version."""
    client = Connection(uri, token=token, create=False, options=options or ConnectOptions.from_settings())
    try:
        existing = ours(client.list_collections())
        if collection not in existing:
            raise no_collection(str(uri), collection, sorted(existing))
        count = _count(client, collection)
        client.drop_collection(collection)
        if client.has_collection(collection + BM25_SUFFIX):
            client.drop_collection(collection + BM25_SUFFIX)
        return count or 0
    finally:
        client.close()


def _describe(client: Connection, name: str) -> CollectionInfo:
    properties = client.describe_collection(name).get("properties") or {}
    encoder = schema.EncoderInfo.from_properties(properties)
    version = schema.schema_version(properties)
    values = schema.read_properties(properties)
    last = values.get(LAST_INGEST)
    note = ""
    if encoder is None:
        note = "not made by this library"
    elif version != schema.SCHEMA_VERSION:
        note = f"schema version {version}, this library writes {schema.SCHEMA_VERSION}: rag migrate -c {name}"
    return CollectionInfo(
        name=name,
        count=_count(client, name),
        encoder=encoder,
        schema_version=version,
        last_ingest=datetime.fromisoformat(last) if isinstance(last, str) else None,
        note=note,
    )


def _count(client: Connection, name: str) -> int | None:
    """The rows of a collection (loaded first: Milvus counts loaded collections only); None if it cannot be."""
    try:
        client.load_collection(name)
        rows = client.query(name, filter="", output_fields=["count(*)"])
    except MilvusException:  # a collection of another program may have no index to load by
        return None
    return int(rows[0]["count(*)"])
