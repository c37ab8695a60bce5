"""What the store raises: every error says why and what to do."""

from __future__ import annotations

from rag.errors import RagError


class StoreError(RagError, RuntimeError):
    """The store cannot do what was asked; the message says why and what to do."""


class StoreLockedError(StoreError):
    """Another process holds the Milvus Lite data folder."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached, or stopped answering: the Milvus server or shared Milvus Lite server is down,
    hung or was restarted. ``uri`` is the store's address as the user gave it, ``reason`` what the client said."""

    def __init__(self, message: str, uri: str, reason: str = "") -> None:
        super().__init__(message)
        self.uri = uri
        self.reason = reason or message


class CollectionNotFoundError(StoreError):
    pass


class DatabaseNotFoundError(CollectionNotFoundError):
    """No Milvus Lite database at the path given, and the caller asked not to create one."""


class EncoderMismatchError(StoreError):
    """The collection's vectors were made by another encoder than the one in use."""


class SchemaOutdatedError(StoreError):
    """The collection has an older schema: it opens read-only until ``rag migrate -c C`` copies it to the new one."""


class NotSupportedError(StoreError, NotImplementedError):
    """The backend or this collection lacks the feature (e.g. BM25 on an old Milvus server)."""
