"""Finding checkpoints (local paths or the Hugging Face hub) and loading them safely."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import mmap
import os
import sys
import tempfile
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from torch import nn
from transformers import PretrainedConfig
from transformers.initialization import no_init_weights

from ..hub import CheckpointError, hub_reachable
from .configuration import HUB_REPO, VARIANTS, Variant, VisionConfig, variant_for_checkpoint
from .modeling import VisualizedBGEModel

logger = logging.getLogger(__name__)


def resolve_checkpoint(weights: str | os.PathLike[str]) -> tuple[Path, Variant | None]:
    """A local ``.pth`` path, or a variant name fetched through ``huggingface_hub`` (cache and offline mode
    honoured)."""
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


def build_model(text_config: PretrainedConfig, vision_config: VisionConfig) -> VisualizedBGEModel:
    """The model with uninitialised parameters (no random init for the checkpoint to overwrite); buffers are real."""
    with no_init_weights():
        return VisualizedBGEModel(text_config, vision_config)


def load_weights(
    model: nn.Module, path: Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> None:
    """Load a plain state dict with ``weights_only=True`` into the model's parameters, on ``device`` in ``dtype``;
    refuse missing, unexpected or mis-shaped keys.

    The file is memory-mapped and its tensors become the parameters (``assign``: no copy). When they
    must change dtype or device, each is converted in turn and its mapped pages given back at once
    (Linux), so that memory holds one copy of the weights, not the file and the copy.
    """
    state, mapped = _read_state(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    device = torch.device(device)
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        target = dtype if tensor.is_floating_point() else tensor.dtype
        if tensor.dtype != target or tensor.device != device:
            state[key] = tensor.to(device, target)
            if mapped:
                _give_back(tensor)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit this Visualized-BGE configuration: {e}") from e


def _read_state(path: Path) -> tuple[object, bool]:
    """The checkpoint's contents, and whether they are memory-mapped."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # Files from torch.save(_use_new_zipfile_serialization=False) cannot be mapped: read them whole.
            logger.info("%s is in torch's legacy format; reading it without mmap", path)
            return torch.load(path, map_location="cpu", weights_only=True), False
    except Exception as e:  # torch raises several types for corrupt or non-tensor pickles
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e


def _give_back(tensor: torch.Tensor) -> None:
    """Drop the resident pages of a tensor that lives in the read-only mapping of the checkpoint file.

    Only for mapped file pages: the kernel reads them again from the file if they are touched later
    (a page shared with the next tensor, say), so nothing is lost. A no-op off Linux.
    """
    if _LIBC is None:
        return
    storage = tensor.untyped_storage()
    start, end = storage.data_ptr(), storage.data_ptr() + storage.nbytes()
    start -= start % mmap.PAGESIZE
    _LIBC.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)


_MADV_DONTNEED = 4
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    """The file's SHA-256, remembered per (path, inode, size, change times) in the user's cache folder,
    so that only the first start after a download pays for hashing (0.7 s for the base checkpoint)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    cache = _hash_cache_file()
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), str):
        return known[key]
    digest = file_sha256(path)
    known[key] = digest
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
            json.dump(known, f)
        os.replace(f.name, cache)
    except OSError as e:  # a read-only home still works, it just hashes every time
        logger.info("cannot remember the checkpoint hash in %s: %s", cache, e)
    return digest


def _hash_cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mmrag" / "checkpoint-sha256.json"
