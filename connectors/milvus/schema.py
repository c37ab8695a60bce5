"""The collection layout: field names and limits, the encoder record, index choice per backend, item ⇄ row.

Field names follow LlamaIndex's defaults (``embedding``, ``text``, ``sparse_embedding``,
``_node_content``, ``_node_type``) so that the stock ``MilvusVectorStore`` can open a collection
written here and read its rows back as nodes.

Items without an image have no image vector: their ``image_embedding`` holds a copy of the fused
vector (Milvus vectors cannot be null, and a zero vector scores 0 for every query, which would
rank such items in the middle of image results) and ``has_image`` is false, so searches of the
pictures alone filter them out. In a blend, that copy answers the ``image`` signal for them: an item
without a picture is scored by its one vector on both vector signals (``MilvusStore.hybrid_search``).

``name`` is what every surface calls an item (its path relative to what was ingested, plus its anchor);
``document`` is that name without the anchor and ``file_name`` the document's last part, so that a filter on
``source`` finds an item by its stored path, its name, its document or its file name.

``image_sha256`` is the SHA-256 of an item's image bytes (empty when unknown or without an image):
two items with the same digest and the same text are duplicates, whatever their sources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from pymilvus import CollectionSchema, DataType, Function, FunctionType, MilvusClient
from pymilvus.milvus_client.index import IndexParams

from rag.errors import RagError
from rag.items import (
    DEFAULT_TENANT,
    MAX_TEXT_BYTES,
    PATH_METADATA,
    ImageRef,
    KnowledgeItem,
    document_of,
    file_name_of,
)

if TYPE_CHECKING:
    from llama_index.core.schema import BaseNode

    from rag.embeddings.base import Encoder

# 2: image_sha256 (true duplicates are found by it); 3: name, anchor, document, file_name;
# 4: ref_doc_id, content_hash, tenant (the partition key)
SCHEMA_VERSION = "4"
#: The oldest schema `rag migrate` copies to this one (older ones hold no names: re-ingest them).
MIGRATES_FROM = "3"

ID = "id"
FUSED = "embedding"
IMAGE = "image_embedding"
TEXT = "text"
SPARSE = "sparse_embedding"
SOURCE = "source"
NAME = "name"
ANCHOR = "anchor"
DOCUMENT = "document"
FILE_NAME = "file_name"
MODALITY = "modality"
MIME_TYPE = "mime_type"
IMAGE_URI = "image_uri"
IMAGE_SHA256 = "image_sha256"
HAS_IMAGE = "has_image"
CREATED_AT = "created_at"
TAGS = "tags"
METADATA = "metadata"
NODE_CONTENT = "_node_content"
NODE_TYPE = "_node_type"
#: The item's document (``KnowledgeItem.ref_doc_id``): what a re-ingest replaces and LlamaIndex's delete(ref_doc_id).
REF_DOC_ID = "ref_doc_id"
#: SHA-256 (hex) of the source file's bytes, "" when the item has no file (``KnowledgeItem.content_hash``).
CONTENT_HASH = "content_hash"
#: Who the item belongs to (``KnowledgeItem.tenant``): the partition key, "default" unless a server says otherwise.
TENANT = "tenant"
#: The fields schema 4 added: a schema 3 collection (read-only until migrated) has none of them.
V4_FIELDS = (REF_DOC_ID, CONTENT_HASH, TENANT)

#: Every stored field except the vectors and the LlamaIndex node copy: what a hit carries.
ITEM_FIELDS = [
    ID,
    TEXT,
    SOURCE,
    NAME,
    ANCHOR,
    MODALITY,
    MIME_TYPE,
    IMAGE_URI,
    IMAGE_SHA256,
    HAS_IMAGE,
    CREATED_AT,
    TAGS,
    METADATA,
    REF_DOC_ID,
    CONTENT_HASH,
    TENANT,
]

#: Byte limits (UTF-8) of the VARCHAR fields, and the tag list capacity.
MAX_BYTES = {
    ID: 256,
    TEXT: MAX_TEXT_BYTES,
    SOURCE: 4_096,
    NAME: 4_096,
    ANCHOR: 1_024,
    DOCUMENT: 4_096,
    FILE_NAME: 1_024,
    MODALITY: 16,
    MIME_TYPE: 128,
    IMAGE_URI: 4_096,
    IMAGE_SHA256: 64,
    NODE_CONTENT: 65_535,
    NODE_TYPE: 32,
    REF_DOC_ID: 4_096,
    CONTENT_HASH: 64,
    TENANT: 128,
}
MAX_TAGS = 256
MAX_TAG_BYTES = 512
MAX_METADATA_BYTES = 65_536

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PROPERTY_PREFIX = "mmrag."
_VALUE_PREFIX = f"{_PROPERTY_PREFIX}value."
#: Collection property: the runtime (device, dtype, why) of the last ingest.
INGEST_RUNTIME = "ingest_runtime"
#: Collection property: how BM25 is scored; ``statistics``: the store keeps whole-collection statistics.
BM25_PROPERTY = f"{_PROPERTY_PREFIX}bm25"
BM25_STATISTICS = "statistics"


#: From this many rows on, a Milvus Lite collection's vectors get an HNSW index instead of exact search
#: (measured with ``benchmarks/query.py --index``: see the README's Performance section).
LITE_HNSW_ROWS = 20_000
HNSW_BUILD = {"M": 16, "efConstruction": 200}
#: Search breadth: on clustered 768-d vectors recall@10 was 0.94 at ef 64 and 0.975 at ef 128 (4k items);
#: the graph walk costs little beside Lite's own overhead per search. A filtered search walks 4x wider (512).
HNSW_EF = 128
HNSW_FILTERED_EF = 4


class Backend(str, Enum):
    """Which Milvus the URI points at; decides index types and search parameters."""

    LITE = "lite"
    SERVER = "server"

    @classmethod
    def of(cls, uri: str) -> Backend:
        return cls.SERVER if uri.split("://", 1)[0].lower() in ("http", "https", "tcp", "unix") else cls.LITE

    def dense_index(self, rows: int = 0) -> dict[str, Any]:
        """The vector index for a collection of ``rows`` items: on Lite exact (FLAT) below
        :data:`LITE_HNSW_ROWS`, an HNSW graph (faiss, built by Lite per segment) from there on; HNSW on a server.
        A filtered graph search that comes back short is completed by an exact one (``MilvusStore.search``)."""
        if self is Backend.LITE and rows < LITE_HNSW_ROWS:
            return {"index_type": "FLAT", "metric_type": "IP"}
        return {"index_type": "HNSW", "metric_type": "IP", "params": dict(HNSW_BUILD)}

    def search_params(self, k: int, *, filtered: bool = False) -> dict[str, Any]:
        """HNSW's search breadth for k results; a filtered search explores :data:`HNSW_FILTERED_EF` times as
        wide, since the graph walk passes over the rows the filter leaves out (FLAT ignores it)."""
        return {"metric_type": "IP", "params": {"ef": max(HNSW_EF, k) * (HNSW_FILTERED_EF if filtered else 1)}}


class EncoderInfo(BaseModel):
    """Which encoder made a collection's vectors; vectors from another encoder are not comparable."""

    model_config = ConfigDict(frozen=True)

    variant: str = Field(description="Human-readable name, e.g. bge-visualized-base-en-v1.5.")
    dim: PositiveInt
    fingerprint: str = Field(min_length=1, description="The encoder's weights fingerprint.")

    @classmethod
    def of(cls, encoder: Encoder, variant: str | None = None) -> EncoderInfo:
        """The encoder's record; ``variant`` defaults to ``encoder.name``."""
        return cls(variant=variant or encoder.name, dim=encoder.dim, fingerprint=encoder.fingerprint)

    def compatible_with(self, other: EncoderInfo) -> bool:
        return self.dim == other.dim and self.fingerprint == other.fingerprint

    def describe(self) -> str:
        return f"{self.variant} (dim {self.dim}, fingerprint {self.fingerprint})"

    def to_properties(self) -> dict[str, str]:
        return {
            f"{_PROPERTY_PREFIX}schema_version": SCHEMA_VERSION,
            f"{_PROPERTY_PREFIX}encoder.variant": self.variant,
            f"{_PROPERTY_PREFIX}encoder.dim": str(self.dim),
            f"{_PROPERTY_PREFIX}encoder.fingerprint": self.fingerprint,
        }

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> EncoderInfo | None:
        """The record written by ``to_properties``, or None when the collection has none."""
        try:
            return cls(
                variant=properties[f"{_PROPERTY_PREFIX}encoder.variant"],
                dim=int(properties[f"{_PROPERTY_PREFIX}encoder.dim"]),
                fingerprint=properties[f"{_PROPERTY_PREFIX}encoder.fingerprint"],
            )
        except KeyError:
            return None


def schema_version(properties: Mapping[str, str]) -> str | None:
    return properties.get(f"{_PROPERTY_PREFIX}schema_version")


def write_properties(values: Mapping[str, Any]) -> dict[str, str]:
    """Collection properties holding ``values`` as JSON, under this library's prefix."""
    return {f"{_VALUE_PREFIX}{key}": json.dumps(value, sort_keys=True) for key, value in values.items()}


def read_properties(properties: Mapping[str, str]) -> dict[str, Any]:
    """The values :func:`write_properties` stored; unreadable ones are left out."""
    values = {}
    for key, raw in properties.items():
        if key.startswith(_VALUE_PREFIX):
            try:
                values[key[len(_VALUE_PREFIX) :]] = json.loads(raw)
            except ValueError:
                continue
    return values


def build_schema(dim: int, *, bm25: bool, bm25_stats: bool = False) -> CollectionSchema:
    """The typed collection schema; with ``bm25`` the text field is analysed into a BM25 sparse vector,
    by Milvus's BM25 function, or with ``bm25_stats`` by the store (``connectors.milvus.bm25``)."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID, DataType.VARCHAR, is_primary=True, max_length=MAX_BYTES[ID])
    schema.add_field(FUSED, DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field(IMAGE, DataType.FLOAT_VECTOR, dim=dim)
    if bm25:
        schema.add_field(TEXT, DataType.VARCHAR, max_length=MAX_BYTES[TEXT], enable_analyzer=True, enable_match=True)
        schema.add_field(SPARSE, DataType.SPARSE_FLOAT_VECTOR)
        if not bm25_stats:
            function = Function(
                name="text_bm25", function_type=FunctionType.BM25, input_field_names=[TEXT], output_field_names=[SPARSE]
            )
            schema.add_function(function)
    else:
        schema.add_field(TEXT, DataType.VARCHAR, max_length=MAX_BYTES[TEXT])
    for name in (SOURCE, NAME, ANCHOR, DOCUMENT, FILE_NAME, MODALITY, MIME_TYPE, IMAGE_URI, IMAGE_SHA256):
        schema.add_field(name, DataType.VARCHAR, max_length=MAX_BYTES[name])
    for name in (REF_DOC_ID, CONTENT_HASH):
        schema.add_field(name, DataType.VARCHAR, max_length=MAX_BYTES[name])
    schema.add_field(
        TENANT, DataType.VARCHAR, max_length=MAX_BYTES[TENANT], is_partition_key=True, default_value=DEFAULT_TENANT
    )
    schema.add_field(HAS_IMAGE, DataType.BOOL)
    schema.add_field(CREATED_AT, DataType.INT64, description="epoch milliseconds, UTC")
    schema.add_field(
        TAGS, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_TAGS, max_length=MAX_TAG_BYTES
    )
    schema.add_field(METADATA, DataType.JSON)
    schema.add_field(NODE_CONTENT, DataType.VARCHAR, max_length=MAX_BYTES[NODE_CONTENT])
    schema.add_field(NODE_TYPE, DataType.VARCHAR, max_length=MAX_BYTES[NODE_TYPE])
    return schema


def build_index_params(backend: Backend, *, bm25: bool, bm25_stats: bool = False) -> IndexParams:
    params = MilvusClient.prepare_index_params()
    for field in (FUSED, IMAGE):
        params.add_index(field_name=field, index_name=field, **backend.dense_index())
    if bm25:
        add_sparse_index(params, bm25_stats=bm25_stats)
    return params


def add_sparse_index(params: IndexParams, *, bm25_stats: bool) -> None:
    """The BM25 field's index: scored by Milvus (metric BM25), or an inner product over the store's weights."""
    metric = "IP" if bm25_stats else "BM25"
    params.add_index(field_name=SPARSE, index_name=SPARSE, index_type="SPARSE_INVERTED_INDEX", metric_type=metric)


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def to_llama_node(item: KnowledgeItem) -> BaseNode:
    """The item as a LlamaIndex node: an ``ImageNode`` when it has an image, else a ``TextNode``.

    Its metadata is the item's metadata plus ``source``, ``modality``, ``tags`` and ``created_at``
    (these win over metadata keys of the same name); its source relationship is the item's source.
    An LLM reading the node sees no paths of the machine that ingested it: ``source`` and the path
    metadata (``rag.items.PATH_METADATA``) are left out of its text.
    """
    from llama_index.core.schema import ImageNode, NodeRelationship, RelatedNodeInfo, TextNode

    metadata = {
        **item.metadata,
        SOURCE: item.source,
        NAME: item.name,
        ANCHOR: item.anchor,
        MODALITY: item.modality.value,
        TAGS: list(item.tags),
        CREATED_AT: item.created_at.isoformat(),
    }
    common: dict[str, Any] = {
        "id_": item.id,
        "text": item.text,
        "metadata": metadata,
        "excluded_llm_metadata_keys": [SOURCE, ANCHOR, *PATH_METADATA],
        # LlamaIndex's ref_doc_id: the item's document
        "relationships": {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=item.ref_doc_id or item.source)},
    }
    if item.image is None:
        return TextNode(**common)
    is_url = item.image.uri.startswith(("http://", "https://"))
    return ImageNode(
        **common,
        image_url=item.image.uri if is_url else None,
        image_path=None if is_url else item.image.uri,
        image_mimetype=item.image.mime_type,
    )


class ItemTooLargeError(RagError, ValueError):
    """The item does not fit the schema's limits; ``problems`` says where."""

    def __init__(self, item_id: str, problems: list[str]) -> None:
        super().__init__(f"item {item_id} cannot be stored: {'; '.join(problems)}")
        self.item_id = item_id
        self.problems = problems


def item_problems(item: KnowledgeItem) -> list[str]:
    """Why the item cannot be stored as it is (empty when it can): sizes over the schema limits.

    Cheap: the LlamaIndex node copy is built only when a bound on its size does not rule out the limit.
    """
    return _fields(item, with_node=False)[1]


def to_row(item: KnowledgeItem, fused: np.ndarray, image: np.ndarray | None) -> dict[str, Any]:
    """One Milvus row; ``image`` is the item's image vector, ignored when the item has no image.

    Raises ``ItemTooLargeError`` when the item does not fit the schema.
    """
    if item.image is not None and image is None:
        raise ValueError(f"item {item.id}: it has an image but no image vector was given")
    fields, problems = _fields(item, with_node=True)
    if problems:
        raise ItemTooLargeError(item.id, problems)
    # pymilvus packs float32 arrays as they are (a list would be turned into an array and back).
    fields[FUSED] = np.asarray(fused, dtype=np.float32)
    fields[IMAGE] = np.asarray(fused if item.image is None or image is None else image, dtype=np.float32)
    return fields


def _fields(item: KnowledgeItem, *, with_node: bool) -> tuple[dict[str, Any], list[str]]:
    """The row without its vectors (without the node copy unless ``with_node`` or it may be too large), and what
    in it is over the limits."""
    fields: dict[str, Any] = {
        ID: item.id,
        TEXT: item.text,
        SOURCE: item.source,
        NAME: item.name,
        ANCHOR: item.anchor,
        DOCUMENT: document_of(item.name),
        FILE_NAME: file_name_of(item.name),
        MODALITY: item.modality.value,
        MIME_TYPE: (item.image.mime_type or "") if item.image else "",
        IMAGE_URI: item.image.uri if item.image else "",
        IMAGE_SHA256: (item.image.sha256 or "") if item.image else "",
        HAS_IMAGE: item.image is not None,
        CREATED_AT: to_epoch_ms(item.created_at),
        TAGS: list(item.tags),
        METADATA: item.metadata,
        REF_DOC_ID: item.ref_doc_id or item.source,
        CONTENT_HASH: item.content_hash,
        TENANT: item.tenant,
    }
    problems = [] if item.id else ["id is empty"]
    if len(item.tags) > MAX_TAGS:
        problems.append(f"{len(item.tags)} tags (limit {MAX_TAGS})")
    long_tags = sum(_utf8_len(tag) > MAX_TAG_BYTES for tag in item.tags)
    if long_tags:
        problems.append(f"{long_tags} tag(s) over {MAX_TAG_BYTES} bytes")
    try:
        metadata_bytes = _utf8_len(json.dumps(item.metadata, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        problems.append(f"metadata is not plain JSON: {exc}")
    else:
        if metadata_bytes > MAX_METADATA_BYTES:
            problems.append(f"metadata is {metadata_bytes} bytes of JSON (limit {MAX_METADATA_BYTES})")
        if with_node or node_content_bound(item) > MAX_BYTES[NODE_CONTENT]:
            fields[NODE_CONTENT], fields[NODE_TYPE] = node_content(item)
    for name, limit in MAX_BYTES.items():
        if name in fields and _utf8_len(fields[name]) > limit:
            why = ", the LlamaIndex node copy: metadata too large" if name == NODE_CONTENT else ""
            problems.append(f"{name} is {_utf8_len(fields[name])} bytes (limit {limit}{why})")
    return fields, problems


#: What the LlamaIndex node copy holds besides the item's own strings (field names, templates, defaults),
#: with room to spare: tests check the bound against the node copy itself.
_NODE_SLACK = 4_096


def node_content_bound(item: KnowledgeItem) -> int:
    """An upper bound on the bytes of the item's ``_node_content``, without building the node: its strings
    escaped as LlamaIndex's JSON escapes them (ASCII), plus :data:`_NODE_SLACK`."""
    image = item.image
    # Every string the node copies (the name and the anchor stand for the names derived from them).
    pieces: list[object] = [item.id, item.source, item.ref_doc_id, item.name, item.name, item.anchor, item.anchor]
    pieces += [item.modality.value, item.tags, item.metadata, *PATH_METADATA]
    pieces += [image.uri, image.mime_type or ""] if image is not None else []
    return len(json.dumps(pieces, default=str)) + _NODE_SLACK


def node_content(item: KnowledgeItem) -> tuple[str, str]:
    """``(_node_content, _node_type)`` as LlamaIndex vector stores write them (text kept in ``text`` only)."""
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    stored = node_to_metadata_dict(to_llama_node(item), remove_text=True, text_field=TEXT)
    return stored[NODE_CONTENT], stored[NODE_TYPE]


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def from_row(row: Mapping[str, Any]) -> KnowledgeItem:
    """The item a row holds (image thumbnails are not stored, so ``image.thumbnail`` is None)."""
    image = None
    if row[IMAGE_URI]:
        image = ImageRef(uri=row[IMAGE_URI], mime_type=row[MIME_TYPE] or None, sha256=row[IMAGE_SHA256] or None)
    return KnowledgeItem(
        id=row[ID],
        text=row[TEXT],
        image=image,
        source=row[SOURCE],
        anchor=row[ANCHOR],
        name=row[NAME],
        metadata=row[METADATA] or {},
        tags=list(row[TAGS] or []),
        created_at=from_epoch_ms(row[CREATED_AT]),
        ref_doc_id=row.get(REF_DOC_ID) or row[SOURCE],  # a schema 3 row has none: its document was its source
        content_hash=row.get(CONTENT_HASH) or "",
        tenant=row.get(TENANT) or DEFAULT_TENANT,
    )
