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
PYTEST_ARGS ?=

.PHONY: help setup run test lint format clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	uv sync --frozen
	@touch $@

setup: $(STAMP) ## create .venv from uv.lock (fast and idempotent when nothing changed)

run: setup ## generate sample data if landing is empty, then run the whole pipeline
	@if [ -z "$$(ls -A "$$CHAT_ANALYTICS_HOME/landing/chats" 2>/dev/null)" ]; then \
		echo "landing is empty: generating sample extracts into $$CHAT_ANALYTICS_HOME"; \
		$(CA) generate; \
	fi
	$(CA) run

test: setup ## run the test suite (pytest on real DuckDB files, dbt and DAG runs)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup ## ruff (Python) and sqlfluff (dbt SQL)
	$(BIN)/ruff check src tests dags
	$(BIN)/ruff format --check src tests dags
	$(BIN)/sqlfluff lint dbt

format: setup ## apply ruff and sqlfluff fixes
	$(BIN)/ruff format src tests dags
	$(BIN)/ruff check --fix src tests dags
	$(BIN)/sqlfluff fix dbt

clean: ## remove the environment, data, dbt artefacts and caches
	rm -rf $(VENV) data dbt/target dbt/logs .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
