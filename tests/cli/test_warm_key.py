"""Which warm model process a command may use: its model settings (environment, then its own flags) and the files
they name, by path, size and modification time; everything else travels with each command."""

from __future__ import annotations

import os
from pathlib import Path

from rag.cli.warm.client import command_of, keep_warm
from rag.cli.warm.key import key_of


def test_flags_win_over_the_environment_and_other_settings_do_not_count(tmp_path: Path) -> None:
    env = {"RAG_WEIGHTS": "a.pth", "RAG_COLLECTION": "one", "RAG_TOP_K": "3"}
    base = key_of(["search", "-t", "x"], env, tmp_path)
    assert key_of(["search", "-t", "y", "-c", "two"], {**env, "RAG_COLLECTION": "two"}, tmp_path) == base
    assert key_of(["search", "--weights", "b.pth"], env, tmp_path).digest != base.digest
    assert key_of(["search", "--weights=b.pth"], env, tmp_path).settings["weights"] == "b.pth"
    assert key_of(["search"], {**env, "RAG_DTYPE": "float32"}, tmp_path).digest != base.digest
    assert key_of(["similarity", "--encoder", "clip"], env, tmp_path).settings["encoder"] == "clip"
    # the cross-encoder the process keeps loaded beside the encoder (rag search --reranker, RAG_RERANKER)
    reranked = key_of(["search", "--reranker", "BAAI/bge-reranker-base"], env, tmp_path)
    assert reranked.digest != base.digest and reranked == key_of(
        ["search"], {**env, "RAG_RERANKER": "BAAI/bge-reranker-base"}, tmp_path
    )


def test_a_rebuilt_checkpoint_gets_another_key(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"one")
    env = {"RAG_WEIGHTS": "w.pth"}  # relative: read from the command's folder
    first = key_of(["search"], env, tmp_path)
    assert first.files == ((str(weights), 3, weights.stat().st_mtime_ns),)
    os.utime(weights, ns=(1, 1))
    assert key_of(["search"], env, tmp_path).digest != first.digest
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    grown = key_of(["search"], {"RAG_WEIGHTS": str(folder)}, tmp_path)
    (folder / "model.safetensors").write_bytes(b"x")  # a model folder: each of its files counts
    assert key_of(["search"], {"RAG_WEIGHTS": str(folder)}, tmp_path).digest != grown.digest


def test_the_process_lives_under_the_commands_data_folder(tmp_path: Path) -> None:
    assert key_of(["search"], {}, tmp_path).folder.parent == tmp_path / "rag_data" / ".warm"
    assert key_of(["search"], {"RAG_DATA_DIR": "d"}, tmp_path / "x").folder.parent == tmp_path / "x" / "d" / ".warm"


def test_keep_warm_and_the_command_are_read_without_the_settings_model() -> None:
    assert keep_warm({}) == 300 and keep_warm({"RAG_KEEP_WARM": "10"}) == 10 and keep_warm({"RAG_KEEP_WARM": "0"}) == 0
    assert keep_warm({"RAG_KEEP_WARM": "soon"}) is None and keep_warm({"RAG_KEEP_WARM": "-1"}) is None
    assert command_of(["-v", "search", "-t", "x"]) == ("search", ["search", "-t", "x"])
    assert command_of([]) == (None, [])
