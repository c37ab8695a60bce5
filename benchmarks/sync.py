"""Keeping a collection in step with a folder: ``--prune`` against a plain re-ingest, renames, and ``--watch`` latency.

The encoder costs nothing (random unit vectors at once; images still decoded and prepared by the preprocessing
workers), so what is timed is reading, hashing, the store's lookups and writes, and the sync's own work. On a
folder of small PNGs with captions, in one process, one after another on the same Milvus Lite store:

1. a plain re-ingest of the unchanged folder (adds nothing) and a ``--prune`` of it: their ratio (the issue asks
   at most 1.5x) and what the prune encoded (0);
2. the same two at a third of the size, so the growth with the collection is seen;
3. 10% of the files deleted, 10% renamed and 10% with a new caption, then a prune: what it encoded (the changed
   10%), and its time;
4. ``--watch``: a file written while watching, to its item being found in the store: p50 and max over a few files.

    .venv/bin/python benchmarks/sync.py [--items 3000] [--watched 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import cpu_name
from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, open_sources
from rag.embeddings.preprocess import Preprocessor
from rag.embeddings.visualized_bge.preprocessing import VisualizedBGETransform
from rag.ingest import IngestReport, ingest
from rag.ingest.sync import Pruning
from rag.ingest.watch import Watcher
from rag.runtime import resolve_runtime


class FreeEncoder:
    """Random unit vectors at once, behind the encoder protocol the pipeline uses."""

    name = fingerprint = "free-768"
    dim = 768
    supports_fused = True

    def __init__(self) -> None:
        self.runtime = resolve_runtime("cpu", "float32", purpose="batch")
        self.preprocessor = Preprocessor(VisualizedBGETransform(224), self.runtime.workers, processes=False)
        self._rng = np.random.default_rng(0)

    def _unit(self, n: int) -> np.ndarray:
        vectors = self._rng.standard_normal((n, self.dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._unit(len(texts))

    def encode_fused_and_image(self, images: list, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self._unit(len(texts)), self._unit(len(texts))


def make_folder(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + n):
        Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(folder / f"img{i:05d}.png")
        (folder / f"img{i:05d}.txt").write_text(f"picture {i}: a small square, variant {i % 17}")


def timed(action: Callable[[], IngestReport]) -> tuple[float, IngestReport]:
    start = time.perf_counter()
    report = action()
    return time.perf_counter() - start, report


def plain(folder: Path, encoder: FreeEncoder, store: MilvusStore) -> IngestReport:
    return ingest(open_sources([folder], decode_check=False), encoder, store)  # type: ignore[arg-type]


def pruned(folder: Path, encoder: FreeEncoder, store: MilvusStore) -> IngestReport:
    pruning = Pruning(store, [folder], yes=True)
    results = pruning.watch(open_sources([folder], decode_check=False))
    report = ingest(results, encoder, store, donors=pruning.donors(store))  # type: ignore[arg-type]
    pruning.finish(store, report)
    return report


def unchanged(folder: Path, encoder: FreeEncoder, store: MilvusStore) -> dict[str, float]:
    """A plain re-ingest and a prune of the unchanged folder, alternated twice (the machine's load shared)."""
    plains, prunes, encoded = [], [], 0
    for _ in range(2):
        seconds, report = timed(lambda: plain(folder, encoder, store))
        assert report.added == 0, report.summary()
        plains.append(seconds)
        seconds, report = timed(lambda: pruned(folder, encoder, store))
        assert report.removed == 0, report.summary()
        prunes.append(seconds)
        encoded += report.encoded
    return {"plain": min(plains), "prune": min(prunes), "encoded": encoded}


def watch_latency(folder: Path, encoder: FreeEncoder, store: MilvusStore, files: int) -> list[float]:
    """Seconds from a file written to its item in the store, one file at a time while watching."""
    watcher = Watcher([folder], encoder, store, SourceOptions(decode_check=False))  # type: ignore[arg-type]
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, None, ready.set), daemon=True)
    thread.start()
    ready.wait(60)
    latencies = []
    with MilvusStore.open(store.uri, store.collection, create=False) as reader:  # as `rag serve` would see it
        for i in range(files):
            source = folder / f"watched{i}.png"
            start = time.perf_counter()
            Image.fromarray(np.full((32, 32, 3), i * 20, dtype=np.uint8)).save(source)
            while not reader.count({"source": str(source)}):
                time.sleep(0.05)
            latencies.append(time.perf_counter() - start)
            time.sleep(1.5)  # the next file in a batch of its own
    stop.set()
    thread.join(timeout=60)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--watched", type=int, default=8)
    args = parser.parse_args()
    encoder = FreeEncoder()
    info = EncoderInfo(variant="free", dim=768, fingerprint="free-768")
    with tempfile.TemporaryDirectory(prefix="rag-sync-bench-") as tmp:
        root = Path(tmp)
        rows = []
        for n, name in ((args.items // 3, "small"), (args.items, "full")):
            folder = root / name
            make_folder(folder, n)
            with MilvusStore.open(root / "db" / "milvus.db", name, encoder_info=info) as store:
                plain(folder, encoder, store)
                rows.append((n, unchanged(folder, encoder, store)))
        print(f"cpu: {cpu_name()}, shared machine, load {os.getloadavg()[0]:.1f}; files with captions, encoder free")
        for n, row in rows:
            print(
                f"{n:>6} files unchanged: plain re-ingest {row['plain']:.2f} s, --prune {row['prune']:.2f} s "
                f"({row['prune'] / row['plain']:.2f}x), encoded {row['encoded']}"
            )

        folder, tenth = root / "full", args.items // 10
        with MilvusStore.open(root / "db" / "milvus.db", "full", encoder_info=info) as store:
            for i in range(tenth):
                for suffix in (".png", ".txt"):
                    (folder / f"img{i:05d}{suffix}").unlink()
                    os.rename(folder / f"img{i + tenth:05d}{suffix}", folder / f"moved{i:05d}{suffix}")
                (folder / f"img{i + 2 * tenth:05d}.txt").write_text(f"a new caption {i}")
            seconds, report = timed(lambda: pruned(folder, encoder, store))
            print(
                f"10% deleted, 10% renamed, 10% changed of {args.items}: --prune {seconds:.2f} s, encoded "
                f"{report.encoded} (changed: {tenth}), added {report.added}, replaced {report.replaced}, "
                f"removed {report.removed}"
            )
            latencies = watch_latency(folder, encoder, store, args.watched)
        print(
            f"--watch, a file written to its item searchable: p50 {statistics.median(latencies):.2f} s, "
            f"max {max(latencies):.2f} s over {len(latencies)} files ({args.items} in the collection)"
        )


if __name__ == "__main__":
    main()
