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
