"""One encoder and one store shared by every request thread and the ingest worker: calls take turns."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar, cast

T = TypeVar("T")


def serialized(target: T, lock: threading.Lock, *, unlocked: Collection[str] = ()) -> T:
    """``target`` with every method call holding ``lock``; attributes, and the methods in ``unlocked``, pass through.

    Fast tokenizers refuse concurrent use and a Milvus Lite client is one connection, so the app
    hands this wrapper, not the object itself, to retrievers and to ingestion.
    """
    return cast(T, _Serialized(target, lock, frozenset(unlocked)))


class _Serialized:
    def __init__(self, target: Any, lock: threading.Lock, unlocked: frozenset[str]) -> None:
        self._target = target
        self._lock = lock
        self._unlocked = unlocked

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in self._unlocked or not callable(value):
            return value
        return self._locked(value)

    def _locked(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"serialized({self._target!r})"
