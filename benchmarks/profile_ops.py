"""Where an encoding run's time goes, by kind of op, from the torch profiler (self CPU time, each op once)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable

from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from rag.embeddings.visualized_bge.vision import VisionRotaryEmbedding

# Matched in order against an op's name or any of its callers' names.
KINDS = (
    ("rope (2-D rotary, vision)", ("rope",)),
    ("attention (SDPA)", ("scaled_dot_product",)),
    (
        "GEMMs (linear layers with their bias, patch conv)",
        ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "convolution"),
    ),
    ("layer norms", ("layer_norm",)),
    ("activations (GELU, SiLU)", ("aten::gelu", "aten::silu")),
    ("elementwise: residual adds, biases, masks", ("aten::add", "aten::mul", "aten::sub", "aten::rsub")),
    ("copies, concatenations, layout", ("aten::copy_", "aten::cat", "aten::contiguous", "aten::clone", "aten::to")),
)


def kind_of(event) -> str:
    names = []
    while event is not None:
        names.append(event.name)
        event = event.cpu_parent
    for kind, keys in KINDS:
        if any(key in name for name in names for key in keys):
            return kind
    return "other"


@contextlib.contextmanager
def annotated_rope(model: nn.Module):
    """The rotary embedding's ops recorded under a ``rope`` range (forward hooks; removed afterwards)."""
    ranges: list[record_function] = []

    def enter(module, inputs):
        ranges.append(record_function("rope"))
        ranges[-1].__enter__()

    def leave(module, inputs, output):
        ranges.pop().__exit__(None, None, None)

    hooks = []
    for module in model.modules():
        if isinstance(module, VisionRotaryEmbedding):
            hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def time_by_kind(run: Callable[[], object], model: nn.Module) -> dict[str, float]:
    """Run ``run`` once under the profiler; print and return self CPU seconds by kind of op."""
    with annotated_rope(model), profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    totals: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.name.startswith("aten::") or event.name.startswith("mkldnn"):
            totals[kind_of(event)] += event.self_cpu_time_total / 1e6
    whole = sum(totals.values()) or 1.0
    for kind, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:52} {seconds:7.2f} s {seconds / whole:6.1%}")
    return dict(totals)


PRODUCTS = ("GEMMs (linear layers with their bias, patch conv)", "attention (SDPA)")


def products_ceiling(run: Callable[[], object], model: nn.Module, peak_gflops: float) -> float:
    """Print where the time goes and the highest share of the matmul peak this computation could reach if its
    products (GEMMs and attention: nearly all its FLOPs) ran at the peak while everything else kept the time it
    takes now; return that share. Memory-bound ops (norms, adds, rope, activations, copies) bound it."""
    with FlopCounterMode(display=False) as counter:
        run()
    flops = counter.get_total_flops()
    seconds = time_by_kind(run, model)
    products = sum(seconds.get(kind, 0.0) for kind in PRODUCTS)
    rest, whole = sum(seconds.values()) - products, sum(seconds.values())
    at_peak = flops / (peak_gflops * 1e9)
    bound = at_peak / (at_peak + rest)
    print(
        f"  products: {products / whole:.0%} of the time at {flops / products / 1e9:.0f} GFLOP/s "
        f"({flops / products / 1e9 / peak_gflops:.0%} of the peak); the rest: {rest:.2f} s = {rest / whole:.0%}"
    )
    print(
        f"  so, the products at the peak and the rest as now: at most {bound:.0%} of the peak "
        f"(profiled: {flops / whole / 1e9 / peak_gflops:.0%})"
    )
    return bound


__all__ = ["products_ceiling", "time_by_kind"]
