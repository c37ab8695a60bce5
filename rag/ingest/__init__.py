"""Streaming, idempotent ingestion of source items into the store: the local engine here, Ray for clusters
(``rag.ingest.ray_engine``, imported on demand since it needs the ``mmrag[ray]`` extra)."""

from .pipeline import ingest
from .report import IngestReport

__all__ = ["IngestReport", "ingest"]
