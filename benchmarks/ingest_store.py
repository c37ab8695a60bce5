"""Ingestion with an encoder that costs nothing: what the pipeline and the store alone allow.

The encoder is replaced by one that returns random unit vectors at once; images are still decoded
and prepared by Visualized-BGE's own transform (224 px) on the preprocessing workers, so what is
timed is listing, reading, hashing, validation, preparation, the store's writes and its indexing.
The corpus is a folder of 64×64 PNGs with caption sidecars, read as ``rag ingest`` reads it (the workers'
decode is the only one). The clock starts after the store is open and LlamaIndex imported, in every tree.
Each run prints its CPU time per item, of the ingesting process and of the store's own process (Milvus Lite
served beside it; 0 in a tree that runs Lite in the ingesting process): the figure a busy machine moves least.

Each round ingests the corpus into a fresh Milvus Lite database in a fresh process, once with this
tree's code and once with another tree's (``--baseline``: e.g. ``git archive <commit> | tar -x -C
DIR``), alternating, so both meet the same machine load; the ratio of their rates is what counts.
``--profile FILE`` samples one run of this tree with py-spy instead (every thread) and prints where
the time went.

    .venv/bin/python benchmarks/ingest_store.py [--items 3000] [--rounds 3] [--baseline DIR]... [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh process with PYTHONPATH set to the tree under test: argv = corpus, database.
RUN = r"""
import json, os, sys, time
import numpy as np
from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.embeddings.preprocess import Preprocessor
from rag.embeddings.visualized_bge.preprocessing import VisualizedBGETransform
from rag.ingest import ingest
from rag.runtime import resolve_runtime


class FreeEncoder:
    name = fingerprint = "free-768"
    dim = 768
    supports_fused = True

    def __init__(self):
        self.runtime = resolve_runtime("cpu", "float32", purpose="batch")
        self.image_transform = VisualizedBGETransform(224)
        self.preprocessor = Preprocessor(self.image_transform, self.runtime.workers, processes=self.runtime.processes)
        self._rng = np.random.default_rng(0)

    def _unit(self, n):
        vectors = self._rng.standard_normal((n, self.dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode_text(self, texts):
        return self._unit(len(texts))

    def encode_fused_and_image(self, images, texts):
        return self._unit(len(texts)), self._unit(len(texts))


corpus, db = sys.argv[1:3]
encoder = FreeEncoder()
store = MilvusStore.open(db, "bench", encoder_info=EncoderInfo(variant="free", dim=768, fingerprint="free-768"))
# The LlamaIndex node copy every row carries: imported once per process, before the clock, in every tree.
import llama_index.core.schema, llama_index.core.vector_stores.utils  # noqa: E401,F401
import psutil
me = psutil.Process()
children = lambda: sum(sum(c.cpu_times()[:2]) for c in me.children(recursive=True))  # noqa: E731
cpu, store_cpu, start = sum(os.times()[:2]), children(), time.perf_counter()
report = ingest(open_sources([corpus], decode_check=False), encoder, store)  # as `rag ingest` reads
seconds = time.perf_counter() - start
cpu, store_cpu = sum(os.times()[:2]) - cpu, children() - store_cpu
store.close()
print(json.dumps({"added": report.added, "seconds": seconds, "workers": encoder.runtime.workers,
                  "cpu": cpu, "store_cpu": store_cpu}))
"""


def make_corpus(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)).save(folder / f"img{i:05d}.png")
        colour = ["red", "blue", "green"][i % 3]
        (folder / f"img{i:05d}.txt").write_text(f"picture {i}: a small {colour} square, variant {i % 17}")


def run(tree: Path, corpus: Path, db: Path, profile: str = "") -> dict:
    """One ingest in a fresh process; with ``profile``, sampled by py-spy (every thread) into that file."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    script = db.parent / "run_ingest.py"
    script.write_text(RUN)
    command = [sys.executable, str(script), str(corpus), str(db)]
    if profile:
        command = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--format",
            "raw",
            "--rate",
            "50",
            "--subprocesses",
            "--output",
            profile,
            "--",
            *command,
        ]
    out = subprocess.run(command, env=env, cwd=tree, check=True, capture_output=True, text=True).stdout
    return json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("{")))


#: Where a sample's stack says its time went, first match first: (words any frame holds, the phase).
_PHASES = (
    (("MilvusServicer.Query",), "store: queries (existing ids, older versions, counts)"),
    (("MilvusServicer.Upsert", "MilvusServicer.Insert"), "store: writes"),
    (("MilvusServicer.Flush", "Index", "LoadCollection", "_bg_"), "store: flush and indexing"),
    (("Preprocessor._one", "_prepare_group"), "preprocessing workers: decode and 224-px preparation"),
    (("open_sources", "iter_folder"), "reader: listing, reading files and sidecars, hashing"),
    (("Ledger.admit",), "reader: admission (validation, existing-id lookups)"),
    (("to_row",), "writer: building rows (with the LlamaIndex node copy)"),
    (("_prepare_row_upsert_request",), "writer: pymilvus packing the rows"),
    (("MilvusClient.upsert", "MilvusClient.insert"), "writer: the gRPC call"),
    (("Ledger.write",), "writer: the rest (BM25 weights, checks)"),
    (("encode_batch",), "caller: the free encoder"),
    (("_collect",), "caller: collecting prepared images"),
    (("Ledger.finish",), "end of the run: flush and indexing"),
    (("milvus_lite",), "Milvus Lite code in the ingesting process (all of the store in older trees)"),
)
#: Leaf frames of threads blocked on a queue, a lock or a poll, which py-spy may still count as active.
_WAITING = ("wait (threading", "_worker (concurrent/futures/thread.py:8", "_serve (grpc", "channel_spin", "get (queue")


def summarise(profile: Path, top: int = 25) -> None:
    """Where the samples went, every thread of both processes (the process's start, imports and hardware probe
    left out): the share of each phase of the pipeline, and of the functions running most."""
    phases: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the first names the process
        if not count.isdigit() or not frames or any("importlib" in f or "probe_hardware" in f for f in frames):
            continue
        phase = _phase(frames)
        phases[phase] = phases.get(phase, 0) + int(count)
        if not phase.startswith("waiting"):
            own[frames[-1]] = own.get(frames[-1], 0) + int(count)
    busy = sum(own.values())
    print(f"-- where the time went (% of {busy} samples of busy threads, both processes)")
    for phase, count in sorted(phases.items(), key=lambda pair: -pair[1]):
        print(f"{100 * count / busy:5.1f}%  {phase}")
    print(f"-- functions running (% of {busy} samples)")
    for frame, count in sorted(own.items(), key=lambda pair: -pair[1])[:top]:
        print(f"{100 * count / busy:5.1f}%  {frame[:150]}")


def _phase(frames: list[str]) -> str:
    if any(frames[-1].startswith(leaf) or leaf in frames[-1] for leaf in _WAITING):
        return "waiting (blocked threads py-spy counts as active; not in the shares)"
    server = frames[0].startswith("process ")
    for words, phase in _PHASES:
        if any(word in frame for frame in frames for word in words):
            return phase
    return "store: gRPC serving, the rest" if server else "ingesting process: the rest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="another source tree to compare with, run alternately (may be given more than once)",
    )
    parser.add_argument(
        "--profile", help="sample one run of this tree with py-spy into this file, and print where the time went"
    )
    args = parser.parse_args()
    from benchmarks.query import cpu_model

    trees = {"this tree": ROOT} | {f"baseline {path.name}": path.resolve() for path in args.baseline}
    with tempfile.TemporaryDirectory(prefix="rag-ingest-store-") as tmp:
        corpus = Path(tmp) / "corpus"
        make_corpus(corpus, args.items)
        if args.profile:
            print(run(ROOT, corpus, Path(tmp) / "profiled.db", str(Path(args.profile).resolve())))
            summarise(Path(args.profile))
            return
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for number in range(args.rounds):
            for name, tree in trees.items() if number % 2 == 0 else reversed(trees.items()):
                result = run(tree, corpus, Path(tmp) / f"{name.replace(' ', '-')}-{number}.db")
                assert result["added"] == args.items, result
                runs[name].append(result)
        print(
            f"cpu: {cpu_model()} (a shared machine); {args.items} 64x64 PNGs with captions, encoder free, "
            f"{args.rounds} rounds alternating"
        )
        rates = {name: [r["added"] / r["seconds"] for r in results] for name, results in runs.items()}
        for name, results in runs.items():
            rounds = ", ".join(f"{v:.0f}" for v in rates[name])
            print(
                f"  {name:18} median {statistics.median(rates[name]):7.0f} items/s  (rounds: {rounds}; "
                f"{results[0]['workers']} preprocessing workers); "
                f"CPU per item: ingesting process {_per_item(results, 'cpu')}, store process "
                f"{_per_item(results, 'store_cpu')}"
            )
        if len(trees) > 1:
            this = statistics.median(rates["this tree"])
            for name in list(trees)[1:]:
                print(f"  this tree ÷ {name}: {this / statistics.median(rates[name]):.2f}x")


def _per_item(results: list[dict], key: str) -> str:
    """Median CPU milliseconds per item of one process over the rounds (0 where the tree runs the store in
    the ingesting process)."""
    return f"{statistics.median(1000 * r[key] / r['added'] for r in results):.2f} ms"


if __name__ == "__main__":
    main()
