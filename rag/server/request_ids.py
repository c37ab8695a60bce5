"""Request ids and access lines: every request gets an id, sent back in ``X-Request-ID``, written on every log line
of that request and in its JSON error reply, and one access line when it is answered, with its latency.

A client's own ``X-Request-ID`` is kept when it is short and of safe characters (letters, digits, ``._:-``, at most
64), so a proxy's id follows the request through; anything else (a log-forging line break, a megabyte) is replaced
by a new id. The middleware wraps the whole app, its error handlers included, so a 500 carries the id too.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
#: An id taken from a client as it is: short, and nothing that could break a log line or a header.
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_current: ContextVar[str | None] = ContextVar("rag_request_id", default=None)

access_log = logging.getLogger("rag.server.access")


def current_request_id() -> str | None:
    """The id of the request being answered (in its task and the threads it hands work to); None outside one."""
    return _current.get()


def accepted(value: str | None) -> str:
    """The client's id when it is safe to keep, else a new one (32 hex digits)."""
    if value is not None and _SAFE.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware, outermost: gives each HTTP request its id, answers it in ``X-Request-ID``, and logs the
    access line (client, request line, status, latency in ms) once the response is sent, or failed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted(Headers(scope=scope).get(HEADER))
        token = _current.set(request_id)
        start = time.perf_counter()
        status = 500  # unless a response starts: the app failed before answering

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            _access(scope, status, (time.perf_counter() - start) * 1000, request_id)
            _current.reset(token)


def _access(scope: Scope, status: int, latency_ms: float, request_id: str) -> None:
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    raw = scope.get("raw_path")  # as sent, percent-encoded: a decoded line break cannot forge a log line
    path = raw.decode("latin-1") if raw else scope.get("path", "")
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode("latin-1")
    method, version = scope.get("method", ""), scope.get("http_version", "1.1")
    fields = {"client": address, "method": method, "path": path, "status": status, "latency_ms": round(latency_ms, 1)}
    access_log.info(
        '%s "%s %s HTTP/%s" %d %.1f ms',
        address, method, path, version, status, latency_ms,
        extra={"request_id": request_id, "access": fields},
    )  # fmt: skip
