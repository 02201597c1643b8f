"""Correctness guard of the benchmark: a variant's published marts against the clean run's.

`signature` reads a home's serving file (`serving/analytics.duckdb`, schema `analytics`, every table but
`_build_info`) and returns, per table, its row count, a checksum of its rows (sum of a hash of every
column of the row) and a checksum of each column. Columns whose names start with `_` (lineage) are left
out. A variant that adds a known sub-second fraction to both timestamps of a chat (bench/variants.py,
`FRACTION_SQL`) has that fraction subtracted from the naive TIMESTAMP columns of every table with a
`chat_id` column before hashing, so equal checksums mean the fraction was read exactly (every digit) and
everything else (offsets, booleans, missing values, versions) gave the clean marts bit for bit.

`health` reads what a run left behind that must not get worse with another spelling: quarantined rows
by reason, rejected lines, failed files, test results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from chat_analytics.sql import ident

Signature = dict[str, dict[str, Any]]


def serving_file(home: Path) -> Path:
    return home / "serving" / "analytics.duckdb"


def signature(home: Path, fraction_sql: str = "0::BIGINT") -> Signature:
    """Per table of the serving file: rows, a row checksum and per-column checksums (as text).

    `fraction_sql` is SQL over `chat_id`: the microseconds to subtract from naive timestamps of chats."""
    result: Signature = {}
    with duckdb.connect(str(serving_file(home)), read_only=True) as con:
        schema = _schema(con)
        tables = [
            name
            for (name,) in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'main' "
                "and database_name = current_database() and table_name <> '_build_info' order by 1"
            ).fetchall()
        ]
        for table in tables:
            columns = [
                (name, kind)
                for name, kind in con.execute(
                    "select column_name, data_type from information_schema.columns "
                    "where table_schema = 'main' and table_catalog = current_database() "
                    "and table_name = ? order by ordinal_position",
                    [table],
                ).fetchall()
                if not name.startswith("_")
            ]
            shifted = any(name == "chat_id" for name, _ in columns)
            values = [
                f"{ident(name)} - to_microseconds({fraction_sql})"
                if shifted and kind == "TIMESTAMP"
                else ident(name)
                for name, kind in columns
            ]
            sums = ", ".join(f"sum(hash({value}))::VARCHAR" for value in values)
            row = con.execute(
                f"select count(*), sum(hash({', '.join(values)}))::VARCHAR, {sums} "
                f"from {schema}.{ident(table)}"
            ).fetchone()
            assert row is not None
            result[table] = {
                "rows": row[0],
                "checksum": row[1],
                "columns": {name: value for (name, _), value in zip(columns, row[2:], strict=True)},
            }
    return result


def _schema(con: duckdb.DuckDBPyConnection) -> str:
    """`<catalog>.main`: the published file keeps its marts in its default schema."""
    row = con.execute("select current_database()").fetchone()
    assert row is not None
    return f"{ident(row[0])}.main"


def differences(expected: Signature, actual: Signature) -> list[str]:
    """What differs between two signatures, one line per table (and the columns that differ)."""
    found: list[str] = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            found.append(f"{table}: missing")
            continue
        if table not in expected:
            found.append(f"{table}: not in the clean run")
            continue
        want, got = expected[table], actual[table]
        if want == got:
            continue
        columns = sorted(
            name
            for name in set(want["columns"]) | set(got["columns"])
            if want["columns"].get(name) != got["columns"].get(name)
        )
        found.append(
            f"{table}: rows {got['rows']:,} vs clean {want['rows']:,}; "
            f"columns differing: {', '.join(columns) or 'none (row combinations differ)'}"
        )
    return found


def health(home: Path) -> dict[str, Any]:
    """Quarantine, rejections, failed files and test results of the last run in `home`."""
    with duckdb.connect(str(serving_file(home)), read_only=True) as con:
        info = con.execute(
            "select raw_rows, quarantined_rows, quarantined_by_reason, tests_pass, tests_warn, tests_error, "
            f"warned_tests from {_schema(con)}._build_info"
        ).fetchone()
    assert info is not None
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        counts = con.execute(
            "select (select count(*) from raw.rejected_rows), "
            "(select count(*) from raw.ingested_files where status = 'failed')"
        ).fetchone()
    assert counts is not None
    return {
        "raw_rows": info[0],
        "quarantined_rows": info[1],
        "quarantined_by_reason": dict(info[2] or {}),
        "tests_pass": info[3],
        "tests_warn": info[4],
        "tests_error": info[5],
        "warned_tests": list(info[6] or []),
        "rejected_rows": counts[0],
        "failed_files": counts[1],
    }


def worse_health(clean: dict[str, Any], variant: dict[str, Any]) -> list[str]:
    """Ways a variant's run is worse than clean's: more quarantined, rejected or failed, or test errors."""
    found = [
        f"{key} {variant[key]:,} (clean {clean[key]:,})"
        for key in ("quarantined_rows", "rejected_rows", "failed_files", "tests_error")
        if variant[key] > clean[key]
    ]
    found += [
        f"quarantined as {reason}: {count:,} (clean {clean['quarantined_by_reason'].get(reason, 0):,})"
        for reason, count in variant["quarantined_by_reason"].items()
        if count > clean["quarantined_by_reason"].get(reason, 0)
    ]
    return found
