"""What the settings ask of an encoder: the weights each loads by default, the settings with a factory's explicit
arguments in their place, and the runtime they name. The registry and every encoder read them here."""

from __future__ import annotations

from rag.runtime import Purpose, Runtime, resolve_runtime
from rag.settings import Settings

#: What each encoder loads when ``RAG_WEIGHTS`` is not set.
DEFAULT_WEIGHTS = {
    "visualized-bge": "bge-visualized-base-en-v1.5",
    "clip": "openai/clip-vit-base-patch32",
    "bridgetower": "BridgeTower/bridgetower-large-itm-mlm-itc",
}


def settings_with(settings: Settings | None = None, **given: object) -> Settings:
    """``settings`` (default ``Settings()``: the ``RAG_*`` environment) with the values given explicitly (those not
    None) in their place: what a factory called with some arguments and not others should read."""
    base = settings or Settings()
    explicit = {name: value for name, value in given.items() if value is not None}
    return base.model_copy(update=explicit) if explicit else base


def runtime_from_settings(
    settings: Settings, purpose: Purpose = "query", expected_items: int | None = None, threads: int | None = None
) -> Runtime:
    """The runtime ``RAG_DEVICE``, ``RAG_DTYPE``, ``RAG_BATCH_SIZE``, ``RAG_WORKERS`` and ``RAG_COMPILE`` ask for,
    on this machine (``threads``: torch's threads, when the caller knows its share of the cores)."""
    return resolve_runtime(
        settings.device,
        settings.dtype,
        batch_size=settings.batch_size,
        workers=settings.workers,
        threads=threads,
        compile=settings.compile,
        preprocess=settings.preprocess,
        purpose=purpose,
        expected_items=expected_items,
    )
