"""Speed levers for CPU encoding of what ingestion computes (a fused and an image-only vector per item; full base
size, random weights), measured side by side: the levers take turns round after round, each keeps its best round,
and this machine's matmul peak (bf16 and fp32) is measured in the same rounds.

    .venv/bin/python benchmarks/levers.py [--items 8] [--rounds 2] [--only NAME,...] [--profile] [--int8]
                                          [--compile [all]] [--photo 640x480]

Each lever's GFLOP per item are counted from the computation it actually performs (``FlopCounterMode``), so its
share of the peak is honest: sharing one vision pass between the two vectors does fewer FLOPs than the
reference's two calls, and one padded BERT batch does more. "vs default" compares items/s with the first lever
(what ``rag ingest`` runs on a bf16 CPU, on ready pixels); cosines are the lowest over items, fused and image-only,
to the fp32 batched vectors of the same inputs. Levers on "files" read JPEGs: decoding and resizing run on
worker threads that share the cores with torch's threads. ``--profile`` adds where the default lever's time
goes, by kind of op.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SAMPLE_IMAGES, cpu_name, load_full_size, matmul_gflops  # noqa: E402
from benchmarks.encode import CAPTIONS  # noqa: E402
from benchmarks.ingest import make_corpus  # noqa: E402
from benchmarks.profile_ops import products_ceiling  # noqa: E402
from rag.embeddings.preprocess import Preprocessor  # noqa: E402
from rag.embeddings.visualized_bge.vision import VisionBlock, VisionRotaryEmbedding  # noqa: E402
from rag.runtime import resolve_runtime  # noqa: E402

Vectors = tuple[np.ndarray, np.ndarray]


@dataclass
class Lever:
    name: str
    peak: str  # "fp32" or "bf16": the matrix-product rate its products run at
    run: Callable[[], Vectors]
    flops: float = float("nan")  # per item, as performed
    best: float = 0.0  # items/s
    cosine: float = float("nan")
    note: str = ""


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, then put back as they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def swapped(obj: object, attribute: str, value: object) -> Iterator[None]:
    before = getattr(obj, attribute)
    setattr(obj, attribute, value)
    try:
        yield
    finally:
        setattr(obj, attribute, before)


def within(context: Callable[[], AbstractContextManager], function: Callable[[], Vectors]) -> Callable[[], Vectors]:
    def run() -> Vectors:
        with context():
            return function()

    return run


@contextlib.contextmanager
def regional_compile(model: torch.nn.Module) -> Iterator[None]:
    """Each transformer block through ``torch.compile`` (inductor, static shapes) for the block, then eager again.
    The blocks of a tower run the same code, so they share their graphs: it compiles in about the time of one
    block per tower and input shape, where compiling the whole model inlines all 24 layers."""
    kinds = (VisionBlock, type(model.bge_encoder.layer[0]))
    blocks = [module for module in model.modules() if isinstance(module, kinds)]
    for block in blocks:
        if not hasattr(block, "regional"):
            block.compile(dynamic=False)
            block.regional = block._compiled_call_impl
        block._compiled_call_impl = block.regional
    try:
        yield
    finally:
        for block in blocks:
            block._compiled_call_impl = None


def one_bert_batch(model) -> Callable[..., torch.Tensor]:
    """``embed_fused_and_image`` with the fused and the image-only text passes as one batch (blank rows padded)."""

    def embed(pixels, ids, mask, blank_ids, blank_mask) -> torch.Tensor:
        image = model.image_tokens(pixels)
        rows = ids.shape[0]
        padded_ids, padded_mask = torch.zeros_like(ids), torch.zeros_like(mask)  # 0 is BERT's pad id
        padded_ids[:, : blank_ids.shape[1]] = blank_ids
        padded_mask[:, : blank_mask.shape[1]] = blank_mask
        both = model.embed_fused(
            None, torch.cat((ids, padded_ids)), torch.cat((mask, padded_mask)), image_tokens=torch.cat((image, image))
        )
        return torch.cat((both[:rows], both[rows:]), dim=1)

    return embed


def rope_before(rope, x: torch.Tensor) -> torch.Tensor:
    """The vision rope as it was before issue 19 (kept here to compare): patches sliced off the class token,
    rotated through negate and stack, and concatenated back."""
    patches = x[..., 1:, :]
    pairs = patches.unflatten(-1, (-1, 2))
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return torch.cat((x[..., :1, :], patches * rope.freqs_cos + rotated * rope.freqs_sin), dim=-2)


def cosine(a: Vectors, b: Vectors) -> float:
    def low(x: np.ndarray, y: np.ndarray) -> float:
        return float(((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))).min())

    return min(low(a[0], b[0]), low(a[1], b[1]))


class Setup:
    """The encoders (fp32, and bf16 where it is native; batch = all items), the inputs, and the levers over them."""

    def __init__(self, n: int, folder: Path, photo: tuple[int, int]):
        self.images = list(itertools.islice(itertools.cycle(SAMPLE_IMAGES), n))
        self.texts = list(itertools.islice(itertools.cycle(CAPTIONS), n))
        self.files = make_corpus(folder, n, photo)
        self.runtime = resolve_runtime()  # what `rag ingest` would run here: its dtype, threads and workers
        self.fp32, self._tmp32 = load_full_size("base", dtype="float32", batch_size=n)
        self.bf16 = None
        if self.runtime.dtype == "bfloat16":
            self.bf16, self._tmp16 = load_full_size("base", dtype="bfloat16", batch_size=n)
        self.auto = self.bf16 or self.fp32
        self.label = "bf16" if self.bf16 else "fp32"
        self.prepared = list(self.auto.prepare(self.images))
        self.cores = torch.get_num_threads()
        self._references: dict[str, Vectors] = {}

    def both(self, encoder, inputs=None) -> Vectors:
        return encoder.encode_fused_and_image(self.prepared if inputs is None else inputs, self.texts)

    def reference(self, lever: Lever) -> Vectors:
        """The fp32 batched vectors of the lever's inputs (the photos as files, or the sample images)."""
        key = "files" if lever.name.startswith("files") else "prepared"
        if key not in self._references:
            self._references[key] = self.both(self.fp32, self.files if key == "files" else None)
        return self._references[key]

    def reference_loop(self, inputs) -> Vectors:
        """The reference's way: one item per forward, a fused call and an image-only call (two vision passes)."""
        fp32 = self.fp32
        with swapped(fp32, "runtime", fp32.runtime.with_batch_size(1)):
            pairs = zip(inputs, self.texts, strict=True)
            rows = [(fp32.encode_fused([i], [t]), fp32.encode_image([i])) for i, t in pairs]
        return np.concatenate([f for f, _ in rows]), np.concatenate([g for _, g in rows])

    def batch(self, size: int) -> Vectors:
        with swapped(self.auto, "runtime", self.auto.runtime.with_batch_size(size)):
            return self.both(self.auto)

    def split(self, torch_threads: int, workers: int) -> Vectors:
        """From JPEG files, with ``torch_threads`` intra-op threads and ``workers`` preprocessing threads, in batches
        of a quarter of the items (at most 16, the default on CPUs), so that decoding overlaps encoding as in an
        ingest."""
        pool = Preprocessor(self.auto.image_transform, workers)
        batches = self.auto.runtime.with_batch_size(max(1, min(16, len(self.files) // 4)))
        try:
            with (
                threads(torch_threads),
                swapped(self.auto, "preprocessor", pool),
                swapped(self.auto, "runtime", batches),
            ):
                return self.both(self.auto, self.files)
        finally:
            pool.close()

    def splits(self) -> list[Lever]:
        """The 2 (or n) cores shared between torch's threads and the preprocessing threads, from files."""
        cores, label, chosen = self.cores, self.label, self.runtime
        pairs = {(cores, cores), (cores, 1), (max(1, cores - 1), 1), (1, 1), (chosen.threads or cores, chosen.workers)}
        return [
            Lever(
                f"files: {t} torch thread{'s' * (t > 1)} + {w} worker{'s' * (w > 1)}"
                + (" (runtime's choice)" if (t, w) == (chosen.threads or cores, chosen.workers) else ""),
                label,
                lambda t=t, w=w: self.split(t, w),
            )
            for t, w in sorted(pairs, reverse=True)
        ]

    def levers(self, int8: bool, compile: str | None) -> list[Lever]:
        auto, fp32, label = self.auto, self.fp32, self.label
        default = Lever(f"{label}, one batch of all (the default)", label, lambda: self.both(auto))
        levers = [
            default,
            *([Lever("fp32, one batch of all", "fp32", lambda: self.both(fp32))] if self.bf16 else []),
            Lever("fp32, reference loop (1 item/forward, 2 calls)", "fp32", lambda: self.reference_loop(self.prepared)),
            Lever(
                f"{label}, fused and image-only as two calls",
                label,
                lambda: (auto.encode_fused(self.prepared, self.texts), auto.encode_image(self.prepared)),
            ),
            *(Lever(f"{label}, batch {size}", label, lambda size=size: self.batch(size)) for size in (1, 4)),
            Lever(f"{label}, 1 torch thread", label, within(lambda: threads(1), default.run)),
            Lever(
                f"{label}, rope as before issue 19",
                label,
                within(lambda: swapped(VisionRotaryEmbedding, "forward", rope_before), default.run),
            ),
            Lever(f"{label}, SDPA math kernel", label, within(lambda: sdpa_kernel(SDPBackend.MATH), default.run)),
            Lever(
                f"{label}, the two text passes as one batch",
                label,
                within(lambda: swapped(auto.model, "embed_fused_and_image", one_bert_batch(auto.model)), default.run),
            ),
            *(
                [
                    Lever(
                        "bf16 autocast, fp32 weights",
                        "bf16",
                        within(lambda: torch.autocast("cpu", dtype=torch.bfloat16), lambda: self.both(fp32)),
                    )
                ]
                if self.bf16
                else []
            ),
            *self.splits(),
            Lever("files: fp32, reference loop", "fp32", lambda: self.reference_loop(self.files)),
        ]
        if int8:
            quantized = torch.ao.quantization.quantize_dynamic(fp32.model, {torch.nn.Linear}, dtype=torch.qint8)
            levers.append(
                Lever(
                    "int8 dynamic quantisation of Linear",
                    label,
                    within(lambda: swapped(fp32, "model", quantized), lambda: self.both(fp32)),
                )
            )
        if compile:  # each block compiled; with all, also the library's own path (BucketedCompile, RAG_COMPILE=true)
            levers.append(
                Lever(
                    f"{label} + torch.compile of each block",
                    label,
                    within(lambda: regional_compile(auto.model), default.run),
                )
            )
        if compile == "all":
            compiled = replace(auto.runtime, compile=True)
            on = within(lambda: swapped(auto, "runtime", compiled), default.run)
            levers.append(Lever(f"{label} + torch.compile (RAG_COMPILE=true)", label, on))
        return levers

    def cleanup(self) -> None:
        self._tmp32.cleanup()
        if self.bf16:
            self._tmp16.cleanup()


def count_flops(lever: Lever, items: int) -> None:
    if "compile" in lever.name or "int8" in lever.name or "worker" in lever.name:
        return  # no compiled graph or quantised product is seen, and a split of the cores changes no FLOP
    with FlopCounterMode(display=False) as counter:
        lever.run()
    lever.flops = counter.get_total_flops() / items


def measure(levers: list[Lever], items: int, rounds: int, reference: Callable[[Lever], Vectors]) -> dict[str, float]:
    """Every lever timed once per round, in turn (after one warm-up each); the peaks measured each round too."""
    peaks = {"fp32": 0.0, "bf16": 0.0}
    for lever in levers:  # warm-up at the measured shapes; the compiled lever compiles here
        start = time.perf_counter()
        out = lever.run()
        if "compile" in lever.name:
            lever.note = f"compiled in {time.perf_counter() - start:.0f} s"
        lever.cosine = cosine(out, reference(lever))
        count_flops(lever, items)
    for round_ in range(rounds):
        peaks["fp32"] = max(peaks["fp32"], matmul_gflops(torch.float32, seconds=1.0))
        peaks["bf16"] = max(peaks["bf16"], matmul_gflops(torch.bfloat16, seconds=1.0))
        for lever in levers if round_ % 2 == 0 else reversed(levers):
            start = time.perf_counter()
            lever.run()
            lever.best = max(lever.best, items / (time.perf_counter() - start))
        print(f"  round {round_ + 1}/{rounds} done, load {os.getloadavg()[0]:.1f}", flush=True)
    if not np.isfinite(levers[0].flops):
        raise RuntimeError("the default lever's FLOPs could not be counted")
    for lever in levers:
        if not np.isfinite(lever.flops):
            lever.flops = levers[0].flops
    return peaks


def report(levers: list[Lever], peaks: dict[str, float]) -> None:
    print(
        f"{'lever':52} {'items/s':>8} {'vs default':>10} {'GFLOP/item':>10} {'GFLOP/s':>8} {'of peak':>8} "
        f"{'min cos':>8}"
    )
    base = levers[0].best
    for lever in levers:
        achieved = lever.best * lever.flops / 1e9
        print(
            f"{lever.name:52} {lever.best:8.2f} {lever.best / base:10.2f} {lever.flops / 1e9:10.1f} {achieved:8.0f} "
            f"{achieved / peaks[lever.peak]:8.0%} {lever.cosine:8.5f} {lever.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated parts of lever names to keep (besides the default)")
    parser.add_argument("--profile", action="store_true", help="also show where the default lever's time goes")
    parser.add_argument("--int8", action="store_true", help="also try dynamic int8 quantisation of Linear layers")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="blocks",
        choices=["blocks", "all"],
        help="also try torch.compile of each block (minutes to compile); all: also RAG_COMPILE=true's "
        "whole-model graphs (many more minutes)",
    )
    parser.add_argument("--photo", default="640x480", help="the JPEGs' size, WIDTHxHEIGHT (the files levers)")
    args = parser.parse_args()
    photo = tuple(int(side) for side in args.photo.lower().split("x"))
    print(
        f"CPU {cpu_name()}, {torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}; "
        f"full-size base, random weights, {args.items} items, best of {args.rounds} alternating rounds"
    )
    with tempfile.TemporaryDirectory(prefix="rag-levers-") as tmp:
        setup = Setup(args.items, Path(tmp) / "corpus", photo)
        levers = setup.levers(args.int8, args.compile)
        if args.only:
            wanted = [w.strip() for w in args.only.split(",")]
            levers = [lv for i, lv in enumerate(levers) if i == 0 or any(w in lv.name for w in wanted)]
        peaks = measure(levers, args.items, args.rounds, setup.reference)
        print(
            f"matmul peak (best of the rounds): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
            f"load {os.getloadavg()[0]:.1f}"
        )
        report(levers, peaks)
        if args.profile:
            print("\nwhere the default lever's time goes (torch profiler, self CPU time by kind of op):")
            products_ceiling(levers[0].run, setup.auto.model, peaks[levers[0].peak])
            start = time.perf_counter()
            setup.auto.preprocess(setup.files)
            print(
                f"  decoding and resizing the JPEGs alone (not in the table above): "
                f"{(time.perf_counter() - start) / args.items:.3f} s per item on {setup.cores} threads"
            )
        setup.cleanup()


if __name__ == "__main__":
    main()
