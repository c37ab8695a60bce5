import pytest
from pydantic import ValidationError

from rag.settings import Settings


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().milvus_uri == "./rag_data/milvus.db"
    monkeypatch.setenv("RAG_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("RAG_MILVUS_TOKEN", "root:secret")
    monkeypatch.setenv("RAG_BATCH_SIZE", "8")
    settings = Settings()
    assert settings.milvus_uri == "http://milvus:19530"
    assert settings.batch_size == 8
    assert settings.milvus_token is not None and settings.milvus_token.get_secret_value() == "root:secret"
    assert "secret" not in repr(settings)


def test_rejects_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_BATCH_SIZE", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_a_dotenv_file_is_read_under_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RAG_TOP_K=7\nRAG_BATCH_SIZE=4\nRAG_LLM_API_KEY=sk-from-file\nOTHER=ignored\n")
    monkeypatch.setenv("RAG_BATCH_SIZE", "8")
    settings = Settings()
    assert (settings.top_k, settings.batch_size) == (7, 8)
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == "sk-from-file"


def test_rag_config_shows_values_and_their_sources_with_secrets_masked(tmp_path, monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from rag.cli import app

    monkeypatch.chdir(tmp_path)
    for name in [n for n in __import__("os").environ if n.startswith("RAG_")]:
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text("RAG_TOP_K=7\nRAG_LLM_API_KEY=sk-from-file\n")
    monkeypatch.setenv("RAG_MILVUS_TOKEN", "root:secret")
    result = CliRunner().invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["variable"]: row for row in json.loads(result.stdout)}
    assert rows["RAG_TOP_K"] == {"variable": "RAG_TOP_K", "value": 7, "source": ".env"}
    assert rows["RAG_MILVUS_TOKEN"] == {"variable": "RAG_MILVUS_TOKEN", "value": "********", "source": "environment"}
    assert rows["RAG_LLM_API_KEY"]["value"] == "********" and rows["RAG_LLM_API_KEY"]["source"] == ".env"
    assert rows["RAG_COLLECTION"] == {"variable": "RAG_COLLECTION", "value": "knowledge", "source": "default"}
    assert "secret" not in result.stdout and "sk-from-file" not in result.stdout
    table = CliRunner().invoke(app, ["config"])
    assert table.exit_code == 0 and "RAG_TOP_K" in table.stdout and "root:secret" not in table.stdout
