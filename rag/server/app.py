"""The HTTP API and the web page: a FastAPI app over one collection, owned for the app's lifetime.

Routes under ``/api`` ask for the bearer token when one is set (``RAG_SERVER_TOKEN``); the page,
its static files, ``/health``, the OpenAPI schema and its docs at ``/docs`` do not. Every error is
JSON: ``{"error": <code>, "message": <what went wrong>}``.

Clients see items by name and id, not by this machine's paths: sources named relative to the
folder they were ingested from, images served by item id, and no Milvus URI, unless
``RAG_SERVER_SHOW_PATHS`` allows them. The API docs (``/docs``: Swagger UI, ``/redoc``) are
``fastapi-offline``'s: their scripts are served here, not from a CDN, so they work offline.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Awaitable, Callable, Sequence
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, Response, UploadFile, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from llama_index.core.schema import QueryBundle
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.milvus import Blend, NotSupportedError, ScoreScale, StoreError, StoreStats, parse_filters
from connectors.milvus.blend import Fusion, scale_of
from rag.answer import AnswerStatus, Citation
from rag.embeddings.base import Encoder, FusedNotSupportedError
from rag.retrieval import Evidence, Mode, MultimodalRetriever, QueryError, merged_count
from rag.settings import Settings

from .jobs import IngestJob
from .service import MANIFEST_SUFFIXES, ImageNotFoundError, Service, UploadError

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_TOP_K = 100
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
    503: "store_unavailable",
}


class ErrorBody(BaseModel):
    error: str = Field(description="A short code: bad_request, unauthorized, not_found, too_large, ...")
    message: str = Field(description="What went wrong, for people.")
    details: list[dict[str, Any]] | None = Field(default=None, description="Per-field problems of a 422.")


class Result(Evidence):
    image_url: str | None = Field(default=None, description="This server's URL of the item's image.")


class CitedResult(Citation):
    image_url: str | None = Field(default=None, description="This server's URL of the item's image.")


class BlendUsed(BaseModel):
    weights: dict[str, float] = Field(description="Each signal's share of the score (fused, image, bm25); they sum to 1.")
    fusion: Fusion
    tuned: bool = Field(description="True: the blend `rag eval --tune` saved for this kind of query.")


class Searched(BaseModel):
    mode: Mode
    blend: BlendUsed | None = Field(description="The signals searched together; null: the mode's vector alone.")
    score_scale: ScoreScale = Field(
        description="What scores mean. cosine: one vector, -1..1. weighted: Σ weight × normalised signal score, 0..1 "
        "(0.5 + arctan(cosine)/π per vector, 2·arctan(bm25)/π for BM25; a signal that did not find the item adds 0). "
        "rrf: Σ 1/(60 + rank), positions only (about 0.016 per signal at best)."
    )
    merged: int = Field(
        description="How many duplicates (the same item, or the same image bytes with the same text) were merged into "
        "the results; each result lists its own in `duplicates`."
    )


class SearchResponse(Searched):
    results: list[Result]


class AskResponse(Searched):
    status: AnswerStatus
    answer: str = Field(description="The answer with [n] citation markers; the ranked evidence when there is no LLM.")
    error: str | None = None
    rerank_error: str | None = None
    citations: list[CitedResult] = Field(description="Every item the answer saw; rank n is marker [n].")


class ServerStats(StoreStats):
    uri: str | None = Field(
        description="The Milvus URI; null unless the server shows its paths (RAG_SERVER_SHOW_PATHS)."
    )
    llm: str | None = Field(description="The LLM answering /api/ask; None: answers list the evidence.")
    encoder_runtime: dict[str, Any] = Field(
        description="Where this server's encoder runs: device, dtype, batch size, preprocessing workers, and why."
    )
    top_k: int = Field(description="How many items /api/search returns and /api/ask reads when top_k is not given.")


def create_app(settings: Settings | None = None, *, encoder: Encoder | None = None) -> FastAPI:
    """The app over ``settings.collection``; ``encoder`` overrides the one the settings name (e.g. already loaded)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.open(settings, encoder)
        app.state.service = service
        logger.info("serving collection %r at %s", settings.collection, settings.milvus_uri)
        try:
            yield
        finally:
            service.close()

    app = FastAPIOffline(
        title="mmrag",
        summary="Multimodal search, answers with citations, and ingestion over one collection.",
        lifespan=lifespan,
        responses={code: {"model": ErrorBody} for code in (400, 401, 413, 422)},
        static_url="/docs/assets",
    )
    token = settings.server_token.get_secret_value() if settings.server_token else None
    app.include_router(_api(settings, token), prefix="/api")
    app.add_middleware(_BodyLimit, max_bytes=settings.server_max_request_bytes)
    _add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.get("/health", tags=["service"])
    def health(request: Request) -> dict[str, str]:
        """Liveness, and the device and dtype the encoder runs on (no token needed, nothing about the data)."""
        runtime = request.app.state.service.encoder.runtime
        return {"status": "ok", "device": runtime.device, "dtype": runtime.dtype}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def no_sniffing(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


class _BodyLimit:
    """Refuses request bodies over ``max_bytes`` with a JSON 413: at once by their Content-Length, else while read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = f"the request body is {declared} bytes, over the {self.max_bytes}-byte limit"
            await _error(413, message)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            chunk = await receive()
            received += len(chunk.get("body", b""))
            if received > self.max_bytes:  # raised inside the route: the error handlers answer
                raise HTTPException(413, f"the request body is over the {self.max_bytes}-byte limit")
            return chunk

        await self.app(scope, counted, send)


def _service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(_service)]
TextField = Annotated[str, Form(max_length=8192, description="Query text (an instruction, for composed queries).")]
ImageField = Annotated[UploadFile | None, File(description="Query image (PNG, JPEG, WebP, GIF, BMP, TIFF).")]
ModeField = Annotated[Mode | None, Form(description="Retrieval mode; default: from what the query has.")]
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
_bearer = HTTPBearer(auto_error=False, description="Needed when the server has a token (RAG_SERVER_TOKEN / --token).")


def _api(settings: Settings, token: str | None) -> APIRouter:
    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None:
            return
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "this server needs a bearer token: send the header 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    api = APIRouter(dependencies=[Depends(authorize)])
    max_bytes = settings.server_max_upload_bytes

    def shown(item: Evidence) -> Evidence:
        return item if settings.server_show_paths else item.without_paths()

    def read(upload: UploadFile) -> bytes:
        if upload.size is not None and upload.size > max_bytes:
            raise UploadError(f"{upload.filename!r} is {upload.size} bytes, over the {max_bytes}-byte limit", 413)
        data = upload.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise UploadError(f"{upload.filename!r} is over the {max_bytes}-byte limit", 413)
        return data

    @api.post("/search", tags=["search"])
    def search(
        service: ServiceDep,
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
        with service.query_image(read(image) if image else None) as path:
            used, blended, found = service.search(QueryBundle(text, image_path=path), retriever)
        return SearchResponse(
            **_searched(used, blended, retriever, found),
            results=[Result(**shown(e).model_dump(), image_url=_image_url(e)) for e in found],
        )

    @api.post("/ask", tags=["search"])
    def ask(
        service: ServiceDep,
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
        with service.query_image(read(image) if image else None) as path:
            used, blended, response = service.ask(QueryBundle(text, image_path=path), retriever)
        return AskResponse(
            **_searched(used, blended, retriever, response.citations),
            status=response.status,
            answer=response.response or "",
            error=response.error,
            rerank_error=response.rerank_error,
            citations=[CitedResult(**shown(c).model_dump(), image_url=_image_url(c)) for c in response.citations],
        )

    @api.post("/ingest", status_code=status.HTTP_202_ACCEPTED, tags=["ingest"])
    def ingest(
        service: ServiceDep,
        response: Response,
        files: Annotated[
            list[UploadFile],
            File(description="Images to add, and manifests (.jsonl, .ndjson, .csv) whose rows name images or URLs."),
        ],
        captions: Annotated[
            list[str] | None, Form(description="One caption per file, in the same order (ignored for manifests).")
        ] = None,
        tags: Annotated[str, Form(description="Comma-separated tags for every uploaded image.")] = "",
    ) -> IngestJob:
        """Keep the files and ingest them in the background; poll the job's URL for progress."""
        if captions and len(captions) != len(files):
            raise UploadError(f"{len(captions)} captions for {len(files)} files: give one per file, or none")
        images: list[tuple[str, bytes, str]] = []
        manifests: list[tuple[str, bytes]] = []
        for index, upload in enumerate(files):
            name = Path(upload.filename or f"file-{index}").name
            if Path(name).suffix.lower() in MANIFEST_SUFFIXES:
                manifests.append((name, read(upload)))
            else:
                images.append((name, read(upload), captions[index] if captions else ""))
        job = service.submit_ingest(images, manifests, [t.strip() for t in tags.split(",") if t.strip()])
        response.headers["Location"] = f"/api/ingest/{job.id}"
        return job

    @api.get("/ingest", tags=["ingest"])
    def ingest_jobs(service: ServiceDep) -> list[IngestJob]:
        """The recent ingest jobs, newest first."""
        return service.jobs.all()

    @api.get("/ingest/{job_id}", tags=["ingest"], responses={404: {"model": ErrorBody}})
    def ingest_job(service: ServiceDep, job_id: str) -> IngestJob:
        """One ingest job: status, items added so far, problems."""
        job = service.jobs.get(job_id)
        if job is None:
            message = f"no ingest job {job_id!r} (jobs are listed while the server runs)"
            raise HTTPException(status.HTTP_404_NOT_FOUND, message)
        return job

    @api.get("/stats", tags=["service"])
    def stats(service: ServiceDep) -> ServerStats:
        """Item count, vector size and encoder of the collection, and the LLM in use."""
        llm = service.llm.metadata.model_name if service.llm is not None else None
        stats = service.stats().model_dump()
        if not settings.server_show_paths:
            stats["uri"] = None
        return ServerStats(**stats, llm=llm, encoder_runtime=service.encoder.runtime.to_dict(), top_k=settings.top_k)

    @api.get(
        "/items/{item_id}/image",
        tags=["items"],
        response_class=FileResponse,
        responses={200: {"content": {"image/*": {}}}, 404: {"model": ErrorBody}},
    )
    def item_image(service: ServiceDep, item_id: str) -> FileResponse:
        """The image of a stored item, found by the item's id (never by a path)."""
        path, media_type = service.image_file(item_id)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})

    return api


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


def _error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    code = _ERROR_CODES.get(status_code, "error" if status_code < 500 else "internal_error")
    body = ErrorBody(error=code, message=message, **extra).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status_code)


def _message_as(status_code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return _error(status_code, str(exc))

    return handler


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):  # no route matched
            message = f"{message}: {request.method} {request.url.path}"
        response = _error(exc.status_code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(part) for part in e["loc"][1:]) or str(e["loc"][0]), "problem": e["msg"]}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
        return _error(422, message, details=details)

    @app.exception_handler(UploadError)
    async def refused(request: Request, exc: UploadError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(QueryError)
    async def incomplete(request: Request, exc: QueryError) -> JSONResponse:
        return _error(status.HTTP_400_BAD_REQUEST, exc.naming(text="the text field", image="the image field"))

    # Library errors whose message is the answer; the library checks its inputs with ValueError
    # (modes, filters, unreadable images).
    for error_type, status_code in (
        (ImageNotFoundError, status.HTTP_404_NOT_FOUND),
        (ValueError, status.HTTP_400_BAD_REQUEST),
        (NotSupportedError, status.HTTP_400_BAD_REQUEST),
        (FusedNotSupportedError, status.HTTP_400_BAD_REQUEST),
        (StoreError, status.HTTP_503_SERVICE_UNAVAILABLE),
    ):
        app.add_exception_handler(error_type, _message_as(status_code))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(
            status.HTTP_500_INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__}); the server log has details"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings | None = None, *, host: str | None = None, port: int | None = None) -> None:
    """Run the app with uvicorn until interrupted (one process: Milvus Lite allows one per data folder)."""
    import uvicorn

    settings = settings or Settings()
    host = host or settings.server_host
    port = settings.server_port if port is None else port
    if not is_loopback(host) and settings.server_token is None:
        logger.warning("serving on %s without a token: anyone who can reach it can read and add items", host)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
