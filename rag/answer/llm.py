"""Chat LLMs for the answer stage: any OpenAI-compatible endpoint or Ollama, and calls that fail with a clear message.

The LlamaIndex integration packages are optional (``pip install 'mmrag[llm]'``); any other
LlamaIndex chat LLM works as well, passed in directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
from llama_index.core.llms import LLM, ChatMessage, ChatResponse

from rag.errors import RagError
from rag.settings import Settings

from .pacing import LLMSilenceError, abounded, bounded, endpoint_of

OLLAMA_URL = "http://localhost:11434"
OPENAI_URL = "https://api.openai.com/v1"  # the openai client's default, which OpenAILike keeps


TOKEN_LIMIT = "the LLM hit its output token limit"
NO_FINISH = "the LLM's stream ended without its finish signal (the connection dropped or the server stopped mid-answer)"
CLEAN_FINISH = "stop"


class LLMErrorKind(str, Enum):
    """How an LLM call failed, for counting (``/metrics``): the message says it for people."""

    TIMEOUT = "timeout"  # nothing in time (RAG_LLM_TIMEOUT), retries included
    UNREACHABLE = "unreachable"  # no connection: the endpoint is down or the address is wrong
    BAD_STATUS = "bad_status"  # the endpoint answered with an HTTP error
    UNREADABLE = "unreadable"  # it answered, with nothing usable (no text, not the shape asked for)
    PARTIAL = "partial"  # it stopped mid-answer: cut off, silent, or at its output token limit


class LLMError(RagError, RuntimeError):
    """The LLM endpoint failed: no answer in time, an HTTP error, or a reply that is not usable (``kind``)."""

    def __init__(self, message: str, kind: LLMErrorKind = LLMErrorKind.UNREADABLE) -> None:
        super().__init__(message)
        self.kind = kind


def openai_compatible_llm(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    max_retries: int = 1,
) -> LLM:
    """A chat LLM on an OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp, LM Studio, OpenAI, ...).

    ``base_url`` defaults to OpenAI's API; ``api_key`` to ``OPENAI_API_KEY``, else a placeholder
    (local servers usually want none).
    """
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError as e:
        raise ImportError(
            "an OpenAI-compatible LLM needs llama-index-llms-openai-like: pip install 'mmrag[llm]' "
            "(or pip install llama-index-llms-openai-like)"
        ) from e
    options = {"api_base": base_url} if base_url else {}
    return OpenAILike(
        model=model,
        api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
        is_chat_model=True,
        timeout=timeout,
        max_retries=max_retries,
        **options,
    )


def ollama_llm(model: str, *, base_url: str | None = None, timeout: float = 120.0) -> LLM:
    """A chat LLM served by Ollama (a vision model such as ``llava`` or ``qwen2.5vl`` to see the images)."""
    try:
        from llama_index.llms.ollama import Ollama
    except ImportError as e:
        raise ImportError(
            "an Ollama LLM needs llama-index-llms-ollama: pip install 'mmrag[llm]' "
            "(or pip install llama-index-llms-ollama)"
        ) from e
    return Ollama(model=model, base_url=base_url or OLLAMA_URL, request_timeout=timeout)


def llm_from_settings(settings: Settings | None = None) -> LLM | None:
    """The LLM the settings (``RAG_LLM_*``) describe; None when no model is set."""
    settings = settings or Settings()
    if not settings.llm_model:
        return None
    if settings.llm_provider == "ollama":
        return ollama_llm(settings.llm_model, base_url=settings.llm_base_url, timeout=settings.llm_timeout)
    return openai_compatible_llm(
        settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
    )


def chat_text(llm: LLM, messages: Sequence[ChatMessage]) -> str:
    """The text of the LLM's reply; ``LLMError`` when the call fails or the reply has no text."""
    return chat_reply(llm, messages)[0]


async def achat_text(llm: LLM, messages: Sequence[ChatMessage]) -> str:
    return (await achat_reply(llm, messages))[0]


def chat_reply(llm: LLM, messages: Sequence[ChatMessage]) -> tuple[str, str | None]:
    """The LLM's reply text and, when the provider says it did not finish cleanly, why (``LLMError`` on failure)."""
    try:
        reply = bounded(llm, lambda: llm.chat(messages))  # within RAG_LLM_TIMEOUT, the client's retries included
    except Exception as e:  # every client library fails its own way; the caller keeps its results
        raise LLMError(describe_error(e, endpoint_of(llm)), error_kind(e)) from e
    return _reply_text(reply), Ending.of(reply.raw).error()


async def achat_reply(llm: LLM, messages: Sequence[ChatMessage]) -> tuple[str, str | None]:
    try:
        reply = await abounded(llm, llm.achat(messages))
    except Exception as e:
        raise LLMError(describe_error(e, endpoint_of(llm)), error_kind(e)) from e
    return _reply_text(reply), Ending.of(reply.raw).error()


@dataclass
class Ending:
    """How a reply ended, from the provider's own signal: OpenAI's ``finish_reason``, Ollama's ``done``/``done_reason``.

    Fed every raw chunk of a stream (or the one raw reply). ``known`` says whether any of them was in a
    shape we can read; an LLM whose replies carry no such signal (a custom LlamaIndex LLM) is taken at
    its word.
    """

    known: bool = False
    reason: str | None = None

    @classmethod
    def of(cls, raw: Any) -> Ending:
        ending = cls()
        ending.see(raw)
        return ending

    def see(self, raw: Any) -> None:
        choices = getattr(raw, "choices", None)
        if choices is None and isinstance(raw, Mapping):
            choices = raw.get("choices")
        if isinstance(choices, list):  # an OpenAI-compatible completion or chunk
            self.known = True
            for choice in choices:
                reason = choice.get("finish_reason") if isinstance(choice, Mapping) else choice.finish_reason
                self.reason = reason or self.reason
        elif isinstance(raw, Mapping) and "done" in raw:  # an Ollama reply or line
            self.known = True
            if raw.get("done"):
                self.reason = raw.get("done_reason") or CLEAN_FINISH

    def error(self) -> str | None:
        """None for a clean finish (or an LLM that gives no signal); else why the answer is only partial."""
        if not self.known or self.reason == CLEAN_FINISH:
            return None
        if self.reason is None:
            return NO_FINISH
        if self.reason == "length":
            return TOKEN_LIMIT
        return f"the LLM stopped its answer early (finish reason {self.reason!r})"


def _reply_text(reply: ChatResponse) -> str:
    text = (reply.message.content or "").strip()
    if not text:
        raise LLMError("the LLM endpoint's reply has no text")
    return text


def describe_error(error: BaseException, endpoint: str | None = None) -> str:
    """A one-line account of an LLM call's failure, whatever client library raised it, naming the endpoint."""
    if isinstance(error, LLMSilenceError):  # our own time limit, worded already
        return str(error)
    detail = _short(str(error) or type(error).__name__)
    where = f"the LLM endpoint {endpoint}" if endpoint else "the LLM endpoint"
    kind = error_kind(error)
    if kind is LLMErrorKind.TIMEOUT:
        return f"{where} did not answer in time ({detail}; RAG_LLM_TIMEOUT sets the limit)"
    if kind is LLMErrorKind.BAD_STATUS:
        return f"{where} answered HTTP {_status(error)}: {detail}"
    if kind is LLMErrorKind.UNREACHABLE:
        hint = " (OpenAI's API, the default: RAG_LLM_BASE_URL names another)" if endpoint == OPENAI_URL else ""
        return f"cannot reach {where}{hint}: {detail}"
    return f"{where}'s reply could not be read ({type(error).__name__}: {detail})"


def error_kind(error: BaseException) -> LLMErrorKind:
    """How an LLM call failed, whatever client library raised ``error`` (an ``LLMError`` knows already)."""
    if isinstance(error, LLMError):
        return error.kind
    timeouts = _error_types(TimeoutError, httpx.TimeoutException, openai_name="APITimeoutError")
    if isinstance(error, (LLMSilenceError, *timeouts)):
        return LLMErrorKind.TIMEOUT
    if _status(error) is not None:
        return LLMErrorKind.BAD_STATUS
    if isinstance(error, _error_types(ConnectionError, httpx.TransportError, openai_name="APIConnectionError")):
        return LLMErrorKind.UNREACHABLE
    return LLMErrorKind.UNREADABLE


def _status(error: BaseException) -> int | None:
    """The HTTP status of a client library's error for an HTTP error reply."""
    status = getattr(error, "status_code", None)
    if status is None and isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
    return status if isinstance(status, int) else None


def _error_types(*base: type[BaseException], openai_name: str) -> tuple[type[BaseException], ...]:
    """The given exception types, plus the openai client's ``openai_name`` when that package is installed."""
    try:
        import openai
    except ImportError:
        return base
    return (*base, getattr(openai, openai_name))


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
