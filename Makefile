# chat-analytics: every target a user needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
CA          := $(BIN)/chat-analytics
export CHAT_ANALYTICS_HOME ?= $(CURDIR)/data
export AIRFLOW__COSMOS__ENABLE_TELEMETRY ?= False
export DO_NOT_TRACK ?= 1
# Playwright drives the system Chromium (`make browser`): it never downloads a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD ?= 1
PYTEST_ARGS ?=
# dbt's graph for the Airflow DAG (Cosmos renders from it): rebuilt when a dbt project file changes.
MANIFEST    := dbt/target/manifest.json
DBT_INPUTS  := $(shell find dbt \( -name target -o -name logs -o -name dbt_packages \) -prune -o -type f -print 2>/dev/null)
# `docker compose` (v2 plugin) when present, else Debian's `docker-compose`.
DOCKER_COMPOSE ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; else echo "docker compose"; fi)

.PHONY: help setup run test lint format clean airflow airflow-stop up down check-docker

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	uv sync --frozen
	@touch $@

$(MANIFEST): $(STAMP) $(DBT_INPUTS)
	$(BIN)/dbt parse --project-dir dbt --quiet
	@touch $@

setup: $(STAMP) $(MANIFEST) ## create .venv from uv.lock, parse the dbt project (fast and idempotent when nothing changed)

run: setup ## generate sample data if landing is empty, then run the whole pipeline
	@if [ -z "$$(ls -A "$$CHAT_ANALYTICS_HOME/landing/chats" 2>/dev/null)" ]; then \
		echo "landing is empty: generating sample extracts into $$CHAT_ANALYTICS_HOME"; \
		$(CA) generate; \
	fi
	$(CA) run

test: setup browser ## run the test suite (pytest on real DuckDB files, dbt and DAG runs)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup ## ruff (Python) and sqlfluff (dbt SQL)
	$(BIN)/ruff check src tests dags bench assets
	$(BIN)/ruff format --check src tests dags bench assets
	$(BIN)/sqlfluff lint dbt

format: setup ## apply ruff and sqlfluff fixes
	$(BIN)/ruff format src tests dags bench assets
	$(BIN)/ruff check --fix src tests dags bench assets
	$(BIN)/sqlfluff fix dbt

airflow: setup ## start Airflow 3 (standalone) with this project's DAGs on http://localhost:8080; prints the login
	$(BIN)/python -m chat_analytics.orchestration.airflow_setup start

airflow-stop: ## stop the Airflow that `make airflow` started (all its processes)
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m chat_analytics.orchestration.airflow_setup stop; fi

up: ## Airflow 3 on Postgres in Docker (docker-compose.yml), UI on http://localhost:8080
	AIRFLOW_UID=$$(id -u) $(DOCKER_COMPOSE) up -d --build
	@echo "Airflow is starting on http://localhost:$${CHAT_ANALYTICS_AIRFLOW_PORT:-8080} (login: $${CHAT_ANALYTICS_AIRFLOW_USER:-admin} / $${CHAT_ANALYTICS_AIRFLOW_PASSWORD:-admin}); \
	'$(DOCKER_COMPOSE) ps' shows the health of each service; 'make down' stops it"

down: ## stop and remove the Docker stack (its Postgres volume stays; add -v by hand to drop it)
	$(DOCKER_COMPOSE) down

check-docker: $(STAMP) ## validate docker-compose.yml and lint containers/Dockerfile (no Docker engine needed)
	AIRFLOW_UID=$$(id -u) $(DOCKER_COMPOSE) config -q
	$(BIN)/hadolint containers/Dockerfile

clean: ## remove the environment, data, dbt artefacts and caches
	rm -rf $(VENV) data dbt/target dbt/logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- serving: the published database, the report, dbt docs (docs/serving.md) -------------------------
.PHONY: query docs browser assets bench bench-spark

PUBLISHED   = $(CHAT_ANALYTICS_HOME)/serving/analytics.duckdb
ASSETS_HOME ?= $(CURDIR)/data/assets-sample

query: setup ## DuckDB CLI, read-only, on the published marts (serving/analytics.duckdb)
	@test -f "$(PUBLISHED)" || { echo "no published database at $(PUBLISHED): run 'make run' first" >&2; exit 2; }
	$(BIN)/duckdb -readonly "$(PUBLISHED)"

docs: setup ## dbt docs site as one offline HTML file, lineage included: serving/docs/index.html
	$(BIN)/python -m chat_analytics.serving.dbt_docs

# The report's test opens it in headless Chromium (through Playwright): install Debian's package when
# missing (as root), else stop with the command to run. Never skipped silently.
browser: ## make sure headless Chromium is there for the report test (apt-get install as root)
	@if [ -n "$${CHAT_ANALYTICS_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 \
		|| command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium (headless browser for the report test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium fonts-dejavu-core >/dev/null; \
	else \
		echo "Chromium is missing: run 'sudo apt-get install chromium' (or set CHAT_ANALYTICS_CHROMIUM)" >&2; \
		exit 1; \
	fi

assets: setup browser ## redraw assets/: architecture diagram (needs Graphviz), report and Airflow grid screenshots
	@command -v dot >/dev/null 2>&1 || { echo "Graphviz is missing: apt-get install -y graphviz" >&2; exit 1; }
	dot -Tsvg assets/architecture.dot -o assets/architecture.svg
	dot -Tpng -Gdpi=110 assets/architecture.dot -o assets/architecture.png
	rm -rf "$(ASSETS_HOME)"
	$(CA) generate --home "$(ASSETS_HOME)" --dirty
	$(CA) run --home "$(ASSETS_HOME)"
	$(BIN)/python tests/browser.py "$(ASSETS_HOME)/serving/report.html" --screenshot assets/report.png
	$(BIN)/python assets/airflow_grid.py --home "$(ASSETS_HOME)" --out assets/airflow-grid.png

BENCH_ARGS ?=
bench: setup ## time generate/ingest/build/publish/run per size against a plain-SQL floor (bench/results/)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

BENCH_SPARK_ARGS ?=
bench-spark: setup ## Spark engine vs DuckDB at 1 M and 10 M chats: builds, start-up cost, crossover (bench/results/)
	$(BIN)/python bench/spark_engine.py $(BENCH_SPARK_ARGS)
