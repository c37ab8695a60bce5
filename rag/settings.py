"""Every default of the library in one place, overridable from ``RAG_*`` environment variables, or from a ``.env``
file in the working directory (the environment wins)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The file of ``RAG_*=value`` lines read from the working directory, under the environment's values.
ENV_FILE = ".env"

_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def check_collection_name(name: str) -> str:
    """``name`` when Milvus accepts it as a collection name (a letter or ``_``, then letters, digits and ``_``, at
    most 255 characters); a ``ValueError`` saying so otherwise, before anything is opened."""
    if not _COLLECTION_NAME.fullmatch(name):
        raise ValueError(
            f"collection name {name!r} is not one Milvus accepts: start with a letter or _, then use only letters, "
            "digits and _ (at most 255 characters), e.g. my_docs"
        )
    return name


class Settings(BaseSettings):
    """Model, store and fetching settings; ``Settings()`` reads ``RAG_WEIGHTS``, ``RAG_MILVUS_URI``, ..."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore", env_file=ENV_FILE, env_file_encoding="utf-8")

    encoder: Literal["visualized-bge", "clip", "bridgetower"] = Field(
        default="visualized-bge", description="Which encoder reads RAG_WEIGHTS."
    )
    weights: str | None = Field(
        default=None,
        description=(
            "Encoder weights. visualized-bge: a variant name or a local .pth file; clip and bridgetower: a hub id "
            "or a local model folder. None: the encoder's default (see rag.embeddings.registry.DEFAULT_WEIGHTS)."
        ),
    )
    text_model: str | None = Field(
        default=None,
        description="Hugging Face id or local folder of the text model and tokenizer; None: the variant's default.",
    )
    vision_config: str | None = Field(
        default=None,
        description="Path to the vision tower's JSON configuration; None: the variant's default.",
    )
    device: str = Field(
        default="auto",
        description="torch device for the encoder: auto (a CUDA GPU, else Apple mps, else cpu), cpu, cuda, cuda:1, "
        "mps.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Encoder weights dtype. auto: bfloat16 on GPUs that support it (float16 on others and on mps); "
        "on the CPU bfloat16 only where it runs natively (avx512_bf16/amx_bf16), else float32. bfloat16 and float16 "
        "stay within cosine 0.999 of float32 (benchmarks/encode.py).",
    )
    milvus_uri: str = Field(
        default="./rag_data/milvus.db",
        description="A local path ending in .db (Milvus Lite) or http(s)://host:19530 (Milvus server).",
    )
    milvus_token: SecretStr | None = Field(
        default=None, description="Milvus server token, 'user:password' or an API key."
    )
    milvus_timeout: PositiveFloat = Field(
        default=60.0,
        description="Seconds before a Milvus call is abandoned (a store that went away is reported after this long).",
    )
    milvus_lite: Literal["shared", "in-process"] = Field(
        default="shared",
        description="How a Milvus Lite path (*.db) is opened. shared: by one server process per data folder, started "
        "on demand and shared by every rag process and library user (it stops once none is left); in-process: inside "
        "this process, which then holds the folder alone (for embedded use where spawning a process is impossible).",
    )
    milvus_lite_idle: float = Field(
        default=15.0,
        gt=0,
        le=50,
        description="Seconds the shared Milvus Lite server waits after its last user left (or was killed) before it "
        "stops; a command run meanwhile reuses it.",
    )
    keep_warm: float = Field(
        default=300.0,
        ge=0,
        description="Seconds the warm model process stays loaded after the last command that used it (rag search, "
        "ask, chat, similarity, classify), as Ollama's keep_alive: each command's value resets the timer. 0: no "
        "background process, every command loads the model itself. `rag ps` lists them, `rag stop` ends them.",
    )
    milvus_backend: Literal["auto", "lite", "server"] = Field(
        default="auto",
        description="Which code path the store takes. auto: Lite's for a *.db path and for a milvus-lite server "
        "(its version says so), a Milvus server's otherwise; server: Milvus's BM25 function and server-side hybrid "
        "search, as on Milvus >= 2.5 (a *.db path is refused); lite: Lite's (the store's own BM25 statistics, "
        "blends fused by the store).",
    )
    data_dir: Path = Field(
        default=Path("rag_data"),
        description="Where rendered PDF pages, downloaded images and ingest reports are written.",
    )
    collection: str = Field(default="knowledge", description="Milvus collection name.")
    top_k: PositiveInt = Field(
        default=10,
        description="How many items a search returns, and an answer reads, unless the query asks for another number "
        "(rag search and rag ask --top-k, the API's top_k, the page's Results field).",
    )
    batch_size: PositiveInt | None = Field(
        default=None,
        description="Items per encoder forward pass and store write; None: by device (cuda 256, mps 32, cpu 16).",
    )
    workers: PositiveInt | None = Field(
        default=None,
        description="Image decoding and preprocessing workers; None: one per core on CUDA and mps, one per 8 cores "
        "on a CPU (the model's threads take them all).",
    )
    preprocess: Literal["auto", "threads", "processes"] = Field(
        default="auto",
        description="Where images are decoded and resized: threads, or worker processes (auto: processes on "
        "CUDA machines with 4 cores or more, where the GPU outruns threads sharing one interpreter).",
    )
    compile: Literal["auto", "true", "false"] = Field(
        default="auto",
        description="torch.compile the encoder (bucketed shapes, CUDA graphs): auto compiles on CUDA for `rag serve` "
        "(at start; queries then take ~1 ms of GPU time) and for ingests of 500,000 items or more, where the "
        "compile time pays back; never for one-shot commands.",
    )
    chunk_size: PositiveInt | None = Field(
        default=None,
        description="Tokens per text chunk of a document, special tokens included, counted with the encoder's "
        "tokenizer; None: the encoder's window (512 for Visualized-BGE base and m3, 77 for CLIP). Never above it.",
    )
    chunk_overlap: NonNegativeInt = Field(
        default=32, description="Tokens each text chunk repeats from the one before it, so no sentence is cut off."
    )
    allow_urls: bool = Field(default=False, description="Fetch http(s) images named by sources.")
    ocr: Literal["auto", "all", "off"] = Field(
        default="auto",
        description="Read text from pixels (the OCR extra, mmrag[ocr]), on ingest and uploads: auto, PDF pages "
        "without a text layer (scans); all, pictures as well; off, never.",
    )
    url_max_bytes: PositiveInt = Field(default=20 * 1024 * 1024, description="Largest image fetched from a URL.")
    url_timeout: PositiveFloat = Field(default=15.0, description="Seconds before a URL fetch is abandoned.")
    reranker: str | None = Field(
        default=None,
        description="Cross-encoder that reorders search results (a local folder or a hub id in the Hugging Face "
        "cache, e.g. BAAI/bge-reranker-base); None: no reranking.",
    )
    rerank_candidates: PositiveInt = Field(
        default=50, description="Results retrieved for the cross-encoder to score, of which the top k are kept."
    )
    llm_provider: Literal["openai", "ollama"] = Field(
        default="openai",
        description="openai: any OpenAI-compatible chat-completions endpoint; ollama: an Ollama server.",
    )
    llm_model: str | None = Field(
        default=None, description="Chat model that answers (it must accept images); None: answers list the evidence."
    )
    llm_base_url: str | None = Field(
        default=None,
        description="Endpoint, e.g. http://localhost:8000/v1; None: OpenAI's API (openai) or "
        "http://localhost:11434 (ollama).",
    )
    llm_api_key: SecretStr | None = Field(default=None, description="API key of the OpenAI-compatible endpoint.")
    llm_timeout: PositiveFloat = Field(
        default=120.0,
        description="Seconds to wait for the LLM's first token, its client's retries included, and then at most "
        "between two tokens (a silence mid-answer ends it as partial; a long answer is never cut for its length).",
    )
    llm_max_retries: NonNegativeInt = Field(
        default=1,
        description="Retries of a failed LLM request by the OpenAI client, within RAG_LLM_TIMEOUT; never once tokens "
        "were streamed.",
    )
    llm_max_image_side: PositiveInt = Field(
        default=1024, description="Local images are downscaled to this many pixels on their longer side for the LLM."
    )
    llm_max_evidence_tokens: PositiveInt = Field(
        default=6000,
        description="Tokens of evidence sent to the LLM with one question: pictures (by RAG_LLM_IMAGE_DETAIL or "
        "RAG_LLM_IMAGE_TOKENS), best ranked first while they fit, then the items' texts share the rest fairly "
        "(counted with LlamaIndex's tokenizer, cl100k_base by default).",
    )
    llm_image_detail: Literal["high", "low"] = Field(
        default="high",
        description="OpenAI's detail for pictures sent to the LLM, and how they are counted: high, 85 + 170 per "
        "512 px tile (765 for 1024 x 1024); low, 85 each.",
    )
    llm_image_tokens: PositiveInt | None = Field(
        default=None,
        description="Tokens one picture costs the LLM, for models that count their own way; None: OpenAI's rule "
        "(openai), 576 (ollama: LLaVA-1.5's 24 x 24 patches).",
    )
    chat_history_tokens: PositiveInt = Field(
        default=3000,
        description="Token budget of a conversation's history (`rag chat`, the API's history): the oldest turns leave "
        "first. Counted with the LLM's tokenizer where LlamaIndex knows it, else at 4 characters a token; a picture "
        "counts 765.",
    )
    server_conversations: bool = Field(
        default=False,
        description="`rag serve` keeps conversations in memory under an id (conversation_id), for clients that do not "
        "send their history; off: the API is stateless.",
    )
    server_conversation_ttl: PositiveFloat = Field(
        default=1800.0, description="Seconds a kept conversation may stay idle before it is forgotten."
    )
    server_host: str = Field(
        default="127.0.0.1", description="Address `rag serve` binds to; loopback unless told otherwise."
    )
    server_port: int = Field(default=8000, ge=0, le=65535, description="Port `rag serve` listens on.")
    server_token: SecretStr | None = Field(
        default=None, description="Bearer token every /api route of `rag serve` requires; None: no token asked."
    )
    server_auth: bool = Field(
        default=True,
        description="`rag serve` asks for a token once one is configured (RAG_SERVER_TOKEN, `rag tokens add`), and "
        "generates one on a non-loopback address that has none. False (`--no-auth`): every /api route is open.",
    )
    server_auth_max_failures: PositiveInt = Field(
        default=10,
        description="Wrong tokens one address may send in a minute before `rag serve` answers it 429 for a minute.",
    )
    server_audit_reads: bool = Field(
        default=False,
        description="`rag serve` writes searches, answers and chats to the audit log (audit.jsonl in RAG_DATA_DIR) "
        "as well as every change.",
    )
    server_show_paths: bool = Field(
        default=False,
        description="Show clients of `rag serve` the server's own paths (each item's source file, image path and path "
        "metadata) and the Milvus URI. Off: items are named relative to the folder they were ingested from, and "
        "their images are served by item id.",
    )
    server_max_upload_bytes: PositiveInt = Field(
        default=20 * 1024 * 1024,
        description="Largest file `rag serve` accepts (query image, image or manifest to ingest).",
    )
    server_max_request_bytes: PositiveInt = Field(
        default=200 * 1024 * 1024, description="Largest request body `rag serve` reads; larger ones are refused unread."
    )
    server_max_image_pixels: PositiveInt = Field(
        default=50_000_000, description="Decompression-bomb guard: uploaded images with more pixels are refused."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Least severe log lines `rag serve` writes, its HTTP server's (uvicorn) included."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`rag serve`'s log lines: text with a timestamp, or one JSON object a line."
    )
    server_drain_seconds: NonNegativeFloat = Field(
        default=8.0,
        description="On SIGTERM, seconds `rag serve` lets running ingest jobs finish before it stops them; what is "
        "left is recorded (under RAG_DATA_DIR/server) and resumed at the next start.",
    )
    server_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (https://app.example) whose web pages may send `rag serve` requests that "
        "change something (ingest, ask, ...); the server's own page always may, other pages never.",
    )
    server_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names `rag serve` answers to besides the address it is bound to (and "
        "localhost on loopback): requests naming another Host are refused (DNS rebinding). Bound to 0.0.0.0 with "
        "none listed: any name.",
    )

    server_rerankers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated cross-encoders (local folders or hub ids) a request to `rag serve` may choose "
        "besides RAG_RERANKER (the web page's Reranker control); a request may also choose none. No other model is "
        "ever loaded for a request.",
    )

    @field_validator("collection")
    @classmethod
    def _milvus_name(cls, value: str) -> str:
        return check_collection_name(value)

    @field_validator("server_allowed_origins", "server_allowed_hosts", "server_rerankers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @property
    def milvus_token_value(self) -> str | None:
        """The Milvus token as the client takes it (the field itself stays secret in logs and reprs)."""
        return self.milvus_token.get_secret_value() if self.milvus_token else None
