"""Search time and recall as a Milvus Lite collection grows: exact (FLAT) and HNSW on the same rows.

For each size the collection is filled once with exact search, timed, then switched to HNSW the way
an ingest switches it (``MilvusStore.flush`` with the threshold passed) and timed again, so the two
indexes meet the same machine load one after the other. Times are ``MilvusStore.search`` alone (the
query is already a vector: embedding excluded), the fused field as a text query in the default mode
searches it, 768-d, top 10, unfiltered and with a filter keeping 10% of the items (a tag). Recall@10
is against an exact search in numpy over the same vectors. The first search right after the flush
is timed apart: it shows whether the index was ready when the ingest ended.

Vectors are clustered (2,000 centres, noise of the same order), as embeddings of a real corpus are;
queries are stored items' vectors moved by noise. The filter keeps the text-only items, every tenth
(``modality=text``). Uniform random 768-d vectors would have no
meaningful nearest neighbours.

    .venv/bin/python benchmarks/query.py --index [--sizes 10000 100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.milvus import EncoderInfo, MilvusStore, schema  # noqa: E402
from rag.items import ImageRef, KnowledgeItem  # noqa: E402

DIM = 768
CENTRES = 2_000
NOISE = 0.6  # an item's distance from its centre; a query's from its item is QUERY_NOISE
QUERY_NOISE = 0.5
TEXT_ONLY = {"modality": "text"}  # every tenth item
WORDS = "bridge river night red dress whale ocean carriage pond cat sofa window diagram water rain bowl".split()
INFO = EncoderInfo(variant="random-768", dim=DIM, fingerprint="bench")


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    """``n`` unit vectors, each a random centre (norm 1) plus noise of norm about ``noise``."""
    return moved(rng, centres[rng.integers(0, len(centres), n)], noise)


def moved(rng: np.random.Generator, vectors: np.ndarray, noise: float) -> np.ndarray:
    spread = vectors + noise / np.sqrt(DIM) * rng.standard_normal(vectors.shape, dtype=np.float32)
    return spread / np.linalg.norm(spread, axis=1, keepdims=True)


def fill(store: MilvusStore, n: int, rng: np.random.Generator, centres: np.ndarray, batch: int = 2_000) -> np.ndarray:
    """Write ``n`` items, every tenth of them text-only (the filter keeps those); returns their fused vectors."""
    fused = np.empty((n, DIM), dtype=np.float32)
    for first in range(0, n, batch):
        count = min(batch, n - first)
        items = [
            KnowledgeItem(
                id=f"item-{first + k:07d}",
                text=" ".join(rng.choice(WORDS, size=8)),
                image=None if (first + k) % 10 == 0 else ImageRef(uri=f"/bench/{first + k}.jpg"),
                source=f"bench/{first + k}",
            )
            for k in range(count)
        ]
        fused[first : first + count] = clustered(rng, centres, count, NOISE)
        store.upsert(items, fused[first : first + count], clustered(rng, centres, count, NOISE))
    return fused


def exact_top(fused: np.ndarray, query: np.ndarray, k: int, tenth: bool) -> list[str]:
    scores = fused @ query
    if tenth:
        scores = np.where(np.arange(len(fused)) % 10 == 0, scores, -np.inf)
    return [f"item-{i:07d}" for i in np.argsort(-scores)[:k]]


def measure(store: MilvusStore, fused: np.ndarray, queries: np.ndarray, k: int) -> dict[str, tuple[float, float]]:
    """p50 ms and mean recall@k, unfiltered and with the 10% filter, the two taking turns on each query."""
    times: dict[str, list[float]] = {"all": [], "10%": []}
    recall: dict[str, list[float]] = {"all": [], "10%": []}
    store.search(queries[0], k=k)  # warm-up
    for query in queries:
        for name, filters in (("all", None), ("10%", TEXT_ONLY)):
            start = time.perf_counter()
            hits = store.search(query, k=k, filter=filters)
            times[name].append(time.perf_counter() - start)
            expected = exact_top(fused, query, k, tenth=filters is not None)
            recall[name].append(len({h.id for h in hits} & set(expected)) / k)
    return {name: (statistics.median(times[name]) * 1000, statistics.mean(recall[name])) for name in times}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def study(size: int, folder: Path, queries_n: int, k: int) -> None:
    rng = np.random.default_rng(size)
    centres = moved(rng, np.zeros((CENTRES, DIM), dtype=np.float32), 1.0)
    schema.LITE_HNSW_ROWS = 10**12  # fill with exact search first
    with MilvusStore.open(folder / f"n{size}.db", "bench", encoder_info=INFO) as store:
        start = time.perf_counter()
        fused = fill(store, size, rng, centres)
        store.flush()
        filled = time.perf_counter() - start
        picks = rng.integers(0, size, queries_n)
        queries = moved(rng, fused[picks], QUERY_NOISE)
        flat = measure(store, fused, queries, k)
        schema.LITE_HNSW_ROWS = 0  # what an ingest past the threshold does at its end
        start = time.perf_counter()
        store.flush()
        indexed = time.perf_counter() - start
        start = time.perf_counter()
        store.search(queries[-1], k=k)
        first = (time.perf_counter() - start) * 1000
        hnsw = measure(store, fused, queries, k)
    print(f"\n{size:,} items: written in {filled:.0f} s; switching to HNSW (two vector fields) took {indexed:.0f} s; "
          f"first search after it {first:.0f} ms; peak RSS {peak_rss_gib():.2f} GiB")
    recall = f"recall@{k}"
    print(f"{'index':6} {'p50 ms, all':>12} {recall:>10} {'p50 ms, 10% filter':>19} {recall:>10}")
    for name, result in (("FLAT", flat), ("HNSW", hnsw)):
        (p_all, r_all), (p_ten, r_ten) = result["all"], result["10%"]
        print(f"{name:6} {p_all:12.1f} {r_all:10.3f} {p_ten:19.1f} {r_ten:10.3f}")
    print(f"HNSW ÷ FLAT p50: {hnsw['all'][0] / flat['all'][0]:.2f}x unfiltered, "
          f"{hnsw['10%'][0] / flat['10%'][0]:.2f}x with the filter")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", action="store_true", help="(the flag query.py hands this study)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=10)
    args = parser.parse_args(argv)
    from benchmarks.query import cpu_model

    print(f"cpu: {cpu_model()}; {DIM}-d, top {args.top_k}, {args.queries} queries; ef {schema.HNSW_EF}, "
          f"HNSW {schema.HNSW_BUILD}")
    with tempfile.TemporaryDirectory(prefix="rag-index-bench-") as tmp:
        for size in args.sizes:
            study(size, Path(tmp), args.queries, args.top_k)


if __name__ == "__main__":
    main()
