"""Answering: a query engine that shows a vision LLM each retrieved item's picture and text, and cites them."""

from .engine import answer_engine
from .llm import LLMError, llm_from_settings, ollama_llm, openai_compatible_llm
from .rerank import GridReranker
from .synthesizer import AnswerResponse, AnswerStatus, Citation, MultimodalSynthesizer

__all__ = [
    "AnswerResponse",
    "AnswerStatus",
    "Citation",
    "GridReranker",
    "LLMError",
    "MultimodalSynthesizer",
    "answer_engine",
    "llm_from_settings",
    "ollama_llm",
    "openai_compatible_llm",
]
