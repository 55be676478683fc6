# Two entry points (see README): `make demo` and `make test`. Each bootstraps everything it
# needs from the lock file: a private uv in .tools/, the project environment in .venv/.
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: demo test lint bench docs clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	touch $@

demo: $(VENV)/.synced
	$(VENV)/bin/cth01 demo

test: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest -n 2

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

docs: $(VENV)/.synced
	$(VENV)/bin/cth01 docs --write

bench: $(VENV)/.synced
	for b in bench/bench_*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf .tools $(VENV) .pytest_cache .ruff_cache .hypothesis
