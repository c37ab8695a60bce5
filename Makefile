# Set-up is two commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch that lies on this machine's disk; a bare `torch` would pull a CUDA build.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: test test-milvus lint demo bench bench-query install clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) browser lint
	$(PY) -m pytest -q

# The store's contract suite against a real Milvus (`make test` runs it on Milvus Lite, and on a milvus-lite server
# both as Lite and as a server): RAG_TEST_MILVUS_URI=http://localhost:19530 make test-milvus, after
# `docker compose up -d` (docker-compose.yml). Without the variable every run skips, naming it.
test-milvus: $(STAMP)
	$(PY) -m pytest -q -rs tests/connectors/test_milvus_store.py -k "milvus]"

# Formatting and lint (pycodestyle, pyflakes, isort, bugbear, pyupgrade, complexity cap 15) over the code, tests,
# benchmarks and examples; types over the package;
# imports only down the layers and no import circles (the contracts in pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff format --check rag connectors tests benchmarks examples
	$(PY) -m ruff check rag connectors tests benchmarks examples
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

demo: $(STAMP)
	$(PY) examples/demo.py

# Benchmarks print ratios measured side by side; query.py alone takes about 5 minutes.
bench: $(STAMP)
	$(PY) benchmarks/encode.py
	$(PY) benchmarks/levers.py
	$(PY) benchmarks/ingest.py

bench-query: $(STAMP)
	$(PY) benchmarks/query.py

clean:
	rm -rf $(VENV) rag_data

# Headless Chromium and its driver for the browser test (tests/server/test_browser.py), from Debian's
# packages; installed only when missing and only as root (elsewhere the test skips and says why).
.PHONY: browser
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	else echo "browser: chromium is missing; as root: apt-get install chromium chromium-driver" >&2; fi
