"""Where an encoding run's time goes, by kind of op, from the torch profiler (self CPU time, each op once)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable

from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from rag.embeddings.visualized_bge.vision import VisionRotaryEmbedding

# Matched in order against an op's name or any of its callers' names.
KINDS = (
    ("rope (2-D rotary, vision)", ("rope",)),
    ("attention (SDPA)", ("scaled_dot_product",)),
    ("GEMMs (linear layers with their bias, patch conv)", ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear",
                                                          "convolution")),
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


__all__ = ["time_by_kind"]
