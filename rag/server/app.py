"""The HTTP API and the web page: a FastAPI app over one collection, owned for the app's lifetime.

Routes under ``/api`` ask for a bearer token once one is configured (``rag tokens``, ``RAG_SERVER_TOKEN``;
``rag.server.auth``), and on a non-loopback address always, unless ``--no-auth``; the page, its static
files, ``/health``, the OpenAPI schema and its docs at ``/docs`` do not. Every error is JSON:
``{"error": <code>, "message": <what went wrong>, "request_id": <id>}``; every reply has an ``X-Request-ID``
header (the client's, when it sent a safe one) and every access line the id and the latency.

Clients see items by name and id, not by this machine's paths: sources named relative to the
folder they were ingested from, images served by item id, and no Milvus URI, unless
``RAG_SERVER_SHOW_PATHS`` allows them. The API docs (``/docs``: Swagger UI, ``/redoc``) are
``fastapi-offline``'s: their scripts are served here, not from a CDN, so they work offline.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from rag.embeddings.base import Encoder
from rag.errors import RagError
from rag.settings import Settings

from .auth import guard_open_bind
from .auth import install as install_auth
from .errors import BodyLimit, add_error_handlers
from .guard import BrowserGuard, bound_hosts
from .health import Startup
from .health import router as health_router
from .logs import configure as configure_logs
from .metrics import Metrics, MetricsMiddleware
from .metrics import router as metrics_router
from .models import ErrorBody
from .request_ids import RequestIds
from .routes import api_router
from .routes.body import BODY_SCHEMAS
from .service import Service

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(
    settings: Settings | None = None, *, encoder: Encoder | None = None, hosts: Sequence[str] | None = None
) -> FastAPI:
    """The app over ``settings.collection``; ``encoder`` overrides the one the settings name (e.g. already loaded).

    ``hosts``: the names the ``Host`` header may carry (``guard.bound_hosts``; ``serve`` passes the bound ones);
    None: any. Cross-site requests that would change something are refused either way (``guard``)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Given an encoder (loaded already), the app opens the store before it serves; else it serves at once,
        # and loads meanwhile (``health``): /health answers, /ready and the API say 503 until loaded.
        startup = Startup(
            lambda: Service.open(settings, encoder, app.state.metrics.telemetry),
            on_ready=lambda service: setattr(app.state, "service", service),
            on_failure=getattr(app.state, "on_startup_failure", None),
            public=_without_store(settings),
        )
        app.state.startup = startup
        startup.start(wait=encoder is not None)
        logger.info("serving collection %r at %s", settings.collection, settings.milvus_uri)
        try:
            yield
        finally:
            startup.close()

    app = FastAPIOffline(
        title="mmrag",
        summary="Multimodal search, answers with citations, and ingestion over one collection.",
        lifespan=lifespan,
        responses={code: {"model": ErrorBody} for code in (400, 401, 403, 413, 422, 429)},
        static_url="/docs/assets",
    )
    app.state.settings = settings
    app.include_router(api_router(), prefix="/api")
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.state.metrics = Metrics(lambda: app.state.startup.service if hasattr(app.state, "startup") else None)
    app.openapi = lambda: _with_body_schemas(app)  # type: ignore[method-assign]
    # The request id and the access line wrap the whole stack, the error handlers included: a 500 has both.
    inner_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestIds(inner_stack())  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=settings.server_max_request_bytes)
    if settings.server_allowed_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.server_allowed_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(BrowserGuard, hosts=hosts, origins=settings.server_allowed_origins)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    add_error_handlers(app)
    install_auth(app, settings)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": _PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def no_sniffing(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


def _without_store(settings: Settings) -> Callable[[str], str]:
    """A text for clients without the store's address, unless the server shows its paths."""
    if settings.server_show_paths:
        return str
    return lambda text: text.replace(str(settings.milvus_uri), "(the store; its address is in the server log)")


@contextmanager
def _ending_cleanly() -> Iterator[None]:
    """Once uvicorn has shut down on SIGTERM or Ctrl+C (the ingest jobs drained and recorded), it raises that signal
    again, which would end the process by it (status 143, or a KeyboardInterrupt): here it is only logged, and
    ``rag serve`` exits 0, as after any clean stop."""
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's
        yield
        return
    kept = {number: signal.signal(number, _stopped) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)


def _stopped(number: int, frame: object) -> None:
    logger.info("stopped by %s", signal.Signals(number).name)


def _with_body_schemas(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, with the query request bodies the routes document by reference (``routes.body``)."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(BODY_SCHEMAS)
        app.openapi_schema = schema
    return app.openapi_schema


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PortUnavailableError(RagError, OSError):
    """The server's address cannot be bound (a port in use, an address not of this machine)."""


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound as uvicorn binds it, before anything is loaded: a busy port fails at once."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog; listening now keeps another server off the port while this one loads
    except OSError as e:
        sock.close()
        raise PortUnavailableError.worded(
            f"cannot listen on {host}:{port}: {e.strerror or e} (is another server there? {{port}} picks another)"
        ) from e
    return sock


def serve(settings: Settings | None = None, *, host: str | None = None, port: int | None = None) -> None:
    """Run the app with uvicorn until interrupted (one process; a Milvus Lite folder is shared through its server).

    The port is bound first; the encoder and the store load only once it is ours, while it answers (``health``).
    What stopped the start (a model that cannot load, a collection of another encoder) is raised once it stops."""
    import uvicorn

    settings = settings or Settings()
    configure_logs(settings.log_level, settings.log_format)
    host = host or settings.server_host
    port = settings.server_port if port is None else port
    with bind(host, port) as sock:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{sock.getsockname()[1]}/"
        settings = guard_open_bind(settings, host, url, exposed=not is_loopback(host))
        logger.info("listening on %s (/health now, /ready once the encoder is loaded; Ctrl+C stops)", url.rstrip("/"))
        app = create_app(settings, hosts=bound_hosts(host, settings.server_allowed_hosts))
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,  # configure_logs did it
                access_log=False,  # ours, with latency and the request id (request_ids)
                log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=max(1, round(settings.server_drain_seconds)),
            )
        )
        app.state.on_startup_failure = lambda error: setattr(server, "should_exit", True)
        with _ending_cleanly():
            server.run([sock])
    failed = app.state.startup.error if hasattr(app.state, "startup") else None
    if failed is not None:
        raise failed
