"""Which cross-encoder a request may choose: none, or one the operator allowed (``RAG_RERANKER`` and
``RAG_SERVER_RERANKERS``). A request never makes the server load a model of the client's naming.

Clients see each allowed reranker by a label: its hub id (``BAAI/bge-reranker-base``) as written, a local folder
by its last part unless the server shows its paths (``RAG_SERVER_SHOW_PATHS``). A request may name the label, the
operator's own spelling, or ``none``; leaving ``reranker`` out means the server's default, ``RAG_RERANKER``.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from rag.errors import RagError
from rag.retrieval.rerank import NO_RERANKER
from rag.settings import Settings

NONE = "none"


class RerankerChoiceError(RagError, ValueError):
    """A request named a reranker this server does not allow (answered 400, naming the allowed ones)."""


def allowed_rerankers(settings: Settings) -> dict[str, str]:
    """The rerankers a request may choose, by the label clients see, in the operator's order (the default first)."""
    names = [settings.reranker, *settings.server_rerankers] if settings.reranker else settings.server_rerankers
    allowed: dict[str, str] = {}
    for name in dict.fromkeys(names):
        label = name if settings.server_show_paths or not _is_path(name) else PurePath(name).name
        allowed[label if label not in allowed else name] = name
    return allowed


def default_label(settings: Settings) -> str:
    """The label of the server's own reranker (``RAG_RERANKER``), or ``none``."""
    allowed = allowed_rerankers(settings)
    return next((label for label, name in allowed.items() if name == settings.reranker), NONE)


def chosen_reranker(settings: Settings, requested: str | None) -> str | None:
    """The model a request's ``reranker`` stands for: None (left out) is the server's default; ``none`` is no
    reranking; an allowed label or name is that model. ``RerankerChoiceError`` for anything else."""
    if requested is None:
        return settings.reranker
    if requested.strip().lower() in NO_RERANKER:
        return NONE
    allowed = allowed_rerankers(settings)
    if requested in allowed:
        return allowed[requested]
    if requested in allowed.values():
        return requested
    choices = ", ".join([NONE, *allowed])
    raise RerankerChoiceError(
        f"reranker: {requested!r} is not one this server allows; choose one of: {choices} "
        "(the operator allows more with RAG_SERVER_RERANKERS)"
    )


def _is_path(name: str) -> bool:
    """A local folder rather than a hub id (``owner/name``): one on disk, or written as a path."""
    written = name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
    return written or Path(name).expanduser().exists()
