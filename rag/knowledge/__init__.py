"""The Python facade: :class:`KnowledgeBase` over one collection, and its LlamaIndex vector store."""

from .base import KnowledgeBase
from .sources import Source, source_options

__all__ = ["KnowledgeBase", "Source", "source_options"]
