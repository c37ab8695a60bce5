"""``rag eval``: retrieval metrics per mode and collection, and blend tuning."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rag.cli.common import (
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
    require_collection,
    settings_from,
)

if TYPE_CHECKING:  # loaded by the commands that need them: `rag --help` starts without them
    from connectors.milvus import MilvusStore
    from rag.analysis.evaluation import EvalQuery
    from rag.embeddings.base import Encoder
    from rag.embeddings.cross_encoder import CrossEncoder
    from rag.settings import Settings


@app.command(name="eval")
def evaluate(
    queries: Annotated[
        Path, typer.Option("--queries", "-q", help="JSONL: text and/or image, relevant ids.", exists=True)
    ],
    collection: Annotated[
        list[str] | None,
        typer.Option(
            "--collection",
            "-c",
            help="NAME, or NAME=ENCODER[:WEIGHTS] when its encoder is not --encoder's (repeat to compare).",
        ),
    ] = None,
    mode: Annotated[list[str] | None, typer.Option("--mode", "-m", help="Only these modes (repeat).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON here.")] = None,
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="Search the weights of fused, image and bm25 per query kind (text, image, composed), report the best "
            "blend beside each signal alone, and save it on the collection: later queries of that kind use it.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --tune: report the blends, save nothing.")] = False,
    reranker: Annotated[
        str | None,
        typer.Option(
            "--reranker",
            help="Also measure each mode with its candidates reranked by this cross-encoder (a local folder or a "
            "hub id in the cache) [RAG_RERANKER].",
        ),
    ] = None,
    rerank_candidates: Annotated[
        int | None,
        typer.Option("--rerank-candidates", min=1, help="Candidates the cross-encoder scores [RAG_RERANK_CANDIDATES]."),
    ] = None,
    uri: UriOpt = None,
    encoder: EncoderOpt = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 per retrieval mode, for one or more collections on the same queries;
    with --tune, the best blend per query kind."""
    from rag.analysis import MODES, evaluate_collection, load_queries

    asked = checked(lambda: load_queries(queries))
    if tune and mode:
        raise fail("--tune searches every signal of each query kind; leave --mode out")
    if dry_run and not tune:
        raise fail("--dry-run goes with --tune")
    unknown = sorted(set(mode or []) - {m.name for m in MODES})
    if unknown:
        raise fail(f"unknown mode(s) {', '.join(unknown)}; modes: {', '.join(m.name for m in MODES)}")
    modes = [m for m in MODES if not mode or m.name in mode]
    specs: list[str | None] = [*collection] if collection else [None]
    every = [
        settings_from(collection=name, milvus_uri=uri, encoder=kind or encoder, weights=own if kind else own or weights)
        for name, kind, own in map(_collection_spec, specs)
    ]
    for settings in every:
        require_collection(settings)
    reranker = reranker or every[0].reranker
    if tune and reranker:
        raise fail("--tune weighs the search signals alone; measure the reranker without --tune")
    cross_encoder = _cross_encoder(reranker, every[0]) if reranker else None
    candidates = rerank_candidates or every[0].rerank_candidates
    encoders: dict[tuple[str | None, str | None], Encoder] = {}
    results: list = []
    to_save = []
    missing: dict[str, dict[str, list[str]]] = {}
    for settings in every:
        key = (settings.encoder, settings.weights)
        if key not in encoders:
            encoders[key] = load_encoder(settings)
        model = encoders[key]
        with open_store(settings, model) as store:
            missing[settings.collection] = _warn_missing(store, asked)
            if tune:
                from rag.analysis.tuning import tune_blends

                tuned = checked(partial(tune_blends, model, store, asked))
                results += tuned
                to_save.append((settings, tuned))
            else:
                evaluated = partial(
                    evaluate_collection, model, store, asked, modes, cross_encoder=cross_encoder, candidates=candidates
                )
                results += checked(evaluated)
    saved: dict[str, list[str]] = {}
    if tune and not dry_run:  # only once every collection is tuned: an error above leaves them all as they were
        from rag.analysis.tuning import save_tuned

        for settings, tuned in to_save:
            with open_store(settings) as store:
                saved[settings.collection] = sorted(checked(partial(save_tuned, store, tuned)))
    data = {
        "queries": str(queries),
        "count": len(asked),
        "results": [r.to_dict() for r in results],
        "missing_relevant": {name: entries for name, entries in missing.items() if entries},
    }
    if tune:
        data["saved"] = saved
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(data, indent=2), encoding="utf-8")
    if as_json:
        print(json.dumps(data))
        return
    if tune:
        _print_tuning(results, saved, dry_run, f"{len(asked)} queries from {queries.name}")
    else:
        _print_evaluation(results, f"{len(asked)} queries from {queries.name}")


def _cross_encoder(name: str, settings: Settings) -> CrossEncoder:
    """The cross-encoder ``name`` on the encoder's runtime, or a usage error (exit 2) saying why it cannot serve."""
    from rag.embeddings.cross_encoder import CrossEncoder
    from rag.embeddings.hub import CheckpointError
    from rag.embeddings.registry import runtime_from_settings

    try:
        return CrossEncoder.from_pretrained(name, runtime=runtime_from_settings(settings))
    except CheckpointError as e:
        raise fail(f"--reranker: {e}") from e


def _warn_missing(store: MilvusStore, asked: list[EvalQuery]) -> dict[str, list[str]]:
    """Warn, on stderr, about queries whose relevant items are not in the collection; returns them by query id."""
    from rag.analysis.evaluation import missing_relevant

    missing = checked(lambda: missing_relevant(store, asked))
    if missing:
        listed = "; ".join(f"{query}: {', '.join(entries)}" for query, entries in list(missing.items())[:5])
        more = f"; … and {len(missing) - 5} more" if len(missing) > 5 else ""
        console.print(
            Text.assemble(
                ("warning: ", "yellow"),
                f"collection {store.collection!r} has no item for relevant ids of {len(missing)} of {len(asked)} "
                f"queries, so their recall cannot reach 1 (ingest those items, or fix the ids): {listed}{more}",
            )
        )
    return missing


def _print_evaluation(results: list, source: str) -> None:
    from rich import box

    from rag.analysis.evaluation import METRICS

    used = {r.collection: r.encoder for r in results}
    rerankers = sorted({r.reranker for r in results if r.reranker})
    table = Table(
        title=Text(f"retrieval evaluation · {source}"),
        caption=Text(
            "; ".join([f"{name}: {model}" for name, model in used.items()] + [f"rerank: {r}" for r in rerankers])
        ),
        box=box.SIMPLE_HEAD,
    )
    reranked = any(r.reranker for r in results)
    columns = ("collection", "mode", *(["rerank"] if reranked else []), "n", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10")
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("collection", "mode", "rerank") else "right", no_wrap=True
        )
    for r in results:
        scores = ["n/a"] * 5 if r.skipped else [f"{r.metrics[m]:.3f}" for m in METRICS]
        rerank = [Text(Path(r.reranker).name if r.reranker else "-")] if reranked else []
        table.add_row(Text(r.collection), r.mode, *rerank, str(r.queries), *scores)
    Console().print(table)
    for r in results:
        if r.skipped:
            how = f" reranked by {r.reranker}" if r.reranker else ""
            console.print(f"[yellow]skipped[/] {escape(r.collection)} {r.mode}{escape(how)}: {escape(r.skipped)}")


def _print_tuning(results: list, saved: dict[str, list[str]], dry_run: bool, source: str) -> None:
    from rich import box

    from connectors.milvus.blend import Blend
    from rag.analysis.evaluation import METRICS

    collections = sorted({r.collection for r in results})
    several = len(collections) > 1
    title = f"blend tuning · {source}" + ("" if several else f" · collection {collections[0]}" if collections else "")
    table = Table(title=Text(title), box=box.SIMPLE_HEAD)
    columns = (["collection"] if several else []) + ["kind (n)", "search", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("collection", "kind (n)", "search") else "right")
    for r in results:
        rows = [(Text(f"{signal} alone"), scores) for signal, scores in r.alone.items()]
        if r.best is not None:
            rows.append((Text(f"★ {Blend.of(r.best).describe()}", style="bold"), r.metrics))
        for label, scores in rows:
            cells: list[str | Text] = [f"{r.kind} ({r.queries})", label, *(f"{scores[m]:.3f}" for m in METRICS)]
            table.add_row(*([Text(r.collection)] if several else []), *cells)
    Console().print(table)
    for r in results:
        if r.skipped:
            console.print(f"[yellow]not tuned[/] {escape(r.collection)} {r.kind}: {escape(r.skipped)}")
    if dry_run:
        console.print("--dry-run: nothing saved")
    for name, kinds in saved.items():
        if kinds:
            console.print(
                Text(
                    f"saved on collection {name!r} for {', '.join(kinds)} queries: they use these blends unless "
                    "--blend or --mode says otherwise (rag stats lists them)"
                )
            )


def _collection_spec(spec: str | None) -> tuple[str | None, str | None, str | None]:
    """``NAME[=ENCODER[:WEIGHTS]]`` → (name, encoder, weights); None parts fall back to settings."""
    if spec is None:
        return None, None, None
    name, _, encoder_spec = spec.partition("=")
    kind, _, weights = encoder_spec.partition(":")
    if kind and kind not in ("visualized-bge", "clip", "bridgetower"):
        raise fail(f"--collection {spec}: the encoder must be visualized-bge, clip or bridgetower, not {kind!r}")
    return name, kind or None, weights or None
