"""Slow work of a reader (OCR) done off the reader's thread, its results kept in their place in the stream.

An ingest run lends the sources its preprocessing workers (``lent_workers``, in the thread that reads the
sources). A reader hands slow work to them with ``off_thread`` and yields a :class:`Later` where that work's
results belong; ``in_order`` reads on meanwhile, so the next pages' work starts while this one's runs, and gives
every result back in the order it was yielded, each ``Later`` replaced by what its ``finish`` makes of the work
done. With no workers lent (a source read on its own), ``off_thread`` does the work there and then: the serial
path, with the same results.

Every public source resolves its own ``Later`` values with ``in_order``; only the readers inside this package
see them.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from rag.items import KnowledgeItem, SourceError

SourceResult = KnowledgeItem | SourceError

T = TypeVar("T")

#: Results held behind a ``Later`` still at work before the reader waits for it (keeps memory bounded when
#: one slow page is followed by many quick items).
HELD = 256


@dataclass(frozen=True)
class Workers:
    """Worker threads lent to the sources: ``submit(fn, *args)`` runs ``fn`` on one of ``count`` threads."""

    submit: Callable[..., Future[Any]]
    count: int


_LENT: contextvars.ContextVar[Workers | None] = contextvars.ContextVar("rag_source_workers", default=None)


@contextlib.contextmanager
def lent_workers(submit: Callable[..., Future[Any]], count: int) -> Iterator[None]:
    """While this lasts, sources read in this thread run their slow work with ``submit`` (``count`` at a time)."""
    token = _LENT.set(Workers(submit, max(1, count)))
    try:
        yield
    finally:
        _LENT.reset(token)


def lent() -> Workers | None:
    """The workers lent to this thread's sources, if any."""
    return _LENT.get()


def off_thread(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` on the lent workers; with none lent, done here and now (its error kept in the future)."""
    workers = _LENT.get()
    if workers is not None:
        return workers.submit(fn, *args)
    done: Future[T] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as e:  # the finish step decides what a failure costs
        done.set_exception(e)
    return done


@dataclass(frozen=True)
class Later:
    """Results still to come: ``finish(future)``, called in the reader's thread once ``future`` is done."""

    future: Future[Any]
    finish: Callable[[Future[Any]], Iterable[SourceResult]]

    def map_items(self, change: Callable[[KnowledgeItem], KnowledgeItem]) -> Later:
        """The same results, ``change`` applied to each item."""
        finish = self.finish
        return Later(self.future, lambda done: [_changed(r, change) for r in finish(done)])


def now(finish: Callable[[], Iterable[SourceResult]]) -> Later:
    """Results made when their turn comes, after those of every ``Later`` before them (a reader's closing report
    that counts what the finished pages found)."""
    done: Future[None] = Future()
    done.set_result(None)
    return Later(done, lambda _: finish())


Pending = SourceResult | Later


def map_items(results: Iterable[Pending], change: Callable[[KnowledgeItem], KnowledgeItem]) -> Iterator[Pending]:
    """``results`` with ``change`` applied to every item, those still to come included."""
    for result in results:
        yield result.map_items(change) if isinstance(result, Later) else _changed(result, change)


def in_order(results: Iterable[Pending]) -> Iterator[SourceResult]:
    """Every result in the order yielded, each ``Later`` finished in its place; reads ahead while its work runs,
    with at most twice the lent workers' count at work (so they never wait for the reader)."""
    waiting: deque[Pending] = deque()
    at_work = 0

    def release(wait: bool) -> Iterator[SourceResult]:
        """The results at the front that are ready; with ``wait``, after waiting for the first ``Later``."""
        nonlocal at_work
        while waiting:
            head = waiting[0]
            if not isinstance(head, Later):
                waiting.popleft()
                yield head
                continue
            if not wait and not head.future.done():
                return
            wait = False
            waiting.popleft()
            at_work -= 1
            yield from head.finish(head.future)

    try:
        for result in results:
            if not waiting and not isinstance(result, Later):
                yield result  # nothing at work: straight through, as a reader without slow work always goes
                continue
            waiting.append(result)
            at_work += isinstance(result, Later)
            yield from release(wait=False)
            while waiting and (at_work >= _ahead() or len(waiting) > HELD):
                yield from release(wait=True)
        while waiting:
            yield from release(wait=True)
    finally:  # stopped early: what has not started never will
        for pending in waiting:
            if isinstance(pending, Later):
                pending.future.cancel()


def _ahead() -> int:
    workers = _LENT.get()
    return 2 * workers.count if workers is not None else 1


def _changed(result: SourceResult, change: Callable[[KnowledgeItem], KnowledgeItem]) -> SourceResult:
    return change(result) if isinstance(result, KnowledgeItem) else result
