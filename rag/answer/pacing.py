"""LLM time limits that mean what they say: ``RAG_LLM_TIMEOUT`` (``--llm-timeout``) seconds for the first token,
the client library's retries included, then at most that long between two tokens.

A client's own timeout applies per attempt, so a retry used to get a fresh one (5 s took 10.5 s).
Here the call runs in a worker thread (async: a task) and the caller stops waiting at the limit,
whatever the client is doing. A long answer from a slow local LLM is never cut for its length,
only for a silence. Nothing is retried once tokens have been streamed: the client libraries retry
only the opening request, and this module never calls the LLM again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from llama_index.core.llms import LLM

from rag.errors import RagError

T = TypeVar("T")


class LLMSilenceError(RagError, TimeoutError):
    """The LLM sent nothing within the time limit: no first token (retries included), or a silence mid-answer."""


def endpoint_of(llm: LLM) -> str | None:
    """The URL an LLM client sends its requests to, where it says (OpenAI-compatible clients, Ollama)."""
    url = getattr(llm, "api_base", None) or getattr(llm, "base_url", None)
    return str(url) if url else None


def time_limit(llm: LLM) -> float | None:
    """The seconds the LLM's client was given (OpenAI-compatible ``timeout``, Ollama ``request_timeout``)."""
    for name in ("timeout", "request_timeout"):
        value = getattr(llm, name, None)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None


def _silence(llm: LLM, limit: float, started: bool) -> LLMSilenceError:
    where = f"the LLM endpoint {endpoint_of(llm)}" if endpoint_of(llm) else "the LLM endpoint"
    if started:
        return LLMSilenceError(f"{where} went silent for more than {limit:g} s mid-answer (RAG_LLM_TIMEOUT)")
    return LLMSilenceError(
        f"{where} did not answer in time: nothing within {limit:g} s, retries included (RAG_LLM_TIMEOUT sets the limit)"
    )


def paced(llm: LLM, open_stream: Callable[[], Iterator[T]]) -> Iterator[T]:
    """The stream's items, each awaited at most the LLM's time limit: the first from the call's start."""
    limit = time_limit(llm)
    if limit is None:
        yield from open_stream()
        return
    inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    abandoned = threading.Event()

    def pump() -> None:
        try:
            for item in open_stream():
                if abandoned.is_set():
                    return
                inbox.put(("item", item))
            inbox.put(("end", None))
        except BaseException as e:  # handed to the caller, who words it
            inbox.put(("error", e))

    threading.Thread(target=pump, name="llm-stream", daemon=True).start()
    started = False
    try:
        while True:
            try:
                kind, value = inbox.get(timeout=limit)
            except queue.Empty:
                raise _silence(llm, limit, started) from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            started = True
            yield value
    finally:
        abandoned.set()


async def abounded(llm: LLM, call: Awaitable[T]) -> T:
    """``bounded`` for async callers."""
    limit = time_limit(llm)
    try:
        return await asyncio.wait_for(call, limit)
    except TimeoutError:
        raise _silence(llm, limit or 0.0, False) from None


async def apaced(llm: LLM, stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """``paced`` for async streams (``stream`` is the awaited ``astream_chat``)."""
    limit = time_limit(llm)
    started = False
    while True:
        try:
            item = await asyncio.wait_for(anext(stream), limit)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _silence(llm, limit or 0.0, started) from None
        started = True
        yield item


def bounded(llm: LLM, call: Callable[[], T]) -> T:
    """``call()``'s result, awaited at most the LLM's time limit (retries included)."""
    limit = time_limit(llm)
    if limit is None:
        return call()
    [item] = list(paced(llm, lambda: iter([call()])))
    return item
