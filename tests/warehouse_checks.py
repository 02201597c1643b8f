"""Helpers the test suites share: write landing files, query a warehouse, compare two warehouses."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb

from chat_analytics.paths import Home
from chat_analytics.pipeline.build import build
from chat_analytics.sql import literal

try:
    import reference
except ImportError:  # tests/ imported as a package
    from tests import reference

BUILT_SCHEMAS = ("staging", "intermediate", "analytics", "quality")


def write(folder: Path, name: str, text: str | bytes) -> Path:
    """A landing file with this text (gzip-compressed when the name ends in .gz)."""
    path = folder / name
    data = text.encode() if isinstance(text, str) else text
    if name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def q(home: Home, query: str, params: list | None = None) -> list[tuple]:
    """Rows of one query on the home's warehouse, opened read-only."""
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


#: Columns that say which build wrote a row (`_resolved_seq`): an incremental history and a full refresh
#: number their builds differently, so they are left out of comparisons.
BUILD_LINEAGE_COLUMNS = ("_resolved_seq",)
#: Rows an incremental history keeps for audit that a full refresh cannot rebuild (raw rows of
#: re-delivered or retracted files, marked `withdrawn`): left out of comparisons.
AUDIT_ONLY_ROWS = {"intermediate.int_chat_versions_classified": "disposition <> 'withdrawn'"}
#: Work tables that hold what one build processed (the typed rows of the batches it classified).
WORK_TABLES = ("intermediate.int_chat_rows_pending",)


def _comparable(con: duckdb.DuckDBPyConnection, database: str, name: str) -> str:
    """A query over one table without its build-lineage columns and audit-only rows."""
    schema, table = name.split(".")
    columns = [
        column
        for (column,) in con.execute(
            "select column_name from duckdb_columns() where database_name = ? and schema_name = ? "
            "and table_name = ? order by column_index",
            [database, schema, table],
        ).fetchall()
        if column not in BUILD_LINEAGE_COLUMNS
    ]
    where = AUDIT_ONLY_ROWS.get(name, "true")
    listed = ", ".join(f'"{column}"' for column in columns)
    return f"select {listed} from {database}.{name} where {where}"


def table_differences(actual: Path, expected: Path, schemas: tuple[str, ...] = BUILT_SCHEMAS) -> list[str]:
    """Tables of the built schemas that differ between two warehouse files (rows compared as multisets;
    build-lineage columns and audit-only rows left out, see above)."""
    problems = []
    in_list = "(" + ", ".join(literal(s) for s in schemas) + ")"
    with duckdb.connect(str(actual), read_only=True) as con:
        con.execute(f"attach {literal(expected)} as expected (read_only)")
        listing = (
            "select schema_name || '.' || table_name from duckdb_tables() "
            f"where database_name = ? and schema_name in {in_list} order by 1"
        )
        database = con.execute("select current_database()").fetchone()[0]
        here = [n for (n,) in con.execute(listing, [database]).fetchall() if n not in WORK_TABLES]
        there = [n for (n,) in con.execute(listing, ["expected"]).fetchall() if n not in WORK_TABLES]
        if here != there:
            return [f"tables differ: {here} vs {there}"]
        for name in here:
            mine, theirs = _comparable(con, database, name), _comparable(con, "expected", name)
            only_here, only_there = con.execute(
                f"select (select count(*) from ({mine} except all {theirs})), "
                f"(select count(*) from ({theirs} except all {mine}))"
            ).fetchone()
            if only_here or only_there:
                problems.append(f"{name}: {only_here} rows only in {actual}, {only_there} only in {expected}")
    return problems


def assert_equals_full_refresh(
    home: Home, tmp_path: Path, label: str, schemas: tuple[str, ...] = BUILT_SCHEMAS
) -> None:
    """The incremental warehouse equals a `--full-refresh` build of a copy, and the reference."""
    copy = Home.resolve(tmp_path / f"full-refresh-{label}")
    copy.warehouse_dir.mkdir(parents=True)
    shutil.copyfile(home.warehouse, copy.warehouse)
    assert build(copy, full_refresh=True) == 0
    problems = table_differences(home.warehouse, copy.warehouse, schemas)
    assert not problems, f"{label}: incremental differs from a full refresh:\n" + "\n".join(problems)
    reference.assert_warehouse_matches_reference(home.warehouse)
