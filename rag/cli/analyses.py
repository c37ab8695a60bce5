"""Analyses: ``rag similarity``, ``rag classify`` and ``rag map``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from rag.cli.common import (
    CollectionOpt,
    EncoderOpt,
    JsonOpt,
    UriOpt,
    VerboseOpt,
    WeightsOpt,
    app,
    checked,
    console,
    fail,
    load_encoder,
    open_store,
    settings_from,
)
from rag.cli.ingest import check_sources


def _embedding_progress(description: str, transient: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
    )


@app.command()
def similarity(
    images: Annotated[list[Path], typer.Argument(help="Images to compare.", exists=True, dir_okay=False)],
    text: Annotated[
        list[str] | None,
        typer.Option("--text", "-t", help="One text per image, in order (repeat); none: compare the images alone."),
    ] = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Image vs image, fused vs image, text vs fused, fused vs fused: cosine and Euclidean distance side by side."""
    from rich import box

    from rag.analysis import similarity_report
    from rag.analysis.similarity import check_comparable

    texts = text or []
    if texts and len(texts) != len(images):
        raise fail(f"give one --text per image, or none: {len(images)} images and {len(texts)} texts")
    checked(lambda: check_comparable(images, texts))
    model = load_encoder(settings_from(encoder=encoder, weights=weights))
    report = checked(lambda: similarity_report(model, images, texts))
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    table = Table(title=Text(f"similarity ({report.encoder})"), box=box.SIMPLE_HEAD)
    for column in ("comparison", "left", "right", "cosine", "euclidean", "rank by cos", "rank by dist"):
        justify: Literal["left", "right"] = "left" if column in ("comparison", "left", "right") else "right"
        table.add_column(column, justify=justify, overflow="fold")
    for row, by_cos, by_dist in zip(report.rows, report.cosine_ranks, report.distance_ranks):
        table.add_row(
            row.kind,
            Text(row.left),
            Text(row.right),
            f"{row.cosine:.4f}",
            f"{row.euclidean:.4f}",
            str(by_cos),
            str(by_dist),
        )
    Console().print(table)
    ranking = (
        f"; Spearman ρ of the two rankings = {report.rank_correlation:.4f}"
        + (" (identical order)" if report.cosine_ranks == report.distance_ranks else "")
        if report.rank_correlation is not None
        else ""
    )
    Console().print(f"unit vectors: max |d² − (2 − 2·cos)| = {report.identity_error:.1e}{ranking}")
    for kind, reason in report.skipped.items():
        console.print(f"[yellow]skipped[/] {kind}: {escape(reason)}")


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(help="Images to classify.", exists=True, dir_okay=False)],
    label: Annotated[list[str], typer.Option("--label", "-l", help="A candidate label (repeat).")],
    template: Annotated[str, typer.Option(help="Prompt made of each label.")] = "a photo of a {label}",
    scale: Annotated[
        float | None, typer.Option(help="Logit scale (cosine × scale → softmax); default: the model's own, else 100.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Labels shown per image.")] = 5,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Zero-shot classification: probabilities of the labels for each image, from "a photo of a {label}" prompts."""
    from rag.analysis import classify as run_classify
    from rag.analysis.classify import prompts

    checked(lambda: prompts(label, template))
    model = load_encoder(settings_from(encoder=encoder, weights=weights))
    results = checked(lambda: run_classify(model, images, label, template=template, scale=scale, top_k=top_k))
    if as_json:
        print(json.dumps({str(image): [vars(p) for p in preds] for image, preds in zip(images, results)}))
        return
    for image, predictions in zip(images, results):
        table = Table(title=Text(image.name))
        for column in ("label", "probability", "cosine"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for p in predictions:
            table.add_row(Text(p.label), f"{p.probability:.3f}", f"{p.cosine:.4f}")
        Console().print(table)


@app.command(name="map")
def embedding_map(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Folders/manifests to embed; none: map the collection's stored vectors.")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Image to write: .png, .jpg, .webp, .svg or .pdf.")
    ] = Path("embedding-map.png"),
    method: Annotated[str, typer.Option(help="pca, tsne (scikit-learn) or umap (umap-learn).")] = "pca",
    field: Annotated[
        str,
        typer.Option(
            help="Which vector: fused (every item as a whole, as a search compares them; text-only items are squares) "
            "or image (the pictures alone)."
        ),
    ] = "fused",
    color_by: Annotated[str, typer.Option(help="modality, tag, folder, or a metadata key such as kind.")] = "modality",
    thumbnails: Annotated[bool, typer.Option("--thumbnails", help="Draw each item's image at its point.")] = False,
    names: Annotated[bool, typer.Option("--names", help="Write each item's name by its point.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed of t-SNE and UMAP.")] = 0,
    collection: CollectionOpt = None,
    uri: UriOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Project a collection or a corpus to 2-D and save a scatter plot coloured by a label."""
    from rag.analysis.embedding_map import METHODS, check_color_by, map_format

    if method not in METHODS:
        raise fail(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if field not in ("image", "fused"):
        raise fail(f"--field must be image or fused, not {field!r}")
    vectors: Literal["image", "fused"] = "image" if field == "image" else "fused"
    checked(lambda: map_format(output))
    from rag.analysis import embed_items, project, save_map, stored_vectors

    settings = settings_from(collection=collection, milvus_uri=uri, encoder=encoder, weights=weights)
    if sources:
        from connectors.sources import SourceOptions, open_sources
        from rag.display import problem_line
        from rag.embeddings.registry import load_text_window
        from rag.items import SourceError

        check_sources(sources)
        # As `rag ingest` reads them: the same chunks (RAG_CHUNK_SIZE, the encoder's tokenizer) and URL settings.
        options = SourceOptions.from_settings(settings, text_window=load_text_window(settings))
        items = []
        for entry in open_sources(sources, options):
            if isinstance(entry, SourceError):
                console.print(problem_line(entry))
            else:
                items.append(entry)
        if not items:
            raise fail(f"no items found in {', '.join(sources)}")
        checked(lambda: check_color_by(items, color_by))
        model = load_encoder(settings)
        with _embedding_progress("embed", transient=False) as progress:
            task = progress.add_task("embed", total=len(items))
            embedded = checked(
                lambda: embed_items(
                    model,
                    items,
                    field=vectors,
                    color_by=color_by,
                    batch_size=settings.batch_size,
                    on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                )
            )
        title = f"{', '.join(sources)} · {model.name}"
    else:
        with open_store(settings) as store:
            embedded = checked(lambda: stored_vectors(store, field=vectors, color_by=color_by))
            title = f"{settings.collection} · {store.encoder.variant}"
    coords = checked(lambda: project(embedded.vectors, method, seed=seed))
    path = checked(
        lambda: save_map(
            embedded,
            coords,
            output,
            title=f"{title} · {field} vectors · {method}",
            thumbnails=thumbnails,
            annotate=names,
        )
    )
    console.print(Text(f"{len(embedded)} points, {len(set(embedded.labels))} groups by {color_by} → {path}"))
