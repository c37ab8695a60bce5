"""Finding checkpoints (local paths or the Hugging Face hub) and loading them safely."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from torch import nn

from ..hub import CheckpointError, hub_reachable
from .configuration import HUB_REPO, VARIANTS, Variant, variant_for_checkpoint


def resolve_checkpoint(weights: str | os.PathLike[str]) -> tuple[Path, Variant | None]:
    """A local ``.pth`` path, or a variant name fetched through ``huggingface_hub`` (cache and offline mode honoured)."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path, variant_for_checkpoint(path.name)
    name = str(weights)
    variant = VARIANTS.get(name)
    if variant is None:
        known = ", ".join(VARIANTS)
        raise CheckpointError(f"{name!r} is neither an existing checkpoint file nor a known variant ({known})")
    how_to = (
        f"Download it where there is network (`hf download {HUB_REPO} {variant.checkpoint}`) and pass its "
        "local path (or set RAG_WEIGHTS to it); files already in the Hugging Face cache are found offline too."
    )
    try:
        return Path(hf_hub_download(HUB_REPO, variant.checkpoint, local_files_only=True)), variant
    except LocalEntryNotFoundError:
        if not hub_reachable():
            raise CheckpointError(
                f"{variant.checkpoint} is not in the Hugging Face cache and the hub cannot be reached from here. "
                + how_to
            ) from None
    try:
        return Path(hf_hub_download(HUB_REPO, variant.checkpoint)), variant
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise CheckpointError(f"could not download {variant.checkpoint} from {HUB_REPO} ({e}). " + how_to) from e


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a plain state dict with ``weights_only=True``; refuse missing, unexpected or mis-shaped keys."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or non-tensor pickles
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit this Visualized-BGE configuration: {e}") from e


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
