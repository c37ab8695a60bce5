"""Every ``/api`` (and ``/metrics``) request is resolved to a ``Principal`` (token name, scope, tenant) before any
route runs.

The check is an ASGI middleware, not a route dependency: FastAPI reads a request's body before it solves
dependencies, and the scope must be checked before the body or a filter is parsed (a read token gets 403
even for a malformed delete). The principal is left in ``request.state.principal`` for the routes.
"""

from __future__ import annotations

import hmac
import logging

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.access import Principal, TokenError, TokenStore
from rag.access import Scope as TokenScope
from rag.access.tokens import ANONYMOUS
from rag.settings import Settings

from ..errors import error_response
from .limiter import FailureLimiter
from .scopes import guarded, needed_scope

logger = logging.getLogger(__name__)

#: Who RAG_SERVER_TOKEN (or the token generated for an open bind) acts as: an admin of every tenant.
SERVER_TOKEN = Principal("server-token", TokenScope.ADMIN)


class Access:
    """The server's tokens: RAG_SERVER_TOKEN, and those of ``rag tokens`` under the data folder."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.server_auth
        self.tokens = TokenStore(settings.data_dir)
        secret = settings.server_token
        self._server_token = secret.get_secret_value().encode() if secret is not None else None
        self.limiter = FailureLimiter(settings.server_auth_max_failures)

    def required(self) -> bool:
        """Whether requests need a token now (a token added while the server runs counts from then on)."""
        return self.enabled and (self._server_token is not None or self.tokens.configured())

    def quick(self, header: str | None) -> bool:
        """Whether resolving ``header`` needs no scrypt hash (no token, RAG_SERVER_TOKEN, or one checked before)."""
        _, _, token = (header or "").partition(" ")
        token = token.strip()
        return not token.startswith("rag_") or self.verify_server(token) or self.tokens.remembered(token)

    def verify_server(self, token: str) -> bool:
        return self._server_token is not None and hmac.compare_digest(token.encode(), self._server_token)

    def verify(self, token: str) -> Principal | None:
        if self.verify_server(token):
            return SERVER_TOKEN
        return self.tokens.verify(token)

    def resolve(self, header: str | None, address: str) -> Principal | JSONResponse:
        """Who a request with this Authorization ``header`` from ``address`` acts as, or the 401/429 refusal."""
        if not self.required():
            return ANONYMOUS
        wait = self.limiter.retry_after(address)
        if wait is not None:
            response = error_response(429, f"too many wrong tokens from {address}: try again in {wait:.0f} s")
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        if header is None:
            message = "this server needs a bearer token: send the header 'Authorization: Bearer <token>'"
            return _unauthorized(message)
        scheme, _, token = header.partition(" ")
        principal = self.verify(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if principal is not None:
            return principal
        self.limiter.failed(address)
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("the Authorization header must read 'Bearer <token>'")
        return _unauthorized("this token is not valid here (unknown or revoked)")


def _unauthorized(message: str) -> JSONResponse:
    response = error_response(401, message)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


class AuthMiddleware:
    """Resolves the principal of every ``/api`` and ``/metrics`` request and refuses it (401, 403, 429) before the
    route runs."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        header, address = headers.get("authorization"), client[0] if client else "unknown"
        try:
            if self.access.quick(header):
                found = self.access.resolve(header, address)
            else:  # a scrypt hash (a tenth of a second): off the event loop, which other requests share
                found = await run_in_threadpool(self.access.resolve, header, address)
        except (TokenError, OSError) as e:  # a damaged tokens file: no route may run, and the log says why
            logger.error("cannot check tokens: %s", e)
            found = error_response(500, f"the server cannot check tokens now ({e})")
        if isinstance(found, JSONResponse):
            await found(scope, receive, send)
            return
        needed = needed_scope(scope["method"], scope["path"])
        if not found.scope.allows(needed):
            message = f"this needs a token with the {needed.value!r} scope; {found.name!r} has {found.scope.value!r}"
            await error_response(403, message, scope=needed.value)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = found
        await self.app(scope, receive, send)
