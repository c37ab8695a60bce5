"""BM25 over the whole collection, for Milvus Lite, whose own BM25 is scored per segment.

Milvus Lite 3.x scores its BM25 function segment by segment, with that segment's document count,
average length and document frequencies (``milvus_lite/engine/collection.py``, ``_search_sparse``:
a TODO there says so). A later, small ingest lands in a small segment (or the memtable, rebuilt
at each search), where a word's IDF is tiny: an item written alone scores ~0.3 where the same
text scores ~3 among 40 others. Lite caps a segment at 100k rows and its compaction does not
merge them, so merging segments cannot give whole-collection statistics at scale.

So on Lite the store keeps the statistics itself, per collection, in a companion collection
(``<collection>__bm25_terms``: one row per term with its document frequency, and two rows with
the document and token counts), and stores each item's BM25 document weights in a sparse vector
searched by inner product::

    doc weight  w(t, d) = tf·(k1 + 1) / (tf + k1·(1 − b + b·|d| / avgdl))
    query weight q(t)   = count of t in the query · ln(1 + (N − df + 0.5) / (df + 0.5))
    score(d)            = Σₜ q(t)·w(t, d)

which is BM25 with Lucene's IDF, the formula Milvus uses. The IDF comes from the statistics at
query time, so an item added later scores as if the whole collection had been ingested at once;
``avgdl`` is the collection's when the item was written (``MilvusStore`` rewrites the weights when
it drifts by more than :data:`AVGDL_TOLERANCE`). Tokens are Lite's standard analyzer's: ``\\w+``,
lowercased.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from pymilvus import DataType, MilvusClient

from connectors.milvus import schema
from connectors.milvus.connection import Connection
from connectors.milvus.filters import id_in

K1 = 1.2
B = 0.75
#: How far (relative) the collection's average length may move before stored weights are rewritten.
AVGDL_TOLERANCE = 0.05
SUFFIX = "__bm25_terms"
_TERM = "id"  # the term; named as in the items' collection so ``id_in`` builds its filters
_DF = "df"
_PLACEHOLDER = "_unused"  # Milvus needs a vector field in every collection
_DOCS = " docs"  # no term has a space in it
_TOKENS = " tokens"
_AVGDL = " avgdl written"
_AVGDL_SCALE = 1_000_000  # stored as an integer count of millionths
_MAX_TERM_BYTES = 256
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Milvus refuses empty sparse vectors. Terms map to 1..2³²−3; an item without words weighs index 0,
# which no query has, and a query without a known word asks for index 2³²−2, which no item has.
_EMPTY = {0: 1.0}
NOTHING = {2**32 - 2: 1.0}
_BATCH = 1_000


def tokenize(text: str) -> list[str]:
    """The terms of ``text`` as Lite's standard analyzer makes them (``\\w+``, lowercased)."""
    return [t for t in _TOKEN.findall(text.lower()) if len(t.encode("utf-8")) <= _MAX_TERM_BYTES]


def term_index(term: str) -> int:
    """The sparse-vector dimension of ``term`` (its CRC-32, in 1..2³²−3)."""
    return zlib.crc32(term.encode("utf-8")) % (2**32 - 3) + 1


@dataclass
class Corpus:
    """Collection-wide counts: documents, tokens, and the document frequency of the terms read."""

    docs: int = 0
    tokens: int = 0
    df: dict[str, int] = field(default_factory=dict)
    avgdl_written: float = 0.0

    @property
    def avgdl(self) -> float:
        return self.tokens / self.docs if self.docs else 0.0

    def idf(self, term: str) -> float:
        df = self.df.get(term, 0)
        return math.log(1.0 + (self.docs - df + 0.5) / (df + 0.5))

    def query_vector(self, text: str) -> dict[int, float]:
        """The query's sparse vector: each known term's IDF times its count in the query (:data:`NOTHING` when
        no item has any of its words)."""
        weights: dict[int, float] = {}
        for term, count in Counter(tokenize(text)).items():
            if self.df.get(term, 0) > 0:
                index = term_index(term)
                weights[index] = weights.get(index, 0.0) + count * self.idf(term)
        return weights or dict(NOTHING)

    def doc_vector(self, terms: Sequence[str], avgdl: float) -> dict[int, float]:
        """The document's BM25 weights given the collection's average length."""
        if not terms:
            return dict(_EMPTY)
        norm = K1 * (1.0 - B + B * len(terms) / (avgdl or 1.0))
        weights: dict[int, float] = {}
        for term, tf in Counter(terms).items():
            index = term_index(term)
            weights[index] = weights.get(index, 0.0) + tf * (K1 + 1.0) / (tf + norm)
        return weights


class TermStats:
    """The per-collection statistics, kept in the companion collection ``<collection>__bm25_terms``.

    Besides the counts it records ``avgdl_written``, the average length every stored weight was
    computed with (all of them share it).
    """

    def __init__(self, client: Connection, collection: str) -> None:
        self._client = client
        self.name = collection + SUFFIX

    def create(self) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(_TERM, DataType.VARCHAR, is_primary=True, max_length=_MAX_TERM_BYTES)
        schema.add_field(_DF, DataType.INT64)
        schema.add_field(_PLACEHOLDER, DataType.FLOAT_VECTOR, dim=2)
        params = MilvusClient.prepare_index_params()
        params.add_index(field_name=_PLACEHOLDER, index_type="FLAT", metric_type="IP")
        self._client.create_collection(self.name, schema=schema, index_params=params, consistency_level="Strong")

    def exists(self) -> bool:
        return self._client.has_collection(self.name)

    def load(self) -> None:
        self._client.load_collection(self.name)

    def drop(self) -> None:
        self._client.drop_collection(self.name)

    def read(self, terms: Iterable[str] = ()) -> Corpus:
        """The document and token counts and the document frequencies of ``terms``."""
        counts: dict[str, int] = {}
        keys = [_DOCS, _TOKENS, _AVGDL, *dict.fromkeys(terms)]
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            rows = self._client.query(self.name, filter=id_in(batch), output_fields=[_DF], limit=len(batch))
            counts.update((row[_TERM], int(row[_DF])) for row in rows)
        docs, tokens, written = counts.pop(_DOCS, 0), counts.pop(_TOKENS, 0), counts.pop(_AVGDL, 0)
        return Corpus(docs=docs, tokens=tokens, df=counts, avgdl_written=written / _AVGDL_SCALE)

    def write(self, corpus: Corpus, *, changed: Mapping[str, int] | None = None) -> None:
        """Store the counts and the ``changed`` terms' frequencies (all of ``corpus.df`` when None); 0 deletes."""
        changed = corpus.df if changed is None else changed
        totals = {_DOCS: corpus.docs, _TOKENS: corpus.tokens, _AVGDL: round(corpus.avgdl_written * _AVGDL_SCALE)}
        rows = [{_TERM: key, _DF: value} for key, value in totals.items()]
        rows += [{_TERM: term, _DF: n} for term, n in changed.items() if n > 0]
        gone = [term for term, n in changed.items() if n <= 0]
        for start in range(0, len(rows), _BATCH):
            batch = [{**row, _PLACEHOLDER: [1.0, 0.0]} for row in rows[start : start + _BATCH]]
            self._client.upsert(self.name, batch)
        for start in range(0, len(gone), _BATCH):
            self._client.delete(self.name, filter=id_in(gone[start : start + _BATCH]))

    def clear(self) -> None:
        """Forget every count (before a rebuild)."""
        self._client.delete(self.name, filter=f'{_TERM} != ""')


class CollectionBm25:
    """Keeps a collection's BM25 weights and statistics in step with its rows (see the module docstring).

    The store calls :meth:`weigh` before writing rows, :meth:`forget` before deleting them, and
    :meth:`settle` at the end of a bulk load. Writes only note their counts: they are stored at the
    next :meth:`commit` (``settle`` and ``forget`` commit), so a bulk load reads and writes the
    statistics once, not per batch. This store's own queries count what it noted; other processes see
    it once committed.
    """

    def __init__(self, client: Connection, collection: str) -> None:
        self._client = client
        self._collection = collection
        self._text, self._sparse, self._id = schema.TEXT, schema.SPARSE, schema.ID
        self.stats = TermStats(client, collection)
        self._noted = Corpus()  # counts written or removed since the last commit; df values may be negative
        self._avgdl = 0.0  # the average length every stored weight uses, once known

    def weigh(self, rows: Sequence[dict], replaced: Sequence[str]) -> None:
        """Add each row's sparse weights, counting the rows in and the ``replaced`` texts (same ids) out."""
        added = [tokenize(row[self._text]) for row in rows]
        if not self._avgdl:
            corpus = self._with_noted(self.stats.read())
            lengths = corpus.tokens + sum(map(len, added))
            self._avgdl = corpus.avgdl_written or (lengths / (corpus.docs + len(added)) if lengths else 1.0)
        self._note(added, 1)
        self._note([tokenize(text) for text in replaced], -1)
        for row, terms in zip(rows, added):
            row[self._sparse] = self._noted.doc_vector(terms, self._avgdl)

    def forget(self, texts: Sequence[str]) -> None:
        """Count these texts (rows about to be deleted) out."""
        self._note([tokenize(text) for text in texts], -1)
        self.commit()

    def query_vector(self, text: str) -> dict[int, float]:
        return self._with_noted(self.stats.read(tokenize(text))).query_vector(text)

    def commit(self) -> None:
        """Store the counts noted since the last commit."""
        noted = self._noted
        if not (noted.docs or noted.tokens or noted.df):
            return
        corpus = self._with_noted(self.stats.read(noted.df))
        corpus.avgdl_written = corpus.avgdl_written or self._avgdl
        self.stats.write(corpus, changed={term: corpus.df.get(term, 0) for term in noted.df})
        self._noted = Corpus()

    def settle(self, rows: int) -> None:
        """After a bulk load: commit, recount when the counts disagree with the ``rows`` stored (a run killed
        between its writes), and rewrite every weight when the average length drifted past the tolerance."""
        self.commit()
        corpus = self.stats.read()
        if corpus.docs != rows:
            corpus = self._recount()
        drift = abs(corpus.avgdl - corpus.avgdl_written) / corpus.avgdl_written if corpus.avgdl_written else 1.0
        if corpus.docs and drift > AVGDL_TOLERANCE:
            self._reweigh(corpus.avgdl or 1.0)
        self._avgdl = 0.0  # read again by the next write

    def _note(self, docs: Sequence[Sequence[str]], sign: int) -> None:
        self._noted.docs += sign * len(docs)
        self._noted.tokens += sign * sum(map(len, docs))
        for term in (t for terms in docs for t in set(terms)):
            self._noted.df[term] = self._noted.df.get(term, 0) + sign

    def _with_noted(self, corpus: Corpus) -> Corpus:
        """``corpus`` (read from the statistics) plus the counts noted since the last commit, for its terms."""
        df = {term: n + self._noted.df.get(term, 0) for term, n in corpus.df.items()}
        df |= {term: n for term, n in self._noted.df.items() if term not in corpus.df}
        return Corpus(
            docs=corpus.docs + self._noted.docs,
            tokens=corpus.tokens + self._noted.tokens,
            df={term: n for term, n in df.items() if n > 0},
            avgdl_written=corpus.avgdl_written,
        )

    def _texts(self) -> Iterator[list[dict]]:
        fields = [self._id, self._text]
        iterator = self._client.query_iterator(self._collection, batch_size=_BATCH, output_fields=fields)
        try:
            while page := iterator.next():
                yield page
        finally:
            iterator.close()

    def _recount(self) -> Corpus:
        corpus, _ = count(row[self._text] for page in self._texts() for row in page)
        self.stats.clear()
        self.stats.write(corpus)
        return corpus

    def _reweigh(self, avgdl: float) -> None:
        for page in self._texts():
            weigh = Corpus().doc_vector
            rows = [{self._id: row[self._id], self._sparse: weigh(tokenize(row[self._text]), avgdl)} for row in page]
            self._client.upsert(self._collection, rows, partial_update=True)
        corpus = self.stats.read()
        corpus.avgdl_written = avgdl
        self.stats.write(corpus, changed={})


def count(texts: Iterable[str]) -> tuple[Corpus, list[list[str]]]:
    """The statistics of ``texts`` counted from scratch, and each text's terms."""
    docs = [tokenize(text) for text in texts]
    df = Counter(term for terms in docs for term in set(terms))
    return Corpus(docs=len(docs), tokens=sum(map(len, docs)), df=dict(df)), docs
