"""Helpers the test suites share: write landing files, query a warehouse, compare two warehouses."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb

from chat_analytics.paths import Home
from chat_analytics.sql import literal

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


def table_differences(actual: Path, expected: Path, schemas: tuple[str, ...] = BUILT_SCHEMAS) -> list[str]:
    """Tables of the built schemas that differ between two warehouse files (rows compared as multisets)."""
    problems = []
    in_list = "(" + ", ".join(literal(s) for s in schemas) + ")"
    with duckdb.connect(str(actual), read_only=True) as con:
        con.execute(f"attach {literal(expected)} as expected (read_only)")
        listing = (
            "select schema_name || '.' || table_name from duckdb_tables() "
            f"where database_name = ? and schema_name in {in_list} order by 1"
        )
        database = con.execute("select current_database()").fetchone()[0]
        here = [name for (name,) in con.execute(listing, [database]).fetchall()]
        there = [name for (name,) in con.execute(listing, ["expected"]).fetchall()]
        if here != there:
            return [f"tables differ: {here} vs {there}"]
        for name in here:
            only_here, only_there = con.execute(
                f"select (select count(*) from (from {name} except all from expected.{name})), "
                f"(select count(*) from (from expected.{name} except all from {name}))"
            ).fetchone()
            if only_here or only_there:
                problems.append(f"{name}: {only_here} rows only in {actual}, {only_there} only in {expected}")
    return problems
