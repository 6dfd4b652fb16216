# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATE ?= 2026-11-20
DEMO_DIR := demo
DEMO_LANDING := $(DEMO_DIR)/landing
DEMO_WAREHOUSE := duckdb:///$(DEMO_DIR)/warehouse.duckdb

.PHONY: venv demo test lint typecheck check bench ui ui-test-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,deploy]'
	$(BIN)/python -c "from risk_core.margin import tail_kernel; tail_kernel.warm_up()"
	touch $(STAMP)

demo: venv
	$(BIN)/margin-eod generate --date $(DEMO_DATE) --out $(DEMO_LANDING) --accounts 300 --positions 5000 --seed 7
	$(BIN)/margin-eod run --date $(DEMO_DATE) --landing $(DEMO_LANDING) --warehouse $(DEMO_WAREHOUSE) --artefacts $(DEMO_DIR)/artefacts
	$(BIN)/margin-eod summary --date $(DEMO_DATE) --warehouse $(DEMO_WAREHOUSE)

test: venv ui-test-deps
	$(BIN)/pytest -q

# Debian's Chromium for the browser test of the Dagster UI (skipped, with its reason,
# where it cannot be installed).
ui-test-deps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  >/dev/null 2>&1; } || echo "chromium not installed: the browser test will be skipped"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy risk_core

check: lint typecheck test

bench: venv
	$(BIN)/python benchmarks/pricing.py
	$(BIN)/python benchmarks/eod.py --positions 1000 100000 --accounts 100000

ui: venv
	DAGSTER_HOME=$(CURDIR)/$(DEMO_DIR)/dagster_home MARGIN_LANDING_DIR=$(DEMO_LANDING) \
	MARGIN_WAREHOUSE_URL=$(DEMO_WAREHOUSE) MARGIN_ARTEFACTS_DIR=$(DEMO_DIR)/artefacts \
	sh -c 'mkdir -p $$DAGSTER_HOME && cp -n deploy/local/dagster.yaml $$DAGSTER_HOME/ ; $(BIN)/dagster dev -w workspace.yaml'

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache
