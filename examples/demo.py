"""`make demo`: ingest the sample pictures and documents into Milvus Lite, then ask them four kinds of query.

Two text queries search everything in one ranking (the default mode, text-to-any): the first is meant to
be answered by a text chunk of a document, the second by a picture, and the demo says what did answer
each. Then an image query and a composed one.

Uses the real Visualized-BGE weights (RAG_WEIGHTS, default bge-visualized-base-en-v1.5 from the
Hugging Face hub or its cache). Without them it stops at once and says how to get them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llama_index.core.schema import QueryBundle
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from connectors.milvus import EncoderInfo, MilvusStore
from connectors.sources import SourceOptions, open_sources
from rag.display import ingest_summary, snippet
from rag.embeddings import CheckpointError
from rag.embeddings.registry import load_encoder
from rag.ingest import ingest
from rag.retrieval import MultimodalRetriever, evidence
from rag.settings import Settings

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
DOCUMENTS = HERE / "documents"
#: Text queries searched over everything: a glossary entry answers the first, only a picture the second.
QUESTIONS = ("What is a fishplate?", "a green triangle")
console = Console()


def main() -> int:
    settings = Settings(collection="demo")
    try:
        encoder = load_encoder(settings)
    except CheckpointError as e:
        console.print(f"[bold red]No Visualized-BGE weights:[/] {escape(str(e))}")
        console.print(
            "Set RAG_WEIGHTS to a local Visualized_base_en_v1.5.pth (or Visualized_m3.pth), and RAG_TEXT_MODEL to a "
            "local copy of BAAI/bge-base-en-v1.5 (or BAAI/bge-m3) if the hub is out of reach; RAG_VISION_CONFIG is "
            "needed only for a checkpoint under another file name."
        )
        return 2
    console.print(Text(f"encoder {encoder.name} ({encoder.dim}-d), store {settings.milvus_uri}"))
    info = EncoderInfo.of(encoder)
    with MilvusStore.open(
        settings.milvus_uri, settings.collection, encoder_info=info, token=settings.milvus_token_value
    ) as store:
        report = ingest(
            open_sources([CORPUS, DOCUMENTS], SourceOptions.from_settings(settings, text_window=encoder.text_window)),
            encoder,
            store,
        )
        for line in ingest_summary({**report.summary(), "collection": settings.collection}, report.problems):
            console.print(line)
        for question in QUESTIONS:
            search_everything(MultimodalRetriever(store, encoder, top_k=3), question)
        night = "Make the background dark, as if the camera has taken the photo at night"
        queries = {
            "image → image: carriage-day.jpg": (encoder.encode_image([CORPUS / "carriage-day.jpg"]), "image"),
            "composed image+text → image: carriage-day.jpg + 'at night'": (
                encoder.encode_fused([CORPUS / "carriage-day.jpg"], [night]),
                "image",
            ),
        }
        for title, (vectors, field) in queries.items():
            table = Table(title=title)
            for column in ("score", "source", "text"):
                table.add_column(column)
            for hit in store.search(vectors[0], field=field, k=3):
                table.add_row(f"{hit.score:.3f}", Text(hit.item.name), Text(snippet(hit.item.text, 70)))
            console.print(table)
    return 0


def search_everything(retriever: MultimodalRetriever, question: str) -> None:
    """One text query over text chunks, pages and pictures alike, and what answered it."""
    results = evidence(retriever.retrieve(question))
    mode = retriever.resolve_mode(QueryBundle(question)).value
    table = Table(title=Text(f"text → everything ({mode}): {question!r}"))
    for column in ("score", "kind", "item", "text"):
        table.add_column(column)
    for result in results:
        kind = str(result.metadata.get("modality", ""))
        table.add_row(f"{result.score:.3f}", kind, Text(result.name), Text(snippet(result.text, 70)))
    console.print(table)
    if results:
        top = results[0]
        what = "a text chunk" if top.image is None else "a picture"
        console.print(Text(f"answered by {what}: {top.name}"))


if __name__ == "__main__":
    sys.exit(main())
