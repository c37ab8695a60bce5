"""Answering: a query engine that shows a vision LLM each retrieved item's picture and text, and cites them."""

from .citations import CitationCheck, check_citations
from .engine import answer_engine
from .llm import LLMError, LLMErrorKind, llm_from_settings, ollama_llm, openai_compatible_llm
from .rerank import GridReranker
from .response import AnswerResponse, AnswerStatus, Citation
from .streaming import AsyncStreamingAnswerResponse, StreamingAnswerResponse
from .synthesizer import MultimodalSynthesizer

__all__ = [
    "AnswerResponse",
    "AnswerStatus",
    "AsyncStreamingAnswerResponse",
    "Citation",
    "CitationCheck",
    "GridReranker",
    "LLMError",
    "LLMErrorKind",
    "MultimodalSynthesizer",
    "StreamingAnswerResponse",
    "answer_engine",
    "check_citations",
    "llm_from_settings",
    "ollama_llm",
    "openai_compatible_llm",
]
