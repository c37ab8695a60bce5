"""Retrieval modes: what a query is made of, which stored vector it is compared with, which items qualify.

A query is text, an image, or both (a *composed* query: an image and a text instruction). Items
are searched on one of their two stored vectors (see ``connectors/milvus/schema``):

- ``fused``: the item as a whole (image read together with its caption; the text vector for
  text-only items; the image vector for image-only items);
- ``image``: the picture alone (only items that have an image).

Targets: ``any`` (every item: text chunks, pictures, pages, image+text items, in one ranking),
``multimodal`` (items with a picture), ``image`` (the pictures alone, captions ignored) and
``text`` (text-only items). Default mapping from a ``QueryBundle``:

- ``query_str`` only           → ``text-to-any``
- ``image_path`` only          → ``image-to-multimodal``
- ``query_str`` + ``image_path`` → ``composed-to-multimodal``

Other targets are chosen with an explicit mode. A ``modality`` filter (``text``, ``image``,
``image+text``) narrows a mode's targets; :func:`modality_filter` refuses one the mode never returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rag.errors import RagError
from rag.items import Modality

if TYPE_CHECKING:  # LlamaIndex is imported where it is used: `rag` commands check a query without it
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters


class QueryInputs(Protocol):
    """What a query is made of, as a LlamaIndex ``QueryBundle`` holds it."""

    @property
    def query_str(self) -> str: ...

    @property
    def image_path(self) -> str | None: ...


class QueryError(RagError, ValueError):
    """A query the mode cannot answer: it lacks what the mode reads, or filters for items the mode never returns.

    The message names the inputs as Python callers write them (``query_str``, ``image_path``, ``mode``);
    :meth:`naming` words it for another surface, such as ``--image`` and ``--mode``."""

    #: How the library's callers name a query's text, its image and the retriever's mode.
    PYTHON_NAMES = {"text": "query_str", "image": "image_path", "mode": "mode"}

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.naming())

    def naming(self, **names: str) -> str:
        """The message with the query's ``text``, ``image`` and ``mode`` called as given (Python's names otherwise)."""
        return self.template.format(**{**self.PYTHON_NAMES, **names})


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
    ANY = "any"  # every item, compared as a whole
    MULTIMODAL = "multimodal"  # items with an image (and usually a caption), compared as a whole
    IMAGE = "image"  # the pictures alone, captions ignored
    TEXT = "text"  # text-only items

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """The modalities of the items this target returns."""
        if self is Target.ANY:
            return tuple(Modality)
        return (Modality.TEXT,) if self is Target.TEXT else (Modality.IMAGE_TEXT, Modality.IMAGE)


class Mode(str, Enum):
    """``<query>-to-<target>``; see the module docstring for the default mapping."""

    TEXT_TO_ANY = "text-to-any"
    TEXT_TO_MULTIMODAL = "text-to-multimodal"
    TEXT_TO_TEXT = "text-to-text"
    IMAGE_TO_ANY = "image-to-any"
    IMAGE_TO_IMAGE = "image-to-image"
    IMAGE_TO_MULTIMODAL = "image-to-multimodal"
    COMPOSED_TO_ANY = "composed-to-any"
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
    def target_filter(self) -> MetadataFilter | None:
        """The condition that keeps this mode's targets; None where the searched field already does."""
        from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter

        from connectors.milvus.schema import MODALITY

        if self.target is Target.MULTIMODAL:
            return MetadataFilter(key=MODALITY, operator=FilterOperator.NE, value=Modality.TEXT.value)
        if self.target is Target.TEXT:
            return MetadataFilter(key=MODALITY, operator=FilterOperator.EQ, value=Modality.TEXT.value)
        return None  # ANY: every item qualifies; IMAGE: the image field holds only items with an image


_TARGET_NAMES = {
    Target.ANY: "every item",
    Target.MULTIMODAL: "items with a picture",
    Target.IMAGE: "pictures alone",
    Target.TEXT: "text-only items",
}


def searched_modalities(mode: Mode, filters: Mapping[str, Any] | MetadataFilters | None) -> tuple[Modality, ...]:
    """The modalities ``mode`` searches under ``filters``: its targets', narrowed by a ``modality`` entry of a dict.

    Raises :class:`QueryError` when that entry asks only for modalities the mode never returns, or names an
    unknown one. ``MetadataFilters`` are not read: their conditions are joined with the mode's.
    """
    from connectors.milvus.filters import FilterError, admitted
    from connectors.milvus.schema import MODALITY

    targets = mode.target.modalities
    if not isinstance(filters, Mapping) or MODALITY not in filters:
        return targets
    try:
        asked = admitted(filters[MODALITY], [m.value for m in Modality])
    except FilterError as e:
        raise QueryError(f"filter on modality: {e}".replace("{", "{{").replace("}", "}}")) from None
    searched = tuple(m for m in targets if m.value in asked)
    if not searched:
        raise QueryError(_refusal(mode, sorted(asked)))
    return searched


def _refusal(mode: Mode, asked: list[str]) -> str:
    """Why ``mode`` cannot return ``asked``, and which modes can (``{mode}`` is named by the surface)."""
    if not asked:
        return "the modality filter lets no item through (modalities: text, image, image+text)"
    able = [m.value for m in Mode if m.query is mode.query and any(x.value in asked for x in m.target.modalities)]
    returned = ", ".join(m.value for m in mode.target.modalities)
    return (
        f"mode {mode.value} searches {_TARGET_NAMES[mode.target]} (modality {returned}), so the filter "
        f"modality={'|'.join(asked)} finds nothing there; set {{mode}} to {' or '.join(able)}, or leave the filter out"
    )


def default_mode(query: QueryInputs) -> Mode:
    """The mode a bundle asks for when no mode is given (see the module docstring)."""
    has_text, has_image = bool(query.query_str.strip()), query.image_path is not None
    if has_text and has_image:
        return Mode.COMPOSED_TO_MULTIMODAL
    if has_image:
        return Mode.IMAGE_TO_MULTIMODAL
    if has_text:
        return Mode.TEXT_TO_ANY
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
