"""``KnowledgeBase``: the Python face of a collection, with the CLI's behaviour.

It reads the same settings as ``rag`` (``RAG_*``, or a :class:`~rag.settings.Settings`), chunks text with the
same chunker and the encoder's own tokenizer, and runs the same ingest pipeline, retrievers and answer engine:
``KnowledgeBase.ingest`` and ``rag ingest`` store the same items for the same folder. The encoder loads, and the
collection opens, when first needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import ValidationError

from connectors.milvus import ConnectOptions, EncoderInfo, MilvusStore, parse_filters
from connectors.sources import peek_items
from rag.ingest import IngestReport
from rag.ingest import ingest as run_ingest
from rag.ingest.sync import Pruning
from rag.retrieval.options import AnswerOptions, OptionError, QueryOptions, describe, literal
from rag.settings import Settings

from .sources import Source, as_sources, paths_of, read_sources, source_options

if TYPE_CHECKING:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.llms import LLM
    from llama_index.core.schema import NodeWithScore, QueryBundle

    from rag.answer import AnswerResponse
    from rag.answer.chat import MultimodalChatEngine
    from rag.embeddings.base import Encoder
    from rag.retrieval.retriever import MultimodalRetriever

    from .vector_store import KnowledgeVectorStore

_O = TypeVar("_O", bound=QueryOptions)
#: LlamaIndex's names for options, accepted wherever options are.
_ALIASES = {"similarity_top_k": "top_k", "filters": "filter"}


class KnowledgeBase:
    """One collection, to ingest into, search, ask and manage from Python; a context manager.

    ``collection`` defaults to ``settings.collection`` (``RAG_COLLECTION``, ``knowledge``), ``uri`` to
    ``settings.milvus_uri``; ``settings`` to ``Settings()`` (the ``RAG_*`` environment).
    """

    def __init__(self, collection: str | None = None, *, uri: str | None = None, settings: Settings | None = None):
        settings = settings or Settings()
        updates: dict[str, Any] = {}
        if collection is not None:
            updates["collection"] = collection
        if uri is not None:
            updates["milvus_uri"] = uri
        self.settings = Settings.model_validate({**settings.model_dump(), **updates}) if updates else settings
        self._encoder: Encoder | None = None
        self._store: MilvusStore | None = None

    @property
    def collection(self) -> str:
        return self.settings.collection

    # -- writing ---------------------------------------------------------------------------------------------

    def ingest(
        self,
        sources: Source | Iterable[Source],
        *,
        allow_urls: bool = False,
        ocr: Literal["auto", "all", "off"] | None = None,
        prune: bool = False,
        yes: bool = False,
        on_progress: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        """Embed and store ``sources``: paths, folders, http(s) URLs, LlamaIndex ``Document``s or nodes, or a mix.

        Idempotent: what is stored already is not encoded again, and a document read again replaces its own
        older items and nothing else. Bad input is reported in the returned report, never raised. ``allow_urls``
        and ``ocr`` (default ``RAG_OCR``) are ``rag ingest``'s ``--allow-urls`` and ``--ocr``.
        ``prune``: as ``rag ingest --prune``, also delete the stored items of files gone from the folders, files
        and URLs given (LlamaIndex documents are never pruned); renamed files keep their vectors. It raises
        :class:`~rag.ingest.sync.PruneRefusedError`, deleting nothing, when the sources give no item or more than
        half of the items in scope would go, unless ``yes``.
        """
        from connectors.sources.ocr import require_ocr

        listed = as_sources(sources)
        mode = ocr or self.settings.ocr
        require_ocr(mode)
        options = source_options(self.settings, allow_urls=allow_urls, ocr=mode)
        encoder = self.encoder_for("batch")
        store = self._open(create=True)
        results = read_sources(listed, options)
        if not prune:
            return run_ingest(results, encoder, store, on_progress=on_progress)
        pruning = Pruning(store, paths_of(listed), yes=yes)
        found, results = peek_items(results)
        pruning.check_before(found)
        report = run_ingest(
            pruning.watch(results), encoder, store, on_progress=on_progress, donors=pruning.donors(store)
        )
        pruning.finish(store, report)
        return report

    def delete(self, filter: str | Mapping[str, Any]) -> int:
        """Delete the items ``filter`` matches (``"source=a.md"``, ``{"tags": "old"}``); returns how many.
        An empty filter is refused: :meth:`drop` removes everything."""
        parsed = parse_filters(filter) if isinstance(filter, str) else dict(filter)
        if not parsed:
            raise ValueError("refusing to delete with an empty filter; drop() removes the whole collection")
        return self._open().delete(filter=parsed)

    def drop(self) -> None:
        """Delete the collection and everything in it."""
        store = self._open()
        self._store = None
        store.drop()

    # -- reading ---------------------------------------------------------------------------------------------

    def count(self, filter: str | Mapping[str, Any] | None = None) -> int:
        """How many items the collection holds (that ``filter`` matches)."""
        parsed = parse_filters(filter) if isinstance(filter, str) else filter
        return self._open().count(parsed)

    def search(self, text: str | None = None, image: str | None = None, **options: Any) -> list[NodeWithScore]:
        """The items closest to ``text``, ``image`` (a path or URL), or both. ``options`` are
        :class:`~rag.retrieval.options.QueryOptions` fields (``top_k``, ``mode``, ``filter``, ``blend``, ...)."""
        return self.as_retriever(**options).retrieve(_bundle(text, image))

    def ask(self, question: str, image: str | None = None, *, llm: LLM | None = None, **options: Any) -> AnswerResponse:
        """Answer ``question`` from the collection, citing the items used. ``llm``: any LlamaIndex LLM (default:
        the one the settings name, ``RAG_LLM_*``; none: the evidence, ranked). ``options``: ``AnswerOptions``."""
        response = self.as_query_engine(llm=llm, **options).query(_bundle(question, image))
        return response  # type: ignore[return-value]

    # -- LlamaIndex ------------------------------------------------------------------------------------------

    def as_retriever(self, **options: Any) -> MultimodalRetriever:
        """A LlamaIndex retriever over the collection; ``options`` as for :meth:`search`."""
        return self._retriever(_checked(QueryOptions, options))

    def as_query_engine(self, llm: LLM | None = None, **options: Any) -> BaseQueryEngine:
        """A LlamaIndex query engine answering with citations (``AnswerResponse``); ``options``: ``AnswerOptions``."""
        from rag.answer import answer_engine

        checked = _checked(AnswerOptions, options)
        return answer_engine(
            self._retriever(checked),
            llm if llm is not None else self._llm(),
            checked,
            max_image_side=self.settings.llm_max_image_side,
            max_evidence_tokens=self.settings.llm_max_evidence_tokens,
            settings=self.settings,
        )

    def as_chat_engine(self, llm: LLM | None = None, **options: Any) -> MultimodalChatEngine:
        """A LlamaIndex chat engine: follow-ups condensed into standalone questions, answers with citations."""
        from rag.answer.chat import MultimodalChatEngine

        checked = _checked(AnswerOptions, options)
        return MultimodalChatEngine(
            self._retriever(checked),
            llm if llm is not None else self._llm(),
            max_image_side=self.settings.llm_max_image_side,
            max_evidence_tokens=self.settings.llm_max_evidence_tokens,
            rerank_top_n=checked.llm_rerank,
        )

    @property
    def vector_store(self) -> KnowledgeVectorStore:
        """The collection as a LlamaIndex vector store that reads and writes (``VectorStoreIndex``,
        ``IngestionPipeline``, ``index.insert``, ``delete_ref_doc``, ...)."""
        from .vector_store import KnowledgeVectorStore

        return KnowledgeVectorStore.of(self._open(create=True), self.encoder_for("batch"))

    # -- resources -------------------------------------------------------------------------------------------

    def encoder_for(self, purpose: str = "query") -> Encoder:
        """The collection's encoder (``RAG_ENCODER``, ``RAG_WEIGHTS``), loaded once, on the runtime the first
        use asks for (``batch`` for ingest, ``query`` for search)."""
        if self._encoder is None:
            from rag.embeddings.registry import load_encoder, runtime_from_settings

            runtime = runtime_from_settings(self.settings, purpose)  # type: ignore[arg-type]
            self._encoder = load_encoder(self.settings, runtime)
        return self._encoder

    @property
    def store(self) -> MilvusStore:
        """The open collection (created when it does not exist yet)."""
        return self._open(create=True)

    def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KnowledgeBase(collection={self.collection!r}, uri={self.settings.milvus_uri!r})"

    def _open(self, *, create: bool = False) -> MilvusStore:
        """The store, opened once: created (which needs the encoder) only by a call that writes."""
        if self._store is None:
            info = EncoderInfo.of(self.encoder_for("batch"), self.encoder_for().name) if create else None
            self._store = MilvusStore.open(
                self.settings.milvus_uri,
                self.collection,
                encoder_info=info,
                create=create,
                token=self.settings.milvus_token_value,
                options=ConnectOptions.from_settings(self.settings),
            )
        return self._store

    def _retriever(self, options: QueryOptions) -> MultimodalRetriever:
        from rag.retrieval import MultimodalRetriever

        return MultimodalRetriever.from_options(
            self._open(), self.encoder_for("query"), options, settings=self.settings
        )

    def _llm(self) -> LLM | None:
        from rag.answer import llm_from_settings

        return llm_from_settings(self.settings)


def _checked(model: type[_O], options: Mapping[str, Any]) -> _O:
    """The options checked, LlamaIndex's names (``similarity_top_k``, ``filters``) read as ours; a bad one raises
    :class:`OptionError` naming it (an unknown mode: the valid ones)."""
    named: dict[str, Any] = {}
    for key, value in options.items():
        name = _ALIASES.get(key, key)
        if name in named:
            raise OptionError(f"{literal(key)} and {literal(name)} are the same option; give one")
        named[name] = value
    try:
        return model.model_validate(named)
    except ValidationError as e:
        raise OptionError(literal(describe(e))) from None


def _bundle(text: str | None, image: str | None) -> QueryBundle:
    from llama_index.core.schema import QueryBundle

    if not (text or "").strip() and image is None:
        raise ValueError("give a query: text and/or image")
    return QueryBundle(text or "", image_path=str(image) if image is not None else None)
