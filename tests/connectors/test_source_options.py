"""One way from the settings to the sources' options: ``SourceOptions.from_settings``, used by every command that
reads sources (``rag ingest``, ``rag map``), by the server's uploads and by the Python API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import connectors.sources
from connectors.sources import SourceOptions, open_sources
from rag.cli import app
from rag.embeddings.text_window import TextWindow
from rag.server.service import Service
from rag.settings import Settings
from tests.helpers.models import use_tiny_model

#: Settings no default has, so that options built from them show where each value came from.
CHOSEN = {
    "RAG_CHUNK_SIZE": "40",
    "RAG_CHUNK_OVERLAP": "4",
    "RAG_ALLOW_URLS": "true",
    "RAG_URL_MAX_BYTES": "4096",
    "RAG_URL_TIMEOUT": "0.5",
}


def _honours_the_settings(options: SourceOptions, data_dir: Path) -> None:
    assert options.window.window == 40
    assert options.chunk_overlap == 4
    assert options.allow_urls is True
    assert options.max_download_bytes == 4096
    assert options.url_timeout == 0.5
    assert options.cache_dir == data_dir


def test_the_options_are_the_settings_with_the_fields_given_in_their_place(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, chunk_size=40, chunk_overlap=4, allow_urls=True, url_max_bytes=4096, url_timeout=0.5
    )
    _honours_the_settings(SourceOptions.from_settings(settings), tmp_path)
    # The encoder's window is cut to the chunk size, never widened; a flag given wins over its setting.
    wide, narrow = TextWindow(None, 512), TextWindow(None, 16)
    assert SourceOptions.from_settings(settings, text_window=wide).window.window == 40
    assert SourceOptions.from_settings(settings, text_window=narrow).window.window == 16
    flagged = SourceOptions.from_settings(settings, allow_urls=False, decode_check=False)
    assert (flagged.allow_urls, flagged.decode_check, flagged.chunk_overlap) == (False, False, 4)
    defaults = SourceOptions.from_settings(Settings(data_dir=tmp_path))
    assert (defaults.window.window, defaults.allow_urls, defaults.chunk_overlap) == (512, False, 32)
    with pytest.raises(ValueError, match="chunk_overlaps"):
        SourceOptions.from_settings(settings, chunk_overlaps=3)  # a typo is refused, not ignored


def test_open_sources_takes_options_or_fields_not_both(tmp_path: Path) -> None:
    options = SourceOptions.from_settings(Settings(data_dir=tmp_path))
    assert list(open_sources([tmp_path], options)) == []
    with pytest.raises(TypeError, match="not both: cache_dir"):
        open_sources([tmp_path], options, cache_dir=tmp_path)


@pytest.fixture
def chosen_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The tiny model's tokenizer, a store and data folder of this test, and the :data:`CHOSEN` settings."""
    use_tiny_model(
        monkeypatch, RAG_MILVUS_URI=str(tmp_path / "milvus.db"), RAG_DATA_DIR=str(tmp_path / "data"), **CHOSEN
    )
    return tmp_path / "data"


@pytest.mark.parametrize(
    "command",
    [["ingest", "-c", "kb"], ["map", "-o", "map.png"]],
    ids=["ingest", "map"],
)
def test_every_command_that_reads_sources_honours_the_settings(
    command: list[str], chosen_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[SourceOptions] = []

    def nothing_found(paths: Any, options: SourceOptions | None = None, **fields: Any) -> Iterator[Any]:
        seen.append(options if options is not None else SourceOptions(**fields))
        return iter([])

    monkeypatch.setattr(connectors.sources, "open_sources", nothing_found)
    folder = tmp_path / "corpus"
    folder.mkdir()
    result = CliRunner().invoke(app, [*command, str(folder)])
    assert result.exit_code in (2, 3), result.output  # nothing found: said before any model loads
    assert len(seen) == 1
    _honours_the_settings(seen[0], chosen_env)
    assert seen[0].window.exact  # counted with the encoder's own tokenizer, as ingest counts


def test_the_servers_uploads_are_read_with_the_settings(tmp_path: Path, tiny_base: Any) -> None:
    settings = Settings(
        data_dir=tmp_path, chunk_size=40, chunk_overlap=4, allow_urls=True, url_max_bytes=4096, url_timeout=0.5
    )
    service = Service(settings, tiny_base, store=object(), llm=None)  # type: ignore[arg-type]
    options = service._source_options()
    _honours_the_settings(options, tmp_path)
    assert options.local_root == (tmp_path / "uploads").resolve()  # uploads name no file outside their folder
    assert options.max_image_pixels == settings.server_max_image_pixels
