"""Searching an open collection: by a vector, by BM25 text, and by blends of signals, fused on a Milvus server by
its own rankers (``hybrid_search``), elsewhere here (``connectors.milvus.fusion``), on the scales of
``connectors.milvus.blend``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker
from pymilvus.client.abstract import BaseRanker

from connectors.milvus import schema
from connectors.milvus.blend import SIGNALS, Blend, BlendError
from connectors.milvus.core import QUERY_PAGE, Hit, StoreCore, check_k, hit_of
from connectors.milvus.filters import Filters, and_, compile_filter, id_in
from connectors.milvus.fusion import fuse
from connectors.milvus.indexes import graph_index
from connectors.milvus.schema import Backend

logger = logging.getLogger(__name__)

VectorField = Literal["fused", "image"]
VECTOR_FIELDS: dict[str, str] = {"fused": schema.FUSED, "image": schema.IMAGE}
#: Candidates each signal of a blend fetches (or k when larger): fixed, so the top n of any k are the same.
BLEND_CANDIDATES = 100


def search(
    core: StoreCore,
    vector: np.ndarray | Sequence[float],
    *,
    field: VectorField,
    k: int,
    filter: Filters | None,
    with_vectors: bool,
) -> list[Hit]:
    """The k items whose ``field`` vector has the highest inner product with ``vector``."""
    if field not in VECTOR_FIELDS:
        raise ValueError(f"field must be one of {sorted(VECTOR_FIELDS)}, not {field!r}")
    expr = _filter(filter, images_only=field == "image")
    found = _vector_search(core, _check_query(core, vector), field, check_k(k), expr, core.output_fields(with_vectors))
    return [hit_of(entity, score) for entity, score in found]


def text_search(core: StoreCore, query: str, *, k: int, filter: Filters | None, with_vectors: bool) -> list[Hit]:
    """BM25 full-text search over the items' text; scores are BM25 scores (higher is better)."""
    core.require_bm25("text_search")
    data, params = _bm25_query(core, query)
    result = core.client.search(
        core.collection,
        data=[data],
        anns_field=schema.SPARSE,
        limit=check_k(k),
        filter=compile_filter(filter),
        output_fields=core.output_fields(with_vectors),
        search_params=params,
    )
    # Milvus Lite reports BM25 scores negated; Milvus server reports them as they are.
    return [hit_of(hit["entity"], abs(hit["distance"])) for hit in result[0]]


def hybrid_search(
    core: StoreCore,
    vector: np.ndarray | Sequence[float] | None,
    text: str,
    *,
    blend: Blend,
    k: int,
    filter: Filters | None,
    only_images: bool,
    rrf_k: int,
    with_vectors: bool,
) -> list[Hit]:
    """The k best items by the blend's signals, each searched by Milvus and fused here."""
    check_signals(core, blend.signals)
    if "bm25" in blend.signals and not text.strip():
        raise BlendError(f"the blend {blend.describe()} has bm25, which needs query text; this query has none")
    if vector is None and any(signal in VECTOR_FIELDS for signal in blend.signals):
        raise ValueError(f"the blend {blend.describe()} searches vectors: give a query vector")
    query = _check_query(core, vector) if vector is not None else []
    candidates = max(BLEND_CANDIDATES, check_k(k))
    if core.backend is Backend.SERVER and core.terms is None:
        expr = _filter(filter, images_only=only_images)
        return core.hits(_fused_by_server(core, blend, query, text, expr, candidates, k, rrf_k), with_vectors)
    found = {signal: _signal(core, signal, query, text, filter, only_images, candidates) for signal in blend.signals}
    return core.hits(fuse(found, blend, rrf_k)[:k], with_vectors)


def signals(core: StoreCore) -> tuple[str, ...]:
    """The signals a blend may search here: both vectors, and bm25 where the collection has it."""
    return SIGNALS if core.bm25 else tuple(s for s in SIGNALS if s != "bm25")


def check_signals(core: StoreCore, wanted: Sequence[str]) -> None:
    """Raise ``NotSupportedError`` when the collection lacks one of ``wanted`` (bm25 without BM25)."""
    if "bm25" in wanted:
        core.require_bm25("a blend with bm25")


def _fused_by_server(
    core: StoreCore, blend: Blend, query: list[float], text: str, expr: str, candidates: int, k: int, rrf_k: int
) -> list[tuple[str, float]]:
    """The blend as one ``hybrid_search``: a request per signal, each fetching ``candidates``, fused by Milvus's
    ``WeightedRanker`` (its ``norm_score``: the scales of ``connectors.milvus.blend``) or ``RRFRanker``; ties
    broken by id, as the store's own fusion breaks them.

    Milvus Lite differs: its BM25 function scores per segment and reports BM25 distances negated, so on Lite
    (``RAG_MILVUS_BACKEND=auto``) the store keeps its own BM25 and fuses the signals itself (``fuse``)."""
    requests = []
    for signal in blend.signals:
        if signal == "bm25":
            data: list[Any] = [text]
            field, params = schema.SPARSE, {"metric_type": "BM25"}
        else:
            data, field = [query], VECTOR_FIELDS[signal]
            params = core.backend.search_params(candidates, filtered=bool(expr))
        requests.append(
            AnnSearchRequest(data=data, anns_field=field, param=params, limit=candidates, expr=expr or None)
        )
    ranker: BaseRanker
    if blend.fusion == "rrf":
        ranker = RRFRanker(rrf_k)
    else:
        ranker = WeightedRanker(*(blend.weights[signal] for signal in blend.signals), norm_score=True)
    result = core.client.hybrid_search(
        core.collection, reqs=requests, ranker=ranker, limit=candidates, output_fields=[]
    )
    ranked = sorted(((str(hit["id"]), float(hit["distance"])) for hit in result[0]), key=lambda p: (-p[1], p[0]))
    return ranked[:k]


def _filter(filters: Filters | None, *, images_only: bool) -> str:
    """The expression for ``filters``, restricted to items that have an image where asked."""
    return and_(f"{schema.HAS_IMAGE} == true" if images_only else "", compile_filter(filters))


def _signal(
    core: StoreCore,
    signal: str,
    query: list[float],
    text: str,
    filters: Filters | None,
    only_images: bool,
    limit: int,
) -> list[tuple[str, float]]:
    """One signal's candidates of a blend, as ``(id, raw score)``: its field, its query, its filter."""
    expr = _filter(filters, images_only=only_images)
    if signal != "bm25":
        found = _vector_search(core, query, signal, limit, expr, [schema.ID])
        return [(entity[schema.ID], score) for entity, score in found]
    data, params = _bm25_query(core, text)
    result = core.client.search(
        core.collection,
        data=[data],
        anns_field=schema.SPARSE,
        limit=limit,
        filter=expr,
        output_fields=[schema.ID],
        search_params=params,
    )
    # Milvus Lite reports BM25 scores negated; the store's own BM25 and Milvus server's are positive.
    return [(hit["id"], abs(hit["distance"])) for hit in result[0]]


def _vector_search(
    core: StoreCore, query: list[float], field: str, limit: int, expr: str, fields: list[str]
) -> list[tuple[dict[str, Any], float]]:
    """The ``limit`` best ``(entity, score)`` of a vector field under ``expr``, complete however selective the
    filter: a graph index can come back short when the filter keeps few rows, and then an exact search
    answers instead."""
    result = core.client.search(
        core.collection,
        data=[query],
        anns_field=VECTOR_FIELDS[field],
        limit=limit,
        filter=expr,
        output_fields=fields,
        search_params=core.backend.search_params(limit, filtered=bool(expr)),
    )
    found = [(hit["entity"], float(hit["distance"])) for hit in result[0]]
    if expr and len(found) < limit and graph_index(core) and len(found) < min(limit, core.count(expr)):
        logger.debug("a filtered graph search found %d of %d: searching exactly", len(found), limit)
        return _exact_search(core, query, field, limit, expr, fields)
    return found


def _exact_search(
    core: StoreCore, query: list[float], field: str, limit: int, expr: str, fields: list[str]
) -> list[tuple[dict[str, Any], float]]:
    """Exhaustive inner-product search over the rows matching ``expr`` (read page by page)."""
    target = np.asarray(query, dtype=np.float32)
    best_ids: list[str] = []
    best_scores = np.empty(0, dtype=np.float32)
    iterator = core.client.query_iterator(
        core.collection, batch_size=QUERY_PAGE, filter=expr, output_fields=[schema.ID, VECTOR_FIELDS[field]]
    )
    try:
        while page := iterator.next():
            vectors = np.asarray([row[VECTOR_FIELDS[field]] for row in page], dtype=np.float32)
            best_ids += [row[schema.ID] for row in page]
            best_scores = np.concatenate([best_scores, vectors @ target])
            keep = np.argsort(-best_scores, kind="stable")[:limit]
            best_ids, best_scores = [best_ids[i] for i in keep], best_scores[keep]
    finally:
        iterator.close()
    rows = core.client.query(core.collection, filter=id_in(best_ids), output_fields=fields, limit=limit)
    by_id = {row[schema.ID]: row for row in rows}
    return [(by_id[i], float(score)) for i, score in zip(best_ids, best_scores) if i in by_id]


def _bm25_query(core: StoreCore, text: str) -> tuple[str | dict[int, float], dict[str, str]]:
    """The BM25 query and search parameters: the text for Milvus's BM25 function, or with the store's own
    statistics the query's weighted terms."""
    if core.terms is None:
        return text, {"metric_type": "BM25"}
    return core.terms.query_vector(text), {"metric_type": "IP"}


def _check_query(core: StoreCore, vector: np.ndarray | Sequence[float]) -> list[float]:
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape != (core.encoder.dim,):
        raise ValueError(f"query vector has {query.size} values; the collection's encoder gives {core.encoder.dim}")
    if not np.isfinite(query).all():
        raise ValueError("query vector has NaN or infinite values")
    return query.tolist()
