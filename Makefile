# One entry point for a fresh machine: `make demo` and `make test` create .venv, install, then run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Ray binds to loopback only on a single machine (docs/sweeps.md, "On this machine").
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-all lint bench clean

venv: $(STAMP)

# An existing torch (e.g. a CUDA build) is reused through system site-packages; otherwise the CPU
# build 2.13.0 is installed, never a plain `torch` that would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	  echo "using the existing torch: $$($(PYTHON) -c 'import torch; print(torch.__version__)')"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install -q torch==2.13.0; \
	fi
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m adaptive_weights.tuning.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu" tests

lint: $(STAMP)
	$(BIN)/ruff check adaptive_weights strategies tuning tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
