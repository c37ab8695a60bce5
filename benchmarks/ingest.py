"""Ingest pipeline throughput against the encoder alone on the same items, the Ray engine against the local
one, peak RSS against corpus size, and documents: reading and chunking against encoding the chunks.

    .venv/bin/python benchmarks/ingest.py [--items 32] [--dtype bfloat16] [--rss-sizes 200,2000]
        [--cases photos,engines,documents] [--engine-items 2000] [--engine-model tiny] [--cores 2]
        [--gpus-per-worker 1] [--workers N] [--cpus-per-worker F] [--pdf-pages 200] [--text-mb 2]

Throughput uses the full-size base model (random weights); the RSS runs use the tiny parity model
in fresh processes, so that what grows with the corpus is not hidden under the model's weights.
The engine comparison runs both engines on the same photos in one process, held to ``--cores`` CPUs, on a
local Ray started beforehand (as a running cluster would be), by default with the tiny model: what it
measures is the engine, not the model. Where a GPU exists, ``--engine-model full-size --gpus-per-worker 1``
puts the Ray engine's encoder on it (the local engine picks it by itself)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    FIXTURES,
    FULL_SIZE,
    ROOT,
    SAMPLE_IMAGES,
    build_full_size,
    cpu_name,
    load_full_size,
)
from connectors.milvus import EncoderInfo, MilvusStore  # noqa: E402
from connectors.sources import open_sources  # noqa: E402
from rag.embeddings import VisualizedBGE  # noqa: E402
from rag.ingest import ingest  # noqa: E402
from rag.settings import Settings  # noqa: E402


def make_corpus(folder: Path, n: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """n distinct JPEG photos (sample photos with per-item noise) with caption sidecars."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bases = [np.asarray(Image.open(p).convert("RGB").resize(size), dtype=np.int16) for p in SAMPLE_IMAGES]
    paths = []
    for i in range(n):
        noise = rng.integers(-12, 12, size=bases[0].shape, dtype=np.int16)
        pixels = np.clip(bases[i % len(bases)] + noise, 0, 255).astype(np.uint8)
        path = folder / f"photo{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        (folder / f"photo{i:05d}.txt").write_text(
            f"Photo {i}: a scene with a bridge, a carriage or shapes, variant {i % 17}."
        )
        paths.append(path)
    return paths


def throughput(n: int, dtype: str, batch_size: int) -> None:
    encoder, model_dir = load_full_size("base", dtype=dtype, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="rag-ingest-bench-") as tmp:
        paths = make_corpus(Path(tmp) / "corpus", n)
        texts = [p.with_suffix(".txt").read_text() for p in paths]
        alone = 0.0
        for _ in range(2):  # the first run also warms up kernels for these shapes; keep the better
            start = time.perf_counter()
            encoder.encode_fused_and_image(paths, texts)
            alone = max(alone, n / (time.perf_counter() - start))

        with MilvusStore.open(Path(tmp) / "db" / "milvus.db", "bench", encoder_info=EncoderInfo.of(encoder)) as store:
            report = ingest(open_sources([Path(tmp) / "corpus"]), encoder, store, batch_size=batch_size)
            assert report.added == n, report.summary()
            pipeline = report.items_per_second
    model_dir.cleanup()
    print(f"full-size base, {dtype}, batch {batch_size}, {n} photos 640x480 with captions (fused + image vectors)")
    print(f"  encoder alone      {alone:6.2f} items/s")
    print(f"  whole pipeline     {pipeline:6.2f} items/s  (decode + encode + Milvus Lite write)")
    print(f"  pipeline / encoder {pipeline / alone:6.0%}")


def engines(
    n: int, model: str, dtype: str, batch_size: int, cores: int | None, ray_options: dict, rounds: int = 2
) -> None:
    """The Ray engine against the local one on the same photos, in alternating rounds (the best of each kept):
    items/s from the encoder's loading to the last write, within the ingest call, and once an encoder was ready.

    ``cores``: this process, the local engine's workers and the local Ray are held to that many CPUs."""
    import ray

    from rag.ingest import ray_engine

    allowed = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, sorted(allowed)[:cores])  # inherited by the local Ray's processes
    used = len(os.sched_getaffinity(0))
    cpu_model = cpu_name()
    ray.init(num_cpus=used, include_dashboard=False, logging_level="WARNING")
    # A running cluster has Ray Data's own detached actors (statistics, autoscaling requests) already: start them.
    ray.data.range(1).map_batches(_Identity, compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    with tempfile.TemporaryDirectory(prefix="rag-engines-bench-") as tmp:
        root = Path(tmp)
        files = _model_files(model, root)
        make_corpus(root / "corpus", n)
        settings = Settings(**files, dtype=dtype, batch_size=batch_size)
        options = ray_engine.RayOptions(**ray_options)
        best: dict[str, tuple[float, float, float]] = {}
        for round_ in range(rounds):
            for engine in ("local", "ray"):
                start = time.perf_counter()
                if engine == "local":
                    encoder = VisualizedBGE.from_pretrained(**files, dtype=dtype, batch_size=batch_size)
                else:  # what `rag ingest --engine ray` loads on the driver: the fingerprint and the image transform
                    encoder = VisualizedBGE.from_pretrained(**files, device="cpu", dtype="float32")
                collection = f"{engine}{round_}"
                with MilvusStore.open(
                    root / "db" / "milvus.db", collection, encoder_info=EncoderInfo.of(encoder)
                ) as store:
                    items = open_sources([root / "corpus"])
                    if engine == "local":
                        report = ingest(items, encoder, store)
                    else:
                        report = ray_engine.ingest(
                            items, settings, store, image_transform=encoder.image_transform, options=options
                        )
                assert report.added == n, report.summary()
                encoder.close()
                measured = (n / (time.perf_counter() - start), report.items_per_second, report.warm_items_per_second)
                best[engine] = max(best.get(engine, measured), measured)
    ray.shutdown()
    os.sched_setaffinity(0, allowed)
    per_worker = ray_options["gpus_per_worker"]
    gpus = f", Ray encoder on {per_worker:g} GPU per worker" if per_worker else ""
    print(
        f"engines: {model} base, {dtype}, batch {batch_size}, {n} photos 640x480{gpus}, {used} cores, best of "
        f"{rounds} alternating rounds; CPU {cpu_model}"
    )
    print(f"  {'':6} {'with model loading':>20} {'ingest call':>12} {'encoder ready':>14}  (items/s)")
    for engine, (whole, call, warm) in best.items():
        print(f"  {engine:6} {whole:20.2f} {call:12.2f} {warm:14.2f}")
    ratios = [best["ray"][i] / best["local"][i] for i in range(3)]
    print(
        f"  ray / local: {ratios[0]:.2f} with model loading, {ratios[1]:.2f} per ingest call, "
        f"{ratios[2]:.2f} once an encoder is ready"
    )


def _model_files(model: str, root: Path) -> dict[str, str]:
    """The files of the tiny test model, or of a full-size base one written under ``root``: Settings' fields."""
    if model == "tiny":
        tiny = FIXTURES / "base"
        weights, text_dir, vision = tiny / "weights.pth", tiny / "text_model", tiny / "vision_config.json"
    else:
        weights, text_dir = build_full_size("base", root)
        vision = root / "vision_config.json"
        vision.write_text(FULL_SIZE["base"][1].model_dump_json())
    return {"weights": str(weights), "text_model": str(text_dir), "vision_config": str(vision)}


class _Identity:
    def __call__(self, batch: dict) -> dict:
        return batch


RSS_CHILD = """
import json, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from benchmarks.ingest import make_corpus
from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import open_sources
from rag.ingest import ingest
from tests.conftest import load_tiny

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

tmp, n = Path(sys.argv[1]), int(sys.argv[2])
make_corpus(tmp / "corpus", n, size=(320, 240))
encoder = load_tiny("base", batch_size=16)
with MilvusStore.open(tmp / "db" / "milvus.db", "rss", encoder_info=EncoderInfo.of(encoder)) as store:
    baseline, peak, running = rss_mb(), [0.0], True
    def sample():
        while running:
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    report = ingest(open_sources([tmp / "corpus"]), encoder, store, batch_size=16)
    running = False
    sampler.join()
measured = {"items": report.added, "baseline_mb": baseline, "peak_mb": peak[0], "items_per_s": report.items_per_second}
print(json.dumps(measured))
"""


def peak_rss(sizes: list[int]) -> None:
    print("memory of an ingest run (tiny model, fresh process per size, RSS sampled every 20 ms):")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="rag-rss-") as tmp:
            out = subprocess.run(
                [sys.executable, "-c", RSS_CHILD, tmp, str(n), str(ROOT)], capture_output=True, text=True, check=True
            )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"  {result['items']:6d} items: RSS {result['baseline_mb']:6.0f} MB before ingesting, peak "
            f"{result['peak_mb']:6.0f} MB during ({result['peak_mb'] - result['baseline_mb']:+.0f} MB), "
            f"{result['items_per_s']:.0f} items/s"
        )


def documents(pages: int, text_mb: float, dtype: str, batch_size: int, sample: int = 32, rounds: int = 2) -> None:
    """Documents: chunks/s of reading and chunking alone (PDF pages rendered beforehand and timed apart) against
    the full-size model's rate on those chunks, in alternating rounds (the best of each kept), and whole ingests
    with the tiny and the full-size model."""
    from benchmarks.documents import make_documents
    from tests.conftest import load_tiny

    cpu_model = cpu_name()
    full, model_dir = load_full_size("base", dtype=dtype, batch_size=batch_size)
    tiny = load_tiny("base", batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="rag-docs-bench-") as tmp:
        root = Path(tmp)
        corpus = make_documents(root / "docs", pages, int(text_mb * 1e6))
        options = {"cache_dir": root / "cache", "text_window": full.text_window, "pdf_figures": False}
        start = time.perf_counter()
        first = list(open_sources([corpus], **options))  # renders the PDF's pages into the cache
        with_rendering = time.perf_counter() - start
        chunks = [item.text for item in first if getattr(item, "image", True) is None]
        sample_texts = chunks[:: max(1, len(chunks) // sample)][:sample]
        full.encode_text(sample_texts[:batch_size])  # warm-up
        reading, encoding = float("inf"), 0.0
        for _ in range(rounds):  # alternating, the load of a shared machine moves
            start = time.perf_counter()
            again = list(open_sources([corpus], **options))  # the pages are read back from the cache
            reading = min(reading, time.perf_counter() - start)
            assert len(again) == len(first)
            start = time.perf_counter()
            full.encode_text(sample_texts)
            encoding = max(encoding, len(sample_texts) / (time.perf_counter() - start))
        with_rendering -= reading
        read_rate = len(chunks) / reading
        print(
            f"documents: {pages} PDF pages + {text_mb:g} MB of Markdown and TXT, {len(chunks)} text chunks of at most "
            f"{full.text_window.window} tokens; full-size base {dtype}, batch {batch_size}; CPU {cpu_model}"
        )
        print(f"  reading + chunking       {read_rate:9.1f} chunks/s  ({reading:.2f} s, pages from the cache)")
        print(f"  rendering {pages} pages    {with_rendering:9.2f} s (the first read, less a read from the cache)")
        print(f"  full-size text encoding  {encoding:9.1f} chunks/s  ({len(sample_texts)} chunks sampled)")
        print(f"  reading / encoding       {read_rate / encoding:9.0f}x  (best of {rounds} alternating rounds each)")
        small = make_documents(root / "small", max(2, pages // 20), int(text_mb * 1e6 / 40))
        for name, encoder in (("tiny", tiny), ("full-size", full)):
            db = root / f"{name}.db"
            with MilvusStore.open(db, "docs", encoder_info=EncoderInfo.of(encoder)) as store:
                target = corpus if name == "tiny" else small
                report = ingest(open_sources([target], **options), encoder, store, batch_size=batch_size)
            print(
                f"  whole ingest, {name:9} {report.items_per_second:9.1f} items/s  ({report.added} items of "
                f"{'the corpus' if name == 'tiny' else 'a 1/20 sample'}: pages, chunks)"
            )
    model_dir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rss-sizes", default="200,2000")
    parser.add_argument("--engine-items", type=int, default=2000, help="photos of the Ray/local comparison")
    parser.add_argument("--engine-model", default="tiny", choices=["tiny", "full-size"])
    parser.add_argument("--engine-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--cores", type=int, default=2, help="CPUs the engine comparison is held to; 0: all")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--cpus-per-worker", type=float)
    parser.add_argument(
        "--cases",
        default="photos,engines,documents",
        help="photos: throughput and RSS; engines: Ray against local; documents",
    )
    parser.add_argument("--pdf-pages", type=int, default=200)
    parser.add_argument("--text-mb", type=float, default=2.0)
    args = parser.parse_args()
    cases = args.cases.split(",")
    if "photos" in cases:
        throughput(args.items, args.dtype, args.batch_size)
        peak_rss([int(s) for s in args.rss_sizes.split(",")])
    if "documents" in cases:
        documents(args.pdf_pages, args.text_mb, args.dtype, args.batch_size)
    if "engines" in cases:
        ray_options = {
            "gpus_per_worker": args.gpus_per_worker,
            "workers": args.workers,
            "cpus_per_worker": args.cpus_per_worker,
        }
        engines(
            args.engine_items, args.engine_model, args.engine_dtype, args.batch_size, args.cores or None, ray_options
        )


if __name__ == "__main__":
    main()
