"""The query options model: checked once, worded for each surface, and declared as CLI flags from its fields."""

from __future__ import annotations

import pytest
import typer
from pydantic import Field, ValidationError
from typer.testing import CliRunner

from rag.cli.options import flag, with_options
from rag.retrieval import Mode
from rag.retrieval.options import AnswerOptions, QueryOptions, describe


def test_values_are_parsed_once_and_kept() -> None:
    options = QueryOptions.model_validate(
        {"filter": ["tags=red,tags=blue", '{"year": {">=": 2020}}'], "blend": "fused=3,bm25=1"}
    )
    assert options.parsed_filters == {"year": {">=": 2020}, "tags": ["red", "blue"]}
    assert options.parsed_blend is not None and dict(options.parsed_blend.weights) == {"fused": 0.75, "bm25": 0.25}
    assert QueryOptions(filters={"tags": "red"}, mode="text-to-text").parsed_filters == {"tags": "red"}
    rrf = QueryOptions(blend={"fused": 1, "image": 1}, fusion="rrf")
    assert rrf.parsed_blend is not None and rrf.parsed_blend.fusion == "rrf"
    hybrid = QueryOptions(hybrid=True)
    assert (
        hybrid.parsed_blend is None
        and hybrid.asked_blend is not None
        and hybrid.asked_blend.signals == ("fused", "bm25")
    )
    assert QueryOptions(blend="  ").blend is None and QueryOptions().mode is None
    assert (
        AnswerOptions(rerank=2, top_k=8).llm_rerank == 2 == AnswerOptions(llm_rerank=2).llm_rerank
    )  # the old name works


@pytest.mark.parametrize(
    "values, python, cli",
    [
        (
            {"mode": "sideways"},
            "mode must be one of text-to-any, text-to-multimodal",
            "--mode must be one of text-to-any, text-to-multimodal",
        ),
        ({"blend": "fused", "hybrid": True}, "give blend or hybrid, not both", "give --blend or --hybrid, not both"),
        ({"min_score": 2}, "min_score: minimum score 2.0 is outside", "--min-score: minimum score 2.0 is outside"),
        ({"filter": "tags"}, "filter 'tags': write key=value", "filter 'tags': write key=value"),
        ({"top_k": 0}, "top_k: Input should be greater", "--top-k: Input should be greater"),
        ({"fusion": "max"}, "fusion must be one of weighted, rrf, not 'max'", "--fusion must be one of weighted, rrf"),
        ({"blend": "fused={x}"}, "blend: blend 'fused={x}': the weight of fused", "--blend: blend 'fused={x}'"),
    ],
)
def test_refusals_name_options_as_each_surface_does(values: dict[str, object], python: str, cli: str) -> None:
    with pytest.raises(ValidationError) as refused:
        QueryOptions.model_validate(values)
    assert python in describe(refused.value)
    assert cli in describe(refused.value, lambda field: flag(field, QueryOptions))


def test_every_mode_is_an_option() -> None:
    described = QueryOptions.model_fields["mode"].description or ""
    assert all(mode.value in described for mode in Mode)


class WithLanguage(QueryOptions):
    language: str | None = Field(default=None, description="Answer in this language.")


def test_a_new_field_is_a_new_flag_of_every_command_declared_from_the_model() -> None:
    app = typer.Typer()
    received: list[WithLanguage] = []

    @app.command()
    @with_options(WithLanguage)
    def find(text: str = "", *, options: WithLanguage, loud: bool = False) -> None:
        received.append(options)

    runner = CliRunner()
    result = runner.invoke(app, ["--language", "fr", "-k", "3", "-f", "tags=red", "-f", "tags=blue", "--no-dedup"])
    assert result.exit_code == 0, result.output
    assert received[0].language == "fr" and received[0].top_k == 3 and not received[0].dedup
    assert received[0].parsed_filters == {"tags": ["red", "blue"]}
    help_text = " ".join(runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output.split())
    assert "--language" in help_text and "Answer in this language." in help_text and "--loud" in help_text
    refused = runner.invoke(app, ["--hybrid", "--min-score", "0.5"])
    assert refused.exit_code == 2 and "--min-score: a minimum score means nothing on RRF" in " ".join(
        refused.output.split()
    )
