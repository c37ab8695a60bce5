"""Start-up in the background, liveness and readiness.

The port answers from the first second: the encoder loads and the store is opened on a thread meanwhile.
``/health`` (liveness) answers at once, always 200 while the process serves, with what it is doing and the store's
state as the probe last saw it; it never waits on the store. ``/ready`` is 503 with the reason until the encoder
is loaded and the store answers, and again while the store is away; load balancers send traffic on its 200.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

from fastapi import APIRouter, Request

from connectors.milvus import StoreError, StoreUnavailableError

from .breaker import StoreState
from .errors import NotReadyError, error_response
from .models import ErrorBody
from .service import Service

logger = logging.getLogger(__name__)

#: Seconds between attempts to open a store that cannot be reached at start (it may start after the server).
RETRY_OPEN = 2.0


class Phase(str, Enum):
    LOADING = "loading"
    OK = "ok"
    FAILED = "failed"


class Startup:
    """Opens the service (``open()``: encoder, store, LLM) on a thread, retrying while the store cannot be reached;
    ``on_failure`` hears of any other error (``serve`` then stops, and reports it)."""

    def __init__(
        self,
        open_service: Callable[[], Service],
        on_ready: Callable[[Service], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        public: Callable[[str], str] = str,
    ) -> None:
        """``public``: a failure's message as clients may read it in ``/ready`` (the log has it whole)."""
        self.phase = Phase.LOADING
        self.service: Service | None = None
        self.error: BaseException | None = None
        self.reason = "starting: loading the encoder and opening the store"
        self._open = open_service
        self._on_ready = on_ready
        self._on_failure = on_failure
        self._public = public
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._load, name="rag-startup", daemon=True)

    def start(self, wait: bool = False) -> None:
        """Load on the thread; with ``wait``, return once loaded (and raise what loading raised)."""
        self._thread.start()
        if wait:
            self._thread.join()
            if self.error is not None:
                raise self.error

    def require(self) -> Service:
        """The service; a ``NotReadyError`` (503) while it loads, or when loading failed."""
        if self.service is None:
            raise NotReadyError(self.reason)
        return self.service

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # still loading: the thread closes what it opens once it sees the stop
            self._thread.join(timeout=5)
        if self.service is not None:
            self.service.close()

    def _load(self) -> None:
        while not self._stop.is_set():
            try:
                service = self._open()
            except StoreUnavailableError as e:
                self.reason = "starting: the Milvus store cannot be reached yet"
                logger.warning("the Milvus store cannot be reached yet (%s); trying again in %g s", e, RETRY_OPEN)
                self._stop.wait(RETRY_OPEN)
                continue
            except BaseException as e:
                self.phase, self.error = Phase.FAILED, e
                self.reason = f"the server could not start: {self._public(str(e))}"
                logger.error("the server could not start: %s", e, exc_info=not isinstance(e, (StoreError, OSError)))
                if self._on_failure is not None:
                    self._on_failure(e)
                return
            if self._stop.is_set():
                service.close()
                return
            if self._on_ready is not None:
                self._on_ready(service)
            self.service, self.phase = service, Phase.OK
            logger.info("ready: the encoder is loaded and the store answers")
            return


router = APIRouter(tags=["service"])


def _startup(request: Request) -> Startup:
    return request.app.state.startup


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    """Liveness, at once and with no token: 200 while the process serves. ``status`` is ``loading`` (the encoder
    loads), ``ok`` or ``failed``; ``store`` is the store's state as the background probe last saw it (``unknown``,
    ``ok``, ``unavailable``, ``missing``); ``device`` and ``dtype`` are the encoder's once loaded. Nothing about
    the data."""
    startup = _startup(request)
    service = startup.service
    if service is None:
        return {"status": startup.phase.value, "store": StoreState.UNKNOWN.value}
    runtime = service.encoder.runtime
    return {"status": "ok", "store": service.breaker.state.value, "device": runtime.device, "dtype": runtime.dtype}


@router.get("/ready", responses={503: {"model": ErrorBody}})
def ready(request: Request) -> Any:
    """Readiness: 200 once the encoder is loaded and the store answers with the collection; 503 with the reason
    (and ``Retry-After``) before, and while the store is away."""
    service = _startup(request).require()
    state = service.breaker.state
    if state is StoreState.OK:
        return {"status": "ready"}
    reason = {
        StoreState.UNKNOWN: "the store has not answered yet",
        StoreState.UNAVAILABLE: "the Milvus store cannot be reached",
        StoreState.MISSING: f"the collection {service.settings.collection!r} is gone from the store",
    }[state]
    response = error_response(503, reason, code="not_ready", store=state.value)
    response.headers["Retry-After"] = str(service.breaker.retry_after)
    return response
