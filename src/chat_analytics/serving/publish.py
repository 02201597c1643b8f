"""`chat-analytics publish`: copy the `analytics` marts to `serving/` for analysts, atomically.

The pipeline's working file (`warehouse/warehouse.duckdb`) is private: DuckDB allows one writer per file
and an open reader blocks it. Analysts and BI tools read a separate copy instead:

* `serving/analytics.duckdb`: every mart under its own name in the file's default schema `main`, so
  `from daily_resolutions` and `from analytics.daily_resolutions` (catalog `analytics`, named after the
  file) both work in any DuckDB client with nothing typed first (the top-ten views are materialised as
  tables, so the copy stands alone), column and table comments from the dbt docs, and `_build_info`
  (one row: run id, publish time, data window, row counts, quarantined rows by reason, test results,
  freshness, git commit, dbt and DuckDB versions).
* `serving/parquet/<mart>.parquet`: one file per mart plus `_build_info.parquet`, except `fct_chats`:
  `serving/parquet/fct_chats/created_month=YYYY-MM/YYYY-MM-DD.parquet`, one file per local creation day
  in hive partitions by month (`read_parquet('.../fct_chats/**/*.parquet', hive_partitioning = true)`).

Every publish writes a new, complete release and switches to it in ONE rename, database and Parquet
together:

    serving/.releases/<token>/analytics.duckdb     a release: written under .releases/.tmp-<token>/,
    serving/.releases/<token>/parquet/...          checkpointed, fsynced, made read-only, renamed
    serving/.releases/<token>/publish_state.json   what it was made from (publish_delta)
    serving/current -> .releases/<token>           the switch: a new link renamed over the old one
    serving/analytics.duckdb -> current/analytics.duckdb   fixed links, created once
    serving/parquet -> current/parquet

A release is complete, but it costs what changed (chat_analytics.serving.publish_delta): the new release's
database starts as a copy of the previous release's, in which only the rows of `fct_chats` that differ
from the warehouse's, within the days whose checksum changed, are deleted or inserted, and the small
marts and `_build_info` are replaced;
its Parquet files of the days that did not change are hard links to the previous release's. Without a
usable previous release (none, an older layout, another DuckDB or storage version, a changed mart
schema, a database changed after its publish) the publish is full, and the log says why.

A reader sees the old release or the new one, never half of one or one of each. DuckDB resolves the
link before it derives the WAL's name, so a read-write session opened before a publish writes its WAL
into its own (old) release folder, never beside the new file: the published data cannot be changed
by such a session. The new release's files are also made read-only (mode 0444), which refuses a
read-write open to everyone but root. The previous release is kept until the next publish, for
readers that resolved the links just before the switch; older releases, half-written ones of killed
publishes and temporary links are removed by the next publish. The first publish into an older layout
(a plain `analytics.duckdb` file, a `parquet` link to `.parquet-<stamp>`) replaces the file and the
link by the fixed links, each in one rename, and removes the old files.

The file is written with DuckDB storage version `STORAGE_VERSION` on purpose: the pinned library and the
`duckdb` CLI of the dev dependencies are both 1.5.6, and the explicit storage version keeps the file
readable by that CLI (and any DuckDB >= 1.0) even after the library is upgraded.

Nothing is published unless the newest build finished green (`warehouse/last_build.json`, see
build_record): then the previous files stay exactly as they were and `PublishRefused` says why.
Publishing holds the home's pipeline lock (chat_analytics.pipeline.lock).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from chat_analytics import duck
from chat_analytics.dbt_vars import quarantine_reasons
from chat_analytics.engine import DEFAULT_ENGINE, chosen_engine
from chat_analytics.paths import (
    BUILD_INFO,
    PROJECT_ROOT,
    SERVING_DATABASE,
    SERVING_PARQUET,
    SERVING_SCHEMA,
    WAREHOUSE_SCHEMA,
    Home,
    UserError,
)
from chat_analytics.pipeline import monitoring
from chat_analytics.pipeline.build import release_warehouse
from chat_analytics.pipeline.build_record import BuildRecord, TestSummary, record_path
from chat_analytics.pipeline.faults import fault_point
from chat_analytics.pipeline.lock import pipeline_lock
from chat_analytics.pipeline.spark import last_engine
from chat_analytics.pipeline.warehouse import raw_state
from chat_analytics.serving.publish_delta import (
    DAY_COLUMN,
    MAX_FREE_SHARE,
    PARTITION_COLUMN,
    PARTITIONED,
    STATE_NAME,
    FileStamp,
    Plan,
    ReleaseState,
    checksums,
    link_or_copy,
    month_folder,
    plan,
    schema_fingerprint,
)
from chat_analytics.sql import ident, literal

log = logging.getLogger(__name__)

SCHEMA = SERVING_SCHEMA
STORAGE_VERSION = "v1.0.0"
GIT_COMMIT_ENV = "CHAT_ANALYTICS_GIT_COMMIT"
RELEASES = ".releases"
CURRENT = "current"
_STAGING_PREFIX = ".tmp-"
READ_ONLY = 0o444
QUARANTINE_REASONS = quarantine_reasons()  # every one counted in _build_info, zeros included
# The working warehouse, attached read-only under its file's stem: dbt's views name that catalog.
_SOURCE = "warehouse"
_TARGET = "pub"  # the new published file

BUILD_INFO_DDL = f"""
create table {_TARGET}.{SCHEMA}.{BUILD_INFO} (
    run_id varchar not null,
    published_at timestamptz not null,
    build_finished_at timestamptz,
    first_chat_at_utc timestamp,
    last_chat_at_utc timestamp,
    first_chat_date_local date,
    last_chat_date_local date,
    row_counts map(varchar, bigint) not null,
    quarantined_by_reason map(varchar, bigint) not null,
    quarantined_rows bigint not null,
    raw_rows bigint,
    tests_pass integer not null,
    tests_warn integer not null,
    tests_error integer not null,
    warned_tests varchar[] not null,
    freshness_status varchar,
    last_ingested_at timestamptz,
    git_commit varchar,
    dbt_version varchar,
    duckdb_version varchar not null,
    storage_version varchar not null,
    engine varchar
)
"""
BUILD_INFO_COMMENTS = {
    "": "How and from what this file was published: one row per publish (this file holds one).",
    "run_id": "The pipeline run that published this file (Airflow run id, or cli-<UTC time>).",
    "published_at": "When this file was published.",
    "build_finished_at": "When the dbt build behind these marts finished.",
    "first_chat_at_utc": "Creation time of the first chat in analytics.fct_chats, UTC.",
    "last_chat_at_utc": "Creation time of the last chat in analytics.fct_chats, UTC.",
    "first_chat_date_local": "Melbourne date of the first chat.",
    "last_chat_date_local": "Melbourne date of the last chat.",
    "row_counts": "Rows per published mart, e.g. row_counts['fct_chats'].",
    "quarantined_by_reason": "Quarantined raw chat rows (quality.quarantined_chats) by reason.",
    "quarantined_rows": "All quarantined raw chat rows.",
    "raw_rows": "Raw chat rows behind the marts (quality.chat_books).",
    "tests_pass": "dbt data and unit tests that passed in the latest build.",
    "tests_warn": "dbt tests that warned (findings below the error threshold).",
    "tests_error": "dbt tests that failed at error severity (always 0: such a build is not published).",
    "warned_tests": "Names of the tests that warned.",
    "freshness_status": "Worst dbt source freshness status of the raw tables: pass, warn or error.",
    "last_ingested_at": "When the newest landing file was loaded into the warehouse.",
    "git_commit": "Commit of the pipeline code (with -dirty when it had local changes).",
    "dbt_version": "dbt-core version of the build.",
    "duckdb_version": "DuckDB library version that wrote this file.",
    "storage_version": "DuckDB storage version of this file (readable by every DuckDB at or above it).",
    "engine": "Engine whose dbt build made these marts: duckdb or spark (README, Scaling out).",
}


class PublishRefused(UserError):
    """The last build is not green: nothing was published, the previous files stay in place."""


@dataclass(frozen=True)
class PublishResult:
    """What one publish wrote."""

    run_id: str
    published_at: datetime
    database: Path
    parquet_dir: Path
    row_counts: dict[str, int]  # per mart
    tests: TestSummary
    release: Path  # serving/.releases/<token>, where `current` now points
    full_reason: str | None = None  # why the publish was full; None: incremental from the previous release
    changed_days: tuple[str, ...] = ()  # fct_chats days replaced in the copied database (incremental)
    written_days: tuple[str, ...] = ()  # fct_chats days whose Parquet file was written (all when full)
    linked_days: tuple[str, ...] = ()  # fct_chats days whose Parquet file is the previous release's


def current_release(home: Home) -> Path | None:
    """The release folder readers see now, or None before the first publish (or in the older layout)."""
    link = home.serving / CURRENT
    return link.resolve() if link.is_symlink() and link.exists() else None


def publish(
    home: Home, *, run_id: str | None = None, full: bool = False, engine: str | None = None
) -> PublishResult:
    """Publish the marts of the newest build, when it finished green, to `serving/` as a new release.

    Incremental from the release readers see when it can be reused; `full` writes everything anew.
    Raises PublishRefused (nothing changed) unless the newest build finished green, UserError for a
    missing warehouse or a serving folder that cannot be written. `engine` (else $CHAT_ANALYTICS_ENGINE
    when set): refuse unless the warehouse's marts were built by that engine.
    """
    with pipeline_lock(home):
        _require_engine(home, chosen_engine(engine))
        return _publish(home, run_id, full=full)


def _require_engine(home: Home, engine: str | None) -> None:
    built_by = last_engine(home) or DEFAULT_ENGINE
    if engine is not None and built_by != engine:
        raise PublishRefused(
            f"not publishing: the warehouse's marts were built by {built_by}, not {engine}; run "
            f"`chat-analytics build --engine {engine}` first (or publish without --engine); "
            f"{home.serving_database} stays as it was"
        )


def _publish(home: Home, run_id: str | None, *, full: bool) -> PublishResult:
    record = BuildRecord.load(home)
    target = home.serving_database
    if not record.ok:
        raise PublishRefused(
            f"not publishing: the last build {_why_not(record)} (see {record_path(home)}); "
            f"{target} stays as it was"
        )
    if not home.warehouse.is_file():
        raise UserError(f"no warehouse at {home.warehouse}: run `chat-analytics run` first")
    published_at = datetime.now(UTC)
    run_id = run_id or f"cli-{published_at:%Y%m%dT%H%M%SZ}"
    token = f"{published_at:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    serving = home.serving
    try:
        releases = _prepare(serving)
        staging = releases / f"{_STAGING_PREFIX}{token}"
        release = releases / token
        try:
            staging.mkdir()
            row_counts, how = _write(home, staging, record, run_id, published_at, full=full)
            _seal(staging)
            os.rename(staging, release)
            _fsync_dir(releases)
            fault_point("publish:before-switch")
            previous = _switch(serving, release)
        except BaseException:
            for path in (staging, release):
                if path.exists() and current_release(home) != path.resolve():
                    _rmtree(path)
            raise
        fault_point("publish:after-switch")
        _fixed_links(serving, token)
        _remove_old_releases(releases, keep={release, previous})
        _remove_leftovers(serving)
    except (OSError, duckdb.IOException) as exc:
        raise UserError(
            f"cannot publish into {serving}: {duck.first_line(exc)}; it must be a folder this user can "
            "write, with free space (nothing was switched: readers keep the previous release)"
            if current_release(home) != (serving / RELEASES / token).resolve()
            else f"published to {serving}, but tidying up failed: {duck.first_line(exc)}"
        ) from None
    tests = record.tests()
    log.info(
        "published %d marts (%s chats) to %s and %s: run %s, tests %d pass / %d warn / %d error; %s",
        len(row_counts),
        f"{row_counts.get('fct_chats', 0):,}",
        target,
        home.serving_parquet,
        run_id,
        tests.passed,
        tests.warned,
        tests.errored,
        _describe(how),
    )
    return PublishResult(
        run_id,
        published_at,
        target,
        home.serving_parquet,
        row_counts,
        tests,
        release,
        full_reason=how.full_reason,
        changed_days=how.changed_days,
        written_days=how.written_days,
        linked_days=tuple(sorted(how.reused)),
    )


def _describe(how: Plan) -> str:
    files = f"{len(how.written_days)} day file(s) of {PARTITIONED} written"
    if how.full_reason is not None:
        return f"full publish ({how.full_reason}), {files}"
    return (
        f"incremental from release {how.previous.name if how.previous else '?'}: "
        f"{len(how.changed_days)} day(s) of {PARTITIONED} replaced, {files}, {len(how.reused)} linked"
    )


def _why_not(record: BuildRecord) -> str:
    failed = record.tests().failed_nodes
    if failed:
        return f"failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}"
    if not record.finished:
        parts = (record.build_id, f"(started {record.started_at})" if record.started_at else "")
        label = " ".join(p for p in parts if p)
        return f"{label + ' ' if label else ''}never finished (killed, or still running): build again"
    if record.error:
        return f"failed: {record.error}"
    return "ran no dbt model or test"


# ---- writing the new file ---------------------------------------------------------------------------


def _write(
    home: Home, staging: Path, record: BuildRecord, run_id: str, published_at: datetime, *, full: bool
) -> tuple[dict[str, int], Plan]:
    """Write the release into `staging`: a copy of the previous one with the changes applied, or anew."""
    new_db = staging / SERVING_DATABASE
    con = duck.connect(home=home)
    try:
        # dbt tasks that ran in this process (an in-process Airflow run) may still hold the file.
        release_warehouse()
        duck.attach(con, home.warehouse, _SOURCE)
        _require_same_raw(con, record, home)
        marts = _marts(con)
        if not marts:
            raise UserError(
                f"the warehouse {home.warehouse} has no {WAREHOUSE_SCHEMA} tables: run `chat-analytics build`"
            )
        if PARTITIONED not in marts:
            raise UserError(
                f"the warehouse {home.warehouse} has no {WAREHOUSE_SCHEMA}.{PARTITIONED}: build again"
            )
        with _timed("checksums of the warehouse's fct_chats"):
            days = checksums(con, f"{_SOURCE}.{WAREHOUSE_SCHEMA}.{ident(PARTITIONED)}")
        schema = schema_fingerprint(con, _SOURCE, WAREHOUSE_SCHEMA, list(marts))
        how = _plan(home, days, schema, full=full)
        if how.incremental:
            try:
                with _timed("copy of the previous database, changes applied"):
                    _apply_changes(con, how, new_db, marts, days)
            except (duckdb.Error, _NotReusable) as exc:
                how = Plan(f"the previous release could not be reused: {duck.first_line(exc)}")
                log.warning("publishing in full: %s", how.full_reason)
                _discard(con, new_db)
        if not how.incremental:
            how = Plan(how.full_reason, written_days=tuple(sorted(days)))
            with _timed("new database"):
                _write_all(con, new_db, marts)
        with _timed("row counts and _build_info"):
            row_counts = {
                name: int(_one(con, f"select count(*) from {_TARGET}.{SCHEMA}.{ident(name)}"))
                for name in marts
            }
            _write_build_info(
                con, record, run_id, published_at, row_counts, last_engine(home) or DEFAULT_ENGINE
            )
            monitoring.publish_tables(con, _SOURCE, _TARGET)  # run/test history, volume anomalies
        con.execute(f"detach {_SOURCE}")
        with _timed("checkpoint"):
            con.execute(f"checkpoint {_TARGET}")
        fault_point("publish:after-database-written")
        with _timed("Parquet"):
            _write_parquet(con, staging, [*marts, BUILD_INFO], how)
            monitoring.publish_parquet(con, _TARGET, staging / SERVING_PARQUET)
        con.execute(f"detach {_TARGET}")
    finally:
        con.close()
    state = ReleaseState(
        duckdb_version=duckdb.__version__,
        storage_version=STORAGE_VERSION,
        schema=schema,
        database=FileStamp.of(staging, new_db),
        days=days,
        files=_day_files(staging),
    )
    (staging / STATE_NAME).write_text(state.to_json(), encoding="utf-8")
    return row_counts, how


@contextmanager
def _timed(step: str) -> Iterator[None]:
    """Log (DEBUG) how long a step of the publish took."""
    began = time.perf_counter()
    yield
    log.debug("publish step: %s in %.2f s", step, time.perf_counter() - began)


class _NotReusable(Exception):
    """The previous release's database cannot be the start of this one (the message says why)."""


def _plan(home: Home, days: dict[str, tuple[int, int]], schema: str, *, full: bool) -> Plan:
    if full:
        return Plan("asked for a full publish")
    if any(day is None for day in days):  # its contract says not null: a warehouse built otherwise
        raise UserError(f"{PARTITIONED} in {home.warehouse} has rows without {DAY_COLUMN}: build again")
    return plan(
        current_release(home), days=days, schema=schema, storage_version=STORAGE_VERSION,
        database_name=SERVING_DATABASE,
    )  # fmt: skip


def _apply_changes(
    con: duckdb.DuckDBPyConnection,
    how: Plan,
    new_db: Path,
    marts: dict[str, str | None],
    days: dict[str, tuple[int, int]],
) -> None:
    """The previous release's database, copied, with the changed days of fct_chats replaced from the
    warehouse and every other mart and `_build_info` replaced in full."""
    assert how.previous is not None and how.previous_state is not None
    shutil.copyfile(how.previous / SERVING_DATABASE, new_db)
    if not how.previous_state.database.matches(how.previous):  # written to while we copied it
        raise _NotReusable(f"{how.previous / SERVING_DATABASE} changed while it was copied")
    con.execute(f"attach {literal(new_db)} as {_TARGET}")
    free, total = con.execute(
        "select free_blocks, total_blocks from pragma_database_size() where database_name = ?", [_TARGET]
    ).fetchone() or (0, 0)
    if total and free / total > MAX_FREE_SHARE:
        raise _NotReusable(f"{free:,} of its {total:,} blocks are free: compacting")
    fct = f"{_TARGET}.{SCHEMA}.{ident(PARTITIONED)}"
    if how.changed_days:
        _replace_changed_rows(con, how.changed_days, fct)
        again = checksums(con, fct, where=_in_days("changed_days"), params=_bounds(how.changed_days))
        if again != {day: days[day] for day in how.changed_days if day in days}:
            raise _NotReusable(
                f"its changed days of {PARTITIONED} do not match the warehouse's after the update"
            )
    expected = sum(rows for rows, _ in days.values())
    if _one(con, f"select count(*) from {fct}") != expected:
        raise _NotReusable(f"its {PARTITIONED} does not add up to the warehouse's {expected:,} rows")
    # Published files hold tables only (views are materialised); anything else the copy holds goes too.
    for name, kind in con.execute(
        "select table_name, 'table' from duckdb_tables() where database_name = ? and schema_name = ? "
        "union all select view_name, 'view' from duckdb_views() where database_name = ? and schema_name = ?",
        [_TARGET, SCHEMA, _TARGET, SCHEMA],
    ).fetchall():
        if name != PARTITIONED:
            con.execute(f"drop {kind} {_TARGET}.{SCHEMA}.{ident(name)}")
    for name, comment in marts.items():
        if name != PARTITIONED:
            _copy_mart(con, name, comment)


def _replace_changed_rows(con: duckdb.DuckDBPyConnection, changed_days: tuple[str, ...], fct: str) -> None:
    """Within the changed days only, the rows that differ: a row (chat id and hash of every column) of the
    copy that the warehouse no longer has is deleted, one the copy does not have is inserted. A new daily
    file changes some thousands of rows spread over a few days; the days' other rows stay where they are.
    """
    con.execute(
        "create or replace temp table changed_days as select unnest(?::date[]) as day", [list(changed_days)]
    )
    source, days, bounds = (
        f"{_SOURCE}.{WAREHOUSE_SCHEMA}.{ident(PARTITIONED)}",
        _in_days("changed_days"),
        _bounds(changed_days),
    )
    con.execute(
        f"create or replace temp table old_rows as select rowid as row_id, chat_id, hash(t) as row_hash "
        f"from {fct} as t where {days}",
        bounds,
    )
    con.execute(
        f"create or replace temp table new_rows as select chat_id, hash(t) as row_hash from {source} as t "
        f"where {days}",
        bounds,
    )
    con.execute(
        f"delete from {fct} where rowid in (select row_id from old_rows "
        "anti join new_rows using (chat_id, row_hash))"
    )
    con.execute(
        f"insert into {fct} select * exclude (row_hash) from "
        f"(select *, hash(t) as row_hash from {source} as t where {days}) "
        "anti join old_rows using (chat_id, row_hash)",
        bounds,
    )


def _bounds(days: tuple[str, ...]) -> list[str]:
    """The first and last of sorted days, bound to `_in_days`."""
    return [days[0], days[-1]]


def _discard(con: duckdb.DuckDBPyConnection, new_db: Path) -> None:
    """Detach and delete a half-applied copy, so the full publish starts from nothing."""
    attached = con.execute("select count(*) from duckdb_databases() where database_name = ?", [_TARGET])
    if (attached.fetchone() or (0,))[0]:
        con.execute(f"detach {_TARGET}")
    for path in (new_db, new_db.with_name(new_db.name + ".wal")):
        path.unlink(missing_ok=True)


def _write_all(con: duckdb.DuckDBPyConnection, new_db: Path, marts: dict[str, str | None]) -> None:
    con.execute(f"attach {literal(new_db)} as {_TARGET} (storage_version {literal(STORAGE_VERSION)})")
    for name, comment in marts.items():
        _copy_mart(con, name, comment)


def _write_parquet(con: duckdb.DuckDBPyConnection, staging: Path, tables: list[str], how: Plan) -> None:
    """One file per table, except fct_chats: one file per local creation day, in a folder per month
    (`fct_chats/created_month=YYYY-MM/YYYY-MM-DD.parquet`); the days not written are linked."""
    folder = staging / SERVING_PARQUET
    folder.mkdir()
    for name in tables:
        if name != PARTITIONED:
            con.execute(
                f"copy {_TARGET}.{SCHEMA}.{ident(name)} to {literal(folder / f'{name}.parquet')} "
                "(format parquet, compression zstd)"
            )
    partitioned = folder / PARTITIONED
    partitioned.mkdir()
    if how.written_days:
        # One pass writes every day to be written (DuckDB's partitioned write, `<column>=<day>/data_0...`,
        # the day column kept in the file); each file then moves into its month's folder.
        by_day = folder / f".{PARTITIONED}-by-day"
        con.execute(
            "create or replace temp table written_days as select unnest(?::date[]) as day",
            [list(how.written_days)],
        )
        con.execute(
            f"copy (select * from {_TARGET}.{SCHEMA}.{ident(PARTITIONED)} where {_in_days('written_days')}) "
            f"to {literal(by_day)} (format parquet, compression zstd, partition_by ({ident(DAY_COLUMN)}), "
            "write_partition_columns true)",
            _bounds(how.written_days),
        )
        for part in sorted(by_day.iterdir()):
            day = part.name.removeprefix(f"{DAY_COLUMN}=")
            if day not in how.written_days:
                raise UserError(f"unexpected partition {part} in a Parquet write of {PARTITIONED}")
            files = sorted(part.glob("*.parquet"))
            (partitioned / month_folder(day)).mkdir(exist_ok=True)
            for index, path in enumerate(files):
                name = f"{day}.parquet" if len(files) == 1 else f"{day}-{index}.parquet"
                os.rename(path, partitioned / month_folder(day) / name)
        shutil.rmtree(by_day)
    assert how.previous is not None or not how.reused
    for stamps in how.reused.values():
        for stamp in stamps:
            (staging / stamp.path).parent.mkdir(exist_ok=True)
            link_or_copy(how.previous / stamp.path, staging / stamp.path)  # type: ignore[operator]


def _in_days(table: str) -> str:
    """The condition `created_date_local in <temp table of days>`; bind the first and last day (zone maps)."""
    return f"{ident(DAY_COLUMN)} between ? and ? and {ident(DAY_COLUMN)} in (select day from {ident(table)})"


def _day_files(staging: Path) -> dict[str, list[FileStamp]]:
    """The Parquet files of fct_chats in `staging`, by day."""
    found: dict[str, list[FileStamp]] = {}
    for path in sorted((staging / SERVING_PARQUET / PARTITIONED).glob(f"{PARTITION_COLUMN}=*/*.parquet")):
        found.setdefault(path.name[:10], []).append(FileStamp.of(staging, path))
    return found


def _require_same_raw(con: duckdb.DuckDBPyConnection, record: BuildRecord, home: Home) -> None:
    """Refuse when files were loaded or withdrawn after the build started: its marts do not show them
    (for example a `chat-analytics ingest` or `retract` between `build` and `publish`, or between two dbt
    tasks of an Airflow run)."""
    if record.raw_state is None:  # a record written before builds stamped the raw state
        return
    now = raw_state(con, _SOURCE)
    if now != record.raw_state:
        raise PublishRefused(
            f"not publishing: raw data changed since build {record.build_id or 'unknown'} started "
            f"({record.raw_state} then, {now} now: files loaded or retracted in between); build again "
            f"(`chat-analytics build`, or run the DAG again); {home.serving_database} stays as it was"
        )


def _marts(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """Tables and views of the warehouse's analytics schema, with their comments, by name."""
    rows = con.execute(
        "select table_name, comment from duckdb_tables() where database_name = ? and schema_name = ? "
        "union all "
        "select view_name, comment from duckdb_views() where database_name = ? and schema_name = ? "
        "order by 1",
        [_SOURCE, WAREHOUSE_SCHEMA, _SOURCE, WAREHOUSE_SCHEMA],
    ).fetchall()
    return {name: comment for name, comment in rows if not name.startswith("_")}


def _copy_mart(con: duckdb.DuckDBPyConnection, name: str, comment: str | None) -> None:
    table = f"{_TARGET}.{SCHEMA}.{ident(name)}"
    con.execute(f"create table {table} as select * from {_SOURCE}.{WAREHOUSE_SCHEMA}.{ident(name)}")
    if comment:
        con.execute(f"comment on table {table} is {literal(comment.strip())}")
    columns = con.execute(
        "select column_name, comment from duckdb_columns() "
        "where database_name = ? and schema_name = ? and table_name = ? and comment is not null",
        [_SOURCE, WAREHOUSE_SCHEMA, name],
    ).fetchall()
    for column, text in columns:
        con.execute(f"comment on column {table}.{ident(column)} is {literal(str(text).strip())}")


def _write_build_info(
    con: duckdb.DuckDBPyConnection,
    record: BuildRecord,
    run_id: str,
    published_at: datetime,
    row_counts: dict[str, int],
    engine: str,
) -> None:
    con.execute(BUILD_INFO_DDL)
    window = con.execute(
        f"select min(created_at_utc), max(created_at_utc), min(created_date_local), max(created_date_local) "
        f"from {_TARGET}.{SCHEMA}.fct_chats"
    ).fetchone() or (None, None, None, None)
    quarantined = dict.fromkeys(QUARANTINE_REASONS, 0)
    quarantined.update(
        con.execute(f"select reason, count(*) from {_SOURCE}.quality.quarantined_chats group by 1").fetchall()
    )
    raw_rows = _one(con, f"select max(raw_rows) from {_SOURCE}.quality.chat_books")
    last_ingested = _one(
        con, f"select max(finished_at) from {_SOURCE}.raw.ingested_files where status = 'loaded'"
    )
    tests = record.tests()
    con.execute(
        f"insert into {_TARGET}.{SCHEMA}.{BUILD_INFO} values "
        "(?, ?, ?, ?, ?, ?, ?, map(?, ?), map(?, ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            published_at,
            datetime.fromisoformat(record.finished_at or record.updated_at),
            *window,
            list(row_counts),
            list(row_counts.values()),
            list(quarantined),
            list(quarantined.values()),
            sum(quarantined.values()),
            raw_rows,
            tests.passed,
            tests.warned,
            tests.errored,
            tests.warned_tests,
            record.freshness_status(),
            last_ingested,
            git_commit(),
            record.dbt_version or None,
            duckdb.__version__,
            STORAGE_VERSION,
            engine,
        ],
    )
    table = f"{_TARGET}.{SCHEMA}.{BUILD_INFO}"
    for column, text in BUILD_INFO_COMMENTS.items():
        target = f"column {table}.{column}" if column else f"table {table}"
        con.execute(f"comment on {target} is {literal(text)}")


def git_commit() -> str | None:
    """The pipeline code's commit: `$CHAT_ANALYTICS_GIT_COMMIT` (containers), else git, else None."""
    if os.environ.get(GIT_COMMIT_ENV):
        return os.environ[GIT_COMMIT_ENV]
    try:
        head = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


# ---- putting it in place ----------------------------------------------------------------------------


def _prepare(serving: Path) -> Path:
    """Make sure `serving/.releases/` exists and drop what killed publishes left behind; returns it."""
    if serving.exists() and not serving.is_dir():
        raise NotADirectoryError(f"{serving} is not a folder")
    serving.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(serving)
    releases = serving / RELEASES
    releases.mkdir(exist_ok=True)
    for path in releases.iterdir():
        if path.name.startswith(_STAGING_PREFIX):  # half-written by a killed publish
            _rmtree(path)
    return releases


def _seal(release: Path) -> None:
    """The finished release: files read-only and on disk (files, their folders) before anyone sees it."""
    for path in sorted(release.rglob("*"), reverse=True):
        if path.is_file():
            path.chmod(READ_ONLY)
            _fsync(path)
        else:
            _fsync_dir(path)
    _fsync_dir(release)


def _switch(serving: Path, release: Path) -> Path | None:
    """Point `serving/current` at `release` in one rename; returns the release it pointed at before."""
    link = serving / CURRENT
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():  # not ours: moved aside, never deleted
        link.rename(serving / f".{CURRENT}-moved-{release.name}")
    tmp = serving / f".{CURRENT}.link-{release.name}"
    tmp.symlink_to(Path(RELEASES) / release.name)
    os.replace(tmp, link)
    _fsync_dir(serving)
    return previous


def _fixed_links(serving: Path, token: str) -> None:
    """`analytics.duckdb` and `parquet` as links through `current` (once; an older layout is replaced)."""
    for name in (SERVING_DATABASE, SERVING_PARQUET):
        link, target = serving / name, Path(CURRENT) / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        tmp = serving / f".{name}.link-{token}"
        tmp.symlink_to(target)
        older = link.exists() or link.is_symlink()
        if link.is_dir() and not link.is_symlink():  # a plain folder (a manual copy): moved aside first
            link.rename(serving / f".{name}-old-{token}")
        os.replace(tmp, link)  # over a file or a link: one rename, readers see the old or the new
        log.log(logging.INFO if older else logging.DEBUG, "%s is now a link to %s", link, target)
    _fsync_dir(serving)


def _remove_old_releases(releases: Path, keep: set[Path | None]) -> None:
    kept = {path.resolve() for path in keep if path is not None}
    for path in releases.iterdir():
        if path.resolve() not in kept:
            _rmtree(path)


def _remove_leftovers(serving: Path) -> None:
    """Temporary files and links of killed publishes, and the older layout's files no longer linked."""
    in_use = {
        (serving / name).resolve()
        for name in (SERVING_DATABASE, SERVING_PARQUET, CURRENT)
        if (serving / name).is_symlink()
    }
    linked = (serving / SERVING_DATABASE).is_symlink()
    for path in serving.iterdir():
        name = path.name
        if name == RELEASES or path.resolve() in in_use:
            continue
        temporary = name.startswith(".") and (
            ".link-" in name  # a temporary link of a killed switch
            or name.startswith((f".{SERVING_DATABASE}.", f".{SERVING_DATABASE}-old-", f".{SERVING_PARQUET}-"))
            or name == ".publish.lock"  # the older layout's publish lock (the pipeline lock replaced it)
        )
        old_wal = linked and name == f"{SERVING_DATABASE}.wal"  # the WAL of an older plain published file
        if temporary or old_wal:
            log.debug("removing %s (left by an earlier publish)", path)
            _rmtree(path)


def _rmtree(path: Path) -> None:
    """Remove a file, link or folder publish left; what cannot be removed stays, with a warning naming it.

    Never raises: a leftover takes space but does not change what readers see (`current` decides that).
    """
    failed: list[str] = []

    def note(_func: object, name: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
        failed.append(f"{name} ({_os_error(exc_info[1])})")

    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, onerror=note)
    except OSError as exc:
        failed.append(f"{path} ({_os_error(exc)})")
    if failed:
        more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
        log.warning(
            "could not remove %s, left by an earlier publish: %s%s; remove it by hand (readers never see it)",
            path,
            failed[0],
            more,
        )


def _os_error(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or duck.first_line(exc)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- small SQL helpers ------------------------------------------------------------------------------


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    return row[0] if row else None
