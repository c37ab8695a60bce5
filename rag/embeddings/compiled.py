"""``torch.compile`` of a model function on bucketed shapes, so that a long run compiles a few graphs.

Batches are padded to a power of two rows (at most the batch size), token sequences to a power of
two from 16 (at most the model's limit); padded rows are dropped from the output and padded tokens
are masked, so results equal the uncompiled function's up to rounding. On CUDA the graphs are also
captured as CUDA graphs (``mode="reduce-overhead"``), which removes launch overhead for small batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

MIN_TOKENS = 16


def bucket(n: int, limit: int, smallest: int = 1) -> int:
    """The power of two at or above ``n`` (at least ``smallest``), capped at ``limit``."""
    size = max(smallest, 1 << max(0, n - 1).bit_length())
    return min(size, max(limit, n))


class BucketedCompile:
    """Calls ``function(*inputs)`` compiled, with inputs padded to bucketed shapes.

    Inputs are batch-first tensors; two-dimensional integer tensors come in ``(ids, mask)`` pairs,
    padded along the sequence with ``pad_token_id`` and 0.
    """

    def __init__(
        self,
        function: Callable[..., torch.Tensor],
        device: torch.device,
        *,
        pad_token_id: int,
        max_batch: int,
        max_tokens: int,
    ):
        self._graphs = device.type == "cuda"
        self._function = torch.compile(function, dynamic=False, mode="reduce-overhead" if self._graphs else None)
        self._pad_token_id = pad_token_id
        self._max_batch = max_batch
        self._max_tokens = max_tokens
        self._shapes: set[tuple[tuple[int, ...], ...]] = set()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        rows = inputs[0].shape[0]
        padded = self._pad(inputs, bucket(rows, self._max_batch))
        shapes = tuple(tuple(t.shape) for t in padded)
        first = shapes not in self._shapes
        start = time.perf_counter()
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self._function(*padded)[:rows]
        if first:
            self._shapes.add(shapes)
            logger.info(
                "compiled %s for shapes %s in %.1f s",
                getattr(self._function, "__name__", "model"),
                shapes,
                time.perf_counter() - start,
            )
        # CUDA graphs reuse their output memory on the next call: keep a copy.
        return out.clone() if self._graphs else out

    def _pad(self, inputs: tuple[torch.Tensor, ...], rows: int) -> list[torch.Tensor]:
        padded: list[torch.Tensor] = []
        is_mask = False
        for tensor in inputs:
            if tensor.dim() == 2 and not tensor.is_floating_point():
                length = bucket(tensor.shape[1], self._max_tokens, MIN_TOKENS)
                value = 0 if is_mask else self._pad_token_id
                tensor = F.pad(tensor, (0, length - tensor.shape[1]), value=value)
                if is_mask and rows > tensor.shape[0]:  # padded rows attend to their first token only
                    extra = tensor.new_zeros((rows - tensor.shape[0], tensor.shape[1]))
                    extra[:, 0] = 1
                    tensor = torch.cat((tensor, extra))
                is_mask = not is_mask
            if tensor.shape[0] < rows:
                tensor = torch.cat((tensor, tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))))
            padded.append(tensor)
        return padded
