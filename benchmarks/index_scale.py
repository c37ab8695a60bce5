"""Search time, recall and memory as a Milvus Lite collection grows, right after an ingest: HNSW, and exact (FLAT)
where timing it is still worth it.

For each size the collection is written as an ingest writes it (batches of upserts, then a flush) with exact
search, then switched to HNSW the way an ingest past the threshold switches it at its end (``MilvusStore.flush``:
drop, create, load, which builds the graph of both vector fields), and timed. Times are ``MilvusStore.search``
alone (the query is already a vector: embedding excluded): the fused field, which a text query searches in the
default mode (text-to-any), 768-d, top 10, unfiltered and with a filter keeping 10% of the items (a tag), the two
taking turns on each query. A filtered graph search that comes back short falls back to exact search (counted).

Recall@10 is against exact top 10 computed in numpy while the rows are written (a running top 10 per query, so
no copy of the vectors is kept). Vectors are clustered (2,000 centres, noise of the same order), as embeddings of
a real corpus are; a query is a stored item's vector moved by noise. The filter keeps the text-only items, every tenth
(``modality=text``).

Memory: the peak resident size of this process and of the shared Milvus Lite server process (the store is out
of process), read from the kernel's high-water mark (``VmHWM``).

FLAT is timed up to ``--flat-up-to`` items only (exact search is linear: at 1M items it takes seconds a query).

    .venv/bin/python benchmarks/query.py --index [--sizes 20000 100000] [--queries 50] [--flat-up-to 100000]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.milvus import EncoderInfo, MilvusStore, schema  # noqa: E402
from connectors.milvus.lite_server import ServerState, state_dir  # noqa: E402
from rag.items import ImageRef, KnowledgeItem  # noqa: E402

DIM = 768
CENTRES = 2_000
NOISE = 0.6  # an item's distance from its centre; a query's from its item is QUERY_NOISE
QUERY_NOISE = 0.5
BATCH = 2_000
TEXT_ONLY = {"modality": "text"}  # every tenth item
KINDS = {"all": None, "10%": TEXT_ONLY}
WORDS = "bridge river night red dress whale ocean carriage pond cat sofa window diagram water rain bowl".split()
Result = dict[str, tuple[float, float]]
INFO = EncoderInfo(variant="random-768", dim=DIM, fingerprint="bench")


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    """``n`` unit vectors, each a random centre (norm 1) plus noise of norm about ``noise``."""
    return moved(rng, centres[rng.integers(0, len(centres), n)], noise)


def moved(rng: np.random.Generator, vectors: np.ndarray, noise: float) -> np.ndarray:
    spread = vectors + noise / np.sqrt(DIM) * rng.standard_normal(vectors.shape, dtype=np.float32)
    return spread / np.linalg.norm(spread, axis=1, keepdims=True)


class Truth:
    """The exact top ``k`` of each query, unfiltered and among every tenth row, kept up to date batch by batch."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = queries, k
        empty = (np.full((len(queries), 0), -np.inf, dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64))
        self._best = {name: empty for name in KINDS}

    def add(self, first: int, vectors: np.ndarray) -> None:
        scores = self.queries @ vectors.T
        rows = np.arange(first, first + len(vectors))
        for name in KINDS:
            keep = rows % 10 == 0 if name == "10%" else np.ones(len(rows), dtype=bool)
            best_scores, best_rows = self._best[name]
            merged = np.concatenate([best_scores, scores[:, keep]], axis=1)
            merged_rows = np.concatenate([best_rows, np.broadcast_to(rows[keep], (len(self.queries), keep.sum()))], 1)
            top = np.argsort(-merged, axis=1, kind="stable")[:, : self.k]
            self._best[name] = np.take_along_axis(merged, top, 1), np.take_along_axis(merged_rows, top, 1)

    def ids(self, name: str, query: int) -> set[str]:
        return {f"item-{row:07d}" for row in self._best[name][1][query]}


def batch(size: int, first: int, count: int, centres: np.ndarray) -> tuple[list[KnowledgeItem], np.ndarray, np.ndarray]:
    """Rows ``first`` to ``first + count`` of a collection of ``size``: items (every tenth text-only, which the
    filter keeps), fused and image vectors; the same every time they are asked for."""
    rng = np.random.default_rng([size, first])
    fused, image = clustered(rng, centres, count, NOISE), clustered(rng, centres, count, NOISE)
    items = [
        KnowledgeItem(
            id=f"item-{row:07d}",
            text=" ".join(rng.choice(WORDS, size=8)),
            image=None if row % 10 == 0 else ImageRef(uri=f"/bench/{row}.jpg"),
            source=f"bench/{row}",
        )
        for row in range(first, first + count)
    ]
    return items, fused, image


def queries(size: int, n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """``n`` stored items' fused vectors, each moved by noise: a query near an item, as a caption is near its image."""
    near = []
    for pick in rng.choice(size, n, replace=False):
        first = pick - pick % BATCH
        near.append(batch(size, first, min(BATCH, size - first), centres)[1][pick - first])
    return moved(rng, np.asarray(near), QUERY_NOISE)


def fill(store: MilvusStore, size: int, centres: np.ndarray, truth: Truth) -> None:
    """Write ``size`` items in ingest-sized batches, keeping the exact top k of each query up to date."""
    for first in range(0, size, BATCH):
        items, fused, image = batch(size, first, min(BATCH, size - first), centres)
        truth.add(first, fused)
        store.upsert(items, fused, image)


class _Fallbacks(logging.Handler):
    """Counts the filtered graph searches that came back short and were answered by exact search."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "searching exactly" in record.getMessage()


def measure(store: MilvusStore, truth: Truth) -> dict[str, tuple[float, float]]:
    """p50 ms and mean recall@k for each kind of search, the kinds taking turns on each query (and under
    ``"fallbacks"``, how many filtered searches were answered by exact search)."""
    fallbacks = _Fallbacks()
    logger = logging.getLogger("connectors.milvus.store")
    logger.addHandler(fallbacks)
    logger.setLevel(logging.DEBUG)
    times: dict[str, list[float]] = {name: [] for name in KINDS}
    recall: dict[str, list[float]] = {name: [] for name in KINDS}
    store.search(truth.queries[0], k=truth.k)  # warm-up
    for number, query in enumerate(truth.queries):
        for name, filters in KINDS.items():
            start = time.perf_counter()
            hits = store.search(query, k=truth.k, filter=filters)
            times[name].append(time.perf_counter() - start)
            recall[name].append(len({hit.id for hit in hits} & truth.ids(name, number)) / truth.k)
    logger.removeHandler(fallbacks)
    result = {name: (statistics.median(times[name]) * 1000, statistics.mean(recall[name])) for name in KINDS}
    return {**result, "fallbacks": (fallbacks.count, 0.0)}


def peak_gib(pid: int | None = None) -> float:
    """The peak resident size of process ``pid`` (default: this one), in GiB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def progress(line: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def study(size: int, folder: Path, queries_n: int, k: int, flat_up_to: int, efs: list[int]) -> None:
    rng = np.random.default_rng(size)
    centres = moved(rng, np.zeros((CENTRES, DIM), dtype=np.float32), 1.0)
    truth = Truth(queries(size, queries_n, rng, centres), k)
    schema.LITE_HNSW_ROWS = 10**12  # write with exact search first
    db = folder / f"n{size}.db"
    results: dict[str, Result | None] = {}
    with MilvusStore.open(db, "bench", encoder_info=INFO) as store:
        start = time.perf_counter()
        fill(store, size, centres, truth)
        store.flush()
        written = time.perf_counter() - start
        results["FLAT"] = measure(store, truth) if size <= flat_up_to else None
        progress(f"{size:,}: written in {written:.0f} s" + ("" if results["FLAT"] is None else "; exact search timed"))
        schema.LITE_HNSW_ROWS = 0  # the end of an ingest past the threshold: the switch to HNSW
        start = time.perf_counter()
        store.flush()
        indexed = time.perf_counter() - start
        progress(f"{size:,}: HNSW built in {indexed:.0f} s")
        start = time.perf_counter()
        store.search(truth.queries[-1], k=k)
        first = (time.perf_counter() - start) * 1000
        for ef in efs:
            schema.HNSW_EF = ef
            results[f"HNSW ef {ef}"] = measure(store, truth)
        state = ServerState.read(state_dir(db))
        server = peak_gib(state.pid) if state is not None else float("nan")
    report(size, results, (written, indexed, first), (peak_gib(), server))


def report(
    size: int, results: dict[str, Result | None], times: tuple[float, float, float], peaks: tuple[float, float]
) -> None:
    (written, indexed, first), (client, server) = times, peaks
    print(
        f"\n{size:,} items: written (upserts + flush) in {written:.0f} s ({size / written:,.0f} items/s); "
        f"switched to HNSW and built both graphs in {indexed:.0f} s; first search after it {first:.0f} ms; "
        f"peak RSS: this process {client:.2f} GiB, Lite server {server:.2f} GiB"
    )
    recall = "recall@k"
    print(
        f"{'index':12} {'p50 ms, all':>12} {recall:>10} {'p50 ms, 10% filter':>19} {recall:>10} {'exact fallbacks':>16}"
    )
    for name, result in results.items():
        if result is None:
            print(f"{name:12} not timed: exact search is linear, pointless at this size (--flat-up-to)")
            continue
        (p_all, r_all), (p_ten, r_ten) = result["all"], result["10%"]
        print(f"{name:12} {p_all:12.1f} {r_all:10.3f} {p_ten:19.1f} {r_ten:10.3f} {result['fallbacks'][0]:16.0f}")
    flat, (name, hnsw) = results["FLAT"], list(results.items())[1]
    if flat is not None and hnsw is not None:
        print(
            f"{name} ÷ FLAT p50: {hnsw['all'][0] / flat['all'][0]:.2f}x unfiltered, "
            f"{hnsw['10%'][0] / flat['10%'][0]:.2f}x with the filter"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", action="store_true", help="(the flag query.py hands this study)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--flat-up-to", type=int, default=100_000, help="time exact search up to this size")
    parser.add_argument(
        "--ef", type=int, nargs="+", default=[schema.HNSW_EF], help="HNSW search breadths to time on the same graph"
    )
    parser.add_argument("--m", type=int, default=schema.HNSW_BUILD["M"], help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=schema.HNSW_BUILD["efConstruction"])
    args = parser.parse_args(argv)
    from benchmarks.common import cpu_name

    schema.HNSW_BUILD = {"M": args.m, "efConstruction": args.ef_construction}
    print(
        f"cpu: {cpu_name()} ({os.cpu_count()} cores seen); {DIM}-d, top {args.top_k}, {args.queries} queries; "
        f"HNSW ef {args.ef} (x{schema.HNSW_FILTERED_EF} filtered), {schema.HNSW_BUILD}; "
        f"exact search timed up to {args.flat_up_to:,} items"
    )
    with tempfile.TemporaryDirectory(prefix="rag-index-bench-") as tmp:
        for size in args.sizes:
            study(size, Path(tmp), args.queries, args.top_k, args.flat_up_to, args.ef)


if __name__ == "__main__":
    main()
