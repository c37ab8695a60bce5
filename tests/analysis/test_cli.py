"""The analysis commands of the CLI: thin shells that print tables or JSON and fail with a message."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from rag.analysis import tuning
from rag.cli import app
from tests.analysis.conftest import CORPUS
from tests.analysis.test_evaluation import EXAMPLE_QUERIES
from tests.helpers.models import use_tiny_model

runner = CliRunner()


@pytest.fixture
def tiny_env(monkeypatch: pytest.MonkeyPatch, corpus_db: str, tmp_path: Path) -> None:
    use_tiny_model(monkeypatch, RAG_MILVUS_URI=corpus_db, RAG_DATA_DIR=str(tmp_path / "data"))


@pytest.mark.slow
def test_eval_prints_a_table_and_writes_json(tiny_env, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = runner.invoke(
        app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "-m", "text→fused", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "text→fused" in result.stdout and "MRR@10" in result.stdout and "image→image" not in result.stdout
    data = json.loads(out.read_text())
    assert data["count"] == 10 and [r["mode"] for r in data["results"]] == ["text→fused"]
    as_json = json.loads(runner.invoke(app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "--json"]).stdout)
    assert len(as_json["results"]) == 6


def test_eval_warns_when_relevant_items_are_not_in_the_collection(tiny_env, tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    lines = EXAMPLE_QUERIES.read_text().splitlines()[:2] + [
        json.dumps({"id": "gone", "text": "a lighthouse", "relevant": ["lighthouse.jpg", "mid-hudson-bridge.jpg"]}),
        json.dumps({"id": "typo", "text": "a bridge", "relevant": ["mid-hudson-brige.jpg"]}),
    ]
    queries.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["eval", "-q", str(queries), "-c", "corpus", "-m", "text→fused", "--json"])
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "collection 'corpus' has no item for relevant ids of 2 of 4 queries" in warning
    assert "gone: lighthouse.jpg; typo: mid-hudson-brige.jpg" in warning
    assert json.loads(result.stdout)["missing_relevant"] == {
        "corpus": {"gone": ["lighthouse.jpg"], "typo": ["mid-hudson-brige.jpg"]}
    }
    clean = runner.invoke(app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "-m", "text→fused", "--json"])
    assert "warning" not in clean.stderr and json.loads(clean.stdout)["missing_relevant"] == {}


def test_eval_rejects_unknown_modes_and_encoders(tiny_env) -> None:
    result = runner.invoke(app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "-m", "telepathy"])
    assert result.exit_code == 2 and "unknown mode" in result.output
    result = runner.invoke(app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus=siglip"])
    assert result.exit_code == 2 and "visualized-bge, clip or bridgetower" in " ".join(result.output.split())


@pytest.fixture
def tune_collection(corpus_db: str, tiny_base, tmp_path: Path) -> str:
    """The sample corpus in a collection of its own, which tuning may change."""
    from connectors.milvus import EncoderInfo, MilvusStore
    from connectors.sources import open_sources
    from rag.ingest import ingest

    with MilvusStore.open(corpus_db, "tuned", encoder_info=EncoderInfo.of(tiny_base)) as store:
        store.drop()
    with MilvusStore.open(corpus_db, "tuned", encoder_info=EncoderInfo.of(tiny_base)) as store:
        ingest(open_sources([CORPUS], cache_dir=tmp_path / "cache"), tiny_base, store)
    return "tuned"


@pytest.mark.slow
def test_eval_tune_reports_saves_and_later_searches_use_the_blends(
    tiny_env, tune_collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stats() -> dict:
        return json.loads(runner.invoke(app, ["stats", "-c", tune_collection, "--json"]).stdout)

    tune = ["eval", "-q", str(EXAMPLE_QUERIES), "-c", tune_collection, "--tune"]
    with monkeypatch.context() as patch:  # the dry run searches a coarser grid: what it prints and saves is the point
        patch.setattr(tuning, "tune_blends", partial(tuning.tune_blends, coarse=0.5, fine=0.25))
        dry = runner.invoke(app, [*tune, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "fused alone" in dry.stdout and "★" in dry.stdout and "nothing saved" in dry.output
    assert stats()["tuned_blends"] == {}

    result = runner.invoke(app, [*tune, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["saved"] == {tune_collection: ["composed", "image", "text"]}
    by_kind = {r["kind"]: r for r in data["results"]}
    assert set(by_kind["text"]["alone"]) == {"fused", "image", "bm25"} and set(by_kind["image"]["alone"]) == {
        "fused",
        "image",
    }
    saved = stats()["tuned_blends"]
    for kind, tuned in by_kind.items():
        assert saved[kind]["weights"] == pytest.approx(tuned["best"]) and saved[kind]["metrics"] == tuned["metrics"]
        assert all(tuned["metrics"]["ndcg@10"] >= alone["ndcg@10"] for alone in tuned["alone"].values())
    table = runner.invoke(app, ["stats", "-c", tune_collection])
    assert "blend for text queries" in table.stdout and "nDCG@10" in table.stdout

    search = ["search", "-c", tune_collection, "-t", "red shapes", "--json"]
    tuned = json.loads(runner.invoke(app, search).stdout)
    assert tuned["blend"]["tuned"] is True and tuned["blend"]["weights"] == pytest.approx(saved["text"]["weights"])
    overridden = json.loads(runner.invoke(app, [*search, "--blend", "fused=0.3,image=0.7"]).stdout)
    assert overridden["blend"] == {
        "weights": pytest.approx({"fused": 0.3, "image": 0.7}),
        "fusion": "weighted",
        "tuned": False,
    }
    assert json.loads(runner.invoke(app, [*search, "--mode", "text-to-multimodal"]).stdout)["blend"] is None


def test_eval_tune_refuses_bad_requests_and_saves_nothing(tiny_env, tune_collection, tmp_path: Path) -> None:
    lost = tmp_path / "lost.jsonl"
    lost.write_text('{"text": "a red square", "relevant": ["not-in-the-corpus.png"]}\n')
    for args, message in (
        (["-q", str(lost), "--tune"], "none of the 1 queries found any of its relevant items"),
        (["-q", str(EXAMPLE_QUERIES), "--tune", "-m", "text→fused"], "leave --mode out"),
        (["-q", str(EXAMPLE_QUERIES), "--dry-run"], "--dry-run goes with --tune"),
    ):
        result = runner.invoke(app, ["eval", "-c", tune_collection, *args])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    stats = json.loads(runner.invoke(app, ["stats", "-c", tune_collection, "--json"]).stdout)
    assert stats["tuned_blends"] == {}


@pytest.mark.slow
def test_similarity_and_classify_as_json(tiny_env) -> None:
    images = [str(CORPUS / "carriage-day.jpg"), str(CORPUS / "carriage-night.jpg")]
    result = runner.invoke(app, ["similarity", *images, "-t", "at night", "-t", "by day", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["rows"]) == 1 + 4 + 4 + 1 and report["rank_correlation"] == pytest.approx(1.0)
    table = runner.invoke(app, ["similarity", *images, "-t", "at night", "-t", "by day"])
    assert "Spearman" in table.stdout and "identical order" in table.stdout
    alone = runner.invoke(app, ["similarity", *images, "--json"])
    assert alone.exit_code == 0 and [row["kind"] for row in json.loads(alone.stdout)["rows"]] == ["image vs image"]
    alone_table = runner.invoke(app, ["similarity", *images], env={"COLUMNS": "200"})
    assert alone_table.exit_code == 0 and "carriage-night.jpg" in alone_table.stdout
    assert "skipped" not in alone_table.output and "ρ" not in alone_table.stdout  # one pair has no order
    one = runner.invoke(app, ["similarity", images[0]])
    assert one.exit_code == 2 and one.stdout == "" and "give two images or more" in " ".join(one.output.split())
    uneven = runner.invoke(app, ["similarity", *images, "-t", "at night"])
    assert uneven.exit_code == 2 and "give one --text per image, or none: 2 images and 1 texts" in uneven.output
    result = runner.invoke(
        app, ["classify", images[0], "-l", "carriage", "-l", "bridge", "-l", "square", "-k", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    (predictions,) = json.loads(result.stdout).values()
    assert len(predictions) == 2 and predictions[0]["probability"] >= predictions[1]["probability"]
    bad = runner.invoke(app, ["classify", images[0], "-l", "cat", "--template", "no placeholder"])
    assert bad.exit_code == 2 and "{label}" in bad.output


@pytest.mark.slow
def test_map_from_a_collection_and_from_a_folder(tiny_env, tmp_path: Path) -> None:
    stored = tmp_path / "stored.png"
    result = runner.invoke(app, ["map", "-c", "corpus", "--color-by", "kind", "-o", str(stored)])
    assert result.exit_code == 0, result.output
    assert "7 points, 2 groups by kind" in result.output
    folder = tmp_path / "folder.png"
    result = runner.invoke(app, ["map", str(CORPUS), "--field", "fused", "--thumbnails", "--names", "-o", str(folder)])
    assert result.exit_code == 0, result.output
    for path in (stored, folder):
        with Image.open(path) as image:
            assert image.format == "PNG"
    photo = tmp_path / "map.jpg"
    assert runner.invoke(app, ["map", "-c", "corpus", "--names", "-o", str(photo)]).exit_code == 0
    with Image.open(photo) as image:
        assert image.format == "JPEG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["-c", "corpus", "--method", "mds"], "--method must be one of pca, tsne, umap, not 'mds'"),
        (["-c", "corpus", "--field", "text"], "--field must be image or fused, not 'text'"),
        (["-c", "corpus", "-o", "map.gif"], "cannot save a map as 'map.gif'"),
        (
            ["-c", "corpus", "--color-by", "nosuchkey"],
            "no item has a 'nosuchkey' to colour by; choose one of modality, tag",
        ),
        ([str(CORPUS), "--color-by", "nosuchkey"], "or a metadata key: caption_path, file_name, file_path, kind"),
        (["-c", "corpus", "--method", "umap"], "pip install 'mmrag[umap]'"),
    ],
)
def test_map_errors_name_the_option_and_keep_their_brackets(tiny_env, args, message, monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # as where umap-learn is not installed
    monkeypatch.setenv("COLUMNS", "300")
    result = runner.invoke(app, ["map", *args])
    assert result.exit_code == 2 and message in result.output, result.output


def _queries(path: Path, *ids: str) -> list[dict]:
    """The queries of ``path`` named ``ids``, their image paths made absolute (they are relative to ``path``)."""
    chosen = [json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["id"] in ids]
    return [{**q, **({"image": str((path.parent / q["image"]).resolve())} if "image" in q else {})} for q in chosen]


@pytest.mark.slow
def test_eval_measures_each_mode_with_and_without_the_cross_encoder(tiny_env, tmp_path: Path) -> None:
    from tests.retrieval.tiny_reranker import build_reranker

    folder = str(build_reranker(tmp_path / "reranker"))
    args = ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "--reranker", folder, "--rerank-candidates", "10"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["mode"], r["reranker"]): r for r in json.loads(result.stdout)["results"]}
    assert len(rows) == 12 and rows[("image→image", folder)]["skipped"].startswith("image queries have no text")
    plain, reranked = rows[("text→fused", None)], rows[("text→fused", folder)]
    assert plain["queries"] == reranked["queries"] and reranked["skipped"] is None
    # The cross-encoder reorders the same 10 candidates: what is found in the top 10 cannot change, only its order.
    for query, scores in plain["per_query"].items():
        assert reranked["per_query"][query]["recall@10"] == scores["recall@10"]
    few = tmp_path / "few.jsonl"  # the table's labels need a query of each kind, not all ten again
    few.write_text(
        "\n".join(json.dumps(q) for q in _queries(EXAMPLE_QUERIES, "bridge", "like-carriage-day", "day-to-night"))
    )
    table = runner.invoke(app, [*args[:2], str(few), *args[3:]], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert " reranker " in table.stdout and f"rerank: {folder}" in " ".join(table.stdout.split())
    assert "skipped corpus image→image reranked by" in " ".join(table.output.split())
    two = str(build_reranker(tmp_path / "two", labels=2))
    refused = runner.invoke(app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "--reranker", two])
    assert refused.exit_code == 2 and "2 labels" in " ".join(refused.output.split())
    tuned = runner.invoke(app, ["eval", "-q", str(EXAMPLE_QUERIES), "-c", "corpus", "--tune", "--reranker", folder])
    assert tuned.exit_code == 2
