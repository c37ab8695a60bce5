"""``rag migrate``: copy a collection of the previous schema into the current one, keeping its vectors.

Milvus cannot add fields (least of all a partition key) to a collection in place, so the items are copied, with
their vectors, into a new collection beside the old one (``<name>__migrating``); nothing is encoded again. Once
every item is there, the old collection is dropped and the new one takes its name. A run killed before that
leaves the old collection as it was (the next run starts the copy over); one killed between the drop and the
rename leaves a complete copy, which the next run renames.

What the old schema lacks is filled in as a re-ingest would have: each item's document (``ref_doc_id``) is its
source, its tenant ``default``; its content hash stays empty (unknown) until the next ingest of its file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np

from connectors.milvus import schema
from connectors.milvus.bm25 import SUFFIX as BM25_SUFFIX
from connectors.milvus.connection import Connection, ConnectOptions
from connectors.milvus.errors import StoreError
from connectors.milvus.lifecycle import no_collection, ours
from connectors.milvus.store import MilvusStore

logger = logging.getLogger(__name__)

#: The name the copy is made under, beside the collection being migrated.
MIGRATING_SUFFIX = "__migrating"
_BATCH = 512


def migrate(
    uri: str | os.PathLike[str],
    collection: str,
    *,
    token: str | None = None,
    options: ConnectOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy ``collection`` to the current schema under its own name; returns how many items were copied (0 when it
    is current already). ``on_progress(copied, total)`` follows the copy."""
    options = options or ConnectOptions.from_settings()
    copy = collection + MIGRATING_SUFFIX
    client = Connection(uri, token=token, create=False, options=options)
    try:
        if not client.has_collection(collection):
            if client.has_collection(copy):  # killed after the old one was dropped: the copy is complete
                _swap(client, copy, collection)
                with MilvusStore.open(uri, collection, create=False, token=token, options=options) as done:
                    return done.count()
            raise no_collection(client.uri, collection, ours(client.list_collections()))
        if client.has_collection(copy):  # a copy a killed run left half made
            _drop(client, copy)
    finally:
        client.close()
    with MilvusStore.open(uri, collection, create=False, token=token, options=options) as old:
        if not old.read_only:
            return 0
        total = old.count()
        copied = _copy(old, uri, copy, token, options, on_progress, total)
        if copied != total:
            raise StoreError(  # only when the old collection changed under us
                f"copied {copied} of {total} items of {collection!r}: left as it was; run `rag migrate` again"
            )
        old.drop()
    client = Connection(uri, token=token, create=False, options=options)
    try:
        _swap(client, copy, collection)
    finally:
        client.close()
    logger.info("migrated %s at %s to schema %s: %d items", collection, uri, schema.SCHEMA_VERSION, copied)
    return copied


def _copy(
    old: MilvusStore,
    uri: str | os.PathLike[str],
    copy: str,
    token: str | None,
    options: ConnectOptions,
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> int:
    """Write every item of ``old`` with its vectors into a new collection ``copy``; returns how many were written."""
    with MilvusStore.open(
        uri, copy, encoder_info=old.encoder, create=True, token=token, bm25=old.supports_bm25, options=options
    ) as new:
        batch: list = []
        copied = 0
        for entry in old.iter_vectors(batch_size=_BATCH):
            batch.append(entry)
            if len(batch) >= _BATCH:
                copied += _write(new, batch)
                batch = []
                if on_progress:
                    on_progress(copied, total)
        copied += _write(new, batch)
        new.flush()
        new.set_properties(old.properties())  # the last ingest's runtime, tuned blends, ...
        if on_progress:
            on_progress(copied, total)
        return new.count()


def _write(new: MilvusStore, batch: list) -> int:
    if not batch:
        return 0
    items = [item for item, _, _ in batch]
    fused = np.stack([vector for _, vector, _ in batch])
    image = np.stack([vector if picture is None else picture for _, vector, picture in batch])
    return new.upsert(items, fused, image, new=True)


def _swap(client: Connection, copy: str, collection: str) -> None:
    """Give the copy (and the BM25 statistics kept beside it) the collection's name."""
    client.rename_collection(copy, collection)
    if client.has_collection(copy + BM25_SUFFIX):
        client.rename_collection(copy + BM25_SUFFIX, collection + BM25_SUFFIX)


def _drop(client: Connection, name: str) -> None:
    for each in (name, name + BM25_SUFFIX):
        if client.has_collection(each):
            client.drop_collection(each)
