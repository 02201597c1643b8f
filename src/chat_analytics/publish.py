"""`chat-analytics publish`: copy the `analytics` marts to `serving/` for analysts, atomically.

The pipeline's working file (`warehouse/warehouse.duckdb`) is private: DuckDB allows one writer per file
and an open reader blocks it. Analysts and BI tools read a separate copy instead:

* `serving/analytics.duckdb`: schema `analytics` with every mart under its own name (the top-ten views
  are materialised as tables, so the copy stands alone), column and table comments from the dbt docs,
  and `analytics._build_info` (one row: run id, publish time, data window, row counts, quarantined
  rows by reason, test results, freshness, git commit, dbt and DuckDB versions). Written beside the old
  file under a temporary name, checkpointed, fsynced and renamed into place: a reader sees the old file
  or the new one, never half of one, and a reader that keeps the old file open never blocks the
  pipeline (on POSIX it keeps reading the old file until it reconnects).
* `serving/parquet/<mart>.parquet`: one file per mart plus `_build_info.parquet`. `parquet` is a
  symbolic link to a versioned folder `.parquet-<stamp>`, swapped atomically by renaming a new link
  over it; older folders are removed afterwards.

The file is written with DuckDB storage version `STORAGE_VERSION` on purpose: the pinned library and the
`duckdb` CLI of the dev dependencies are both 1.5.6, and the explicit storage version keeps the file
readable by that CLI (and any DuckDB >= 1.0) even after the library is upgraded.

Nothing is published unless the last build is green (`warehouse/last_build.json`, see build_record):
then the previous files stay exactly as they were and `PublishRefused` says why.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from chat_analytics import resources
from chat_analytics.build import release_warehouse
from chat_analytics.build_record import BuildRecord, TestSummary, record_path
from chat_analytics.paths import PROJECT_ROOT, Home, UserError

log = logging.getLogger(__name__)

SCHEMA = "analytics"
BUILD_INFO = "_build_info"
DATABASE_NAME = "analytics.duckdb"
PARQUET_DIR = "parquet"
STORAGE_VERSION = "v1.0.0"
GIT_COMMIT_ENV = "CHAT_ANALYTICS_GIT_COMMIT"
QUARANTINE_REASONS = (
    "missing_id",
    "invalid_created_at",
    "invalid_resolved_at",
    "resolved_before_created",
    "invalid_is_customer_initiated",
    "conflicting_duplicate",
)
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
    storage_version varchar not null
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


def database_path(home: Home) -> Path:
    return home.serving / DATABASE_NAME


def parquet_path(home: Home) -> Path:
    return home.serving / PARQUET_DIR


def publish(home: Home, *, run_id: str | None = None) -> PublishResult:
    """Publish the marts of the last green build to `serving/`; raise PublishRefused after a failed one."""
    record = BuildRecord.load(home)
    target = database_path(home)
    if not record.ok:
        failed = record.tests().failed_nodes
        why = f"failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}" if failed else "failed"
        raise PublishRefused(
            f"not publishing: the last build {record.error or why} (see {record_path(home)}); "
            f"{target} stays as it was"
        )
    if not home.warehouse.is_file():
        raise UserError(f"no warehouse at {home.warehouse}: run `chat-analytics run` first")
    published_at = datetime.now(UTC)
    run_id = run_id or f"cli-{published_at:%Y%m%dT%H%M%SZ}"
    home.serving.mkdir(parents=True, exist_ok=True)
    with _lock(home.serving):
        _remove_leftovers(home.serving)
        token = f"{published_at:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        new_db = home.serving / f".{DATABASE_NAME}.{token}.tmp"
        new_parquet = home.serving / f".{PARQUET_DIR}-{token}"
        try:
            row_counts = _write(home, new_db, new_parquet, record, run_id, published_at)
            _fsync(new_db)
            _replace_database(new_db, target)
            _swap_link(new_parquet, parquet_path(home))
        except BaseException:
            new_db.unlink(missing_ok=True)
            if new_parquet.exists() and parquet_path(home).resolve() != new_parquet.resolve():
                shutil.rmtree(new_parquet, ignore_errors=True)
            raise
    tests = record.tests()
    log.info(
        "published %d marts (%s chats) to %s and %s: run %s, tests %d pass / %d warn / %d error",
        len(row_counts),
        f"{row_counts.get('fct_chats', 0):,}",
        target,
        parquet_path(home),
        run_id,
        tests.passed,
        tests.warned,
        tests.errored,
    )
    return PublishResult(run_id, published_at, target, parquet_path(home), row_counts, tests)


# ---- writing the new file ---------------------------------------------------------------------------


def _write(
    home: Home, new_db: Path, new_parquet: Path, record: BuildRecord, run_id: str, published_at: datetime
) -> dict[str, int]:
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        resources.apply(con, home)
        try:
            # dbt tasks that ran in this process (an in-process Airflow run) may still hold the file.
            release_warehouse()
            con.execute(f"attach '{_sql_text(home.warehouse)}' as {_SOURCE} (read_only)")
        except duckdb.IOException as exc:
            raise UserError(
                f"cannot read the warehouse {home.warehouse} (a build running?): {_first_line(exc)}"
            ) from None
        con.execute(f"attach '{_sql_text(new_db)}' as {_TARGET} (storage_version '{STORAGE_VERSION}')")
        marts = _marts(con)
        if not marts:
            raise UserError(
                f"the warehouse {home.warehouse} has no {SCHEMA} tables: run `chat-analytics build`"
            )
        con.execute(f"create schema {_TARGET}.{SCHEMA}")
        for name, comment in marts.items():
            _copy_mart(con, name, comment)
        row_counts = {
            name: int(_one(con, f"select count(*) from {_TARGET}.{SCHEMA}.{_ident(name)}")) for name in marts
        }
        _write_build_info(con, record, run_id, published_at, row_counts)
        new_parquet.mkdir()
        for name in [*row_counts, BUILD_INFO]:
            con.execute(
                f"copy {_TARGET}.{SCHEMA}.{_ident(name)} to '{_sql_text(new_parquet / f'{name}.parquet')}' "
                "(format parquet, compression zstd)"
            )
        con.execute(f"detach {_SOURCE}")
        con.execute(f"checkpoint {_TARGET}")
        con.execute(f"detach {_TARGET}")
    finally:
        con.close()
    return row_counts


def _marts(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """Tables and views of the warehouse's analytics schema, with their comments, by name."""
    rows = con.execute(
        "select table_name, comment from duckdb_tables() where database_name = ? and schema_name = ? "
        "union all "
        "select view_name, comment from duckdb_views() where database_name = ? and schema_name = ? "
        "order by 1",
        [_SOURCE, SCHEMA, _SOURCE, SCHEMA],
    ).fetchall()
    return {name: comment for name, comment in rows if not name.startswith("_")}


def _copy_mart(con: duckdb.DuckDBPyConnection, name: str, comment: str | None) -> None:
    table = f"{SCHEMA}.{_ident(name)}"
    con.execute(f"create table {_TARGET}.{table} as select * from {_SOURCE}.{table}")
    if comment:
        con.execute(f"comment on table {_TARGET}.{table} is '{_sql_text(comment.strip())}'")
    columns = con.execute(
        "select column_name, comment from duckdb_columns() "
        "where database_name = ? and schema_name = ? and table_name = ? and comment is not null",
        [_SOURCE, SCHEMA, name],
    ).fetchall()
    for column, text in columns:
        con.execute(
            f"comment on column {_TARGET}.{table}.{_ident(column)} is '{_sql_text(str(text).strip())}'"
        )


def _write_build_info(
    con: duckdb.DuckDBPyConnection,
    record: BuildRecord,
    run_id: str,
    published_at: datetime,
    row_counts: dict[str, int],
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
        "(?, ?, ?, ?, ?, ?, ?, map(?, ?), map(?, ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            published_at,
            datetime.fromisoformat(record.updated_at),
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
        ],
    )
    table = f"{_TARGET}.{SCHEMA}.{BUILD_INFO}"
    for column, text in BUILD_INFO_COMMENTS.items():
        target = f"column {table}.{column}" if column else f"table {table}"
        con.execute(f"comment on {target} is '{_sql_text(text)}'")


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


def _replace_database(new_db: Path, target: Path) -> None:
    stale_wal = target.with_name(f"{target.name}.wal")
    if stale_wal.exists():  # a WAL of the old file must never be replayed onto the new one
        log.warning("removing %s: the published file is read-only for its readers", stale_wal)
        stale_wal.unlink()
    os.replace(new_db, target)
    _fsync_dir(target.parent)


def _swap_link(new_dir: Path, link: Path) -> None:
    """Point `link` at `new_dir` in one rename, then remove the folders it pointed at before."""
    if link.exists() and not link.is_symlink():  # a plain folder (older layout or a manual copy)
        link.rename(link.with_name(f".{link.name}-old-{secrets.token_hex(3)}"))
    tmp_link = link.with_name(f".{link.name}.link-{secrets.token_hex(3)}")
    tmp_link.symlink_to(new_dir.name)
    os.replace(tmp_link, link)
    _fsync_dir(link.parent)
    _remove_leftovers(link.parent)


def _remove_leftovers(serving: Path) -> None:
    """Temporary files of interrupted publishes and Parquet folders no longer linked."""
    link = serving / PARQUET_DIR
    current = link.resolve() if link.is_symlink() else None
    for path in serving.iterdir():
        name = path.name
        temporary = name.startswith(f".{DATABASE_NAME}.") and name.endswith(".tmp")
        if temporary or name.startswith(f".{PARQUET_DIR}.link-"):
            path.unlink(missing_ok=True)
        elif name.startswith(f".{PARQUET_DIR}-") and path.is_dir() and path.resolve() != current:
            shutil.rmtree(path, ignore_errors=True)


@contextmanager
def _lock(serving: Path) -> Iterator[None]:
    """One publish at a time per home."""
    with (serving / ".publish.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another publish into {serving} is running; try again when it is done") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(value: object) -> str:
    return str(value).replace("'", "''")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
