"""Collections: opening one (checked against the encoder in use, or created), listing them, dropping one.

How the store is reached (URI, backend, timeouts, the shared Lite server) is ``connection``'s business."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from pymilvus import FunctionType, MilvusException

from connectors.milvus import schema
from connectors.milvus.bm25 import SUFFIX as _BM25_SUFFIX
from connectors.milvus.bm25 import CollectionBm25
from connectors.milvus.connection import Connection, ConnectOptions
from connectors.milvus.core import StoreCore
from connectors.milvus.errors import (
    CollectionNotFoundError,
    EncoderMismatchError,
    NotSupportedError,
    SchemaOutdatedError,
    StoreError,
)
from connectors.milvus.schema import Backend, EncoderInfo
from rag.settings import check_collection_name

logger = logging.getLogger(__name__)


def open_core(
    uri: str | os.PathLike[str],
    collection: str,
    *,
    info: EncoderInfo | None,
    create: bool,
    token: str | None,
    bm25: bool | None,
    options: ConnectOptions,
) -> StoreCore:
    """Connect, check (or create) the collection, and load it (see ``MilvusStore.open``)."""
    try:
        check_collection_name(collection)
    except ValueError as e:
        raise StoreError(str(e)) from None
    client = Connection(uri, token=token, create=create, options=options)
    address, backend = client.uri, client.backend
    try:
        read_only = ""
        if client.has_collection(collection):
            recorded, has_bm25, stats, read_only = _check_existing(client, address, collection, info)
        elif not create:
            raise no_collection(address, collection, ours(client.list_collections()))
        elif info is None:
            raise StoreError(f"creating collection {collection!r} needs encoder_info (variant, dim, fingerprint)")
        else:
            recorded, (has_bm25, stats) = info, _create(client, address, collection, info, backend, bm25)
        client.load_collection(collection)
        if stats:
            CollectionBm25(client, collection).stats.load()
    except BaseException:
        client.close()
        raise
    return StoreCore(
        client,
        uri=address,
        collection=collection,
        encoder=recorded,
        backend=backend,
        bm25=has_bm25,
        terms=CollectionBm25(client, collection) if stats else None,
        read_only=read_only,
    )


def drop(core: StoreCore) -> None:
    """Delete the collection and everything in it (and the BM25 statistics kept beside it)."""
    core.client.drop_collection(core.collection)
    if core.terms is not None:
        core.terms.stats.drop()
        core.terms = None
    logger.info("dropped collection %s at %s", core.collection, core.uri)


def close(core: StoreCore) -> None:
    try:
        if core.terms is not None:
            core.terms.commit()  # the BM25 counts of writes not flushed
    finally:
        core.client.close()


def list_collections(
    uri: str | os.PathLike[str], *, token: str | None = None, options: ConnectOptions | None = None
) -> list[str]:
    """Every collection at ``uri``, without opening one (nor creating a Milvus Lite database)."""
    client = Connection(uri, token=token, create=False, options=options or ConnectOptions.from_settings())
    try:
        return ours(client.list_collections())
    finally:
        client.close()


def require_collection(
    uri: str | os.PathLike[str],
    collection: str,
    *,
    token: str | None = None,
    options: ConnectOptions | None = None,
    writable: bool = False,
) -> None:
    """Raise :class:`CollectionNotFoundError` unless ``collection`` exists at ``uri``; creates nothing, loads nothing.
    With ``writable``, also :class:`SchemaOutdatedError` (naming ``rag migrate``) for a collection of the older
    schema, which can be searched but not written.

    Cheap next to loading an encoder: callers check first, so a mistyped name is reported at once.
    """
    client = Connection(uri, token=token, create=False, options=options or ConnectOptions.from_settings())
    try:
        existing = ours(client.list_collections())
        if collection not in existing:
            raise no_collection(str(uri), collection, existing)
        if writable:
            version = schema.schema_version(client.describe_collection(collection).get("properties") or {})
            if version == schema.MIGRATES_FROM:
                raise SchemaOutdatedError(outdated(str(uri), collection, version))
    finally:
        client.close()


def no_collection(uri: str, collection: str, existing: Sequence[str]) -> CollectionNotFoundError:
    return CollectionNotFoundError.worded(
        f"there is no collection {collection!r} at {uri}; existing: {', '.join(existing) or 'none'}. "
        "Ingest into it first, or name another with {collection}."
    )


def ours(collections: Sequence[str]) -> list[str]:
    """The collections, less the BM25 statistics kept beside those of this library."""
    names = set(collections)
    return [name for name in collections if not (name.endswith(_BM25_SUFFIX) and name[: -len(_BM25_SUFFIX)] in names)]


def outdated(uri: str, collection: str, version: str | None) -> str:
    """Why a collection of an older schema version is read-only, and the command that migrates it."""
    return (
        f"collection {collection!r} at {uri} has schema version {version}, this library writes "
        f"{schema.SCHEMA_VERSION}: it can be searched but not written until `rag migrate -c {collection}` copies it to "
        "the new schema (vectors kept, nothing encoded again)"
    )


def _check_existing(
    client: Connection, uri: str, collection: str, info: EncoderInfo | None
) -> tuple[EncoderInfo, bool, bool, str]:
    """The recorded encoder, whether the collection has BM25, whether the store keeps its statistics, and why it is
    read-only ("" when it is not)."""
    description = client.describe_collection(collection)
    properties = description.get("properties") or {}
    recorded = EncoderInfo.from_properties(properties)
    if recorded is None:
        raise StoreError(
            f"collection {collection!r} at {uri} was not made by this library (it records no encoder); "
            "use another collection name, or drop it if it is disposable"
        )
    version = schema.schema_version(properties)
    read_only = outdated(uri, collection, version) if version == schema.MIGRATES_FROM else ""
    if version not in (schema.SCHEMA_VERSION, schema.MIGRATES_FROM):
        raise StoreError(
            f"collection {collection!r} at {uri} has schema version {version}, this library reads "
            f"{schema.MIGRATES_FROM} (after `rag migrate`) and writes {schema.SCHEMA_VERSION}; re-ingest into a new "
            "collection"
        )
    if info is not None and not recorded.compatible_with(info):
        raise EncoderMismatchError.worded(
            f"collection {collection!r} at {uri} was made with encoder {recorded.describe()}, but the encoder in "
            f"use is {info.describe()}. Its vectors are not comparable: use the same encoder and weights (RAG_ENCODER, "
            f"RAG_WEIGHTS={recorded.variant}), name another collection with {{collection}}, or drop "
            "this one and re-ingest."
        )
    functions = description.get("functions") or []
    stats = properties.get(schema.BM25_PROPERTY) == schema.BM25_STATISTICS
    has_bm25 = stats or any(f.get("type") == FunctionType.BM25 for f in functions)
    return recorded, has_bm25, stats, read_only


def _create(
    client: Connection, uri: str, collection: str, info: EncoderInfo, backend: Backend, bm25: bool | None
) -> tuple[bool, bool]:
    """Create the collection; returns whether it has BM25, and whether the store keeps its statistics (on Lite,
    whose own BM25 is scored per segment)."""
    if bm25 is not False:
        try:
            stats = backend is Backend.LITE
            _create_collection(client, collection, info, backend, bm25=True, bm25_stats=stats)
            return True, stats
        except MilvusException as exc:
            if bm25:
                raise NotSupportedError(f"Milvus at {uri} cannot create a BM25 full-text index: {exc.message}") from exc
            if client.has_collection(collection):
                client.drop_collection(collection)
            logger.warning(
                "Milvus at %s has no BM25 full-text search (%s); creating %r without it: text_search and "
                "hybrid_search will be unavailable",
                uri,
                exc.message,
                collection,
            )
    _create_collection(client, collection, info, backend, bm25=False)
    return False, False


def _create_collection(
    client: Connection, collection: str, info: EncoderInfo, backend: Backend, *, bm25: bool, bm25_stats: bool = False
) -> None:
    properties = info.to_properties()
    if bm25_stats:
        properties[schema.BM25_PROPERTY] = schema.BM25_STATISTICS
    client.create_collection(
        collection,
        schema=schema.build_schema(info.dim, bm25=bm25, bm25_stats=bm25_stats),
        consistency_level="Strong",
        properties=properties,
    )
    # The collection is empty, so there is nothing to wait for (pymilvus would poll each index).
    client.create_index(collection, schema.build_index_params(backend, bm25=bm25, bm25_stats=bm25_stats), sync=False)
    if bm25_stats:
        terms = CollectionBm25(client, collection)
        if terms.stats.exists():  # left by a collection of the same name dropped outside this library
            terms.stats.drop()
        terms.stats.create()
    logger.info("created collection %s (%s, encoder %s, bm25=%s)", collection, backend.value, info.describe(), bm25)
