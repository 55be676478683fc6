# Two entry points (see README): `make demo` and `make test`. Each bootstraps everything it
# needs from the lock file: a private uv in .tools/, the project environment in .venv/.
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: demo test lint bench docs clean vendor

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	touch $@

# The dashboard's front-end libraries (package.json / package-lock.json, installed with npm ci)
# copied into the package, which serves them itself: the dashboard needs no internet.
WEB_VENDOR := src/cth01/hub/web/static/vendor
$(WEB_VENDOR)/.copied: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(WEB_VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(WEB_VENDOR)/
	cp node_modules/uplot/LICENSE $(WEB_VENDOR)/uPlot.LICENSE
	touch $@

vendor: $(WEB_VENDOR)/.copied

demo: $(VENV)/.synced vendor
	$(VENV)/bin/cth01 demo

test: $(VENV)/.synced vendor
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
	rm -rf .tools $(VENV) .pytest_cache .ruff_cache .hypothesis node_modules $(WEB_VENDOR) \
		test-artifacts
