"""``/api/search`` and ``/api/ask``: a text, an image or both, answered with items or with an answer citing them."""

from __future__ import annotations

from typing import Annotated, Any, Sequence
from urllib.parse import quote

from fastapi import APIRouter, File, Form, UploadFile
from llama_index.core.schema import QueryBundle

from connectors.milvus import Blend, parse_filters
from connectors.milvus.blend import Fusion, scale_of
from rag.retrieval import Evidence, Mode, MultimodalRetriever, merged_count
from rag.settings import Settings

from ..models import AskResponse, BlendUsed, CitedResult, Result, SearchResponse
from .deps import ServiceDep, SettingsDep, read_upload

MAX_TOP_K = 100
router = APIRouter(tags=["search"])

TextField = Annotated[str, Form(max_length=8192, description="Query text (an instruction, for composed queries).")]
ImageField = Annotated[UploadFile | None, File(description="Query image (PNG, JPEG, WebP, GIF, BMP, TIFF).")]
ModeField = Annotated[
    Mode | None,
    Form(
        description="Retrieval mode; default: text-to-any for text (every item), image-to-multimodal for an image, "
        "composed-to-multimodal for both."
    ),
]
FilterField = Annotated[
    list[str] | None,
    Form(
        alias="filter",
        description="Metadata filter, written as for `rag search --filter`: key=value pairs separated by commas (a "
        'repeated key matches any of its values: tags=red,tags=blue), or a JSON object such as {"tags": "cat"} or '
        '{"created_at": {">=": "2024-01-01"}}. Repeat the field to combine several.',
    ),
]
TopKField = Annotated[
    int | None, Form(ge=1, le=MAX_TOP_K, description="How many items; default: the server's RAG_TOP_K (10).")
]
BlendField = Annotated[
    str | None,
    Form(
        description="Signals searched together, fused by Milvus: fused=0.6,image=0.3,bm25=0.1 (fused: the item as a "
        "whole, image: the picture alone, bm25: words of the text; weights scaled to sum to 1), or names alone for "
        "equal parts. Default: the blend `rag eval --tune` saved for the query's kind, unless a mode is given.",
    ),
]
HybridField = Annotated[bool, Form(description="The mode's vector and BM25 over the items' text (the blend <vector>,bm25).")]
FusionField = Annotated[
    Fusion | None, Form(description="weighted (the default for a blend) or rrf, reciprocal rank (the default for hybrid).")
]
MinScoreField = Annotated[
    float | None,
    Form(description="Drop results scoring below this, on the score_scale: cosine -1..1, weighted 0..1; refused for rrf."),
]
DedupField = Annotated[
    bool, Form(description="Merge true duplicates: the same item, or the same image bytes with the same text.")
]
MergeSimilarField = Annotated[
    float | None,
    Form(ge=-1, le=1, description="Also merge results whose vectors have a cosine above this, e.g. 0.995. Off by default."),
]

@router.post("/search")
def search(
    service: ServiceDep,
    settings: SettingsDep,
    text: TextField = "",
    image: ImageField = None,
    mode: ModeField = None,
    top_k: TopKField = None,
    filters: FilterField = None,
    blend: BlendField = None,
    hybrid: HybridField = False,
    fusion: FusionField = None,
    min_score: MinScoreField = None,
    dedup: DedupField = True,
    merge_similar: MergeSimilarField = None,
) -> SearchResponse:
    """Items for a text, an image, or both (a composed query), best first."""
    retriever = service.retriever(
        mode=mode, top_k=top_k or settings.top_k, filters=parse_filters(filters), blend=_blend(blend), hybrid=hybrid,
        fusion=fusion, min_score=min_score, dedup=dedup, merge_similar=merge_similar,
    )
    upload = read_upload(image, settings.server_max_upload_bytes) if image else None
    with service.query_image(upload) as path:
        used, blended, found = service.search(QueryBundle(text, image_path=path), retriever)
    return SearchResponse(
        **_searched(used, blended, retriever, found),
        results=[Result(**_shown(e, settings).model_dump(), image_url=_image_url(e)) for e in found],
    )


@router.post("/ask")
def ask(
    service: ServiceDep,
    settings: SettingsDep,
    text: Annotated[str, Form(min_length=1, max_length=8192, description="The question.")],
    image: ImageField = None,
    mode: ModeField = None,
    top_k: TopKField = None,
    filters: FilterField = None,
    blend: BlendField = None,
    hybrid: HybridField = False,
    fusion: FusionField = None,
    min_score: MinScoreField = None,
    dedup: DedupField = True,
    merge_similar: MergeSimilarField = None,
) -> AskResponse:
    """An answer citing the retrieved items; without an LLM (RAG_LLM_MODEL), the ranked evidence."""
    retriever = service.retriever(
        mode=mode, top_k=top_k or settings.top_k, filters=parse_filters(filters), blend=_blend(blend), hybrid=hybrid,
        fusion=fusion, min_score=min_score, dedup=dedup, merge_similar=merge_similar,
    )
    upload = read_upload(image, settings.server_max_upload_bytes) if image else None
    with service.query_image(upload) as path:
        used, blended, response = service.ask(QueryBundle(text, image_path=path), retriever)
    return AskResponse(
        **_searched(used, blended, retriever, response.citations),
        status=response.status,
        answer=response.response or "",
        error=response.error,
        rerank_error=response.rerank_error,
        citation_check=response.citation_check,
        citations=[CitedResult(**_shown(c, settings).model_dump(), image_url=_image_url(c)) for c in response.citations],
    )


def _shown(item: Evidence, settings: Settings) -> Evidence:
    return item if settings.server_show_paths else item.without_paths()


def _blend(raw: str | None) -> str | None:
    return raw if raw is not None and raw.strip() else None


def _searched(mode: Mode, blend: Blend | None, retriever: MultimodalRetriever, results: Sequence[Evidence]) -> dict[str, Any]:
    """The fields every search response shares: how the query was searched, and how many duplicates were merged."""
    used = None
    if blend is not None:
        used = BlendUsed(**blend.to_dict(), tuned=retriever.blend is None and not retriever.hybrid)
    return {"mode": mode, "blend": used, "score_scale": scale_of(blend), "merged": merged_count(list(results))}


def _image_url(item: Evidence) -> str | None:
    return f"/api/items/{quote(item.id, safe='')}/image" if item.image else None
