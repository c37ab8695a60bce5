"""Query options: how a query is searched (``QueryOptions``) and answered (``AnswerOptions``), declared once.

Every surface reads these models: the CLI declares its flags from their fields (``rag.cli.options``), the
HTTP API takes them as a JSON body or as form fields (``rag.server.routes.body``), the page sends their
fields, and Python callers pass them to ``MultimodalRetriever.from_options`` and ``answer_engine``. A new
option is one field here (plus the page's control, if it has one).

Each value is checked here, once, before any model or store is opened. A refused value raises a
``ValidationError`` whose ``OptionError`` names the options as one surface spells them: ``describe``
words it for the CLI (``--min-score``) or for the API (``min_score``).

Importing this module costs neither LlamaIndex nor pymilvus: the CLI declares its flags from it at start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from rag.errors import RagError

from .modes import Mode

if TYPE_CHECKING:
    from connectors.milvus.blend import Blend

#: The most items one query may ask for (Milvus's top-k limit).
MAX_TOP_K = 16_384
#: How a blend's signals are fused (``connectors.milvus.blend.Fusion``, restated to keep pymilvus out of start-up).
Fusion = Literal["weighted", "rrf"]


class OptionError(RagError, ValueError):
    """A refused option value. ``template`` names options as ``{field}`` placeholders, so that :meth:`naming`
    words the message for a surface: Python and the API name fields (``min_score``), the CLI names flags."""

    def __init__(self, template: str, option: str | None = None) -> None:
        self.template = template
        self.option = option
        super().__init__(self.naming(lambda field: field))

    def naming(self, name: Callable[[str], str]) -> str:
        """The message with each option called ``name(field)``; prefixed by the option it is about."""
        fields = {field: name(field) for field in AnswerOptions.model_fields}
        message = self.template.format_map(fields)
        return f"{name(self.option)}: {message}" if self.option else message


def literal(text: str) -> str:
    """``text`` (user input, a library message) made safe to hold in an ``OptionError`` template."""
    return text.replace("{", "{{").replace("}", "}}")


_MODES = ", ".join(m.value for m in Mode)


class QueryOptions(BaseModel):
    """How a query is searched: mode, count, filters, blend of signals, score floor and duplicate merging."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    mode: Mode | None = Field(
        default=None,
        description="query-to-target. Targets: any (every item: text chunks, pages, pictures), multimodal (items "
        f"with a picture), image (pictures alone), text (text-only items). Modes: {_MODES}. Default: text-to-any for "
        "text, image-to-multimodal for an image, composed-to-multimodal for both.",
    )
    top_k: int | None = Field(
        default=None, ge=1, le=MAX_TOP_K, description="How many items to retrieve; default: RAG_TOP_K (10)."
    )
    filters: list[str] | dict[str, JsonValue] | None = Field(
        default=None,
        alias="filter",
        description="key=value pairs, comma-separated or one per value (a repeated key matches any of its values: "
        'tags=red,tags=blue), or a JSON object such as {"created_at": {">=": "2024-01-01"}}. Keys: source, tags, '
        "modality (text, image, image+text), mime_type, … or metadata keys.",
    )
    blend: str | dict[str, float] | None = Field(
        default=None,
        description="Search several signals in one query, fused by Milvus: fused=0.6,image=0.3,bm25=0.1 (fused: the "
        "item as a whole; image: the picture alone; bm25: words of the text; weights are scaled to sum to 1), or "
        "names alone for equal parts. Default: the blend `rag eval --tune` saved for the query's kind, unless a "
        "mode is given.",
    )
    hybrid: bool = Field(
        default=False, description="The mode's vector and BM25 over the items' text: the blend <vector>,bm25."
    )
    fusion: Fusion | None = Field(
        default=None,
        description="How a blend is fused: weighted (the default for a blend) or rrf, reciprocal rank (the default "
        "for hybrid).",
    )
    min_score: float | None = Field(
        default=None,
        description="Drop results scoring below this, on the scale of their scores: cosine -1..1 for one vector, "
        "0..1 for weighted blends (a blend of vectors alone tops out at 0.75). Refused with rrf, whose scores are "
        "positions (about 0.016).",
    )
    dedup: bool = Field(
        default=True,
        description="Merge true duplicates: the same item, or the same image bytes with the same text.",
    )
    merge_similar: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Also merge results whose vectors have a cosine above this, e.g. 0.995 for re-encoded copies "
        "of a picture. Off by default: distinct items can be that close.",
    )

    reranker: str | None = Field(
        default=None,
        description="Rerank with this cross-encoder (a local folder, or a hub id in the Hugging Face cache such as "
        "BAAI/bge-reranker-base): it scores each (query, text) pair of the candidates and keeps the best; "
        "none: no reranking; default: RAG_RERANKER (none). A server takes only the rerankers its operator allowed.",
    )
    rerank_candidates: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOP_K,
        description="How many candidates the cross-encoder scores; default: RAG_RERANK_CANDIDATES (50).",
    )
    rerank_normalize: bool = Field(
        default=False,
        description="Report the cross-encoder's score as a sigmoid (0..1) rather than its raw logit.",
    )

    _filters: dict[str, JsonValue] | None = PrivateAttr(default=None)
    _blend: Blend | None = PrivateAttr(default=None)

    @field_validator("filters", mode="before", json_schema_input_type=str | list[str] | dict[str, JsonValue] | None)
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("blend", "reranker", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _checked(self) -> QueryOptions:
        from connectors.milvus.blend import BlendError, check_threshold, scale_of
        from connectors.milvus.filters import FilterError, parse_filters

        if self.blend is not None and self.hybrid:
            raise OptionError("give {blend} or {hybrid}, not both: {hybrid} is the blend of the mode's vector and bm25")
        raw = self.filters
        try:
            self._filters = parse_filters([json.dumps(raw)] if isinstance(raw, dict) else raw)
        except FilterError as e:  # its message names the filter
            raise OptionError(literal(str(e))) from None
        try:
            self._blend = self._parsed_blend()
        except BlendError as e:
            raise OptionError(literal(str(e)), "blend") from None
        try:
            check_threshold(self.min_score, scale_of(self.asked_blend))
        except BlendError as e:
            raise OptionError(literal(str(e)), "min_score") from None
        return self

    def _parsed_blend(self) -> Blend | None:
        from connectors.milvus.blend import Blend

        if isinstance(self.blend, str):
            return Blend.parse(self.blend, self.fusion or "weighted")
        return Blend.of(self.blend, self.fusion or "weighted") if self.blend is not None else None

    @property
    def parsed_filters(self) -> dict[str, JsonValue] | None:
        """The filters as ``compile_filter`` takes them (pairs and JSON objects merged); None: no filter."""
        return self._filters

    @property
    def parsed_blend(self) -> Blend | None:
        """The blend asked for with ``blend`` (and ``fusion``); None when none was."""
        return self._blend

    @property
    def asked_blend(self) -> Blend | None:
        """The blend asked for, ``hybrid``'s included (on the fused vector); its scale is the one ``min_score`` is
        checked on before a query (the query's mode and a tuned blend may change it)."""
        from connectors.milvus.blend import Blend

        if self.hybrid:
            return Blend.hybrid(fusion=self.fusion or "rrf")
        return self._blend


class AnswerOptions(QueryOptions):
    """How a question is answered: the query options, and what happens to the candidates before the LLM reads them."""

    llm_rerank: int | None = Field(
        default=None,
        ge=1,
        validation_alias=AliasChoices("llm_rerank", "rerank"),
        description="Let the LLM rerank the retrieved candidates from a grid picture of them and keep this many "
        "(after the cross-encoder, when both are on). Its old name, rerank, still works.",
    )


def wire_name(field: str) -> str:
    """How Python and the API name an option: its alias (``filter``), else its field name."""
    info = AnswerOptions.model_fields.get(field)
    return (info.alias if info is not None else None) or field


def describe(error: ValidationError, name: Callable[[str], str] = wire_name) -> str:
    """The problems of an options ``ValidationError``, each naming its option as ``name(field)`` does."""
    return "; ".join(describe_one(problem, name) for problem in error.errors())


def describe_one(problem: ErrorDetails, name: Callable[[str], str] = wire_name) -> str:
    """One problem of a ``ValidationError`` (or of FastAPI's ``RequestValidationError``), worded for a surface."""
    cause = (problem.get("ctx") or {}).get("error")
    if isinstance(cause, OptionError):
        return cause.naming(name)
    fields = [part for part in problem["loc"] if isinstance(part, str) and part != "body"]
    where = name(fields[0]) if fields else "the request"
    choices = _choices(problem)
    if choices is not None:
        return f"{where} must be one of {', '.join(choices)}, not {problem.get('input')!r}"
    return f"{where}: {problem['msg']}"


def _choices(problem: ErrorDetails) -> list[str] | None:
    """The values an enum or literal field takes, when that is what ``problem`` is about."""
    if problem["type"] not in ("enum", "literal_error"):
        return None
    fields = [part for part in problem["loc"] if isinstance(part, str) and part in AnswerOptions.model_fields]
    if not fields:
        return None
    annotation = AnswerOptions.model_fields[fields[0]].annotation
    for arm in get_args(annotation) or (annotation,):
        if isinstance(arm, type) and issubclass(arm, Enum):
            return [str(member.value) for member in arm]
        if get_args(arm) and all(isinstance(value, str) for value in get_args(arm)):
            return list(get_args(arm))
    return None
