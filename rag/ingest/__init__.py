"""Streaming, idempotent ingestion of source items into the store."""

from .pipeline import IngestReport, ingest

__all__ = ["IngestReport", "ingest"]
