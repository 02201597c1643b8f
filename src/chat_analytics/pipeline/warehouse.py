"""The warehouse's raw schema: storage tables, the manifest, and the lineage views."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from chat_analytics import duck, sql
from chat_analytics.paths import Home
from chat_analytics.pipeline.landing import SOURCE_COLUMNS

log = logging.getLogger(__name__)

# Manifest statuses. Only `loaded` batches count (the raw.<entity> views show only theirs); a batch
# leaves `loaded` for good when its file is re-delivered with new content (`replaced`) or withdrawn by
# `chat-analytics retract` (`retracted`); raw.file_actions says when, by whom and why; the rows stay.
LOADED, FAILED, REPLACED, RETRACTED = "loaded", "failed", "replaced", "retracted"
# Stored per row: only the batch. The file-level lineage (file name, SHA-256, extract date,
# ingested-at) and the batch's first row id live once per batch in raw.ingested_files and are joined in
# by the raw.<entity> views.
LINEAGE_DDL = "_batch_id bigint not null"
# Columns of a file beyond the contract's, per row: column name -> text (null when the file has none).
# One column whatever the header holds, so an unexpected header never widens the table.
EXTRA_COLUMN = "_extra"
EXTRA_DDL = f"{EXTRA_COLUMN} map(varchar, varchar)"

DDL = f"""
create schema if not exists raw;
create sequence if not exists raw.batch_id_seq start 1;
create table if not exists raw.chats_data (
    {", ".join(f"{c} varchar" for c in SOURCE_COLUMNS["chats"])}, {LINEAGE_DDL}, {EXTRA_DDL}
);
create table if not exists raw.categories_data (
    {", ".join(f"{c} varchar" for c in SOURCE_COLUMNS["categories"])}, {LINEAGE_DDL}, {EXTRA_DDL}
);
create table if not exists raw.line_gaps (
    _batch_id bigint not null,
    ordinal_from bigint not null,
    lines_before bigint not null
);
create table if not exists raw.rejected_rows (
    _batch_id bigint not null,
    entity varchar not null,
    file_name varchar not null,
    line_number bigint,
    raw_line varchar,
    reason varchar not null,
    error_type varchar
);
create table if not exists raw.ingested_files (
    batch_id bigint not null,
    entity varchar,
    file_name varchar not null,
    extract_date date,
    sha256 varchar,
    file_bytes bigint,
    file_mtime_ns bigint,
    version integer,
    status varchar not null,
    reason varchar,
    header varchar,
    extra_columns varchar[],
    data_lines bigint,
    rows_loaded bigint,
    rows_rejected bigint,
    blank_lines bigint,
    first_rowid bigint,
    started_at timestamptz not null,
    finished_at timestamptz not null
);
create table if not exists raw.file_actions (
    batch_id bigint not null,
    entity varchar,
    file_name varchar not null,
    action varchar not null,
    replaced_by bigint,
    acted_at timestamptz not null,
    acted_by varchar,
    reason varchar
);
"""


def view_sql(entity: str) -> str:
    """`raw.<entity>`: the stored rows with their lineage; the line number derives from row position.

    Rows of one batch are stored contiguously in file order, so a row's line number is its distance from
    the batch's first row plus 2, plus the blank and rejected lines above it. Those corrections exist only
    for the few batches with such lines (raw.line_gaps): they ride along as two short lists per batch, and
    the CASE touches them only for rows of those batches, so reading the view costs one scan and a join
    with the (small) manifest.
    """
    return f"""
create or replace view {sql.qualified("raw", entity)} as
with gaps as (
    select
        _batch_id,
        list(ordinal_from order by ordinal_from) as gap_from,
        list(lines_before order by ordinal_from) as gap_before
    from raw.line_gaps
    group by _batch_id
),

batches as (
    select
        f.batch_id as _batch_id,
        f.file_name as _source_file,
        f.sha256 as _source_sha256,
        f.extract_date as _extract_date,
        f.finished_at as _ingested_at,
        f.first_rowid as _first_rowid,
        g.gap_from as _gap_from,
        g.gap_before as _gap_before
    from raw.ingested_files as f
    left join gaps as g on f.batch_id = g._batch_id
    where f.status = 'loaded' and f.entity = {sql.literal(entity)}
)

select
    d.*,
    b.* exclude (_batch_id, _first_rowid, _gap_from, _gap_before),
    d.rowid - b._first_rowid + 2 + case
        when b._gap_from is null then 0
        else coalesce(
            b._gap_before[len(list_filter(b._gap_from, lambda x: x <= d.rowid - b._first_rowid))], 0
        )
    end as _line_number
from {sql.qualified("raw", f"{entity}_data")} as d
inner join batches as b on d._batch_id = b._batch_id
"""


def connect(home: Home) -> duckdb.DuckDBPyConnection:
    """Open the pipeline's working database (one writer at a time) and make sure the raw schema exists."""
    home.warehouse_dir.mkdir(parents=True, exist_ok=True)
    con = duck.connect(home.warehouse, home=home)
    try:
        con.execute(DDL)
        for entity in SOURCE_COLUMNS:
            # Warehouses created before `_extra` existed (their unexpected columns are varchar columns).
            con.execute(
                f"alter table {sql.qualified('raw', f'{entity}_data')} add column if not exists {EXTRA_DDL}"
            )
            con.execute(view_sql(entity))
    except BaseException:
        con.close()
        raise
    return con


def raw_state(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> str | None:
    """What the raw layer holds, as a short stamp: the newest batch that did not fail and the number of
    file actions (replacements, retractions). A build records it when it starts; `publish` refuses
    when it changed since (files loaded or withdrawn after the build started: its marts do not show
    them). None when the warehouse has no manifest yet."""
    database = catalog or con.execute("select current_database()").fetchone()[0]  # type: ignore[index]
    tables = {
        name
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = ? and schema_name = 'raw'",
            [database],
        ).fetchall()
    }
    if "ingested_files" not in tables:
        return None
    prefix = f"{sql.ident(database)}.raw"
    batch = con.execute(
        f"select coalesce(max(batch_id), 0) from {prefix}.ingested_files where status <> 'failed'"
    ).fetchone()[0]  # type: ignore[index]
    actions = (
        con.execute(f"select count(*) from {prefix}.file_actions").fetchone()[0]  # type: ignore[index]
        if "file_actions" in tables
        else 0
    )
    return f"batch {batch}, {actions} file action(s)"


def read_raw_state(path: Path) -> str | None:
    """`raw_state` of a warehouse file, opened read-only for the moment (None when there is no file)."""
    if not path.is_file():
        return None
    with duck.connect(path, read_only=True) as con:
        return raw_state(con)


def data_table(entity: str) -> str:
    """`raw.<entity>_data`, quoted."""
    return sql.qualified("raw", f"{entity}_data")


def check_placement(con: duckdb.DuckDBPyConnection, entity: str, first_rowids: dict[int, int]) -> None:
    """After commit, prove each batch starts where the manifest says; re-anchor if it ever does not."""
    if not first_rowids:
        return
    actual = dict(
        con.execute(
            f"select _batch_id, min(rowid) from {data_table(entity)} "
            "where _batch_id between ? and ? group by 1",
            [min(first_rowids), max(first_rowids)],
        ).fetchall()
    )
    for batch_id, first in first_rowids.items():
        if actual.get(batch_id) != first:
            log.warning(
                "batch %d starts at row %s, not %s: re-anchoring", batch_id, actual.get(batch_id), first
            )
            con.execute(
                "update raw.ingested_files set first_rowid = ? where batch_id = ?",
                [actual[batch_id], batch_id],
            )
