"""Query latency on Milvus Lite: text, image and composed queries over 10k and 100k items, split into
embedding time (full-size Visualized-BGE base, random weights) and search time (MultimodalRetriever.search).

Beside each single-vector search it times the weighted blends of the same query (fused + image, and
fused + image + BM25: one Milvus hybrid search, fused server-side) and prints the ratio of their
search p50s. The stored vectors are random unit vectors written straight through the store (only the
query needs the model); the items have short random captions so that BM25 has text to search.

    .venv/bin/python benchmarks/query.py [--sizes 10000 100000] [--queries 30] [--top-k 10]
    .venv/bin/python benchmarks/query.py --index [--sizes 20000 100000] [--ef 64 128]  # HNSW (and FLAT), recall, memory
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from llama_index.core.schema import QueryBundle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SAMPLE_IMAGES, cpu_name, load_full_size  # noqa: E402
from connectors.milvus import EncoderInfo, MilvusStore  # noqa: E402
from rag.items import ImageRef, KnowledgeItem  # noqa: E402
from rag.retrieval import Mode, MultimodalRetriever  # noqa: E402

WORDS = (
    "bridge river night red dress whale ocean carriage pond cat sofa window diagram water rain bowl ramen egg "
    "street market mountain snow lake boat train station garden flower chair table lamp book map city tower"
).split()
# The blends timed beside each kind's single-vector search (its mode's vector alone).
BLENDS = {
    "text": ("fused=0.6,image=0.4", "fused=0.6,image=0.3,bm25=0.1", "fused,bm25"),  # the last: --hybrid (RRF)
    "image": ("fused=0.3,image=0.7",),
    "composed": ("fused=0.4,image=0.6",),
}
QUERIES = {
    "text": (
        Mode.TEXT_TO_MULTIMODAL,
        lambda i: QueryBundle(f"a {WORDS[i % len(WORDS)]} near a {WORDS[(i * 7) % len(WORDS)]}"),
    ),
    "image": (Mode.IMAGE_TO_IMAGE, lambda i: QueryBundle("", image_path=str(SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)]))),
    "composed": (
        Mode.COMPOSED_TO_IMAGE,
        lambda i: QueryBundle(
            f"make it {WORDS[i % len(WORDS)]}", image_path=str(SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)])
        ),
    ),
}


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill(store: MilvusStore, n: int, dim: int, batch: int) -> float:
    """Write ``n`` image+text items with random vectors; returns the seconds taken (flush included)."""
    rng = np.random.default_rng(n)
    start = time.perf_counter()
    for first in range(0, n, batch):
        count = min(batch, n - first)
        items = [
            KnowledgeItem(
                id=f"item-{first + k:07d}",
                text=" ".join(rng.choice(WORDS, size=8)),
                image=ImageRef(uri=f"/bench/pictures/{first + k}.jpg", mime_type="image/jpeg"),
                source=f"bench/{first + k}",
                tags=["bench"],
            )
            for k in range(count)
        ]
        store.upsert(items, unit_vectors(rng, count, dim), unit_vectors(rng, count, dim))
    store.flush()
    return time.perf_counter() - start


def time_searches(
    retrievers: list[MultimodalRetriever], mode: Mode, vectors: list[np.ndarray], bundles: list[QueryBundle]
) -> list[list[float]]:
    """Each retriever's search time per query, the retrievers taking turns on each query so that all of them
    meet the same machine load (the ratios are what this benchmark reports)."""
    for retriever in retrievers:
        retriever.search(vectors[0], mode, bundles[0].query_str)  # warm-up
    times: list[list[float]] = [[] for _ in retrievers]
    for vector, bundle in zip(vectors, bundles):
        for retriever, spent in zip(retrievers, times):
            start = time.perf_counter()
            results = retriever.search(vector, mode, bundle.query_str)
            spent.append(time.perf_counter() - start)
            assert results, "the benchmark collection returned nothing"
    return times


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def main() -> None:
    if "--index" in sys.argv:  # search alone as the collection grows: FLAT and HNSW, recall (no model needed)
        from benchmarks.index_scale import main as index_scale

        return index_scale()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=30, help="queries per kind")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2_000, help="items per store write")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"], help="query encoder dtype")
    args = parser.parse_args()

    encoder, model_dir = load_full_size("base", dtype=args.dtype)
    info = EncoderInfo.of(encoder)
    print(f"cpu: {cpu_name()}")
    print(
        f"threads={torch.get_num_threads()}  encoder {encoder.name} dim {encoder.dim}  top_k={args.top_k}  "
        f"{args.queries} queries per kind"
    )

    # Embedding does not depend on the collection: embed every query once, time each call.
    bundles = {kind: [make(i) for i in range(args.queries)] for kind, (_, make) in QUERIES.items()}
    embedded: dict[str, list[np.ndarray]] = {}
    embed_times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-query-bench-") as tmp:
        for n in args.sizes:
            with MilvusStore.open(Path(tmp) / f"n{n}.db", "bench", encoder_info=info) as store:
                seconds = fill(store, n, encoder.dim, args.batch)
                print(
                    f"\n{n:,} items: inserted in {seconds:.1f} s ({n / seconds:,.0f} items/s, batches of {args.batch})"
                )
                print(
                    f"{'query':9} {'mode / blend':54} {'embed p50/p95 ms':>17} {'search p50/p95 ms':>18} "
                    f"{'total p50/p95 ms':>17}"
                )
                ratios = []
                for kind, (mode, _) in QUERIES.items():
                    retrievers = [MultimodalRetriever(store, encoder, mode=mode, top_k=args.top_k)] + [
                        MultimodalRetriever(
                            store,
                            encoder,
                            mode=mode,
                            top_k=args.top_k,
                            blend=blend,
                            fusion="rrf" if blend == "fused,bm25" else "weighted",
                        )
                        for blend in BLENDS[kind]
                    ]
                    if kind not in embedded:
                        retrievers[0].embed(bundles[kind][0], mode)  # warm-up
                        embed_times[kind], embedded[kind] = [], []
                        for bundle in bundles[kind]:
                            start = time.perf_counter()
                            embedded[kind].append(retrievers[0].embed(bundle, mode))
                            embed_times[kind].append(time.perf_counter() - start)
                    search_times = time_searches(retrievers, mode, embedded[kind], bundles[kind])
                    for retriever, times in zip(retrievers, search_times):
                        totals = [e + s for e, s in zip(embed_times[kind], times)]
                        label = mode.value if retriever.blend is None else f"  blend {retriever.blend.describe()}"
                        cells = [percentiles(t) for t in (embed_times[kind], times, totals)]
                        print(f"{kind:9} {label:54} " + " ".join(f"{a:8.1f}/{b:<8.1f}" for a, b in cells))
                        if retriever.blend is not None:
                            ratio = percentiles(times)[0] / percentiles(search_times[0])[0]
                            ratios.append(f"  {kind:9} {retriever.blend.describe():54} {ratio:5.2f}x")
                print("search p50 of each blend ÷ the single-vector search of its query kind:", *ratios, sep="\n")
    model_dir.cleanup()


if __name__ == "__main__":
    main()
