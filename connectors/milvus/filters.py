"""Metadata filters (a plain dict or LlamaIndex ``MetadataFilters``) compiled into Milvus expressions.

The only place that writes Milvus expressions. Every value becomes an escaped literal, so no value
can change an expression's structure (Milvus Lite has no filter templates to lean on).

Keys naming a typed field (``id``, ``source``, ``name``, ``anchor``, ``document``, ``file_name``, ``modality``,
``mime_type``, ``image_uri``, ``image_sha256``, ``text``, ``tags``, ``created_at``, ``has_image``, ``ref_doc_id``,
``content_hash``, ``tenant``) filter on that
field; ``source`` matches an item's stored path, its name, its document (the name without its anchor) or its file
name, so a name as any surface shows it finds the item, and a file name every item of that file. Any
other key is a path into the ``metadata`` JSON field, which is slower. Prefix ``metadata.``
reaches a metadata key that shares a typed field's name (``metadata.source``).

Plain dicts: ``{"source": "a.jpg"}`` (equality), ``{"source": ["a.jpg", "b.jpg"]}`` (any of),
``{"tags": "cat"}`` (the item has that tag), ``{"created_at": {">=": datetime(2024, 1, 1)}}``
(operators by LlamaIndex ``FilterOperator`` value or name: ``">="`` or ``"gte"``). Entries are
joined with AND; use ``MetadataFilters`` for OR, NOT and nesting.

``created_at`` compares as epoch milliseconds; datetimes and ISO strings are converted.

Plain dicts compile without importing LlamaIndex (seconds that ``rag`` commands should not pay
just to check a filter); ``MetadataFilters`` import it when they are used.

People write filters as text: :func:`parse_filters` reads that text the same way for the command
line (``--filter``), the HTTP API (the ``filter`` field) and the web page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Union

from connectors.milvus import schema
from rag.errors import RagError

if TYPE_CHECKING:
    from llama_index.core.vector_stores.types import MetadataFilters

#: A filter: text as people write it (``"tags=red, source=a.md"``, see :func:`parse_filters`), a dict, or
#: LlamaIndex ``MetadataFilters``.
Filters = Union[str, Mapping[str, Any], "MetadataFilters"]


class FilterOperator(str, Enum):
    """The operators of LlamaIndex's ``FilterOperator``, by the same values (theirs convert to these)."""

    EQ = "=="
    GT = ">"
    LT = "<"
    NE = "!="
    GTE = ">="
    LTE = "<="
    IN = "in"
    NIN = "nin"
    ANY = "any"
    ALL = "all"
    TEXT_MATCH = "text_match"
    TEXT_MATCH_INSENSITIVE = "text_match_insensitive"
    CONTAINS = "contains"
    IS_EMPTY = "is_empty"


_JSON_PREFIX = "metadata."
_COMPARISONS = (
    FilterOperator.EQ,
    FilterOperator.NE,
    FilterOperator.GT,
    FilterOperator.GTE,
    FilterOperator.LT,
    FilterOperator.LTE,
)


class FilterError(RagError, ValueError):
    """A filter that cannot be expressed: unknown operator, wrong value type for the field, ..."""


class _Kind(Enum):
    STRING = "string"
    TEXT = "text"
    TAGS = "tags"
    TIME = "time"
    BOOL = "bool"
    JSON = "json"


_TYPED = {
    schema.ID: _Kind.STRING,
    schema.SOURCE: _Kind.STRING,
    schema.NAME: _Kind.STRING,
    schema.ANCHOR: _Kind.STRING,
    schema.DOCUMENT: _Kind.STRING,
    schema.FILE_NAME: _Kind.STRING,
    schema.MODALITY: _Kind.STRING,
    schema.MIME_TYPE: _Kind.STRING,
    schema.IMAGE_URI: _Kind.STRING,
    schema.IMAGE_SHA256: _Kind.STRING,
    schema.TEXT: _Kind.TEXT,
    schema.TAGS: _Kind.TAGS,
    schema.CREATED_AT: _Kind.TIME,
    schema.HAS_IMAGE: _Kind.BOOL,
    schema.REF_DOC_ID: _Kind.STRING,
    schema.CONTENT_HASH: _Kind.STRING,
    schema.TENANT: _Kind.STRING,
}


def compile_filter(filters: Filters | None) -> str:
    """The Milvus expression for ``filters``; ``""`` when there is nothing to filter on."""
    if filters is None:
        return ""
    if isinstance(filters, str):
        return _compile_dict(parse_filters(filters) or {})
    if isinstance(filters, Mapping):
        return _compile_dict(filters)
    from llama_index.core.vector_stores.types import MetadataFilters

    if isinstance(filters, MetadataFilters):
        return _compile_filters(filters)
    raise FilterError(f"filters must be a dict or MetadataFilters, not {type(filters).__name__}")


def parse_filters(values: str | Iterable[str] | None) -> dict[str, Any] | None:
    """Filters as people write them, checked: a dict for :func:`compile_filter`, or None when there are none.

    Each value is a JSON object (``{"created_at": {">=": "2024-01-01"}}``, ``{"source": ["a.jpg", "b.jpg"]}``)
    or ``key=value`` pairs separated by commas (``tags=red, kind=shape``); values are given one per
    ``--filter`` option or API field, or several in one. A key repeated in pairs matches any of its values
    (``tags=red,tags=blue``); a key may not appear both in a JSON object and elsewhere. Pairs compare
    strings; JSON reaches operators, numbers and values holding commas. Raises :class:`FilterError`.
    """
    if values is None:
        return None
    pairs: dict[str, list[str]] = {}
    objects: dict[str, Any] = {}
    for value in [values] if isinstance(values, str) else values:
        if not value.strip():
            continue
        if value.lstrip().startswith(("{", "[")):
            for key, spec in _json_object(value).items():
                if key in objects or key in pairs:
                    raise _twice(key)
                objects[key] = spec
            continue
        for pair in value.split(","):
            key, sep, item = (part.strip() for part in pair.partition("="))
            if not sep or not key or not item:
                raise FilterError(
                    f"filter {pair.strip()!r}: write key=value pairs separated by commas (repeat a key for any of "
                    'several values), or a JSON object such as {"tags": "cat"} for values holding commas'
                )
            if key in objects:
                raise _twice(key)
            if item not in pairs.setdefault(key, []):
                pairs[key].append(item)
    filters = {**objects, **{key: items[0] if len(items) == 1 else items for key, items in pairs.items()}}
    compile_filter(filters)
    return filters or None


def _json_object(value: str) -> dict[str, Any]:
    example = '{"tags": "cat"}'
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise FilterError(f"filter {value!r} is not valid JSON ({e}); write an object such as {example}") from None
    if not isinstance(parsed, dict):
        raise FilterError(f"filter {value!r}: a JSON filter must be an object such as {example}")
    return parsed


def _twice(key: str) -> FilterError:
    return FilterError(f"filter key {key!r} is given twice; give it once, or repeat it in key=value pairs")


def admitted(spec: Any, values: Iterable[str]) -> set[str]:
    """Which of ``values`` one dict entry's condition (``spec``, as in ``{"modality": spec}``) lets through.

    For fields whose values are few and known (``modality``): a value, a list (any of), or operators
    ``==``, ``!=``, ``in``, ``nin`` by value or name. Raises :class:`FilterError` for other operators and for
    values not among ``values``.
    """
    known = list(values)
    admitted = set(known)
    conditions = spec.items() if isinstance(spec, Mapping) else [(FilterOperator.EQ, spec)]
    for name, value in conditions:
        op = _operator(name)
        many = isinstance(value, (list, tuple, set, frozenset))
        if op is FilterOperator.EQ and many:
            op = FilterOperator.IN
        if op not in (FilterOperator.EQ, FilterOperator.NE, FilterOperator.IN, FilterOperator.NIN):
            raise FilterError(f"operator {op.value!r} is not supported here; use ==, !=, in or nin")
        listed = {str(v.value if isinstance(v, Enum) else v) for v in (value if many else [value])}
        unknown = sorted(listed - set(known))
        if unknown:
            raise FilterError(f"unknown value(s) {', '.join(map(repr, unknown))}; the values are {', '.join(known)}")
        admitted = admitted & listed if op in (FilterOperator.EQ, FilterOperator.IN) else admitted - listed
    return admitted


def quote(value: str) -> str:
    """``value`` as a double-quoted Milvus string literal."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def id_in(ids: Iterable[str]) -> str:
    """``id in [...]`` for the given primary keys."""
    return field_in(schema.ID, ids)


def field_in(field: str, values: Iterable[str]) -> str:
    """``field in [...]`` for a string field, on that field alone (``source`` here is the stored path only)."""
    literals = [_literal(value, _Kind.STRING, field) for value in values]
    return f"{field} in [{', '.join(literals)}]"


def and_(*expressions: str) -> str:
    """The conjunction of the non-empty expressions (each parenthesised when there are several)."""
    parts = [e for e in expressions if e]
    return parts[0] if len(parts) == 1 else " and ".join(f"({e})" for e in parts)


def _compile_filters(filters: MetadataFilters) -> str:
    from llama_index.core.vector_stores.types import ExactMatchFilter, FilterCondition, MetadataFilter, MetadataFilters

    parts = []
    for entry in filters.filters:
        if isinstance(entry, MetadataFilters):
            part = _compile_filters(entry)
        elif isinstance(entry, (MetadataFilter, ExactMatchFilter)):
            part = _condition(entry.key, _operator(getattr(entry, "operator", FilterOperator.EQ)), entry.value)
        else:
            raise FilterError(f"unsupported filter entry {entry!r}")
        if part:
            parts.append(f"({part})")
    if not parts:
        return ""
    condition = filters.condition or FilterCondition.AND
    if condition is FilterCondition.NOT:
        return f"not ({' or '.join(parts)})"
    return f" {condition.value} ".join(parts)


def _compile_dict(filters: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for key, spec in filters.items():
        if isinstance(spec, Mapping):
            parts.extend(_condition(key, _operator(op), value) for op, value in spec.items())
        elif isinstance(spec, (list, tuple, set, frozenset)):
            parts.append(_condition(key, FilterOperator.IN, list(spec)))
        else:
            parts.append(_condition(key, FilterOperator.EQ, spec))
    return and_(*parts)


def _operator(name: Any) -> FilterOperator:
    if isinstance(name, FilterOperator):
        return name
    if isinstance(name, Enum):  # LlamaIndex's FilterOperator
        name = name.value
    try:
        return FilterOperator(name)
    except ValueError:
        pass
    try:
        return FilterOperator[str(name).upper()]
    except KeyError:
        known = ", ".join(f"{op.value!r}" for op in FilterOperator)
        raise FilterError(f"unknown filter operator {name!r}; known: {known}") from None


def _resolve(key: Any) -> tuple[str, _Kind]:
    """The expression a key reads, and how its values are written."""
    if not isinstance(key, str) or not key:
        raise FilterError(f"a filter key must be a non-empty string, not {key!r}")
    if key in _TYPED:
        return key, _TYPED[key]
    name = key[len(_JSON_PREFIX) :] if key.startswith(_JSON_PREFIX) else key
    if not name:
        raise FilterError(f"filter key {key!r} names no metadata key")
    return f"{schema.METADATA}[{quote(name)}]", _Kind.JSON


#: What the ``source`` key matches: the stored path, the name, the document and the file name.
_SOURCE_FIELDS = (schema.SOURCE, schema.NAME, schema.DOCUMENT, schema.FILE_NAME)


def _condition(key: str, op: FilterOperator, value: Any) -> str:
    if key == schema.SOURCE and op in (FilterOperator.EQ, FilterOperator.IN, FilterOperator.NE, FilterOperator.NIN):
        positive = FilterOperator.EQ if op in (FilterOperator.EQ, FilterOperator.NE) else FilterOperator.IN
        expr = " or ".join(_field_condition(field, _Kind.STRING, key, positive, value) for field in _SOURCE_FIELDS)
        return f"({expr})" if op in (FilterOperator.EQ, FilterOperator.IN) else f"not ({expr})"
    field, kind = _resolve(key)
    return _field_condition(field, kind, key, op, value)


def _field_condition(field: str, kind: _Kind, key: str, op: FilterOperator, value: Any) -> str:
    if op is FilterOperator.IS_EMPTY:
        return _is_empty(key, field, kind)
    if kind is _Kind.TAGS:
        return _tags_condition(field, op, value)
    if op in (FilterOperator.IN, FilterOperator.NIN):
        literals = [_literal(v, kind, key) for v in _as_list(key, op, value)]
        if kind is _Kind.JSON:  # Milvus Lite has no `in` on JSON paths
            expr = f"({' or '.join(f'{field} == {literal}' for literal in literals)})"
        else:
            expr = f"{field} in [{', '.join(literals)}]"
        return expr if op is FilterOperator.IN else f"not ({expr})"
    if op in _COMPARISONS:
        if kind is _Kind.BOOL and op not in (FilterOperator.EQ, FilterOperator.NE):
            raise FilterError(f"filter on {key}: a boolean supports only == and !=")
        return f"{field} {op.value} {_literal(value, kind, key)}"
    if op in (FilterOperator.CONTAINS, FilterOperator.ANY, FilterOperator.ALL) and kind is _Kind.JSON:
        if op is FilterOperator.CONTAINS:
            return f"json_contains({field}, {_literal(value, kind, key)})"
        literals = [_literal(v, kind, key) for v in _as_list(key, op, value)]
        function = "json_contains_any" if op is FilterOperator.ANY else "json_contains_all"
        return f"{function}({field}, [{', '.join(literals)}])"
    if op is FilterOperator.TEXT_MATCH:
        if kind is _Kind.TEXT:  # tokens of the analysed text
            return f"text_match({field}, {_literal(value, kind, key)})"
        if kind in (_Kind.STRING, _Kind.JSON):
            return f"{field} like {quote('%' + _like_substring(key, value) + '%')}"
    raise FilterError(f"filter on {key}: operator {op.value!r} is not supported for this field")


def _tags_condition(field: str, op: FilterOperator, value: Any) -> str:
    if op in (FilterOperator.EQ, FilterOperator.CONTAINS, FilterOperator.TEXT_MATCH, FilterOperator.NE):
        expr = f"array_contains({field}, {_literal(value, _Kind.STRING, field)})"
        return f"not {expr}" if op is FilterOperator.NE else expr
    if op in (FilterOperator.IN, FilterOperator.ANY, FilterOperator.NIN, FilterOperator.ALL):
        literals = ", ".join(_literal(v, _Kind.STRING, field) for v in _as_list(field, op, value))
        function = "array_contains_all" if op is FilterOperator.ALL else "array_contains_any"
        expr = f"{function}({field}, [{literals}])"
        return f"not {expr}" if op is FilterOperator.NIN else expr
    raise FilterError(
        f"filter on tags: operator {op.value!r} is not supported (use ==, !=, in, nin, any, all, contains)"
    )


def _is_empty(key: str, field: str, kind: _Kind) -> str:
    if kind in (_Kind.STRING, _Kind.TEXT):
        return f'{field} == ""'
    if kind is _Kind.TAGS:
        return f"array_length({field}) == 0"
    if kind is _Kind.JSON:
        return f"not exists {field}"
    raise FilterError(f"filter on {key}: this field is never empty")


def _as_list(key: str, op: FilterOperator, value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise FilterError(f"filter on {key}: operator {op.value!r} needs a list of values, not {value!r}")
    if not value:
        raise FilterError(f"filter on {key}: operator {op.value!r} needs at least one value")
    return list(value)


def _like_substring(key: str, value: Any) -> str:
    # Milvus Lite cannot escape LIKE wildcards, so a value holding one could match more than itself.
    if not isinstance(value, str) or not value:
        raise FilterError(f"filter on {key}: text_match needs a non-empty string, not {value!r}")
    if any(ch in value for ch in "%_\\"):
        raise FilterError(
            f"filter on {key}: text_match cannot look for %, _ or \\ (Milvus LIKE wildcards); "
            "use == or in for exact values"
        )
    return value


def _literal(value: Any, kind: _Kind, key: str) -> str:
    if isinstance(value, Enum):
        value = value.value
    if kind in (_Kind.STRING, _Kind.TEXT):
        if isinstance(value, str):
            return quote(value)
    elif kind is _Kind.BOOL:
        if isinstance(value, bool):
            return "true" if value else "false"
    elif kind is _Kind.TIME:
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise FilterError(f"filter on {key}: {value!r} is not an ISO date-time") from None
        if isinstance(value, datetime):
            return str(schema.to_epoch_ms(value))
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    else:
        if isinstance(value, str):
            return quote(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float) and math.isfinite(value):
            return repr(value)
    raise FilterError(f"filter on {key}: unsupported value {value!r} ({type(value).__name__}) for a {kind.value} field")
