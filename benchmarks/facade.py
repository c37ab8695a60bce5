"""The Python facade against the CLI, side by side in one run: ``KnowledgeBase.ingest`` and ``rag ingest`` on the
same folder, and ``kb.vector_store.add`` of nodes already embedded against ``MilvusStore.upsert`` of the same rows.

By default the tiny test model keeps the encoder's share small, so what differs is what the facade adds around
the shared pipeline; ``--full`` runs full-size Visualized-BGE base with random weights (speed does not depend on
the values), as a real collection would. The folder's Lite server is started before either ingest and held
through the run, so neither pays for it. The nodes given to ``add`` carry the collection encoder's own embeddings
of their text (made before the clock starts), as ``VisualizedBGEEmbedding`` would give them: ``add`` re-encodes
the first of every batch of 64 to check the model. ``python -m benchmarks.facade [--full] [--files N] [--nodes N]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from benchmarks.common import FULL_SIZE, build_full_size, cpu_name
from connectors.milvus.lite_server import shared_lite
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
    parser.add_argument("--full", action="store_true", help="full-size base model, random weights")
    parser.add_argument("--only-add", action="store_true", help="skip the ingests: vector_store.add against upsert")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rag-facade-"))
    model = (str(TINY / "weights.pth"), str(TINY / "text_model"), str(TINY / "vision_config.json"))
    if args.full:
        weights, text_dir = build_full_size("base", root)
        vision = root / "vision_config.json"
        vision.write_text(FULL_SIZE["base"][1].model_dump_json())
        model = (str(weights), str(text_dir), str(vision))
    settings = Settings(
        weights=model[0],
        text_model=model[1],
        vision_config=model[2],
        milvus_uri=str(root / "db" / "milvus.db"),
        data_dir=root / "data",
    )
    (root / "db").mkdir()
    with shared_lite(settings.milvus_uri, idle=30):  # up before either ingest, held through the run
        _run(args, root, settings)


def _run(args: argparse.Namespace, root: Path, settings: Settings) -> None:
    size = "full-size base, random weights" if args.full else "tiny model"
    folder = corpus(root / "corpus", args.files)
    env = {
        "RAG_WEIGHTS": settings.weights,
        "RAG_TEXT_MODEL": settings.text_model,
        "RAG_VISION_CONFIG": settings.vision_config,
        "RAG_MILVUS_URI": settings.milvus_uri,
        "RAG_DATA_DIR": str(settings.data_dir),
    }
    os.environ.update(env)
    print(f"CPU: {cpu_name()}; {args.files} text files, {size}, load {os.getloadavg()[0]:.1f}")
    if args.only_add:
        with KnowledgeBase("facade", settings=settings) as kb:
            _embedded(kb, args.nodes)
        return
    for round_ in (1, 2):  # the first pays this process's imports (the CLI's: it runs first); read the second
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["ingest", str(folder), "-c", f"cli{round_}", "--json"], env=env)
        cli_seconds = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        with KnowledgeBase(f"facade{round_}", settings=settings) as kb:
            started = time.perf_counter()
            items = kb.ingest(folder).added
            kb_seconds = time.perf_counter() - started
            print(f"round {round_}: {items} items, load {os.getloadavg()[0]:.1f}")
            print(
                f"  rag ingest:           {cli_seconds:6.2f} s  {items / cli_seconds:7.1f} items/s (model load incl.)"
            )
            print(f"  KnowledgeBase.ingest: {kb_seconds:6.2f} s  {items / kb_seconds:7.1f} items/s (model load incl.)")
            print(f"  ratio facade/CLI:     {cli_seconds / kb_seconds:6.2f}x the CLI's rate")
            if round_ == 2:
                _embedded(kb, args.nodes)


def _embedded(kb: KnowledgeBase, n: int) -> None:
    """Nodes that come with their embeddings: the vector store against an upsert of the same rows."""
    from llama_index.core.schema import TextNode

    texts = [f"node {i} about termites" for i in range(n)]
    vectors = np.asarray(kb.encoder_for("batch").encode_text(texts), dtype=np.float32)  # before the clock
    nodes = [TextNode(text=text, embedding=vectors[i].tolist()) for i, text in enumerate(texts)]
    store = kb.vector_store
    store.add([TextNode(text=t, embedding=vectors[i].tolist()) for i, t in enumerate(texts[:64])])  # warm the writes
    started = time.perf_counter()
    store.add(nodes)
    add_seconds = time.perf_counter() - started
    items = kb.store.get([node.node_id for node in nodes])  # the same rows, names and all
    kb.store.delete(ids=[item.id for item in items])
    started = time.perf_counter()
    by_id = {node.node_id: vectors[i] for i, node in enumerate(nodes)}
    kb.store.upsert(items, np.stack([by_id[item.id] for item in items]))
    kb.store.flush()
    upsert_seconds = time.perf_counter() - started
    print(f"vector_store.add:     {add_seconds:6.2f} s  {n / add_seconds:7.1f} nodes/s (embedded already)")
    print(f"MilvusStore.upsert:   {upsert_seconds:6.2f} s  {len(items) / upsert_seconds:7.1f} items/s (the floor)")
    print(f"ratio add/upsert:     {upsert_seconds / add_seconds:6.2f}x the upsert rate")
    print(f"load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
