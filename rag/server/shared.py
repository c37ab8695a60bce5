"""One encoder and one store shared by every request thread and the ingest worker: calls take turns."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar, cast

T = TypeVar("T")
#: While a call waits for its turn, how often it asks ``gate`` whether to go on waiting.
_GATE_EVERY = 0.1


def serialized(
    target: T, lock: threading.Lock, *, unlocked: Collection[str] = (), gate: Callable[[], None] | None = None
) -> T:
    """``target`` with every method call holding ``lock``; attributes, and the methods in ``unlocked``, pass through.

    Fast tokenizers refuse concurrent use and a Milvus Lite client is one connection, so the app
    hands this wrapper, not the object itself, to retrievers and to ingestion. ``gate``, when given, is called
    while a call waits for its turn and once it has it: what it raises ends the call (a store known to be down
    need not be waited for).
    """
    return cast(T, _Serialized(target, lock, frozenset(unlocked), gate))


class _Serialized:
    def __init__(
        self, target: Any, lock: threading.Lock, unlocked: frozenset[str], gate: Callable[[], None] | None
    ) -> None:
        self._target = target
        self._lock = lock
        self._unlocked = unlocked
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in self._unlocked or not callable(value):
            return value
        return self._locked(value)

    def _locked(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._acquire()
            try:
                if self._gate is not None:
                    self._gate()
                return method(*args, **kwargs)
            finally:
                self._lock.release()

        return call

    def _acquire(self) -> None:
        if self._gate is None:
            self._lock.acquire()
            return
        while not self._lock.acquire(timeout=_GATE_EVERY):
            self._gate()

    def __repr__(self) -> str:
        return f"serialized({self._target!r})"
