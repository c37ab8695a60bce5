"""Retrieval evaluation: Recall@1/5/10, MRR@10 and nDCG@10 of ranked results against known relevant items.

The harness is built around one seam, a :data:`Ranker`: a function from a query to the ``(id, source)``
(or ``(id, source, name)``) of its top hits, best first. :func:`store_ranker` makes one from an encoder
and a ``MilvusStore`` for each retrieval mode; any other retriever can be measured on the same queries
through the same seam.

Queries come from a JSONL file, one object per line::

    {"id": "bridge", "text": "a bridge over a river", "relevant": ["mid-hudson-bridge.jpg"]}
    {"id": "night", "image": "../corpus/carriage-day.jpg", "text": "at night", "relevant": ["carriage-night.jpg"]}

``text`` and/or ``image`` (a path relative to the file) make the query; ``relevant`` lists the items
that should be found, each an item id, an item source, the file name of a source, or an item's name
(``glossary.md#fishplate``) or document (``guide/install.md``), so a query file stays valid wherever the
corpus was ingested from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from rag.embeddings.base import Encoder
from rag.items import document_of, file_name_of

if TYPE_CHECKING:
    from connectors.milvus import MilvusStore
    from rag.embeddings.cross_encoder import CrossEncoder

QueryKind = Literal["text", "image", "image+text"]
#: A query → the ``(item id, item source)`` or ``(item id, item source, item name)`` of its top hits, best first.
Ranker = Callable[["EvalQuery"], Sequence[tuple[str, ...]]]

CUTOFFS = (1, 5, 10)
DEPTH = 10  # MRR and nDCG cut-off, and how many hits are fetched per query
METRICS = tuple(f"recall@{k}" for k in CUTOFFS) + (f"mrr@{DEPTH}", f"ndcg@{DEPTH}")


class EvalQuery(BaseModel):
    id: str
    text: str | None = Field(default=None, description="Query text; with an image, the modification text.")
    image: str | None = Field(default=None, description="Query image path, absolute once loaded.")
    relevant: list[str] = Field(min_length=1, description="Item ids, sources or source file names.")

    @model_validator(mode="after")
    def _has_a_query(self) -> EvalQuery:
        if not self.text and not self.image:
            raise ValueError("a query needs a text, an image, or both")
        return self

    @property
    def kind(self) -> QueryKind:
        if self.image and self.text:
            return "image+text"
        return "image" if self.image else "text"


def load_queries(path: str | Path) -> list[EvalQuery]:
    """Read a JSONL query file; blank lines and lines starting with ``#`` are skipped, image paths resolved."""
    path = Path(path)
    queries: list[EvalQuery] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("each line must be a JSON object")
            raw.setdefault("id", f"line-{number}")
            query = EvalQuery.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'query'}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{path}:{number}: {problems}") from None
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from e
        if query.image:
            image = Path(query.image).expanduser()
            query.image = str(image if image.is_absolute() else (path.parent / image).resolve())
        queries.append(query)
    if not queries:
        raise ValueError(f"{path} holds no queries")
    if len({q.id for q in queries}) != len(queries):
        raise ValueError(f"{path}: query ids must be unique")
    return queries


def ranking_metrics(ranked: Sequence[str], relevant: Collection[str]) -> dict[str, float]:
    """Recall@1/5/10, MRR@10 and nDCG@10 (binary gains) of one ranked list of ids."""
    wanted = set(relevant)
    hits = [i for i, item in enumerate(ranked[:DEPTH]) if item in wanted]
    scores = {f"recall@{k}": sum(1 for i in hits if i < k) / len(wanted) for k in CUTOFFS}
    scores[f"mrr@{DEPTH}"] = 1.0 / (hits[0] + 1) if hits else 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i in hits)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), DEPTH)))
    scores[f"ndcg@{DEPTH}"] = dcg / ideal
    return scores


def matched_ids(hits: Sequence[tuple[str, ...]], relevant: Collection[str]) -> list[str]:
    """Each hit, ``(id, source)`` or ``(id, source, name)``, as the relevant entry it matches (by id, source,
    source file name, or the item's name, its document or that document's file name), else as its id.

    A relevant entry is credited once: a later hit matching it again counts as not relevant.
    """
    credited: set[str] = set()
    out = []
    for item_id, source, *named in hits:
        names = {item_id, source, Path(source.split("#", 1)[0]).name}
        for name in named:
            names.update((name, document_of(name), file_name_of(name)))
        match = next((r for r in relevant if r in names and r not in credited), None)
        if match is not None:
            credited.add(match)
        out.append(match if match is not None else f"id:{item_id}")
    return out


@dataclass(frozen=True)
class Mode:
    """A retrieval mode: which queries it answers, how they are embedded, and which stored vector is searched."""

    name: str
    query: QueryKind
    field: Literal["fused", "image"]


MODES = (
    Mode("text→fused", "text", "fused"),
    Mode("text→image", "text", "image"),
    Mode("image→image", "image", "image"),
    Mode("image→fused", "image", "fused"),
    Mode("image+text→fused", "image+text", "fused"),
    Mode("image+text→image", "image+text", "image"),
)
MODE_NAMES = tuple(mode.name for mode in MODES)


@dataclass
class ModeResult:
    """The mean scores of one mode on one collection, and each query's scores."""

    collection: str
    encoder: str
    mode: str
    queries: int
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: str | None = None
    reranker: str | None = None  # the cross-encoder that reordered the mode's candidates; None: the mode alone

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(queries: Sequence[EvalQuery], rank: Ranker) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean scores over the queries, and each query's scores, of one ranker."""
    per_query = {q.id: ranking_metrics(matched_ids(rank(q), q.relevant), q.relevant) for q in queries}
    means = {name: sum(s[name] for s in per_query.values()) / len(per_query) for name in METRICS} if per_query else {}
    return means, per_query


def embed_query(encoder: Encoder, query: EvalQuery) -> Any:
    """The query's vector: text, image, or fused (image, text)."""
    if query.kind == "text":
        return encoder.encode_text([query.text or ""])[0]
    if query.kind == "image":
        return encoder.encode_image([query.image or ""])[0]
    return encoder.encode_fused([query.image or ""], [query.text or ""])[0]


def store_ranker(encoder: Encoder, store: MilvusStore, mode: Mode) -> Ranker:
    """Rank with ``store.search`` on the mode's vector field, the query embedded by ``encoder``."""

    def rank(query: EvalQuery) -> list[tuple[str, str, str]]:
        hits = store.search(embed_query(encoder, query), field=mode.field, k=DEPTH)
        return [(hit.id, hit.item.source, hit.item.name) for hit in hits]

    return rank


def reranked_ranker(
    encoder: Encoder, store: MilvusStore, mode: Mode, cross_encoder: CrossEncoder, candidates: int
) -> Ranker:
    """Rank ``candidates`` hits of the mode by the cross-encoder's score of (query text, item text), as
    ``rag search --reranker`` does (a picture without text is scored on its name)."""
    from connectors.milvus import to_llama_node
    from rag.retrieval.rerank import rerank_text

    def rank(query: EvalQuery) -> list[tuple[str, str, str]]:
        hits = store.search(embed_query(encoder, query), field=mode.field, k=max(candidates, DEPTH))
        scores = cross_encoder.score(query.text or "", [rerank_text(to_llama_node(hit.item)) for hit in hits])
        order = sorted(range(len(hits)), key=lambda i: scores[i], reverse=True)[:DEPTH]
        return [(hits[i].id, hits[i].item.source, hits[i].item.name) for i in order]

    return rank


def missing_relevant(store: MilvusStore, queries: Sequence[EvalQuery]) -> dict[str, list[str]]:
    """The relevant entries of each query that name no item of the collection, by query id; queries whose entries
    all exist are left out. An entry exists when it is an item's id, matches the ``source`` filter, or follows a
    ``/`` in a stored source (a file name; an entry holding a LIKE wildcard is not looked up so): a warning's test,
    which may take a look-alike for the entry, never the other way round."""
    entries = sorted({entry for query in queries for entry in query.relevant})
    found = store.existing_ids(entries)
    found.update(entry for entry in entries if entry not in found and _stored(store, entry))
    missing = {query.id: [entry for entry in query.relevant if entry not in found] for query in queries}
    return {query_id: entries for query_id, entries in missing.items() if entries}


def _stored(store: MilvusStore, entry: str) -> bool:
    if store.count({"source": entry}) > 0:
        return True
    wildcard = any(ch in entry for ch in "%_\\")
    return not wildcard and store.count({"source": {"text_match": f"/{entry}"}}) > 0


def evaluate_collection(
    encoder: Encoder,
    store: MilvusStore,
    queries: Sequence[EvalQuery],
    modes: Sequence[Mode] = MODES,
    *,
    cross_encoder: CrossEncoder | None = None,
    candidates: int = 50,
) -> list[ModeResult]:
    """Every mode that has queries of its kind, on one collection; fused query modes are reported as
    skipped when the encoder has no fused embedding. With ``cross_encoder``, each mode is measured again with
    its top ``candidates`` reranked by it, on the same queries (image queries have no text to score: skipped)."""
    from connectors.milvus import EncoderInfo, EncoderMismatchError

    if not store.encoder.compatible_with(EncoderInfo.of(encoder)):
        raise EncoderMismatchError(
            f"collection {store.collection!r} was made with {store.encoder.describe()}, not with {encoder.name}"
        )
    results = []
    for mode in modes:
        asked = [q for q in queries if q.kind == mode.query]
        if not asked:
            continue
        result = ModeResult(
            collection=store.collection, encoder=encoder.name, mode=mode.name, queries=len(asked), metrics={}
        )
        if mode.query == "image+text" and not encoder.supports_fused:
            result.skipped = f"{encoder.name} has no fused image+text embedding"
        else:
            result.metrics, result.per_query = evaluate(asked, store_ranker(encoder, store, mode))
        results.append(result)
        if cross_encoder is None:
            continue
        reranked = ModeResult(
            collection=store.collection,
            encoder=encoder.name,
            mode=mode.name,
            queries=len(asked),
            metrics={},
            reranker=cross_encoder.name,
        )
        if result.skipped or mode.query == "image":
            reranked.skipped = result.skipped or "image queries have no text for the cross-encoder to score"
        else:
            rank = reranked_ranker(encoder, store, mode, cross_encoder, candidates)
            reranked.metrics, reranked.per_query = evaluate(asked, rank)
        results.append(reranked)
    return results
