"""Compare two published serving files row for row (the DuckDB and the Spark engine's, issue 15).

Every published table must exist in both with the same columns and types and the same rows as a
multiset. Floating-point values may differ by `RELATIVE_TOLERANCE` (of the larger value, or absolutely
below 1): the engines sum doubles in different orders (DuckDB's `avg` of integers is exact, Spark's
accumulates a double), which moves the last bits and nothing else. `_build_info` is compared on what
describes the data (counts, window, tests), not on when or by what it was published; the run and test
history of `monitoring` and fct_chats' `_resolved_seq` (the number of the home's build that wrote the
row) describe the runs, not the data, and are left out.

`python -m chat_analytics.devtools.compare A.duckdb B.duckdb` prints the differences (exit 1 if any).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import duckdb

from chat_analytics.sql import ident, literal

log = logging.getLogger(__name__)

RELATIVE_TOLERANCE = 1e-9
SKIPPED = {("monitoring", "run_history"), ("monitoring", "test_history")}
BUILD_INFO_COMPARED = (
    "first_chat_at_utc", "last_chat_at_utc", "first_chat_date_local", "last_chat_date_local", "row_counts",
    "quarantined_by_reason", "quarantined_rows", "raw_rows", "tests_pass", "tests_warn", "tests_error",
    "warned_tests",
)  # fmt: skip
RUN_COLUMNS = {"_resolved_seq"}
FLOATS = ("DOUBLE", "FLOAT", "REAL")


def compare(left: Path, right: Path) -> list[str]:
    """The differences between two serving files, one line each; empty when they hold the same data."""
    problems: list[str] = []
    with duckdb.connect() as con:
        con.execute(f"attach {literal(str(left))} as l (read_only)")
        con.execute(f"attach {literal(str(right))} as r (read_only)")
        tables = {side: _tables(con, side) for side in ("l", "r")}
        for missing in sorted(tables["l"].keys() - tables["r"].keys()):
            problems.append(f"{'.'.join(missing)}: only in {left}")
        for missing in sorted(tables["r"].keys() - tables["l"].keys()):
            problems.append(f"{'.'.join(missing)}: only in {right}")
        for key in sorted(tables["l"].keys() & tables["r"].keys()):
            if key in SKIPPED:
                continue
            columns_l, columns_r = tables["l"][key], tables["r"][key]
            if columns_l != columns_r:
                problems.append(f"{'.'.join(key)}: columns differ: {columns_l} vs {columns_r}")
                continue
            problems.extend(_rows(con, key, columns_l))
    return problems


def _tables(con: duckdb.DuckDBPyConnection, side: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    rows = con.execute(
        "select schema_name, table_name, column_name, data_type from duckdb_columns() "
        "where database_name = ? order by schema_name, table_name, column_index",
        [side],
    ).fetchall()
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, data_type in rows:
        found.setdefault((schema, table), []).append((column, data_type))
    return found


def _rows(con: duckdb.DuckDBPyConnection, key: tuple[str, str], columns: list[tuple[str, str]]) -> list[str]:
    schema, table = key
    if table == "_build_info":
        columns = [c for c in columns if c[0] in BUILD_INFO_COMPARED]
    columns = [c for c in columns if c[0] not in RUN_COLUMNS]
    name = f"{ident(schema)}.{ident(table)}"
    exact = [ident(c) for c, data_type in columns if data_type not in FLOATS]
    floats = [ident(c) for c, data_type in columns if data_type in FLOATS]
    if not floats:
        return _exact_rows(con, schema, table, name, ", ".join(exact))
    return _tolerant_rows(con, schema, table, name, exact, floats)


def _exact_rows(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, name: str, selected: str
) -> list[str]:
    problems = []
    for first, second in (("l", "r"), ("r", "l")):
        query = f"select {selected} from {first}.{name} except all select {selected} from {second}.{name}"
        extra = con.execute(f"select count(*) from ({query})").fetchone()
        if extra and extra[0]:
            sample = con.execute(f"{query} limit 3").fetchall()
            side = "left" if first == "l" else "right"
            problems.append(f"{schema}.{table}: {extra[0]} row(s) only on the {side}, e.g. {sample}")
    return problems


def _tolerant_rows(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, name: str, exact: list[str], floats: list[str]
) -> list[str]:
    """Rows paired by their exact columns (and, among rows equal in those, by the order of their floats);
    a row without a partner, or a float further than RELATIVE_TOLERANCE from its partner's, differs."""
    partition = f"partition by {', '.join(exact)} " if exact else ""
    numbered = (
        f"select *, row_number() over ({partition}order by {', '.join(floats)}) as _pair from {{side}}.{name}"
    )
    paired = " and ".join([*(f"a.{c} is not distinct from b.{c}" for c in exact), "a._pair = b._pair"])
    close = " and ".join(
        f"(a.{c} is not distinct from b.{c} or coalesce(abs(a.{c} - b.{c}) <= {RELATIVE_TOLERANCE} "
        f"* greatest(1, abs(a.{c}), abs(b.{c})), false))"
        for c in floats
    )
    query = (
        f"select a.*, b.* from ({numbered.format(side='l')}) as a "
        f"full join ({numbered.format(side='r')}) as b on {paired} "
        f"where a._pair is null or b._pair is null or not ({close})"
    )
    differing = con.execute(f"select count(*) from ({query})").fetchone()
    if not differing or not differing[0]:
        return []
    sample = con.execute(f"{query} limit 2").fetchall()
    return [f"{schema}.{table}: {differing[0]} row(s) differ, e.g. (left, right) {sample}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("left", type=Path)
    parser.add_argument("right", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problems = compare(args.left, args.right)
    for problem in problems:
        log.error("%s", problem)
    if not problems:
        log.info("same data: every published table equal row for row")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
