"""Rows a killed ingest left without their manifest row ("orphans"), removed before the next load.

chat_analytics.pipeline.ingest calls `remove_orphans` first thing on every run.
"""

from __future__ import annotations

import logging
import time

import duckdb

from chat_analytics import sql
from chat_analytics.pipeline.landing import SOURCE_COLUMNS
from chat_analytics.pipeline.warehouse import check_placement, view_sql

log = logging.getLogger(__name__)

# Tables whose rows belong to a batch of raw.ingested_files.
ORPHAN_TABLES = ("chats_data", "categories_data", "rejected_rows", "line_gaps")


def remove_orphans(con: duckdb.DuckDBPyConnection) -> None:
    """Remove stored rows whose batch has no manifest row, before anything else touches the warehouse.

    A load writes its rows and its manifest rows in one transaction, yet a process killed inside that
    commit can leave the rows without the manifest (DuckDB writes big inserts to the file ahead of the
    commit). Such orphans are invisible in the raw views, but batch ids come from a sequence that may
    roll back with the lost transaction: the next load could be given the same id and adopt them.
    Finding them costs one scan of the batch-id columns (~0.1 s per 10 M rows); removing them (rare)
    rewrites the data table, see _rewrite_without.
    """
    t0 = time.perf_counter()
    known = {
        r[0]
        for r in con.execute("select batch_id from raw.ingested_files where status <> 'failed'").fetchall()
    }
    found: dict[str, dict[int, int]] = {}
    for table in ORPHAN_TABLES:
        name = sql.qualified("raw", table)
        ids = [r[0] for r in con.execute(f"select distinct _batch_id from {name}").fetchall()]
        orphans = sorted(i for i in ids if i not in known)
        if orphans:
            counts = con.execute(
                f"select _batch_id, count(*) from {name} where _batch_id in (select unnest(?)) "
                "group by 1 order by 1",
                [orphans],
            ).fetchall()
            found[table] = dict(counts)
    log.debug("checked for orphan rows in %.3f s", time.perf_counter() - t0)
    if not found:
        return
    con.execute("begin transaction")
    try:
        for table, counts in found.items():
            if table.endswith("_data"):
                _rewrite_without(con, table, list(counts))
            else:
                con.execute(
                    f"delete from {sql.qualified('raw', table)} where _batch_id in (select unnest(?))",
                    [list(counts)],
                )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("checkpoint")
    for entity in SOURCE_COLUMNS:
        if f"{entity}_data" in found:
            con.execute(view_sql(entity))
            check_placement(con, entity, _first_rowids(con, entity))
    for table, counts in found.items():
        log.warning(
            "removed %s orphan row(s) of batch id(s) %s from raw.%s in %.1f s (left by an ingest killed "
            "while committing; their files were not recorded as loaded and load again)",
            f"{sum(counts.values()):,}", _id_ranges(sorted(counts)), table, time.perf_counter() - t0,
        )  # fmt: skip


def _rewrite_without(con: duckdb.DuckDBPyConnection, table: str, orphans: list[int]) -> None:
    """Replace raw.<table> by a copy without the orphans' rows, in the same row order; re-anchor batches.

    A row's line number derives from its row id (warehouse.view_sql), and DuckDB renumbers the rows
    after deleted ones whenever a later checkpoint compacts them: a plain `delete` would shift the line
    numbers of every batch loaded after it. A fresh copy has no deleted rows, so its row ids never move.
    The copy keeps the scan order (insertion order is preserved), so each batch's first row id is the
    count of kept rows before it.
    """
    name, copy = sql.qualified("raw", table), sql.qualified("raw", f"{table}__rewrite")
    log.info("rewriting raw.%s without the orphan rows of batch id(s) %s...", table, _id_ranges(orphans))
    con.execute(f"drop table if exists {copy}")
    con.execute(
        f"create table {copy} as select * from {name} where _batch_id not in (select unnest(?))", [orphans]
    )
    con.execute(
        f"""
        update raw.ingested_files as f set first_rowid = kept.first_rowid
        from (
            select _batch_id, sum(count(*)) over (order by min(rowid)) - count(*) as first_rowid
            from {name} where _batch_id not in (select unnest($orphans)) group by _batch_id
        ) as kept
        where f.batch_id = kept._batch_id
        """,
        {"orphans": orphans},
    )
    con.execute(f"drop table {name}")
    con.execute(f"alter table {copy} rename to {sql.ident(table)}")
    con.execute(f"alter table {name} alter column _batch_id set not null")


def _first_rowids(con: duckdb.DuckDBPyConnection, entity: str) -> dict[int, int]:
    """Every batch of the entity with rows, and the first row id the manifest holds for it."""
    return dict(
        con.execute(
            "select batch_id, first_rowid from raw.ingested_files "
            "where entity = ? and first_rowid is not null and status <> 'failed'",
            [entity],
        ).fetchall()
    )


def _id_ranges(ids: list[int]) -> str:
    """`[1, 2, 3, 7]` -> `1-3, 7`."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
