"""What the service measures for ``/metrics`` and reports in its log: the encoder's batches and the LLM's failures.

The encoder is timed per call (one batch: a query, or a batch of an ingest job), inside the lock that makes
requests take turns, so a wait for the turn is not counted. An answer whose LLM failed is counted by how
(``LLMErrorKind``), logged at ERROR with the endpoint's URL, and shown to the client without that URL unless the
server shows its paths (``RAG_SERVER_SHOW_PATHS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram

from rag.answer import AnswerResponse, AnswerStatus
from rag.embeddings.base import Encoder

logger = logging.getLogger(__name__)

#: The encoder's calls that are timed, by the ``input`` label they are counted under.
_TIMED = {
    "encode_text": "text",
    "encode_image": "image",
    "encode_fused": "fused",
    "encode_fused_and_image": "fused_and_image",
}
#: From a fast text query to a large image batch of a slow CPU.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HIDDEN = "(its address is in the server log)"


class Telemetry:
    """The service's measures, in ``registry`` (the app's; None: counted, but exported nowhere)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.encoder_batch = Histogram(
            "rag_encoder_batch_seconds",
            "Time the encoder took for one call (a query, or one batch of an ingest job), by input: text, image, "
            "fused, fused_and_image; waiting for its turn not included.",
            ["input"], registry=registry, buckets=_BUCKETS,
        )  # fmt: skip
        self.llm_errors = Counter(
            "rag_llm_errors",
            "Answers whose LLM failed, by kind: timeout, unreachable, bad_status, unreadable (before its first word), "
            "partial (cut off mid-answer).",
            ["kind"], registry=registry,
        )  # fmt: skip

    def timed(self, encoder: Encoder) -> Encoder:
        """``encoder`` whose encoding calls are timed; everything else passes through."""
        return cast(Encoder, _Timed(encoder, self.encoder_batch))

    def llm_failed(self, response: AnswerResponse, endpoint: str | None) -> None:
        """Count and log an answer whose LLM failed (status ``llm_error`` or ``partial``); others pass."""
        if response.status not in (AnswerStatus.LLM_ERROR, AnswerStatus.PARTIAL) or response.error_kind is None:
            return
        self.llm_errors.labels(response.error_kind.value).inc()
        outcome = "the answer is partial" if response.status is AnswerStatus.PARTIAL else "the reply is the evidence"
        error = (response.error or "").rstrip(".")
        where = f" at {endpoint}" if endpoint and endpoint not in error else ""  # a cut-off answer names none
        logger.error("the LLM failed (%s)%s: %s; %s", response.error_kind.value, where, error, outcome)


def hiding(endpoint: str | None, shown: bool) -> Callable[[str], str]:
    """A function that takes the LLM endpoint's address out of a text for clients, unless ``shown``."""
    if shown or not endpoint:
        return lambda text: text
    parts = urlsplit(endpoint)
    # the whole URL first, then what is left of it in a client library's wording (host:port, the URL's start)
    secrets = [endpoint.rstrip("/"), f"{parts.scheme}://{parts.netloc}", parts.netloc]
    secrets = [s for s in secrets if s]

    def hide(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, HIDDEN)
        return text

    return hide


class _Timed:
    def __init__(self, target: Any, histogram: Histogram) -> None:
        self._target = target
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name not in _TIMED:
            return value
        observed = self._histogram.labels(_TIMED[name])

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                observed.observe(time.perf_counter() - start)

        return call

    def __repr__(self) -> str:
        return f"timed({self._target!r})"
