"""``rag ingest --engine ray``: connect to the cluster and check it before any model loads, then ingest on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from rag.cli.common import fail
from rag.settings import Settings

if TYPE_CHECKING:  # Ray and the encoders load with the command that needs them
    from collections.abc import Callable, Iterable

    from connectors.milvus import MilvusStore
    from connectors.sources import SourceResult
    from rag.embeddings.base import Encoder
    from rag.ingest import IngestReport
    from rag.ingest.ray_engine import RayOptions


def connect_ray(
    settings: Settings,
    address: str | None,
    workers: int | None,
    gpus_per_worker: float | None,
    cpus_per_worker: float | None,
) -> RayOptions:
    """The Ray engine's options, connected and checked against the cluster before any model is loaded."""
    from connectors.milvus.schema import Backend
    from rag.ingest import ray_engine

    options = ray_engine.RayOptions(
        address=address, workers=workers, gpus_per_worker=gpus_per_worker or 0.0, cpus_per_worker=cpus_per_worker
    )
    if options.gpus_per_worker and settings.device.strip().lower() == "cpu":
        raise fail(
            "--gpus-per-worker asks for GPUs, and RAG_DEVICE=cpu keeps the encoder off them: set RAG_DEVICE=auto"
        )
    try:
        plan = ray_engine.connect(options, Backend.of(settings.milvus_uri), settings.data_dir / "logs" / "ray.log")
    except (ImportError, ray_engine.RayEngineError) as e:
        raise fail(e) from e
    if plan.owns_ray:  # stopped when the command ends, however it ends (the `rag` command skips atexit handlers)
        typer.main.get_current_context().call_on_close(ray_engine.shutdown)
    return options


def ingest_on_ray(
    items: Iterable[SourceResult],
    settings: Settings,
    store: MilvusStore,
    model: Encoder,
    options: RayOptions,
    on_progress: Callable[[IngestReport], None],
) -> IngestReport:
    from rag.ingest import ray_engine

    try:
        return ray_engine.ingest(
            items, settings, store, image_transform=model.image_transform, options=options, on_progress=on_progress
        )
    except ray_engine.RayEngineError as e:
        raise fail(e) from e
