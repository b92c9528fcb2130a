# The two commands a newcomer needs:
#   make demo   set everything up, then ingest SciFact and answer questions on the embedded default
#   make test   set everything up, then run every check and test (what CI runs)
# Both are idempotent and fast the second time (the venv is cached outside the repo by lock hash).

SHELL := /bin/bash
DATASET ?= ../shared/datasets/scifact
CARGO ?= cargo
RAG := ./target/release/rag

.PHONY: setup setup-system setup-python setup-onnx setup-llm setup-qdrant demo test test-python wheel lint unit eval bench bench-python bench-llm bench-serve bench-queue bench-scale bench-criterion soak clean

setup: setup-system setup-python setup-onnx setup-llm setup-qdrant

# redis-server for the Redis cache tests (they start their own instances on free ports) and
# chromium for the web page's browser test (headless, driven over the DevTools protocol); xz to
# unpack the Qdrant server binary the cluster tests run; DejaVu Sans for the text of `rag tune`'s
# PNG plot.
SYSTEM_PACKAGES := redis-server:redis-server chromium:chromium xz:xz-utils
setup-system:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "missing system packages:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi; \
	fi

setup-python:
	@scripts/setup-python

# The Qdrant server the server and cluster tests start (QDRANT_BIN, else `qdrant` on the PATH,
# else ../shared/bin/qdrant, which unpacks itself once into ~/.cache/qdrant-server).
setup-qdrant:
	@q="$${QDRANT_BIN:-$$(command -v qdrant || echo ../shared/bin/qdrant)}"; \
	"$$q" --version >/dev/null 2>&1 || { echo "no working Qdrant server binary at $$q (set QDRANT_BIN)" >&2; exit 1; }

# The local language model (a verified GGUF, cached outside the repository).
setup-llm: setup-python
	@scripts/setup-llm

# MiniLM exported to ONNX for the ONNX Runtime embedder (cached outside the repository).
setup-onnx: setup-python
	@scripts/setup-onnx

demo: setup
	$(CARGO) build --release -p rag-cli
	$(RAG) ingest $(DATASET)/corpus.jsonl
	$(RAG) stats
	$(RAG) query "Does vitamin D supplementation reduce the risk of fractures?"
	$(RAG) query "What is the role of microRNA in cancer?" --mode hybrid
	$(RAG) query "Do statins lower mortality in heart failure?" --k 3

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	$(CARGO) clippy -p rag --no-default-features --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --all-features --quiet
	@if $(CARGO) tree -p rag -e normal --prefix none | grep -Eq '^(clap|indicatif|tracing-subscriber) '; then \
		echo "the rag library must not depend on clap, indicatif or tracing-subscriber" >&2; exit 1; fi

# The no-Python build: the facade's unit tests and a whole pipeline from mocks, no backend
# features; the guide's examples (docs/guide.md), compiled and run as doctests; then every
# Python-free example, run (each exits non-zero when its result is wrong).
NO_PYTHON = -p rag --no-default-features --features test-utils
PYTHON_FREE_EXAMPLES = mock_pipeline in_memory_ingest
unit:
	$(CARGO) test $(NO_PYTHON) --lib --test pipeline_mocks
	$(CARGO) test $(NO_PYTHON) --doc
	for e in $(PYTHON_FREE_EXAMPLES); do $(CARGO) run -q $(NO_PYTHON) --example $$e || exit 1; done

test: setup lint unit
	$(CARGO) nextest run --workspace --all-features --no-fail-fast
	RAG_WHEEL_PROFILE=dev scripts/test-python-package

# The Python package: the rag_rs wheel (release) in target/wheels, for `pip install`.
wheel: setup
	RAG_WHEEL_PROFILE=release scripts/test-python-package

# Its tests alone (a dev-profile wheel, installed in a clean venv; see the script).
test-python: setup
	RAG_WHEEL_PROFILE=dev scripts/test-python-package

eval: setup
	$(CARGO) build --release -p rag-cli
	for r in bm25 dense hybrid; do $(RAG) eval --dataset $(DATASET) --mode $$r --json; done

bench: setup
	$(CARGO) build --release -p rag-cli
	$(RAG) bench --dataset $(DATASET) --docs 1000 --queries 200 --concurrency 1,4,16,64 --cold

# rag serve under HTTP load, beside the in-process figure: the bench builds its collection, a
# server serves it (queries not cached), rag load sends 1,000 queries at concurrency 32.
BENCH_DIR ?= /tmp/rag-bench-serve
bench-serve: setup
	$(CARGO) build --release -p rag-cli
	rm -rf $(BENCH_DIR)
	$(RAG) --data-dir $(BENCH_DIR) bench --dataset $(DATASET) --docs 1000 --queries 1000 --concurrency 32 --cold
	$(RAG) --data-dir $(BENCH_DIR) --collection bench-1000 --set cache.backend=none serve --addr 127.0.0.1:18089 & \
	pid=$$!; for i in $$(seq 1 120); do curl -sf localhost:18089/readyz >/dev/null && break; sleep 1; done; \
	$(RAG) --collection bench-1000 load --url http://127.0.0.1:18089 --dataset $(DATASET) --requests 1000 --concurrency 32; \
	status=$$?; kill -TERM $$pid; wait $$pid; exit $$status

# A soak of one server (not a test): 1,000 SciFact documents, then mixed query / search /
# stream / ingest / delete traffic from three keys (two of them tenants) at concurrency 16 for
# SOAK_MINUTES, sampling the server's RSS, descriptors and in-flight gauge (python/bench/soak.py).
SOAK_DIR ?= /tmp/rag-soak
SOAK_MINUTES ?= 30
SOAK_ARGS ?=
soak: setup
	$(CARGO) build --release -p rag-cli
	rm -rf $(SOAK_DIR) && mkdir -p $(SOAK_DIR)
	head -n 1000 $(DATASET)/corpus.jsonl > $(SOAK_DIR)/corpus-1000.jsonl
	$(RAG) --config deploy/soak.toml --data-dir $(SOAK_DIR)/data ingest $(SOAK_DIR)/corpus-1000.jsonl
	export RAG_SOAK_ADMIN=soak-admin-0123456789 RAG_SOAK_ACME=soak-acme-0123456789 RAG_SOAK_GLOBEX=soak-globex-0123456789; \
	$(RAG) --config deploy/soak.toml --data-dir $(SOAK_DIR)/data serve 2> $(SOAK_DIR)/serve.log & pid=$$!; \
	for i in $$(seq 1 120); do curl -sf localhost:18090/readyz >/dev/null && break; sleep 1; done; \
	.venv/bin/python python/bench/soak.py --url http://127.0.0.1:18090 --pid $$pid --dataset $(DATASET) \
		--minutes $(SOAK_MINUTES) --concurrency 16 --key admin=$$RAG_SOAK_ADMIN --key acme=$$RAG_SOAK_ACME \
		--key globex=$$RAG_SOAK_GLOBEX $(SOAK_ARGS) | tee $(SOAK_DIR)/soak.json; \
	status=$$?; kill -TERM $$pid; wait $$pid; exit $$status

# Ingest over 1, 2 and 4 workers pinned to their cores (docs/benchmarks.md, "Ingest over many
# workers"), and the queue's own cost with no ingest work.
bench-queue: setup
	$(CARGO) build --release -p rag-cli
	scripts/bench-queue
	$(CARGO) bench -p rag-queue-redis --bench queue_overhead

# SciFact plus generated distractors, one run per store setting (docs/benchmarks.md, "A million
# chunks"). Runs: N:store[:quantization[:tenants[:tenant-index[:ram|disk]]]], e.g.
#   make bench-scale SCALE_RUNS="100000:chroma 1000000:qdrant:int8:1000:on:disk"
SCALE_RUNS ?=
bench-scale: setup
	$(CARGO) build --release -p rag-cli
	DATASET=$(DATASET) scripts/bench-scale $(SCALE_RUNS)

# rag from Python (the release wheel, from threads) beside LlamaIndex's own hybrid retrieval and
# LlamaIndex with rag's retriever; then rag bench in process on the same documents, for the cost of
# the Python boundary (docs/benchmarks.md, "From Python").
bench-python: setup
	$(CARGO) build --release -p rag-cli
	RAG_WHEEL_PROFILE=release scripts/test-python-package --bench --dataset $(DATASET) --docs 1000 --queries 100 --concurrency 1,16
	$(RAG) bench --dataset $(DATASET) --docs 1000 --queries 100 --concurrency 1,16

# The local LM (Qwen 0.5B through llama.cpp) under 1, 2 and 4 concurrent streamed answers, with
# one parallel slot and with four (docs/benchmarks.md, "A local LM for several users").
bench-llm: setup
	$(CARGO) build --release -p rag-cli
	DATASET=$(DATASET) scripts/bench-local-lm 1 4

bench-criterion: setup
	$(CARGO) bench --workspace

clean:
	rm -rf .rag target
