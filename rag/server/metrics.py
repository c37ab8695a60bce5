"""``/metrics`` in Prometheus's text format (``prometheus-client``), one registry per app.

Requests are counted and timed per route (the route's template, so ids do not make new series); the store's
state, its failed calls, and the items ingest jobs added are read from the service when scraped; the encoder's
batch times and the LLM's failures are counted by the service as they happen (``telemetry``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .breaker import StoreState
from .service import Service
from .telemetry import Telemetry


class Metrics:
    """The app's registry: request counts and latencies, and what the service reports when scraped."""

    def __init__(self, service: Callable[[], Service | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests", "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "rag_http_request_seconds", "Time to answer an HTTP request (to its first byte), by method and route.",
            ["method", "route"], registry=self.registry,
        )  # fmt: skip
        self.registry.register(_ServiceCollector(service))
        #: The encoder's batch times and the LLM's failures, which the service reports as they happen.
        self.telemetry = Telemetry(self.registry)


class _ServiceCollector(Collector):
    def __init__(self, service: Callable[[], Service | None]) -> None:
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        service = self._service()
        ready = GaugeMetricFamily("rag_ready", "1 once the encoder is loaded and the store was opened.")
        ready.add_metric([], 0 if service is None else 1)
        yield ready
        if service is None:
            return
        state = GaugeMetricFamily(
            "rag_store_state", "1 for the store's state as the probe last saw it (ok: the circuit is closed).",
            labels=["state"],
        )  # fmt: skip
        for each in StoreState:
            state.add_metric([each.value], 1 if service.breaker.state is each else 0)
        yield state
        failed = CounterMetricFamily("rag_store_unavailable", "Store calls and probes that found it unreachable.")
        failed.add_metric([], service.breaker.failures)
        yield failed
        added = CounterMetricFamily("rag_ingested_items", "Items ingest jobs added since the server started.")
        added.add_metric([], service.jobs.items_added)
        yield added


class MetricsMiddleware:
    """Counts and times every HTTP request by the route it matched ("unmatched" for none)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = _route(scope)
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.metrics.requests.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    """The matched route's template, with the prefix of the router it was included by (``/api``)."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    included = (scope.get("fastapi") or {}).get("effective_route_context")  # FastAPI's included routers
    return str(getattr(included, "path", None) or getattr(route, "path", route))


router = APIRouter(tags=["service"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency per route, the store's state and failed calls, items ingested,
    the encoder's batch times, the LLM's failures by kind. No token needed; nothing about the data."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
