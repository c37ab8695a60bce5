"""The Python facade against the CLI, side by side in one run: ``KnowledgeBase.ingest`` and ``rag ingest`` on the
same folder, and ``kb.vector_store.add`` of nodes already embedded against ``MilvusStore.upsert`` of the same rows.

The tiny test model keeps the encoder's share small, so what differs is what the facade adds around the shared
pipeline. ``python -m benchmarks.facade [--files N] [--nodes N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from benchmarks.common import cpu_name
from rag import KnowledgeBase, Settings
from rag.cli import app

TINY = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "parity" / "base"


def corpus(folder: Path, files: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(files):
        words = " ".join(f"Note {i} sentence {j} about quokkas, wombats and numbats." for j in range(40))
        (folder / f"note{i:04d}.txt").write_text(words)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rag-facade-"))
    settings = Settings(
        weights=str(TINY / "weights.pth"),
        text_model=str(TINY / "text_model"),
        vision_config=str(TINY / "vision_config.json"),
        milvus_uri=str(root / "db" / "milvus.db"),
        data_dir=root / "data",
    )
    folder = corpus(root / "corpus", args.files)
    env = {
        "RAG_WEIGHTS": settings.weights,
        "RAG_TEXT_MODEL": settings.text_model,
        "RAG_VISION_CONFIG": settings.vision_config,
        "RAG_MILVUS_URI": settings.milvus_uri,
        "RAG_DATA_DIR": str(settings.data_dir),
    }
    os.environ.update(env)
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["ingest", str(folder), "-c", "cli", "--json"], env=env)
    cli_seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    with KnowledgeBase("facade", settings=settings) as kb:
        started = time.perf_counter()
        report = kb.ingest(folder)
        kb_seconds = time.perf_counter() - started
        items = report.added
        print(f"CPU: {cpu_name()}; {args.files} text files, {items} items, tiny model, load {os.getloadavg()[0]:.0f}")
        print(f"rag ingest:           {cli_seconds:6.2f} s  {items / cli_seconds:7.1f} items/s (model load included)")
        print(f"KnowledgeBase.ingest: {kb_seconds:6.2f} s  {items / kb_seconds:7.1f} items/s (model load included)")
        print(f"ratio facade/CLI:     {cli_seconds / kb_seconds:6.2f}x the CLI's rate")
        _embedded(kb, args.nodes)


def _embedded(kb: KnowledgeBase, n: int) -> None:
    """Nodes that come with their embeddings: the vector store against an upsert of the same rows."""
    from llama_index.core.schema import TextNode

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, kb.store.encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    nodes = [TextNode(text=f"node {i} about termites", embedding=vectors[i].tolist()) for i in range(n)]
    store = kb.vector_store
    started = time.perf_counter()
    store.add(nodes)
    add_seconds = time.perf_counter() - started
    items = kb.store.get([node.node_id for node in nodes])  # the same rows, names and all
    kb.store.delete(ids=[item.id for item in items])
    started = time.perf_counter()
    kb.store.upsert(items, vectors[: len(items)])
    kb.store.flush()
    upsert_seconds = time.perf_counter() - started
    print(f"vector_store.add:     {add_seconds:6.2f} s  {n / add_seconds:7.1f} nodes/s (embedded already)")
    print(f"MilvusStore.upsert:   {upsert_seconds:6.2f} s  {len(items) / upsert_seconds:7.1f} items/s (the floor)")
    print(f"ratio add/upsert:     {upsert_seconds / add_seconds:6.2f}x the upsert rate")


if __name__ == "__main__":
    main()
