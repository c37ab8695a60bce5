"""Finding weights: local paths first, then the Hugging Face cache, then the hub only when it can be reached."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, try_to_load_from_cache

from rag.errors import RagError


class CheckpointError(RagError, RuntimeError):
    """A checkpoint that cannot be found, read, or does not fit the model."""


def hub_reachable() -> bool:
    """False when the hub's host name does not resolve and no proxy is set: fail now, not after retries."""
    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return not constants.HF_HUB_OFFLINE
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
    except OSError:
        return False
    return True


def pretrained_source(name_or_path: str | os.PathLike[str]) -> tuple[str, bool]:
    """Where ``from_pretrained`` should read a transformers model, and whether from local files only.

    A local folder, or a hub id whose ``config.json`` is in the Hugging Face cache, is read offline;
    any other hub id needs the hub, and a ``CheckpointError`` says so at once when it is out of reach.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path), True
    name = str(name_or_path)
    if path.is_absolute() or name.startswith((".", "~")):
        raise CheckpointError(f"{name} is not a model folder (config.json, weights, tokenizer and preprocessor files)")
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return name, True
    if not hub_reachable():
        raise CheckpointError(
            f"{name} is not in the Hugging Face cache and the hub cannot be reached from here. Download it where "
            f"there is network (`hf download {name}`) and pass the local folder (or set RAG_WEIGHTS to it)."
        )
    return name, False
