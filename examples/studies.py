"""Replay the seed studies on the sample corpus with the configured encoder (RAG_ENCODER, RAG_WEIGHTS).

1. The four-way similarity comparison of the two carriage photos with their captions.
2. Zero-shot classification of the drawn shapes.
3. A 2-D map of the corpus (PCA), coloured by the sidecars' ``kind``, saved as PNG.
4. Retrieval evaluation of examples/eval/queries.jsonl on a Milvus Lite collection of the corpus.

    python examples/studies.py                      # Visualized-BGE (RAG_WEIGHTS or its default)
    RAG_ENCODER=clip RAG_WEIGHTS=openai/clip-vit-base-patch32 python examples/studies.py

Without weights it stops at once and says what to set.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, open_sources
from rag.analysis import classify, embed_items, evaluate_collection, load_queries, project, save_map, similarity_report
from rag.analysis.evaluation import METRICS
from rag.embeddings import CheckpointError
from rag.embeddings.registry import load_encoder
from rag.ingest import ingest
from rag.items import KnowledgeItem
from rag.settings import Settings

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
console = Console()


def main() -> int:
    settings = Settings()
    try:
        encoder = load_encoder(settings)
    except CheckpointError as e:
        console.print(f"[bold red]No weights for {settings.encoder}:[/] {escape(str(e))}")
        console.print("Set RAG_ENCODER (visualized-bge, clip, bridgetower) and RAG_WEIGHTS to a local checkpoint.")
        return 2
    console.print(f"encoder {encoder.name} ({encoder.dim}-d, fused: {encoder.supports_fused})")

    carriages = [CORPUS / "carriage-day.jpg", CORPUS / "carriage-night.jpg"]
    report = similarity_report(encoder, carriages, ["a carriage at night", "a carriage in daylight"])
    table = Table(title="1. similarity")
    for column in ("comparison", "left", "right", "cosine", "euclidean"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(row.kind, row.left, row.right, f"{row.cosine:.4f}", f"{row.euclidean:.4f}")
    console.print(table)
    console.print(
        f"max |d² − (2 − 2·cos)| = {report.identity_error:.1e}, Spearman ρ(cosine, distance ranks) = "
        f"{report.rank_correlation:.4f}"
    )

    shapes = sorted(CORPUS.glob("shapes-*.png"))
    labels = ["red circle", "red square", "blue square", "green triangle", "bridge", "carriage"]
    table = Table(title="2. zero-shot classification")
    for column in ("image", "top label", "probability", "second", "probability"):
        table.add_column(column)
    for image, predictions in zip(shapes, classify(encoder, shapes, labels, top_k=2)):
        first, second = predictions
        table.add_row(image.name, first.label, f"{first.probability:.3f}", second.label, f"{second.probability:.3f}")
    console.print(table)

    options = SourceOptions.from_settings(settings, text_window=encoder.text_window)  # as `rag ingest` reads them
    items = [entry for entry in open_sources([CORPUS], options) if isinstance(entry, KnowledgeItem)]
    embedded = embed_items(encoder, items, color_by="kind")
    output = settings.data_dir / "studies-map.png"
    save_map(
        embedded, project(embedded.vectors, "pca"), output, title=f"sample corpus · {encoder.name}", thumbnails=True
    )
    console.print(Text(f"3. map of {len(embedded)} items → {output}"))

    collection = f"studies_{settings.encoder.replace('-', '_')}"
    with MilvusStore.open(settings.milvus_uri, collection, encoder_info=EncoderInfo.of(encoder)) as store:
        ingest(open_sources([CORPUS], options), encoder, store)
        results = evaluate_collection(encoder, store, load_queries(HERE / "eval" / "queries.jsonl"))
    table = Table(title=f"4. retrieval evaluation on {collection}")
    for column in ("mode", "queries", *METRICS):
        table.add_column(column)
    for result in results:
        scores = ["n/a"] * len(METRICS) if result.skipped else [f"{result.metrics[m]:.3f}" for m in METRICS]
        table.add_row(result.mode, str(result.queries), *scores)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
