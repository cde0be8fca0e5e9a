# The README's two commands are `make demo` and `make test`; each sets up .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# LitData and MosaicML Streaming (tests/benchmarks/test_peers_env.py, slow): a small venv layered
# on .venv (no torch of its own), since their pins clash with .venv's (benchmarks/peers_env.sh)
PEERS := .venv-peers
PEERS_STAMP := $(PEERS)/.installed

.PHONY: setup peers-env demo test test-fast bench-env bench-peers bench-scaling fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The pinned CPU build first: an open torch range on an empty venv would pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# the `ray` extra too, so that the tests marked `ray` run (a local 2-CPU Ray cluster)
	$(BIN)/pip install -q -e '.[test,ray]'
	touch $(STAMP)

setup: $(STAMP)

$(PEERS_STAMP): $(STAMP) benchmarks/peers_env.sh
	BASE=$(VENV) VENV=$(PEERS) bash benchmarks/peers_env.sh
	touch $(PEERS_STAMP)

peers-env: $(PEERS_STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py

test: $(STAMP) $(PEERS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not dist and not remote and not ray"

# Benchmarks (BENCHMARKS.md): peers need their own environment (.venv-bench: LitData and
# MosaicML Streaming installed with --no-deps beside the CPU torch).
.venv-bench/bin/python:
	bash benchmarks/peers_env.sh

bench-env: .venv-bench/bin/python

bench-peers: .venv-bench/bin/python
	.venv-bench/bin/python benchmarks/bench_peers.py

bench-scaling: $(STAMP)
	$(BIN)/python benchmarks/bench_scaling.py && $(BIN)/python benchmarks/plot_scaling.py

# The documented long fuzz run: 100k inputs over every target.
fuzz: $(STAMP)
	$(BIN)/python fuzz/fuzz.py --inputs 100000 --seed 7 --json benchmarks/out/fuzz.json

clean:
	rm -rf $(VENV) $(PEERS) .venv-bench build *.egg-info .pytest_cache .mypy_cache .ruff_cache
