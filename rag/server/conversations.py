"""Conversations the server keeps in memory under an id, for clients that do not send their history (optional:
``RAG_SERVER_CONVERSATIONS``). Each is a LlamaIndex ``Memory`` (bounded like every history) and a folder for its
pictures; one left idle for ``RAG_SERVER_CONVERSATION_TTL`` seconds is forgotten, its pictures deleted."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from llama_index.core.llms import LLM
from llama_index.core.memory import Memory

from rag.answer.chat import history_memory
from rag.errors import RagError


class ConversationNotFoundError(RagError, LookupError):
    """No conversation has that id: it never existed, or it expired."""


@dataclass
class Conversation:
    id: str
    memory: Memory
    pictures: Path
    used: float = field(default_factory=time.monotonic)
    owner: str | None = None  # who started it (a token's name); only they may continue it

    def keep(self, picture: str | None) -> str | None:
        """A copy of the question's picture that lives as long as the conversation (the upload's file does not)."""
        if picture is None:
            return None
        kept = self.pictures / f"{len(list(self.pictures.iterdir()))}{Path(picture).suffix}"
        shutil.copyfile(picture, kept)
        return str(kept)


class Conversations:
    """Conversations by id, each forgotten after ``ttl`` idle seconds."""

    def __init__(self, llm: LLM | None, ttl: float, history_tokens: int) -> None:
        self.llm, self.ttl, self.history_tokens = llm, ttl, history_tokens
        self._open: dict[str, Conversation] = {}
        self._lock = threading.Lock()

    def get(self, conversation_id: str | None, owner: str | None = None) -> Conversation:
        """The conversation with that id (its clock restarted), or a new one when the id is None; one that
        ``owner`` did not start is not found, as if it did not exist."""
        with self._lock:
            self._expire()
            if conversation_id is None:
                conversation_id = secrets.token_urlsafe(16)
                memory = history_memory(self.llm, self.history_tokens)
                folder = Path(tempfile.mkdtemp(prefix="rag-conversation-"))
                self._open[conversation_id] = Conversation(conversation_id, memory, folder, owner=owner)
            conversation = self._open.get(conversation_id)
            if conversation is None or conversation.owner != owner:
                raise ConversationNotFoundError(
                    f"no conversation {conversation_id!r}: it expired or never existed; "
                    "omit conversation_id to start one"
                )
            conversation.used = time.monotonic()
            return conversation

    def close(self) -> None:
        with self._lock:
            for conversation in self._open.values():
                shutil.rmtree(conversation.pictures, ignore_errors=True)
            self._open.clear()

    def _expire(self) -> None:
        now = time.monotonic()
        for key, conversation in list(self._open.items()):
            if now - conversation.used > self.ttl:
                shutil.rmtree(conversation.pictures, ignore_errors=True)
                del self._open[key]
