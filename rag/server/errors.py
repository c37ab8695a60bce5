"""Every error the app answers is JSON, ``{"error": <code>, "message": <what went wrong>, "request_id": <id>}``
(the id is the ``X-Request-ID`` header's and the log lines'); request bodies have a cap."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.milvus import NotSupportedError, StoreError, StoreUnavailableError
from rag.access.tenants import TenantError
from rag.embeddings.base import FusedNotSupportedError
from rag.errors import RagError
from rag.retrieval import QueryError
from rag.retrieval.options import OptionError, describe_one

from .breaker import StoreOutageError
from .conversations import ConversationNotFoundError
from .models import ErrorBody
from .request_ids import current_request_id
from .service import ImageNotFoundError, UploadError

logger = logging.getLogger(__name__)

_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
    429: "too_many_requests",
    503: "store_unavailable",
}


#: Seconds a client is asked to wait (``Retry-After``) while the server starts.
STARTING_RETRY_AFTER = 5


class NotReadyError(RagError, RuntimeError):
    """The server is still starting (the encoder loads, the store is opened), or could not start."""


def error_response(status_code: int, message: str, code: str | None = None, **extra: Any) -> JSONResponse:
    code = code or _ERROR_CODES.get(status_code, "error" if status_code < 500 else "internal_error")
    body = ErrorBody(error=code, message=message, request_id=current_request_id(), **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status_code)


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with a JSON 413: at once by their Content-Length, else while read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = f"the request body is {declared} bytes, over the {self.max_bytes}-byte limit"
            await error_response(413, message)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > self.max_bytes:  # raised inside the route: the error handlers answer
                raise HTTPException(413, f"the request body is over the {self.max_bytes}-byte limit")
            return chunk

        await self.app(scope, counted, send)


def _message_as(status_code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error_response(status_code, str(exc))

    return handler


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def httperror_response(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):  # no route matched
            message = f"{message}: {request.method} {request.url.path}"
        response = error_response(exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 for a malformed request (a field missing, of the wrong type or out of range); 400 when every
        problem is a well-formed option value the library refuses (a filter, blend or score it cannot search)."""
        problems = list(exc.errors())
        details = [
            {"field": ".".join(str(part) for part in e["loc"][1:]) or str(e["loc"][0]), "problem": describe_one(e)}
            for e in problems
        ]
        message = "; ".join(d["problem"] for d in details)
        if all(isinstance((e.get("ctx") or {}).get("error"), OptionError) for e in problems):
            return error_response(status.HTTP_400_BAD_REQUEST, message)
        return error_response(422, message, details=details)

    @app.exception_handler(UploadError)
    async def refused(request: Request, exc: UploadError) -> JSONResponse:
        return error_response(exc.status, str(exc))

    @app.exception_handler(NotReadyError)
    async def starting(request: Request, exc: NotReadyError) -> JSONResponse:
        response = error_response(503, str(exc), code="not_ready")
        response.headers["Retry-After"] = str(STARTING_RETRY_AFTER)
        return response

    @app.exception_handler(StoreUnavailableError)
    async def store_away(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        """503 with ``Retry-After``; the store's address only where the server shows its paths."""
        message = str(exc)
        if isinstance(exc, StoreOutageError) and not request.app.state.settings.server_show_paths:
            message = exc.public
        elif not request.app.state.settings.server_show_paths:
            message = "the Milvus store cannot be reached; the server log (and RAG_SERVER_SHOW_PATHS=true) says more"
        retry_after = exc.retry_after if isinstance(exc, StoreOutageError) else 2
        response = error_response(503, message)
        response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(QueryError)
    async def incomplete(request: Request, exc: QueryError) -> JSONResponse:
        message = exc.naming(text="the text field", image="the image field", mode="the mode field")
        return error_response(status.HTTP_400_BAD_REQUEST, message)

    # Library errors whose message is the answer; the library checks its inputs with ValueError
    # (modes, filters, unreadable images).
    for error_type, status_code in (
        (ImageNotFoundError, status.HTTP_404_NOT_FOUND),
        (TenantError, status.HTTP_403_FORBIDDEN),
        (ConversationNotFoundError, status.HTTP_404_NOT_FOUND),
        (ValueError, status.HTTP_400_BAD_REQUEST),
        (NotSupportedError, status.HTTP_400_BAD_REQUEST),
        (FusedNotSupportedError, status.HTTP_400_BAD_REQUEST),
        (StoreError, status.HTTP_503_SERVICE_UNAVAILABLE),
    ):
        app.add_exception_handler(error_type, _message_as(status_code))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(
            status.HTTP_500_INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__}); the server log has details"
        )
