"""The warehouse's raw schema: storage tables, the manifest, and the lineage views."""

from __future__ import annotations

import duckdb

from chat_analytics import resources
from chat_analytics.paths import Home, UserError

SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "chats": ("id", "chat_category_id", "created_at", "is_customer_initiated", "resolved_at"),
    "categories": ("id", "parent_id", "disabled"),
}
# Stored per row: only the batch. The file-level lineage (file name, SHA-256, extract date,
# ingested-at) and the batch's first row id live once per batch in raw.ingested_files and are joined in
# by the raw.<entity> views.
LINEAGE_DDL = "_batch_id bigint not null"
RESERVED_PREFIX = "_"

DDL = f"""
create schema if not exists raw;
create sequence if not exists raw.batch_id_seq start 1;
create table if not exists raw.chats_data (
    {", ".join(f"{c} varchar" for c in SOURCE_COLUMNS["chats"])}, {LINEAGE_DDL}
);
create table if not exists raw.categories_data (
    {", ".join(f"{c} varchar" for c in SOURCE_COLUMNS["categories"])}, {LINEAGE_DDL}
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
create or replace view raw.{entity} as
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
    where f.status = 'loaded' and f.entity = '{entity}'
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
from raw.{entity}_data as d
inner join batches as b on d._batch_id = b._batch_id
"""


def connect(home: Home) -> duckdb.DuckDBPyConnection:
    """Open the pipeline's working database (one writer at a time) and make sure the raw schema exists."""
    home.warehouse_dir.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(home.warehouse))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise UserError(
                f"the warehouse {home.warehouse} is in use by another process; wait for it to finish "
                "(analysts should read serving/, never the working file)"
            ) from None
        raise UserError(f"cannot open the warehouse {home.warehouse}: {exc}") from None
    con.execute("set enable_progress_bar = false")
    resources.apply(con, home)
    con.execute(DDL)
    for entity in SOURCE_COLUMNS:
        con.execute(view_sql(entity))
    return con


def table_columns(con: duckdb.DuckDBPyConnection, entity: str) -> list[str]:
    rows = con.execute(
        "select column_name from information_schema.columns "
        "where table_schema = 'raw' and table_name = ? order by ordinal_position",
        [f"{entity}_data"],
    ).fetchall()
    return [r[0] for r in rows]
