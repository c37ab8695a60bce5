"""Encoder throughput at full size (random weights): text, image and fused items per second,
fp32 and bf16, batched against one item per call, and the share of this machine's matmul rate.

    .venv/bin/python benchmarks/encode.py [--variant base] [--items 16]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SAMPLE_IMAGES, latencies, load_full_size, matmul_gflops, p50, timed  # noqa: E402

CAPTIONS = [
    "A suspension bridge over a wide river at dusk, seen from the eastern bank.",
    "Close-up of a red dress with a floral print on a white background.",
    "Two cats sleeping on a sofa next to a window.",
    "Diagram of the water cycle with arrows for evaporation and rain.",
    "A bowl of ramen with egg, spring onions and sliced pork.",
]


def flops_per_item(encoder, mode: str) -> float:
    with FlopCounterMode(display=False) as counter:
        run(encoder, mode, 1)
    return counter.get_total_flops()


def run(encoder, mode: str, n: int, start: int = 0):
    """Encode ``n`` inputs, the ``start``-th onwards of the captions and images repeated in turn."""
    texts = list(itertools.islice(itertools.cycle(CAPTIONS), start, start + n))
    images = list(itertools.islice(itertools.cycle(SAMPLE_IMAGES), start, start + n))
    if mode == "text":
        return encoder.encode_text(texts)
    if mode == "image":
        return encoder.encode_image(images)
    return encoder.encode_fused(images, texts)


def run_singles(encoder, mode: str, n: int) -> list:
    """Encode ``n`` inputs one call each."""
    return [run(encoder, mode, 1, start=i) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="base", choices=["base", "m3"])
    parser.add_argument("--items", type=int, default=16, help="items per batched run (texts get 4x)")
    args = parser.parse_args()

    peaks = {"float32": matmul_gflops(torch.float32), "bfloat16": matmul_gflops(torch.bfloat16)}
    print(
        f"threads={torch.get_num_threads()}  matmul peak: fp32 {peaks['float32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bfloat16']:.0f} GFLOP/s (ratio {peaks['bfloat16'] / peaks['float32']:.2f})"
    )

    rates: dict[tuple[str, str, str], float] = {}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    header = (
        f"{'mode':6} {'dtype':9} {'batched/s':>10} {'single/s':>9} {'ratio':>6} {'GFLOP/item':>10} "
        f"{'GFLOP/s':>8} {'of peak':>8} {'cos fp32':>9}"
    )
    print(header)
    for dtype in ("float32", "bfloat16"):
        encoder, tmp = load_full_size(args.variant, dtype=dtype, batch_size=args.items)
        for mode in ("text", "image", "fused"):
            n = args.items * (4 if mode == "text" else 1)
            singles = max(2, n // 4)
            batched = n / timed(partial(run, encoder, mode, n))
            vectors[(mode, dtype)] = run(encoder, mode, n)
            agreement = (vectors[(mode, dtype)] * vectors[(mode, "float32")]).sum(axis=1).min()
            single = singles / timed(partial(run_singles, encoder, mode, singles))  # each its own call
            gflop = flops_per_item(encoder, mode) / 1e9
            rates[(mode, dtype, "batched")], rates[(mode, dtype, "single")] = batched, single
            achieved = batched * gflop
            print(
                f"{mode:6} {dtype:9} {batched:10.2f} {single:9.2f} {batched / single:6.2f} {gflop:10.1f} "
                f"{achieved:8.0f} {achieved / peaks[dtype]:8.0%} {agreement:9.5f}"
            )
        query = latencies(partial(encoder.encode_text, ["a red dress with flowers"]), 30)
        print(f"{'':6} {dtype:9} single text query p50 {p50(query) * 1000:.1f} ms")
        tmp.cleanup()

    base = rates[("fused", "float32", "single")]
    print(
        f"fused: bf16 batched / fp32 one-at-a-time = {rates[('fused', 'bfloat16', 'batched')] / base:.2f}x; "
        f"fp32 batched / fp32 one-at-a-time = {rates[('fused', 'float32', 'batched')] / base:.2f}x"
    )


if __name__ == "__main__":
    main()
