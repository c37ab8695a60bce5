# syntax=docker/dockerfile:1
# `rag serve` in a container: CPU torch, a non-root user, data on a volume, weights from a mounted folder.
#   build:  docker build -t mmrag .
#   run:    docker run --init -p 127.0.0.1:8000:8000 -v rag-data:/data -v "$PWD/weights:/models:ro" \
#             -e RAG_SERVER_TOKEN=... mmrag
# docs/deploy.md covers compose, tokens, weights and backups.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-trixie AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch first, from PyTorch's own index (the PyPI wheel would bring CUDA's libraries, ~3 GB);
# its own layer, so a change to the project does not download it again.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rag ./rag
COPY connectors ./connectors
# server: FastAPI + uvicorn + /metrics; llm: OpenAI-compatible and Ollama endpoints; ocr: scanned pages (the
# wheel carries its models). torch==2.13.0 again, so that resolving the extras keeps the CPU build.
# Installed editable from /app: the web page's files (rag/server/static) are read from the source folder.
RUN pip install -e ".[server,llm,ocr]" torch==2.13.0 \
    && python -c "import rag.server, pathlib; assert (pathlib.Path(rag.server.__file__).parent / 'static' / 'index.html').is_file()"

FROM python:${PYTHON_VERSION}-slim-trixie
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAG_DATA_DIR=/data \
    RAG_MILVUS_URI=/data/milvus.db \
    RAG_DEVICE=cpu \
    RAG_KEEP_WARM=0 \
    HF_HOME=/models/huggingface
RUN groupadd --system --gid 10001 rag \
    && useradd --system --uid 10001 --gid rag --home-dir /home/rag --create-home --shell /usr/sbin/nologin rag \
    && mkdir -p /data /models \
    && chown rag:rag /data \
    && chmod 0700 /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /data
USER 10001:10001
# Collections, uploads, tokens, jobs and the audit log. Weights: mount a folder on /models and point
# RAG_WEIGHTS / RAG_TEXT_MODEL into it (nothing is downloaded at run time unless the hub can be reached).
VOLUME ["/data"]
EXPOSE 8000
# Liveness only: /health answers at once, with no token, even while the encoder loads (/ready waits for it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('RAG_SERVER_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4).status != 200)"]
# On 0.0.0.0 the server asks for a token: pass RAG_SERVER_TOKEN, or add tokens (`rag tokens add`, kept in
# /data/tokens.json); with neither it generates one for the run and prints it in the log.
CMD ["rag", "serve", "--host", "0.0.0.0"]
