"""The brute-force guard: an address that sent too many wrong tokens in a minute is refused for a minute."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

#: Addresses followed at most; past it, the oldest quiet ones are forgotten first.
_MAX_ADDRESSES = 10_000


class FailureLimiter:
    """Counts failed tokens per address: ``limit`` failures within ``window`` seconds block it for ``block`` seconds."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        block: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.block = limit, window, block
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float | None:
        """Seconds ``address`` stays blocked, or None when it may try."""
        with self._lock:
            until = self._blocked.get(address)
            if until is None:
                return None
            left = until - self._clock()
            if left > 0:
                return left
            del self._blocked[address]
            return None

    def failed(self, address: str) -> bool:
        """Count a failure from ``address``; True when it is now blocked."""
        now = self._clock()
        with self._lock:
            failures = self._failures.pop(address, deque())
            self._failures[address] = failures  # most recent last: the first ones are the quietest
            while failures and now - failures[0] > self.window:
                failures.popleft()
            failures.append(now)
            if len(failures) >= self.limit:
                self._blocked[address] = now + self.block
                del self._failures[address]
                return True
            while len(self._failures) > _MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
            return False
