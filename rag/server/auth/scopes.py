"""The scope each ``/api`` request needs, decided from its method and path alone, before the route reads anything.

Reading routes (GET, and the POSTs that search or answer) need ``read``; the token routes need ``admin``, and
so does ``/metrics`` (its counts span every tenant); every other route, a new one included, needs ``write``
until it is listed here: a route that changes something cannot be reached with a read token by mistake.
"""

from __future__ import annotations

from rag.access import Scope

#: POST routes that only read: they search, answer or chat.
READING_POSTS = frozenset({"/api/search", "/api/ask", "/api/ask/stream", "/api/chat", "/api/chat/stream"})
#: Paths (and everything under them) whose GETs show what a writer did (ingest jobs name the uploaded files).
WRITERS_GETS = ("/api/ingest",)
ADMIN = ("/api/tokens", "/metrics")
#: Where a token is checked (these paths and everything under them): the page and /health stay open.
GUARDED = ("/api", "/metrics")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


def guarded(path: str) -> bool:
    """Whether a request for ``path`` needs a token (once tokens are configured)."""
    return _under(path.rstrip("/") or "/", GUARDED)


def needed_scope(method: str, path: str) -> Scope:
    """The scope for ``method`` on ``path`` (a path no route serves gets its 404 with the scope of its method)."""
    path = path.rstrip("/") or "/"
    if _under(path, ADMIN):
        return Scope.ADMIN
    if method in ("GET", "HEAD"):
        return Scope.WRITE if _under(path, WRITERS_GETS) else Scope.READ
    return Scope.READ if method == "POST" and path in READING_POSTS else Scope.WRITE
