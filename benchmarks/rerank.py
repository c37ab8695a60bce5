"""The cross-encoder reranker at full size (a BERT-base classifier, the compute of bge-reranker-base, random
weights): milliseconds to rerank 10, 50 and 100 candidates of about 200 tokens in float32 and bfloat16, the
share of this machine's matmul peak it reaches, and the extra p50 of POST /api/search with the reranker on
(50 candidates) over a Lite collection, measured side by side in one run.

    .venv/bin/python benchmarks/rerank.py [--counts 10 50 100] [--bf16-counts 10] [--queries 15]

Each count is timed once after a warm-up (a full-size pass of 100 pairs takes minutes on a small CPU). bfloat16 is
timed on fewer candidates where the CPU has no bf16 units (torch emulates it, far slower).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name, latencies, matmul_gflops, p50  # noqa: E402
from rag.embeddings.cross_encoder import CrossEncoder  # noqa: E402
from rag.runtime import Runtime, probe_hardware  # noqa: E402

TOKENIZER = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "parity" / "base" / "text_model"
WORDS = "the red bridge river night cat sofa whale logo photo camera blue dark sitting spanning highland".split()
QUERY = "which red bridge spans the river at night"


def passages(count: int, tokens: int = 190, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=tokens)) for _ in range(count)]


def full_size(folder: Path | None = None) -> tuple[BertForSequenceClassification, object]:
    """A BERT-base sequence classifier with one label (12 layers, 768 wide) and the fixtures' tokenizer."""
    config = BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        num_labels=1,
        architectures=["BertForSequenceClassification"],
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    if folder is not None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return model, tokenizer


def kernel_times(counts: list[int], bf16_counts: list[int], peaks: dict[str, float], bf16_native: bool) -> None:
    model, tokenizer = full_size()
    print(f"{'dtype':9} {'candidates':>10} {'ms':>9} {'ms/pair':>8} {'GFLOP/pair':>10} {'GFLOP/s':>8} {'of peak':>8}")
    for dtype, wanted in (("float32", counts), ("bfloat16", bf16_counts)):
        runtime = Runtime(device="cpu", dtype=dtype, batch_size=16, workers=1)
        encoder = CrossEncoder(model, tokenizer, name="bert-base-random", runtime=runtime)
        with FlopCounterMode(display=False) as counter:  # also the warm-up
            encoder.score(QUERY, passages(1))
        gflop = counter.get_total_flops() / 1e9
        for count in wanted:
            texts = passages(count)
            start = time.perf_counter()
            encoder.score(QUERY, texts)
            seconds = time.perf_counter() - start
            rate = gflop * count / seconds
            print(
                f"{dtype:9} {count:10d} {seconds * 1000:9.0f} {seconds * 1000 / count:8.1f} {gflop:10.1f} "
                f"{rate:8.0f} {rate / peaks[dtype]:8.0%}"
            )
    if not bf16_native:
        print("  bfloat16: this CPU has no native bf16 matrix units (torch emulates it): not a deployment choice here")


def search_latency(queries: int) -> None:
    """p50 of POST /api/search (top_k 10) without and with the reranker on 50 candidates, same collection."""
    from fastapi.testclient import TestClient

    from benchmarks.query import fill
    from connectors.milvus import EncoderInfo, MilvusStore
    from rag.embeddings import VisualizedBGE
    from rag.server import create_app
    from rag.settings import Settings

    tiny = TOKENIZER.parent
    encoder = VisualizedBGE.from_pretrained(
        tiny / "weights.pth",
        tiny / "text_model",
        vision_config=tiny / "vision_config.json",
        device="cpu",
        dtype="float32",
    )
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "reranker"
        full_size(folder)
        db = str(Path(work) / "milvus.db")
        with MilvusStore.open(db, "bench", encoder_info=EncoderInfo.of(encoder)) as store:
            fill(store, 2000, encoder.dim, 500)
        base = Settings(milvus_uri=db, collection="bench", data_dir=Path(work) / "data", device="cpu")
        p50s = {}
        for label, settings in (("off", base), ("on", base.model_copy(update={"reranker": str(folder)}))):
            with TestClient(create_app(settings, encoder=encoder)) as client:
                body = {"text": QUERY, "top_k": 10, "rerank_candidates": 50}
                if label == "off":
                    body.pop("rerank_candidates")
                assert client.post("/api/search", json=body).status_code == 200
                p50s[label] = p50(latencies(lambda body=body: client.post("/api/search", json=body), queries))
        print(
            f"POST /api/search top_k 10 (tiny encoder, 2,000 items on Lite): p50 {p50s['off'] * 1000:.0f} ms "
            f"without the reranker, {p50s['on'] * 1000:.0f} ms with it on 50 candidates (8-word captions) "
            f"(+{(p50s['on'] - p50s['off']) * 1000:.0f} ms)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument(
        "--bf16-counts", type=int, nargs="+", default=None, help="default: --counts on bf16 CPUs, else 1"
    )
    parser.add_argument("--queries", type=int, default=15)
    args = parser.parse_args()
    native, why = probe_hardware().cpu_bf16_native
    bf16_counts = args.bf16_counts or (args.counts if native else [1])
    peaks = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    print(
        f"{cpu_name()}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; bf16 native: {native} ({why})"
    )
    print(f"matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.0f} GFLOP/s")
    started = time.perf_counter()
    kernel_times(args.counts, bf16_counts, peaks, native)
    search_latency(args.queries)
    print(f"({time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
