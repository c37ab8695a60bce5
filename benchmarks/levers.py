"""Speed levers for CPU encoding, each measured side by side on the same fused items (full base size,
random weights), with each lever's cosine similarity to the fp32 vectors.

    .venv/bin/python benchmarks/levers.py [--items 8]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SAMPLE_IMAGES, load_full_size, matmul_gflops  # noqa: E402
from benchmarks.encode import CAPTIONS  # noqa: E402

FUSED_GFLOP = 75.9  # per fused item at base size, counted by benchmarks/encode.py


def measure(encoder, n: int, context: Callable[[], ContextManager] = contextlib.nullcontext) -> tuple[float, np.ndarray]:
    images = list(itertools.islice(itertools.cycle(SAMPLE_IMAGES), n))
    texts = list(itertools.islice(itertools.cycle(CAPTIONS), n))
    pixels = encoder.preprocess(images)  # decoding is not what these levers change
    rows = list(pixels)
    with context():
        encoder.encode_fused(rows, texts)  # warm-up at the measured shapes (torch.compile specialises on them)
        start = time.perf_counter()
        out = encoder.encode_fused(rows, texts)
    return n / (time.perf_counter() - start), out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=8)
    args = parser.parse_args()
    n = args.items
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"matmul peak fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; {n} fused items per run")
    print(f"{'lever':42} {'items/s':>8} {'vs fp32':>8} {'of peak':>8} {'min cos':>8}")

    def row(name: str, rate: float, out: np.ndarray, ref: np.ndarray, base: float, peak_key: str) -> None:
        print(f"{name:42} {rate:8.2f} {rate / base:8.2f} {rate * FUSED_GFLOP / peak[peak_key]:8.0%} {cosine(out, ref):8.5f}")

    fp32, tmp = load_full_size("base", dtype="float32", batch_size=n)
    base, ref = measure(fp32, n)
    row("fp32, batched", base, ref, ref, base, "fp32")
    fp32.runtime = fp32.runtime.with_batch_size(1)
    rate, out = measure(fp32, n)
    row("fp32, one item per forward", rate, out, ref, base, "fp32")
    fp32.runtime = fp32.runtime.with_batch_size(n)
    torch.set_num_threads(1)
    rate, out = measure(fp32, n)
    row("fp32, batched, 1 thread", rate, out, ref, base, "fp32")
    torch.set_num_threads(2)
    rate, out = measure(fp32, n, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    row("bf16 autocast (fp32 weights)", rate, out, ref, base, "bf16")

    quantized = torch.ao.quantization.quantize_dynamic(fp32.model, {torch.nn.Linear}, dtype=torch.qint8)
    fp32.model = quantized
    rate, out = measure(fp32, n)
    row("int8 dynamic quantisation of Linear", rate, out, ref, base, "bf16")
    tmp.cleanup()

    bf16, tmp = load_full_size("base", dtype="bfloat16", batch_size=n)
    rate, out = measure(bf16, n)
    row("bf16 weights, batched (dtype='bfloat16')", rate, out, ref, base, "bf16")
    for size in (2, 4):
        bf16.runtime = bf16.runtime.with_batch_size(size)
        rate, out = measure(bf16, n)
        row(f"bf16 weights, batch {size}", rate, out, ref, base, "bf16")
    bf16.runtime = bf16.runtime.with_batch_size(n)
    # The heavy parts: the vision tower and the text transformer.
    bf16.model.model_visual.visual = torch.compile(bf16.model.model_visual.visual)
    bf16.model.bge_encoder = torch.compile(bf16.model.bge_encoder)
    start = time.perf_counter()
    rate, out = measure(bf16, n)
    row(f"bf16 + torch.compile (compile {time.perf_counter() - start:.0f}s)", rate, out, ref, base, "bf16")
    tmp.cleanup()


if __name__ == "__main__":
    main()
