"""A transform for worker-process tests: importable without torch, and fatal to its process on one input."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from rag.embeddings.inputs import PreparedImage


@dataclass(frozen=True)
class CrashOn:
    poison: str

    def __call__(self, image: str) -> PreparedImage:
        if image == self.poison:
            os._exit(3)  # what a decoder crash (a segfault) does to the process
        return PreparedImage(np.full((3, 2, 2), len(image), dtype=np.uint8))
