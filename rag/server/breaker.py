"""Failing fast while the store is away: a circuit breaker over the store, and one background probe.

Closed, calls go through. A call that finds the store unreachable, or the probe, opens the breaker: every store
call then fails at once (a 503 with ``Retry-After``), callers waiting for the shared store give up too, and only the
probe, every ``interval`` seconds, asks the store whether it is back (on its own connection, so a call hung on the
shared one cannot hold it up). Its first answer closes the breaker. The probe also runs while all is well, so
``/health`` and ``/ready`` report the store's state without waiting on it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar, cast

from connectors.milvus import CollectionNotFoundError, StoreError, StoreUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StoreState(str, Enum):
    UNKNOWN = "unknown"  # not asked yet
    OK = "ok"
    UNAVAILABLE = "unavailable"  # cannot be reached: the breaker is open
    MISSING = "missing"  # answers, but the collection is gone


class StoreOutageError(StoreUnavailableError):
    """The breaker is open: the store stopped answering moments ago; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, uri: str, reason: str, retry_after: int, public: str) -> None:
        super().__init__(message, uri, reason)
        self.retry_after = retry_after
        self.public = public  # the message without the store's address


class Breaker:
    """The store's state as the probe and the calls last saw it; ``check`` raises while it is unreachable."""

    def __init__(self, uri: str, interval: float = 2.0, on_change: Callable[[StoreState], None] | None = None) -> None:
        self.uri = uri
        self.interval = interval
        self.state = StoreState.UNKNOWN
        self.reason = ""
        self.since = time.monotonic()
        self.failures = 0  # calls and probes that found the store unreachable
        self._on_change = on_change
        self._lock = threading.Lock()

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.interval))

    def check(self) -> None:
        """Raise :class:`StoreOutageError` while the store is unreachable."""
        if self.state is StoreState.UNAVAILABLE:
            down = time.monotonic() - self.since
            after = f"it is checked every {self.interval:g} s: try again then"
            raise StoreOutageError(
                f"the Milvus store at {self.uri} cannot be reached (for {down:.0f} s: {self.reason}); {after}",
                self.uri,
                self.reason,
                self.retry_after,
                f"the Milvus store cannot be reached (for {down:.0f} s); {after}",
            )

    def failed(self, error: StoreUnavailableError) -> None:
        self.failures += 1
        if self._moved(StoreState.UNAVAILABLE, error.reason):
            logger.error(
                "the Milvus store at %s stopped answering (%s): requests that need it get 503 at once until it is back "
                "(checked every %g s)",
                self.uri,
                error.reason,
                self.interval,
            )

    def answered(self) -> None:
        was, down = self.state, time.monotonic() - self.since
        if self._moved(StoreState.OK, "") and was is not StoreState.UNKNOWN:
            logger.warning("the Milvus store at %s answers again (after %.0f s %s)", self.uri, down, was.value)

    def missing(self, message: str) -> None:
        if self._moved(StoreState.MISSING, message):
            logger.error("%s", message)

    def _moved(self, state: StoreState, reason: str) -> bool:
        with self._lock:
            if self.state is state:
                return False
            self.state, self.reason, self.since = state, reason, time.monotonic()
        if self._on_change is not None:
            self._on_change(state)
        return True

    def wrap(self, target: T) -> T:
        """``target`` whose method calls fail at once while the breaker is open, and open it when they find the
        store unreachable; attributes pass through."""
        return cast(T, _Guarded(target, self))


class _Guarded:
    def __init__(self, target: Any, breaker: Breaker) -> None:
        self._target = target
        self._breaker = breaker

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self._breaker.check()
            try:
                return value(*args, **kwargs)
            except StoreOutageError:
                raise
            except StoreUnavailableError as e:
                self._breaker.failed(e)
                raise

        return call

    def __repr__(self) -> str:
        return f"guarded({self._target!r})"


class Probe:
    """A daemon thread that calls ``ping`` every ``breaker.interval`` seconds and tells the breaker what it found.

    ``ping(timeout)`` returns when the store answers and has the collection; it raises ``StoreUnavailableError``
    when the store cannot be reached and ``CollectionNotFoundError`` when the collection is gone."""

    def __init__(self, breaker: Breaker, ping: Callable[[float], None], timeout: float = 2.0) -> None:
        self.breaker = breaker
        self._ping = ping
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rag-store-probe", daemon=True)

    def start(self) -> Probe:
        self.check()
        self._thread.start()
        return self

    def check(self) -> StoreState:
        """Ask the store once, now."""
        try:
            self._ping(self._timeout)
        except StoreUnavailableError as e:
            self.breaker.failed(e)
        except CollectionNotFoundError as e:
            self.breaker.missing(str(e))
        except StoreError as e:  # answers, but refuses: not an outage
            logger.warning("the store probe failed: %s", e)
        else:
            self.breaker.answered()
        return self.breaker.state

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout + self.breaker.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.breaker.interval):
            try:
                self.check()
            except Exception:  # the probe must outlive surprises; the next round tries again
                logger.exception("the store probe failed unexpectedly")
