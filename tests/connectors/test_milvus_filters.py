"""Filters → Milvus expressions: the exact text, the refusals, and what each operator selects on Milvus Lite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.vector_stores.types import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from connectors.milvus import FilterError, MilvusStore, compile_filter
from connectors.milvus.filters import and_, id_in, parse_filters, quote
from rag.items import KnowledgeItem

from .milvus_corpus import ENCODER, image_item, text_item, unit_vectors


def _filter(key: str, value: Any, op: FilterOperator = FilterOperator.EQ) -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


def test_quote_escapes_every_special_character() -> None:
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote('\\"') == '"\\\\\\""'
    assert quote("x\ny\rz\tw") == '"x\\ny\\rz\\tw"'
    assert quote('" or 1==1 or "') == '"\\" or 1==1 or \\""'


def test_dict_filters() -> None:
    assert compile_filter(None) == compile_filter({}) == ""
    # source: the stored path, the name, the document or the file name
    assert compile_filter({"source": "a.jpg"}) == (
        '(source == "a.jpg" or name == "a.jpg" or document == "a.jpg" or file_name == "a.jpg")'
    )
    assert compile_filter({"source": ["a", "b"], "tags": "cat"}) == (
        '((source in ["a", "b"] or name in ["a", "b"] or document in ["a", "b"] or file_name in ["a", "b"])) '
        'and (array_contains(tags, "cat"))'
    )
    assert compile_filter({"source": {"!=": "a"}}).startswith('not (source == "a" or name == "a"')
    assert compile_filter({"name": "a.md#x"}) == 'name == "a.md#x"'
    assert compile_filter({"lang": "en"}) == 'metadata["lang"] == "en"'
    assert compile_filter({"metadata.source": "x"}) == 'metadata["source"] == "x"'
    assert compile_filter({'we"ird': 1}) == 'metadata["we\\"ird"] == 1'
    assert compile_filter({"rank": {">=": 2, "lt": 5.5}}) == '(metadata["rank"] >= 2) and (metadata["rank"] < 5.5)'
    assert compile_filter({"has_image": True}) == "has_image == true"
    assert compile_filter({"lang": ["en", "fr"]}) == '(metadata["lang"] == "en" or metadata["lang"] == "fr")'
    assert compile_filter({"id": {"nin": ["x"]}}) == 'not (id in ["x"])'
    moment = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert compile_filter({"created_at": {"gte": moment}}) == "created_at >= 1704067200000"
    assert compile_filter({"created_at": {"gte": "2024-01-01"}}) == "created_at >= 1704067200000"


def test_metadata_filters_with_conditions() -> None:
    filters = MetadataFilters(
        filters=[
            _filter("rank", 1, FilterOperator.GT),
            MetadataFilters(
                filters=[_filter("tags", ["a", "b"], FilterOperator.ALL), ExactMatchFilter(key="source", value="s")],
                condition=FilterCondition.OR,
            ),
        ]
    )
    assert compile_filter(filters) == (
        '(metadata["rank"] > 1) and ((array_contains_all(tags, ["a", "b"])) or '
        '((source == "s" or name == "s" or document == "s" or file_name == "s")))'
    )
    negated = MetadataFilters(filters=[_filter("a", "x"), _filter("b", "y")], condition=FilterCondition.NOT)
    assert compile_filter(negated) == 'not ((metadata["a"] == "x") or (metadata["b"] == "y"))'
    assert (
        compile_filter(MetadataFilters(filters=[_filter("tags", "t", FilterOperator.TEXT_MATCH)]))
        == '(array_contains(tags, "t"))'
    )
    assert (
        compile_filter(MetadataFilters(filters=[_filter("tags", "", FilterOperator.IS_EMPTY)]))
        == "(array_length(tags) == 0)"
    )


def test_helpers() -> None:
    assert id_in(["a", 'b"']) == 'id in ["a", "b\\""]'
    assert and_("", "a == 1") == "a == 1"
    assert and_("a == 1", "b == 2 or c == 3") == "(a == 1) and (b == 2 or c == 3)"


def test_filters_as_people_write_them() -> None:
    assert parse_filters(None) is parse_filters("") is parse_filters(["", " "]) is None
    assert parse_filters("tags=red") == {"tags": "red"}
    both = {"tags": ["red", "blue"], "kind": "shape"}
    assert parse_filters("tags=red, tags=blue,kind = shape") == both  # one field, as the page and the API send it
    assert parse_filters(["tags=red", "tags=blue", "kind=shape", "tags=red"]) == both  # repeated --filter options
    assert parse_filters('source=" or 1==1 or "') == {"source": '" or 1==1 or "'}
    dated = {"created_at": {">=": "2024-01-01"}, "source": ["a,b.jpg"]}
    assert parse_filters(['{"created_at": {">=": "2024-01-01"}}', '{"source": ["a,b.jpg"]}']) == dated
    assert parse_filters(['{"rank": 2}', "tags=red"]) == {"rank": 2, "tags": "red"}


@pytest.mark.parametrize(
    "values, message",
    [
        ("novalue", "write key=value pairs separated by commas"),
        ("tags=red,blue", "'blue': write key=value"),
        ("tags=", "'tags=': write key=value"),
        ("=red", "write key=value"),
        ("{bad json", "not valid JSON"),
        ("[1]", "must be an object"),
        (['{"tags": "a"}', "tags=b"], "'tags' is given twice"),
        (["tags=b", '{"tags": "a"}'], "'tags' is given twice"),
        ('{"created_at": "yesterday"}', "not an ISO date-time"),
        ('{"tags": {"~": 1}}', "unknown filter operator"),
    ],
)
def test_filter_text_refusals(values: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filters(values)


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"source": 3}, "unsupported value 3"),
        ({"source": {"~": "x"}}, "unknown filter operator"),
        ({"source": []}, "at least one value"),
        ({"has_image": {">": True}}, "only == and !="),
        ({"tags": {">": "a"}}, "not supported"),
        ({"created_at": "yesterday"}, "not an ISO date-time"),
        ({"created_at": {"is_empty": None}}, "never empty"),
        ({"rank": float("nan")}, "unsupported value"),
        ({"rank": {"in": "abc"}}, "needs a list"),
        ({"name": {"text_match": "50%"}}, "cannot look for"),
        ({"name": {"text_match_insensitive": "a"}}, "not supported"),
        ({"": 1}, "non-empty string"),
        ({"metadata.": 1}, "names no metadata key"),
        ({"source": None}, "unsupported value None"),
    ],
)
def test_refusals(filters: dict[str, Any], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_filter(filters)


# What each operator selects, counted on a real Milvus Lite collection.


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MilvusStore, list[KnowledgeItem]]]:
    db = Path(tmp_path_factory.mktemp("filters")) / "milvus.db"
    items = [
        image_item(0, tags=["cat", "pet"], metadata={"rank": 0, "lang": "en", "colors": ["red", "blue"]}),
        image_item(1, tags=["dog", "pet"], metadata={"rank": 1, "lang": "fr", "colors": ["red"]}),
        image_item(2, tags=[], metadata={"rank": 2, "lang": "en", "name": "50% off_sale"}),
        text_item(3, tags=["cat"], metadata={"rank": 3}, text="the cat sat on the mat"),
        text_item(4, tags=["note"], metadata={}, source="notes/special.md"),
    ]
    with MilvusStore.open(db, "knowledge", encoder_info=ENCODER) as store:
        store.upsert(items, unit_vectors(len(items), seed=5), unit_vectors(len(items), seed=6))
        yield store, items


def _selected(corpus: tuple[MilvusStore, list[KnowledgeItem]], filters: Any) -> set[int]:
    store, items = corpus
    index = {item.id: i for i, item in enumerate(items)}
    hits = store.search(unit_vectors(1, seed=7)[0], k=len(items), filter=filters)
    assert store.count(filters) == len(hits)
    return {index[h.id] for h in hits}


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"tags": "cat"}, {0, 3}),
        ({"tags": {"!=": "cat"}}, {1, 2, 4}),
        ({"tags": ["dog", "note"]}, {1, 4}),
        ({"tags": {"nin": ["pet"]}}, {2, 3, 4}),
        ({"tags": {"all": ["cat", "pet"]}}, {0}),
        ({"tags": {"is_empty": None}}, {2}),
        ({"modality": "text"}, {3, 4}),
        ({"has_image": True, "lang": "en"}, {0, 2}),
        ({"rank": {">": 0, "<=": 2}}, {1, 2}),
        ({"rank": {"in": [0, 3]}}, {0, 3}),
        ({"lang": {"nin": ["fr"]}}, {0, 2}),
        ({"colors": {"contains": "red"}}, {0, 1}),
        ({"colors": {"any": ["blue", "green"]}}, {0}),
        ({"lang": {"is_empty": None}}, {3, 4}),
        ({"source": {"text_match": "special"}}, {4}),
        ({"metadata.name": {"text_match": "off"}}, {2}),  # a metadata key that shares a field's name
        ({"text": {"text_match": "mat"}}, {3}),
        ({"created_at": {">=": "2024-05-03T12:00:00+00:00"}}, {2, 3, 4}),
        ({"source": "pictures/1.jpg"}, {1}),
    ],
)
def test_operators_select_the_right_items(
    corpus: tuple[MilvusStore, list[KnowledgeItem]], filters: Any, expected: set[int]
) -> None:
    assert _selected(corpus, filters) == expected


def test_conditions_select_the_right_items(corpus: tuple[MilvusStore, list[KnowledgeItem]]) -> None:
    either = MetadataFilters(filters=[_filter("lang", "fr"), _filter("tags", "note")], condition=FilterCondition.OR)
    assert _selected(corpus, either) == {1, 4}
    neither = MetadataFilters(filters=[_filter("tags", "cat"), _filter("tags", "dog")], condition=FilterCondition.NOT)
    assert _selected(corpus, neither) == {2, 4}
    nested = MetadataFilters(filters=[_filter("modality", "image+text"), either])
    assert _selected(corpus, nested) == {1}
