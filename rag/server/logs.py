"""The server's logs: a timestamp on every line, JSON lines with ``RAG_LOG_FORMAT=json``, and ``RAG_LOG_LEVEL`` for
uvicorn's loggers as for ours; every line goes out through the root logger's handlers.

Every line written while a request is answered carries its id (``request_ids``): ``request_id=...`` at the end of a
text line, a ``request_id`` field of a JSON line. Access lines (``rag.server.access``, one per request, with its
latency) are ours: uvicorn's own are off (``serve``). In JSON, they carry ``client``, ``method``, ``path``,
``status`` and ``latency_ms`` as fields too.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from .request_ids import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = ("rag", "connectors")
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


class RequestIdFilter(logging.Filter):
    """Marks each record with the id of the request it was written for (``request_id``; None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, and ``request_id=...`` at the end of the lines written for a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  # logging's name
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the request's id and an access line's
    fields where there are, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def prepare(handler: logging.Handler, fmt: str) -> None:
    """Format ``handler``'s lines as ``fmt`` says (text, json), each with its request's id."""
    handler.setFormatter(formatter(fmt))
    if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
        handler.addFilter(RequestIdFilter())


def configure(level: str, fmt: str) -> None:
    """Format the root logger's handlers (one on stderr when it has none) and set the level of ours and
    uvicorn's loggers, whose own handlers go: uvicorn is then started with ``log_config=None``."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        prepare(handler, fmt)
    for name in _OURS:
        logging.getLogger(name).setLevel(level)
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)
