"""``rag serve``: the HTTP API (search, ask, ingest, stats, item images) and the web page, over one collection."""

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (form uploads)
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("the server needs FastAPI, uvicorn and python-multipart: pip install 'mmrag[server]'") from e

from .app import create_app, serve
from .jobs import IngestJob, JobStatus
from .service import Service

__all__ = ["IngestJob", "JobStatus", "Service", "create_app", "serve"]
