"""Browser safety: requests that change something must come from this server's own page (or an allowed origin),
and every request must name this server in its ``Host`` header.

A web page open in the user's browser may send forms and ``fetch`` calls to any address, this server's loopback
address included: without these checks it could add items (cross-site request forgery). Browsers say where a
request comes from (``Origin``, and ``Sec-Fetch-Site`` in current ones); clients that are not browsers (curl,
scripts) send neither and are let through, as the token (when set) is what guards them. A page on a name that
resolves to this machine (DNS rebinding) is its own origin, so the ``Host`` header is checked against the names
the server is bound to.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response

logger = logging.getLogger(__name__)

#: Methods that never change anything here; every other method is checked.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_ANY = ("0.0.0.0", "::", "")


def bound_hosts(host: str, extra: Iterable[str] = ()) -> list[str] | None:
    """The host names a request may carry for a server bound to ``host``: the bound address, the loopback names on
    loopback, and ``extra`` (RAG_SERVER_ALLOWED_HOSTS). None (any name) for a server bound to every interface
    with no ``extra`` names: it is reached by names this machine cannot know."""
    names = [name.lower().strip("[]") for name in extra if name]
    if host in _ANY:
        return (names + list(_LOOPBACK_NAMES)) if names else None
    names.append(host.lower().strip("[]"))
    if _is_loopback(host):
        names.extend(_LOOPBACK_NAMES)
    return sorted(set(names))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """``host[:port]`` without its port, brackets and case."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL or origin, lower case, default ports dropped."""
    parts = urlsplit(url.strip())
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return url.strip().lower()
    netloc = (parts.hostname or "").lower()
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None and port != default:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme.lower()}://{netloc}"


class BrowserGuard:
    """ASGI middleware: 403 for a cross-site request that would change something, 400 for an unknown ``Host``.

    ``hosts``: the names ``Host`` may carry (None: any; see :func:`bound_hosts`). ``origins``: other origins
    (``https://app.example``) whose pages may call the API (RAG_SERVER_ALLOWED_ORIGINS).
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str] | None, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = None if hosts is None else frozenset(h.lower().strip("[]") for h in hosts)
        self.origins = frozenset(_origin(o) for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal = self._host_problem(host) or self._origin_problem(scope["method"], headers, scope, host)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        logger.warning("refused %s %s: %s", scope["method"], scope.get("path", ""), message)
        await error_response(status, message)(scope, receive, send)

    def _host_problem(self, host: str) -> tuple[int, str] | None:
        if self.hosts is None or _host_name(host) in self.hosts:
            return None
        return 400, (
            f"the Host header {host!r} is not a name of this server (a page on another name that resolves here is "
            "refused); RAG_SERVER_ALLOWED_HOSTS lists more names"
        )

    def _origin_problem(self, method: str, headers: Headers, scope: Scope, host: str) -> tuple[int, str] | None:
        if method in SAFE_METHODS:
            return None
        site = headers.get("sec-fetch-site")
        origin = headers.get("origin")
        if site in ("same-origin", "none"):
            return None
        if origin is None:
            if site is None:  # not a browser: the token, when set, guards it
                return None
            return 403, f"a {site} request cannot change anything here: it sent no Origin"
        own = _origin(f"{scope.get('scheme', 'http')}://{host}")
        if origin != "null" and _origin(origin) in self.origins | {own}:
            return None
        return 403, (
            f"a cross-site request from {origin} cannot change anything here (the page at {own} can); "
            "RAG_SERVER_ALLOWED_ORIGINS lists other origins allowed"
        )
