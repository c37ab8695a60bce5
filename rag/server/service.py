"""What the app owns for its lifetime: the encoder, the store, the LLM, the upload folder and the ingest jobs.

Everything here is library calls; the routes only translate HTTP to and from these methods.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import mimetypes
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from llama_index.core.llms import LLM, ChatMessage, MessageRole
from llama_index.core.schema import QueryBundle

from connectors.milvus import (
    Blend,
    CollectionNotFoundError,
    ConnectOptions,
    EncoderInfo,
    MilvusStore,
    StoreStats,
    parse_filters,
    require_collection,
)
from connectors.milvus.connection import Connection
from connectors.sources import (
    SUPPORTED_SUFFIXES,
    BadInput,
    SourceOptions,
    check_image,
    open_sources,
    write_atomic,
)
from connectors.sources._common import IMAGE_SUFFIXES
from connectors.sources.ocr import OcrMode, OcrUnavailableError, require_ocr
from rag.access.tenants import sees, tagged, within
from rag.answer import answer_engine, llm_from_settings
from rag.answer.chat import MultimodalChatEngine, user_message
from rag.answer.llm import endpoint_of
from rag.embeddings.base import Encoder
from rag.embeddings.hub import CheckpointError
from rag.embeddings.registry import load_encoder, runtime_from_settings
from rag.errors import RagError
from rag.ingest import IngestReport, ingest
from rag.items import DEFAULT_TENANT, SourceError, SourceErrorKind
from rag.retrieval import Evidence, Mode, MultimodalRetriever, evidence
from rag.retrieval.options import AnswerOptions, QueryOptions
from rag.settings import Settings

from .breaker import Breaker, Probe
from .conversations import Conversation, Conversations
from .job_records import JobRecords
from .jobs import IngestJob, IngestJobs
from .models import AskRequest, HistoryTurn
from .rerankers import chosen_reranker
from .shared import serialized
from .telemetry import Telemetry, hiding

logger = logging.getLogger(__name__)

#: Uploads kept under their own name and read by the source their type calls for (images are kept by hash).
DOCUMENT_SUFFIXES = tuple(sorted(SUPPORTED_SUFFIXES - IMAGE_SUFFIXES))
_T = TypeVar("_T")


class UploadError(RagError, ValueError):
    """A request the server refuses; ``status`` is the HTTP status that says why (400, 413; 500: its own reranker
    cannot load)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ImageNotFoundError(RagError, LookupError):
    """No item with that id has an image file this server can send."""


class Service:
    """The encoder and store, shared safely by concurrent requests and the ingest worker (see ``shared``)."""

    def __init__(
        self,
        settings: Settings,
        encoder: Encoder,
        store: MilvusStore,
        llm: LLM | None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry or Telemetry()
        timed = self.telemetry.timed(encoder)
        self.encoder = serialized(timed, threading.Lock(), unlocked=("prepare", "preprocess"))
        # While the store is away, calls fail at once, and so do those waiting for their turn (``breaker``).
        self.breaker = Breaker(settings.milvus_uri)
        self.store = self.breaker.wrap(serialized(store, threading.Lock(), gate=self.breaker.check))
        self.probe = Probe(self.breaker, self._ping)
        self._probe_connection: Connection | None = None
        self.llm = llm
        #: The LLM's address, for the log; ``hide_llm`` takes it out of a text for clients (RAG_SERVER_SHOW_PATHS).
        self.llm_endpoint = endpoint_of(llm) if llm is not None else None
        self.hide_llm = hiding(self.llm_endpoint, settings.server_show_paths)
        self.uploads = (settings.data_dir / "uploads").resolve()
        records = JobRecords(settings.data_dir / "server" / "jobs.sqlite3", settings.collection)
        self.jobs = IngestJobs(
            self._ingest,
            records=records,
            drain=settings.server_drain_seconds,
            run_for=lambda job: functools.partial(self._ingest, tenant=job.tenant, ocr=job.ocr),
        )
        self.conversations = (
            Conversations(llm, settings.server_conversation_ttl, settings.chat_history_tokens)
            if settings.server_conversations
            else None
        )
        self._own_store = store

    @classmethod
    def open(cls, settings: Settings, encoder: Encoder | None = None, telemetry: Telemetry | None = None) -> Service:
        """Load the encoder (unless given) and the LLM the settings name, and open the collection, which must exist:
        serving creates no database or collection (``CollectionNotFoundError``, before the encoder loads), and
        writes to none of the older schema (``SchemaOutdatedError``, naming ``rag migrate``).
        ``telemetry``: where the encoder's batches and the LLM's failures are counted (the app's ``/metrics``)."""
        options = ConnectOptions.from_settings(settings)
        token = settings.milvus_token_value
        # serving writes (uploads, deletes): a collection of the older schema is migrated first (``rag migrate``)
        require_collection(settings.milvus_uri, settings.collection, token=token, options=options, writable=True)
        encoder = encoder or load_encoder(settings, runtime_from_settings(settings, "serve"))
        if encoder.runtime.compile:
            _warm_up(encoder)
        store = MilvusStore.open(
            settings.milvus_uri,
            settings.collection,
            encoder_info=EncoderInfo.of(encoder),
            create=False,
            token=settings.milvus_token_value,
            options=options,
        )
        try:
            llm = llm_from_settings(settings)
        except BaseException:
            store.close()
            raise
        service = cls(settings, encoder, store, llm, telemetry)
        service.probe.start()
        service.jobs.resume()
        return service

    def close(self) -> None:
        """Stop the ingest worker and the probe, then release the store (Milvus Lite: its data folder)."""
        self.jobs.close()
        self.probe.close()
        if self.conversations is not None:
            self.conversations.close()
        if self._probe_connection is not None:
            self._probe_connection.close()
        self._own_store.close()

    def _ping(self, timeout: float) -> None:
        """Whether the store answers and has the collection, on a connection of the probe's own (a call hung on
        the shared one cannot hold it up)."""
        if self._probe_connection is None:
            options = ConnectOptions.from_settings(self.settings)
            token = self.settings.milvus_token_value
            self._probe_connection = Connection(self.settings.milvus_uri, token=token, create=False, options=options)
        if not self._probe_connection.has_collection(self.settings.collection, timeout=timeout):
            raise CollectionNotFoundError(
                f"the collection {self.settings.collection!r} is gone from the store: searches find nothing until "
                "it is ingested again"
            )

    def retriever(self, options: QueryOptions, tenant: str | None = None) -> MultimodalRetriever:
        """A retriever over the shared encoder and store (cheap: make one per request); ``top_k`` defaults to the
        server's (RAG_TOP_K), the cross-encoder to the server's (RAG_RERANKER); a request may choose none or one
        the operator allowed (``rag.server.rerankers``), never a model of its own naming. With a ``tenant``, it
        sees only that tenant's items, whatever the options' filter says."""
        reranker = chosen_reranker(self.settings, options.reranker)  # RerankerChoiceError (400) names the choices
        options = options.model_copy(update={"reranker": reranker})
        try:
            retriever = MultimodalRetriever.from_options(self.store, self.encoder, options, settings=self.settings)
        except CheckpointError as e:
            raise UploadError(f"reranker: {e}", status=500) from e
        retriever.filters = within(options.parsed_filters, tenant)
        return retriever

    def search(self, query: QueryBundle, retriever: MultimodalRetriever) -> tuple[Mode, Blend | None, list[Evidence]]:
        """The mode and blend used and the ranked evidence for ``query``."""
        mode, blend = retriever.resolve_mode(query), retriever.resolve_blend(query)
        return mode, blend, evidence(retriever.retrieve(query))

    def ask(
        self,
        query: QueryBundle,
        retriever: MultimodalRetriever,
        options: AnswerOptions | None = None,
        streaming: bool = False,
        history: list[ChatMessage] | None = None,
        conversation: Conversation | None = None,
    ) -> tuple[Mode, Blend | None, Any]:
        """The mode and blend used and the answer with citations (the ranked evidence when no LLM is configured):
        an ``AnswerResponse``, or with ``streaming`` a ``StreamingAnswerResponse`` whose LLM call starts when its
        tokens are read. With a ``history``, the question is a follow-up, condensed with it first (the response's
        ``metadata["query"]`` is the standalone question); so with a kept ``conversation``."""
        if history or conversation is not None:
            return self._follow_up(query, retriever, options, streaming, history, conversation)
        mode, blend = retriever.resolve_mode(query), retriever.resolve_blend(query)
        engine = answer_engine(
            retriever,
            self.llm,
            options,
            max_image_side=self.settings.llm_max_image_side,
            max_evidence_tokens=self.settings.llm_max_evidence_tokens,
            streaming=streaming,
            settings=self.settings,
        )
        return mode, blend, engine.query(query)

    def _follow_up(
        self,
        query: QueryBundle,
        retriever: MultimodalRetriever,
        options: AnswerOptions | None,
        streaming: bool,
        history: list[ChatMessage] | None,
        conversation: Conversation | None,
    ) -> tuple[Mode, Blend | None, Any]:
        image_path = query.image_path
        if conversation is not None:
            image_path = conversation.keep(image_path)
        chat = MultimodalChatEngine(
            retriever,
            self.llm,
            memory=conversation.memory if conversation is not None else None,
            history_tokens=self.settings.chat_history_tokens,
            max_image_side=self.settings.llm_max_image_side,
            max_evidence_tokens=self.settings.llm_max_evidence_tokens,
            rerank_top_n=options.llm_rerank if options is not None else None,
        )
        respond = chat.stream_chat if streaming else chat.chat
        response = respond(query.query_str, chat_history=history or None, image_path=image_path)
        searched = response.metadata or {}
        standalone = QueryBundle(searched.get("query", query.query_str), image_path=searched.get("query_image"))
        return retriever.resolve_mode(standalone), retriever.resolve_blend(standalone), response

    def conversation(self, request: AskRequest, owner: str | None = None) -> Conversation | None:
        """The kept conversation a question continues or starts (None: the server keeps none, or it has a history);
        only its ``owner`` (who started it) may continue it."""
        if request.conversation_id is not None and self.conversations is None:
            raise UploadError("this server keeps no conversations (RAG_SERVER_CONVERSATIONS): send the history")
        if request.conversation_id is not None and request.history:
            raise UploadError("give the history or a conversation_id, not both")
        if self.conversations is None or request.history:
            return None
        return self.conversations.get(request.conversation_id, owner)

    @contextmanager
    def history(self, turns: Sequence[HistoryTurn]) -> Iterator[list[ChatMessage]]:
        """A client's history as chat messages, its pictures checked like query images and kept in temporary
        files until the context ends."""
        with ExitStack() as stack:
            messages = []
            for turn in turns:
                if turn.role == "assistant":
                    messages.append(ChatMessage(role=MessageRole.ASSISTANT, content=turn.content))
                    continue
                picture = _data_url(turn.image, self.settings.server_max_upload_bytes) if turn.image else None
                path = stack.enter_context(self.query_image(picture, "a history picture"))
                messages.append(user_message(turn.content, path))
            yield messages

    def stats(self, tenant: str | None = None) -> StoreStats:
        """The collection's statistics; with a ``tenant``, its count is that tenant's."""
        stats = self.store.stats()
        if tenant is not None:
            stats = stats.model_copy(update={"count": self.store.count(within(None, tenant))})
        return stats

    def delete(self, filters: Sequence[str], tenant: str | None = None) -> int:
        """Delete the items ``filters`` match (as search reads them: key=value pairs or JSON) within ``tenant``
        (None: any); returns how many. A filter is required: deleting everything is the command line's business
        (``rag delete --all``)."""
        parsed = parse_filters(filters)  # a FilterError (a ValueError: 400) names what is wrong
        if parsed is None:
            raise UploadError("give a filter: which items to delete, e.g. filter=source=notes.md")
        return self.store.delete(filter=within(parsed, tenant))

    def image_file(self, item_id: str, tenant: str | None = None) -> tuple[Path, str]:
        """The local image file of a stored item and its media type; looked up by id only, never by path, and
        only among ``tenant``'s items (another tenant's item is not found, as if it did not exist)."""
        items = [item for item in self.store.get([item_id]) if sees(item, tenant)]
        image = items[0].image if items else None
        if image is None:
            raise ImageNotFoundError(f"collection {self.settings.collection!r} has no item {item_id!r} with an image")
        if image.uri.startswith(("http://", "https://")):
            raise ImageNotFoundError(f"the image of item {item_id!r} is a URL, not a file this server keeps")
        path = Path(image.uri)
        if not path.is_file():
            raise ImageNotFoundError(f"the image file of item {item_id!r} is gone from this server")
        return path, image.mime_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    @contextmanager
    def query_image(self, data: bytes | None, what: str = "query image") -> Iterator[str | None]:
        """A checked query image as a file in the system's temporary folder (retrievers and LLMs read files),
        removed afterwards; ``what`` names it in errors."""
        if data is None:
            yield None
            return
        try:
            suffix = check_image(data, self.settings.server_max_image_pixels).suffix
        except BadInput as e:
            status = 413 if e.kind is SourceErrorKind.IMAGE_TOO_LARGE else 400
            raise UploadError(f"{what}: {e.reason}", status) from None
        fd, name = tempfile.mkstemp(prefix="rag-query-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            yield name
        finally:
            Path(name).unlink(missing_ok=True)

    def submit_ingest(
        self,
        images: list[tuple[str, bytes, str]],
        manifests: list[tuple[str, bytes]],
        tags: list[str],
        on_done: Callable[[IngestJob], None] | None = None,
        tenant: str | None = None,
        ocr: OcrMode | None = None,
    ) -> IngestJob:
        """Keep the uploads under ``data_dir/uploads`` (see :meth:`upload_path`) and queue their ingestion.

        ``images``: (file name, bytes, caption), kept with the caption and the file name in a JSON sidecar;
        ``manifests``: (file name, bytes): documents and manifests, whose local image references must stay in the
        upload folder. An upload is known by its file name: the same name again replaces that upload's earlier
        version; identical bytes under another name are another upload. Images that fail the check are reported in
        the job; a document with another suffix is refused. Unless the server shows its paths, the job names the
        files in its problems by their upload names. ``on_done`` gets the finished job. With a ``tenant``, the
        uploads are kept apart from other tenants' and their items belong to it. ``ocr``: when to read text from
        pixels (``rag ingest --ocr``), by default ``RAG_OCR``; ``all`` without the OCR extra is refused.
        """
        options = self._source_options(ocr)
        paths: list[Path] = []
        names: dict[str, str] = {}
        refused: list[SourceError] = []
        for name, data, caption in images:
            try:
                info = check_image(data, options.max_image_pixels, decode=options.decode_check)
            except BadInput as e:
                refused.append(e.report(f"upload:{name}"))
                continue
            kept = name if Path(name).suffix.lower() in IMAGE_SUFFIXES else name + info.suffix
            path = self.upload_path(kept, tenant)
            write_atomic(path, data)
            sidecar = {"text": caption, "tags": tags, "upload_name": name}
            write_atomic(path.with_suffix(".json"), json.dumps(sidecar).encode())
            paths.append(path)
            names[str(path)] = f"upload:{name}"
        for name, data in manifests:
            suffix = Path(name).suffix.lower()
            if suffix not in DOCUMENT_SUFFIXES:
                raise UploadError(f"file {name!r}: the name must end in {', '.join(DOCUMENT_SUFFIXES)}")
            path = self.upload_path(name, tenant)
            write_atomic(path, data)
            paths.append(path)
            names[str(path)] = f"upload:{name}"
        shown = None if self.settings.server_show_paths else names
        run = functools.partial(self._ingest, tenant=tenant, ocr=ocr)
        return self.jobs.submit(paths, refused, names=shown, on_done=on_done, tenant=tenant, run=run, ocr=ocr)

    def upload_path(self, name: str, tenant: str | None = None) -> Path:
        """Where the upload named ``name`` is kept: ``uploads/<first 8 hex of the name's SHA-256>/<name>``. One
        folder per file name, so an upload's sidecar and its reader see no other upload, and the same name is the
        same file (its document, ``ref_doc_id``), which a new version replaces. Items are named by the file name;
        where another document has that name already, by ``<those 8 hex>/<name>`` (``rag.ingest.names``). A
        tenant's uploads hash ``<tenant>/<name>``: the same name in two tenants is two files, two documents."""
        if name in ("", ".", "..") or "/" in name or "\x00" in name:
            raise UploadError(f"{name!r} is not a file name: give each upload the name of a file")
        key = name if tenant is None or tenant == DEFAULT_TENANT else f"{tenant}/{name}"
        return self.uploads / hashlib.sha256(key.encode("utf-8")).hexdigest()[:8] / name

    def _source_options(self, ocr: OcrMode | None = None) -> SourceOptions:
        mode = ocr or self.settings.ocr
        try:
            require_ocr(mode)
        except OcrUnavailableError as e:
            field = "ocr=" if ocr else "RAG_OCR="  # the upload's own field, or the server's setting
            raise UploadError(
                e.reworded(ocr_all=f"{field}all", ocr_auto=f"{field}auto", ocr_off=f"{field}off")
            ) from None
        return SourceOptions.from_settings(
            self.settings,
            text_window=self.encoder.text_window,
            max_image_pixels=self.settings.server_max_image_pixels,
            local_root=self.uploads,
            ocr=mode,
        )

    def _ingest(
        self,
        paths: list[Path],
        on_progress: Callable[[IngestReport], None],
        stop: threading.Event,
        tenant: str | None = None,
        ocr: OcrMode | None = None,
    ) -> IngestReport:
        sources = tagged(_until(stop, open_sources(paths, self._source_options(ocr))), tenant)
        batch_size = self.settings.batch_size
        return ingest(sources, self.encoder, self.store, batch_size=batch_size, on_progress=on_progress, cancel=stop)


def _data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:...;base64,...`` URL; an ``UploadError`` when it is not one, or is too large."""
    header, _, payload = url.partition(",")
    if not (header.startswith("data:") and header.endswith(";base64")):
        raise UploadError("a history picture must be a data URL: data:image/<type>;base64,<data>")
    if len(payload) * 3 // 4 > max_bytes:
        raise UploadError(f"a history picture is over the {max_bytes}-byte limit", 413)
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as e:
        raise UploadError(f"a history picture's base64 data cannot be read: {e}") from None


def _warm_up(encoder: Encoder) -> None:
    """Compile the encoder for the usual query shapes now, rather than during the first requests."""
    from PIL import Image

    logger.info("compiling the encoder for text and image queries (a minute at most, once per start)")
    encoder.encode_text(["warm-up query"])
    if encoder.supports_fused:
        encoder.encode_fused([Image.new("RGB", (64, 64))], ["warm-up query"])
    else:
        encoder.encode_image([Image.new("RGB", (64, 64))])
    logger.info("the encoder is compiled")


def _until(stop: threading.Event, results: Iterable[_T]) -> Iterator[_T]:
    """The results until ``stop`` is set (ingestion then writes what it has and returns)."""
    for result in results:
        if stop.is_set():
            return
        yield result
