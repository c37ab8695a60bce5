"""Retrieval modes: what a query is made of, which stored vector it is compared with, which items qualify.

A query is text, an image, or both (a *composed* query: an image and a text instruction). Items
are searched on one of their two stored vectors (see ``connectors/milvus/schema``):

- ``fused``: the item as a whole (image read together with its caption; the text vector for
  text-only items; the image vector for image-only items);
- ``image``: the picture alone (only items that have an image).

Default mapping from a ``QueryBundle`` (the target is always the knowledge items themselves):

- ``query_str`` only           → ``text-to-multimodal``
- ``image_path`` only          → ``image-to-multimodal``
- ``query_str`` + ``image_path`` → ``composed-to-multimodal``

Other targets (pictures alone, text-only items) are chosen with an explicit mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Literal, Protocol

from rag.items import Modality

if TYPE_CHECKING:  # LlamaIndex is imported where it is used: `rag` commands check a query without it
    from llama_index.core.vector_stores.types import MetadataFilter


class QueryInputs(Protocol):
    """What a query is made of, as a LlamaIndex ``QueryBundle`` holds it."""

    query_str: str
    image_path: str | None


class QueryError(ValueError):
    """A query lacks what its mode reads. The message names the inputs as Python callers write them
    (``query_str``, ``image_path``); :meth:`naming` words it for another surface, such as ``--image``."""

    #: How the library's callers name a query's text and image.
    PYTHON_NAMES = {"text": "query_str", "image": "image_path"}

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.naming(**self.PYTHON_NAMES))

    def naming(self, *, text: str, image: str) -> str:
        """The message with the query's text and image called ``text`` and ``image``."""
        return self.template.format(text=text, image=image)


@dataclass(frozen=True)
class PlainQuery:
    """A query's inputs without LlamaIndex, for checking them before anything heavy is loaded."""

    query_str: str
    image_path: str | None = None


class QueryKind(str, Enum):
    TEXT = "text"
    IMAGE = "image"
    COMPOSED = "composed"  # an image and a text instruction, embedded together


class Target(str, Enum):
    MULTIMODAL = "multimodal"  # items with an image (and usually a caption), compared as a whole
    IMAGE = "image"  # the pictures alone, captions ignored
    TEXT = "text"  # text-only items


class Mode(str, Enum):
    """``<query>-to-<target>``; see the module docstring for the default mapping."""

    TEXT_TO_MULTIMODAL = "text-to-multimodal"
    TEXT_TO_TEXT = "text-to-text"
    IMAGE_TO_IMAGE = "image-to-image"
    IMAGE_TO_MULTIMODAL = "image-to-multimodal"
    COMPOSED_TO_IMAGE = "composed-to-image"
    COMPOSED_TO_MULTIMODAL = "composed-to-multimodal"
    COMPOSED_TO_TEXT = "composed-to-text"

    @property
    def query(self) -> QueryKind:
        return QueryKind(self.value.split("-to-")[0])

    @property
    def target(self) -> Target:
        return Target(self.value.split("-to-")[1])

    @property
    def field(self) -> Literal["fused", "image"]:
        """The stored vector searched."""
        return "image" if self.target is Target.IMAGE else "fused"

    @property
    def target_filter(self) -> "MetadataFilter | None":
        """The condition that keeps this mode's targets; None where the searched field already does."""
        from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter

        from connectors.milvus.schema import MODALITY

        if self.target is Target.MULTIMODAL:
            return MetadataFilter(key=MODALITY, operator=FilterOperator.NE, value=Modality.TEXT.value)
        if self.target is Target.TEXT:
            return MetadataFilter(key=MODALITY, operator=FilterOperator.EQ, value=Modality.TEXT.value)
        return None  # the image field holds only items with an image


def default_mode(query: QueryInputs) -> Mode:
    """The mode a bundle asks for when no mode is given (see the module docstring)."""
    has_text, has_image = bool(query.query_str.strip()), query.image_path is not None
    if has_text and has_image:
        return Mode.COMPOSED_TO_MULTIMODAL
    if has_image:
        return Mode.IMAGE_TO_MULTIMODAL
    if has_text:
        return Mode.TEXT_TO_MULTIMODAL
    raise QueryError("the query has neither text ({text}) nor an image ({image})")


def check_query(query: QueryInputs, mode: Mode) -> None:
    """Raise :class:`QueryError` (a ``ValueError``) when the bundle lacks what the mode reads."""
    needs_text = mode.query in (QueryKind.TEXT, QueryKind.COMPOSED)
    needs_image = mode.query in (QueryKind.IMAGE, QueryKind.COMPOSED)
    if needs_text and not query.query_str.strip():
        raise QueryError(f"mode {mode.value} needs query text ({{text}})")
    if needs_image and query.image_path is None:
        raise QueryError(f"mode {mode.value} needs a query image ({{image}})")
    if needs_image and str(query.image_path).startswith(("http://", "https://")):
        raise ValueError(f"query image {query.image_path} is a URL; download it and pass the local path")
