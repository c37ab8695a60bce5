"""Shared set-up for the benchmarks: full-size Visualized-BGE with random weights, built without downloads.

The model goes through the same ``VisualizedBGE.from_pretrained`` path as the real checkpoints: a
state dict saved to a temporary ``.pth`` and a text-model folder holding a full-size config.
Speed does not depend on the weight values.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import BertConfig, XLMRobertaConfig

from rag.embeddings import VisualizedBGE
from rag.embeddings.visualized_bge import EVA02_CLIP_B16, EVA02_CLIP_L14, VisualizedBGEModel

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "parity"
SAMPLE_IMAGES = sorted((FIXTURES / "base" / "images").iterdir())

# Full-size text encoders: bge-base-en-v1.5 is BERT-base, bge-m3 is XLM-R large with 8194 positions.
FULL_SIZE = {
    "base": (lambda: BertConfig(), EVA02_CLIP_B16, "base"),
    "m3": (
        lambda: XLMRobertaConfig(
            vocab_size=250002,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            max_position_embeddings=8194,
            type_vocab_size=1,
            pad_token_id=1,
        ),
        EVA02_CLIP_L14,
        "m3",
    ),
}


def build_full_size(variant: str, workdir: Path) -> tuple[Path, Path]:
    """Write a random full-size checkpoint and a text-model folder; return their paths."""
    make_config, vision, tokenizer_from = FULL_SIZE[variant]
    text_dir = workdir / "text_model"
    shutil.copytree(FIXTURES / tokenizer_from / "text_model", text_dir)
    config = make_config()
    config.save_pretrained(text_dir)
    torch.manual_seed(0)
    model = VisualizedBGEModel(config, vision)
    weights = workdir / "weights.pth"
    torch.save(model.state_dict(), weights)
    return weights, text_dir


def load_full_size(variant: str = "base", **kwargs) -> tuple[VisualizedBGE, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory(prefix="rag-bench-")
    weights, text_dir = build_full_size(variant, Path(tmp.name))
    vision = FULL_SIZE[variant][1]
    encoder = VisualizedBGE.from_pretrained(weights, text_dir, vision_config=vision, **kwargs)
    return encoder, tmp


def cpu_name() -> str:
    """The CPU's model name as Linux reports it (elsewhere what the platform says, else ``?``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        name = None
    return name or platform.processor() or "?"


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best wall time of ``repeats`` runs after one warm-up run."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def latencies(fn: Callable[[], object], n: int) -> list[float]:
    fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def matmul_gflops(dtype: torch.dtype, n: int = 2048, seconds: float = 2.0) -> float:
    """This machine's sustained matrix-multiplication rate for ``dtype`` (GFLOP/s)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9
