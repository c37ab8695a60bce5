"""Search time with tenants: T tenants of N items each in one collection (``tenant``, the partition key, filtered
by the server on every search), against one collection of T x N items without tenants, side by side in one run.

Both collections live in one embedded Milvus Lite folder and hold the same kind of rows (768-d vectors around
2,000 centres, as ``index_scale.py`` writes them); a query is a stored vector moved by noise. Times are
``MilvusStore.search`` alone (the fused field, top 10): the tenants' collection filtered to one tenant (taking
turns), the single collection unfiltered, and a collection of N items alone (what a tenant would search with a
collection of its own). Every hit of a filtered search is checked to be of its tenant. Each collection is
written with exact search (FLAT) and timed; one past Lite's HNSW threshold (20k rows) is then switched to HNSW,
as the end of an ingest switches it, and timed again (``--flat-only`` skips the graphs, whose build takes
minutes at 100k on 2 cores). The machine's load average is printed beside each figure.

The default is issue 29's size, 10 tenants of 10k items against one collection of 100k (on 2 shared cores
some 25 minutes: writing 210k rows and building two pairs of graphs); ``--small`` is a quick check at 10 x 1k
with 10 queries.

    .venv/bin/python benchmarks/tenants.py [--small] [--tenants 10] [--per-tenant 10000] [--queries 30] [--flat-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name  # noqa: E402
from benchmarks.index_scale import BATCH, CENTRES, DIM, INFO, NOISE, QUERY_NOISE, clustered, moved  # noqa: E402
from connectors.milvus import MilvusStore, schema  # noqa: E402
from connectors.milvus.schema import LITE_HNSW_ROWS  # noqa: E402
from rag.items import DEFAULT_TENANT, KnowledgeItem  # noqa: E402


def fill(
    store: MilvusStore, tenants: list[str], per_tenant: int, centres: np.ndarray, rng: np.random.Generator
) -> None:
    for tenant in tenants:
        for first in range(0, per_tenant, BATCH):
            count = min(BATCH, per_tenant - first)
            fused, image = clustered(rng, centres, count, NOISE), clustered(rng, centres, count, NOISE)
            items = [
                KnowledgeItem(
                    id=f"{tenant}-{row:07d}", text=f"row {row}", source=f"bench/{tenant}/{row}", tenant=tenant
                )
                for row in range(first, first + count)
            ]
            store.upsert(items, fused, image)
    store.flush()


def timed(store: MilvusStore, queries: np.ndarray, tenants: list[str] | None) -> float:
    """p50 ms of the searches, filtered to a tenant in turn when ``tenants`` are given (each hit checked)."""
    store.search(queries[0], k=10)  # warm-up
    times = []
    for number, query in enumerate(queries):
        tenant = tenants[number % len(tenants)] if tenants else None
        start = time.perf_counter()
        hits = store.search(query, k=10, filter={"tenant": tenant} if tenant else None)
        times.append(time.perf_counter() - start)
        assert len(hits) == 10 and (tenant is None or all(hit.item.tenant == tenant for hit in hits))
    return statistics.median(times) * 1000


def progress(line: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def measured(
    store: MilvusStore, queries: np.ndarray, searched: list[str] | None, graphs: bool
) -> dict[str, tuple[float, float]]:
    """p50 ms and the load average by index: exact search, then (``graphs``) HNSW, switched to as the end of an
    ingest past Lite's threshold switches (the index a collection of this size is searched with)."""
    found = {"exact (FLAT)": (timed(store, queries, searched), os.getloadavg()[0])}
    if graphs:
        schema.LITE_HNSW_ROWS = LITE_HNSW_ROWS
        start = time.perf_counter()
        store.flush()  # drops the exact index, builds both graphs, loads the collection
        progress(f"{store.collection}: both HNSW graphs built in {time.perf_counter() - start:.0f} s")
        found["HNSW"] = (timed(store, queries, searched), os.getloadavg()[0])
        schema.LITE_HNSW_ROWS = 10**12
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--per-tenant", type=int, default=None, help="Items per tenant [10,000; 1,000 with --small].")
    parser.add_argument("--queries", type=int, default=None, help="Searches timed per layout [30; 10 with --small].")
    parser.add_argument("--small", action="store_true", help="A quick check: 10 x 1k items, 10 queries.")
    parser.add_argument("--flat-only", action="store_true", help="Time exact search only: build no HNSW graph.")
    args = parser.parse_args()
    if args.per_tenant is None:
        args.per_tenant = 1_000 if args.small else 10_000
    if args.queries is None:
        args.queries = 10 if args.small else 30
    names = [f"t{i}" for i in range(args.tenants)]
    rng = np.random.default_rng(0)
    centres = moved(rng, np.zeros((CENTRES, DIM), dtype=np.float32), 1.0)
    queries = moved(rng, clustered(rng, centres, args.queries, NOISE), QUERY_NOISE)
    total = args.tenants * args.per_tenant
    schema.LITE_HNSW_ROWS = 10**12  # written with exact search, as an ingest writes until its end
    results: dict[str, dict[str, tuple[float, float]]] = {}
    layouts = {  # label: collection, tenants searched in turn (None: no filter), tenants written, their items
        f"{args.tenants} tenants x {args.per_tenant:,}, filtered to one": ("tenants", names, names, args.per_tenant),
        f"one collection of {total:,}, no filter": ("one", None, [DEFAULT_TENANT], total),
        f"one tenant's {args.per_tenant:,} alone": ("alone", None, [DEFAULT_TENANT], args.per_tenant),
    }
    with tempfile.TemporaryDirectory() as folder:
        for label, (collection, searched, written, each) in layouts.items():
            with MilvusStore.open(Path(folder) / "tenants.db", collection, encoder_info=INFO) as store:
                start = time.perf_counter()
                fill(store, written, each, centres, rng)
                progress(f"{label}: written in {time.perf_counter() - start:.0f} s")
                graphs = not args.flat_only and len(written) * each >= LITE_HNSW_ROWS
                results[label] = measured(store, queries, searched, graphs)
                store.drop()  # one collection's graphs in the Lite server at a time
    print(f"{cpu_name()}; Milvus Lite, 768-d, top 10, {args.queries} queries; load as each layout's searches ended")
    for label, by_index in results.items():
        for index, (p50, load) in by_index.items():
            print(f"  {label:45s} {index:22s} p50 {p50:7.1f} ms  (load {load:.1f})")


if __name__ == "__main__":
    main()
