"""`adapter` for sqlfluff's jinja templater, which renders the models without dbt (see .sqlfluff).

The models call dialect macros through `adapter.dispatch` (macros/engine/); sqlfluff lints the DuckDB
rendering, so `dispatch` returns the `duckdb__` version of a macro, else its `default__` one.
"""

from __future__ import annotations

from typing import Any

import jinja2


@jinja2.pass_context
def dispatch(context: jinja2.runtime.Context, macro_name: str, macro_namespace: str | None = None) -> Any:
    for prefix in ("duckdb__", "default__"):
        macro = context.get(prefix + macro_name)
        if macro is not None:
            return macro
    raise jinja2.UndefinedError(f"no duckdb__ or default__ version of macro {macro_name!r}")
