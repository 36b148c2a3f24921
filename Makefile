# meshroute: `make run` starts the quickstart gateway; `make test` runs every test.
# Both set up .venv on first use; nothing needs installing by hand but Python 3.11+.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint format proto bench clean

run: $(STAMP)
	$(BIN)/meshroute up

test: lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check meshroute tests bench proto
	$(BIN)/ruff format --check meshroute tests bench proto
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix meshroute tests bench proto
	$(BIN)/ruff format meshroute tests bench proto

# Regenerate meshroute/api/ from proto/ (a test checks the result is checked in).
proto: $(STAMP)
	$(BIN)/python proto/generate.py --out .

# Timing lives here, never in tests: each prints its numbers and writes bench/results/.
# Throughput rows use wrk when it is on PATH (Debian/Ubuntu: `sudo apt-get install wrk`;
# macOS: `brew install wrk`), else the built-in async load generator (bench/load.py).
bench: $(STAMP)
	$(BIN)/python -m bench.gateways
	$(BIN)/python -m bench.concurrency
	$(BIN)/python -m bench.control_plane_scale
	$(BIN)/python -m bench.reload_latency
	$(BIN)/python -m bench.embedded_router

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "meshroute needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# xds-protos ships a stale copy of opentelemetry/proto/ (grpc/grpc#42926); whichever
	@# package pip installs last owns those files, so put opentelemetry-proto's back.
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall \
		"opentelemetry-proto==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')"
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
