"""Which engine runs the dbt project: `duckdb` (embedded, the default) or `spark` (issue 15).

Chosen per command by `--engine`, else `$CHAT_ANALYTICS_ENGINE`, else duckdb. The Spark path lives in
chat_analytics.pipeline.spark; this module stays import-light for the command line.
"""

from __future__ import annotations

import os

from chat_analytics.paths import UserError

ENGINE_ENV = "CHAT_ANALYTICS_ENGINE"
ENGINES = ("duckdb", "spark")
DEFAULT_ENGINE = "duckdb"


def chosen_engine(choice: str | None = None) -> str | None:
    """`--engine` if given, else `$CHAT_ANALYTICS_ENGINE` if set, else None; a clear error for a bad name."""
    engine = (choice or os.environ.get(ENGINE_ENV) or "").strip().lower()
    if not engine:
        return None
    if engine not in ENGINES:
        where = "--engine" if choice else f"${ENGINE_ENV}"
        raise UserError(f"unknown engine {engine!r} ({where}): choose one of {', '.join(ENGINES)}")
    return engine


def resolve_engine(choice: str | None = None) -> str:
    """`--engine` if given, else `$CHAT_ANALYTICS_ENGINE`, else duckdb."""
    return chosen_engine(choice) or DEFAULT_ENGINE
