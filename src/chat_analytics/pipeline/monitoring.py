"""Run and test history in the warehouse's `monitoring` schema, and the run notifications (issue 14).

`monitoring.run_history` holds one row per pipeline run and `monitoring.test_history` one row per dbt
data test per run. Python writes them, never dbt: they are created when missing and only appended to
or updated by run id, so they survive `--full-refresh` builds and re-delivered files (dbt declares them
as sources, models/monitoring/_monitoring__models.yml). `publish` copies them, with dbt's
`volume_anomalies` and `volume_bands`, into the published file's `monitoring` schema and Parquet.

One code path for both orchestrators: `chat-analytics run` (cli.py) and the Airflow DAG's tasks
(dags/chat_analytics_pipeline.py) each make a `PipelineRun` (trigger `cli` or `airflow`, the Airflow run
id under Airflow) and call the same methods at the same step boundaries:

    run.start()                       before ingest: the row (status running); notification "started"
    with run.step("ingest"): ...      times a step; an exception marks the run failed at that step
    run.record_ingest(report)         files and rows loaded and rejected
    run.record_build()                dbt results from warehouse/last_build.json: tests and test_history,
                                      quarantined rows by reason, the newest days' volume anomalies
    run.record_publish(result)        chats published
    run.record_report()
    run.finish("success"|"failed")    finished_at and status; notification with duration, rows in and
                                      out, warnings and anomalies (or the failed step, error and log)

DuckDB allows one writer per file: each write opens the warehouse for a moment at a step boundary
(after dbt-duckdb released it) and closes it; it waits up to `LOCK_WAIT_SECONDS` for another writer.
History must never change a run's result: a failed write is a logged warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chat_analytics import sql
from chat_analytics.paths import DBT_PROJECT_DIR, Home, UserError
from chat_analytics.pipeline import notify

if TYPE_CHECKING:  # duckdb is imported where it is used: the DAG file imports this module at parse time
    import duckdb

log = logging.getLogger(__name__)

SCHEMA = "monitoring"
RUN_HISTORY = "run_history"
TEST_HISTORY = "test_history"
#: What `publish` copies from the warehouse's monitoring schema (dbt's models after Python's tables).
PUBLISHED = (RUN_HISTORY, TEST_HISTORY, "volume_anomalies", "volume_bands")
STEPS = ("ingest", "build", "publish", "report")
RUNNING, SUCCESS, FAILED = "running", "success", "failed"
LOCK_WAIT_SECONDS = 60.0
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
_GOT_ROWS = re.compile(r"\bGot (\d+) results?\b")


def ddl(catalog: str | None = None) -> str:
    """The history tables (created when missing), in the warehouse or in attached catalog `catalog`."""
    schema = f"{sql.ident(catalog)}.{SCHEMA}" if catalog else SCHEMA
    return f"""
create schema if not exists {schema};
create table if not exists {schema}.{RUN_HISTORY} (
    run_id varchar not null,
    trigger varchar not null,
    started_at timestamptz not null,
    finished_at timestamptz,
    status varchar not null,
    failed_step varchar,
    error varchar,
    log_location varchar,
    ingest_seconds double,
    build_seconds double,
    publish_seconds double,
    report_seconds double,
    files_loaded integer,
    files_rejected integer,
    rows_loaded bigint,
    rows_rejected bigint,
    rows_quarantined bigint,
    quarantined_by_reason map(varchar, bigint),
    chats_published bigint,
    tests_passed integer,
    test_warnings integer,
    test_errors integer,
    anomalies varchar[]
);
create table if not exists {schema}.{TEST_HISTORY} (
    run_id varchar not null,
    recorded_at timestamptz not null,
    test_name varchar not null,
    unique_id varchar not null,
    model varchar,
    severity varchar,
    status varchar not null,
    failing_rows bigint,
    threshold varchar,
    message varchar
);
"""


#: Empty stand-ins of dbt's monitoring models for a warehouse built before them (publish needs a table).
MODEL_STAND_INS = {
    "volume_anomalies": "metric varchar, day date, observed double, expected double, lower_bound double, "
    "upper_bound double, direction varchar, score double, is_recent boolean",
    "volume_bands": "metric varchar, day date, observed double, expected double, lower_bound double, "
    "upper_bound double, direction varchar, score double, is_anomaly boolean, training_days bigint, "
    "is_recent boolean",
}


def new_run_id() -> str:
    return f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"


def cli_log_location() -> str:
    return (
        f"stderr of `chat-analytics run` (pid {os.getpid()} on {socket.gethostname()}); "
        f"dbt's own log: {DBT_PROJECT_DIR / 'logs' / 'dbt.log'}"
    )


@dataclass
class PipelineRun:
    """One pipeline run's row in `monitoring.run_history` (see the module docstring)."""

    home: Home
    run_id: str = field(default_factory=new_run_id)
    trigger: str = "cli"
    log_location: str = field(default_factory=cli_log_location)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: dict[str, float] = field(default_factory=dict)

    # ---- the steps ----------------------------------------------------------------------------------

    def start(self) -> None:
        """The run's row (status running; kept when it exists: a retried task) and the start message."""
        created = self._write({})
        if created is not False:
            notify.notify(
                notify.START,
                f"chat-analytics run `{self.run_id}` started ({self.trigger})",
                [("Home", str(self.home.root)), ("Log", self.log_location)],
            )

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time step `name` (its seconds are written by the step's `record_*`)."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - began

    def stage(self, name: str) -> AbstractContextManager[None]:
        """What a shared step (chat_analytics.pipeline.steps) times itself with: `step` on the command
        line, `timed` in an Airflow task (whose retries decide; then `airflow_task_failed` records it)."""
        return self.step(name) if self.trigger == "cli" else self.timed(name)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """`timed`, and an exception ends the run as failed at that step (and is raised again).

        The CLI's steps; an Airflow task uses `timed` (its retries decide, then `airflow_task_failed`).
        """
        try:
            with self.timed(name):
                yield
        except BaseException as exc:
            self._write({f"{name}_seconds": self.seconds[name]})
            self.finish(FAILED, failed_step=name, error=_first_line(exc))
            raise

    def record_ingest(self, report: Any) -> None:
        """Files and rows of an `IngestReport` (chat_analytics.pipeline.ingest)."""
        loaded = [o for o in report.outcomes if o.status == "loaded"]
        self._write(
            {
                "ingest_seconds": self.seconds.get("ingest"),
                "files_loaded": len(loaded),
                "files_rejected": len(report.failed),
                "rows_loaded": sum(o.rows_loaded for o in loaded),
                "rows_rejected": sum(o.rows_rejected for o in loaded),
            }
        )

    def record_build(self, seconds: float | None = None) -> None:
        """The build's tests (and test_history), quarantine and newest anomalies, from its record."""
        from chat_analytics.pipeline.build_record import BuildRecord

        try:
            record = BuildRecord.load(self.home)
        except UserError as exc:
            log.warning("no build results for the run history: %s", exc)
            return
        if seconds is None:
            seconds = self.seconds.get("build", _record_seconds(record))
        tests = record.tests()
        rows = test_rows(record.nodes, _manifest_tests())
        self._write(
            {
                "build_seconds": seconds,
                "tests_passed": tests.passed,
                "test_warnings": tests.warned,
                "test_errors": len(tests.failed_nodes),
            },
            after=lambda con: _record_warehouse_state(con, self.run_id, rows),
        )

    def build_error(self) -> str:
        """What failed in the newest build, for a failure message."""
        from chat_analytics.pipeline.build_record import BuildRecord

        try:
            record = BuildRecord.load(self.home)
        except UserError as exc:
            return str(exc)
        failed = record.tests().failed_nodes
        if failed:
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            return f"dbt build failed: {', '.join(failed[:5])}{more}"
        return f"dbt build failed: {record.error or 'see the log'}"

    def record_publish(self, result: Any) -> None:
        """Chats published by a `PublishResult` (chat_analytics.serving.publish)."""
        self._write(
            {
                "publish_seconds": self.seconds.get("publish"),
                "chats_published": result.row_counts.get("fct_chats"),
            }
        )

    def record_report(self) -> None:
        self._write({"report_seconds": self.seconds.get("report")})

    def finish(self, status: str, *, failed_step: str | None = None, error: str | None = None) -> None:
        """End the run (the first failure recorded wins) and send the success or failure message."""
        columns: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC)}
        if failed_step:
            columns.update(failed_step=failed_step, error=error, log_location=self.log_location)
        self._write(columns, keep_failure=True)
        row = self.row() or {}
        if status == SUCCESS:
            notify.notify(notify.SUCCESS, *success_message(self.run_id, row))
        else:
            notify.notify(notify.FAILURE, *failure_message(self.run_id, row, failed_step, error))

    def failed(self, step: str, error: str) -> int:
        """`finish` as failed at `step`; returns the exit code of a failed run (1)."""
        self.finish(FAILED, failed_step=step, error=error)
        return 1

    def row(self) -> dict[str, Any] | None:
        """The run's row as it is now (None when it cannot be read)."""
        import duckdb

        con = _open(self.home)
        if con is None:
            return None
        try:
            return _row(con, self.run_id)
        except duckdb.Error as exc:
            log.warning("cannot read the run history: %s", exc)
            return None
        finally:
            con.close()

    # ---- writing ------------------------------------------------------------------------------------

    def _write(
        self, columns: Mapping[str, Any], *, keep_failure: bool = False, after: Any = None
    ) -> bool | None:
        """Create the row when missing, then set `columns`; True when the row was created here.

        None (and a warning) when the history cannot be written: the run goes on.
        """
        import duckdb

        con = _open(self.home)
        if con is None:
            return None
        try:
            con.execute("begin")
            created = not con.execute(
                f"select count(*) from {SCHEMA}.{RUN_HISTORY} where run_id = ?", [self.run_id]
            ).fetchone()[0]  # type: ignore[index]
            if created:
                con.execute(
                    f"insert into {SCHEMA}.{RUN_HISTORY} (run_id, trigger, started_at, status, log_location) "
                    "values (?, ?, ?, ?, ?)",
                    [self.run_id, self.trigger, self.started_at, RUNNING, self.log_location],
                )
            values = {k: v for k, v in columns.items() if v is not None}
            if keep_failure and "failed_step" in values:
                current = _row(con, self.run_id) or {}
                if current.get("failed_step"):  # the first failure (a task's own, under Airflow) stays
                    values = {
                        k: v for k, v in values.items() if k not in ("failed_step", "error", "log_location")
                    }
            if values:
                assignments = ", ".join(f"{name} = ?" for name in values)
                con.execute(
                    f"update {SCHEMA}.{RUN_HISTORY} set {assignments} where run_id = ?",
                    [*values.values(), self.run_id],
                )
            if after is not None:
                after(con)
            con.execute("commit")
            return created
        except duckdb.Error as exc:
            log.warning("could not write the run history (run %s): %s", self.run_id, exc)
            return None
        finally:
            con.close()


# ---- messages ---------------------------------------------------------------------------------------


def success_message(run_id: str, row: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    anomalies = list(row.get("anomalies") or [])
    duration = _duration(row)
    fields = [
        ("Duration", duration),
        ("Steps", _steps(row)),
        ("Rows in", f"{_n(row.get('rows_loaded'))} rows from {_n(row.get('files_loaded'))} file(s), "
                    f"{_n(row.get('rows_rejected'))} rejected"),
        ("Rows out", f"{_n(row.get('chats_published'))} chats published, "
                     f"{_n(row.get('rows_quarantined'))} rows quarantined"),
        ("Test warnings", str(row.get("test_warnings") or 0)),
        ("Anomalies", "; ".join(anomalies) if anomalies else "none on the newest days"),
    ]  # fmt: skip
    warn = f", {row.get('test_warnings')} test warning(s)" if row.get("test_warnings") else ""
    flags = f", {len(anomalies)} volume anomal{'y' if len(anomalies) == 1 else 'ies'}" if anomalies else ""
    return f"chat-analytics run `{run_id}` succeeded in {duration}{warn}{flags}", fields


def failure_message(
    run_id: str, row: Mapping[str, Any], step: str | None, error: str | None
) -> tuple[str, list[tuple[str, str]]]:
    step = row.get("failed_step") or step or "?"
    error = row.get("error") or error or "unknown error"
    fields = [("Step", step), ("Error", error), ("Log", str(row.get("log_location") or "?"))]
    return f"chat-analytics run `{run_id}` FAILED at {step}: {error}", fields


def _duration(row: Mapping[str, Any]) -> str:
    started, finished = row.get("started_at"), row.get("finished_at")
    if not started or not finished:
        return "?"
    return f"{(finished - started).total_seconds():.1f} s"


def _steps(row: Mapping[str, Any]) -> str:
    parts = [f"{s} {row[f'{s}_seconds']:.1f} s" for s in STEPS if row.get(f"{s}_seconds") is not None]
    return ", ".join(parts) or "-"


def _n(value: Any) -> str:
    return "?" if value is None else f"{int(value):,}"


# ---- the warehouse ----------------------------------------------------------------------------------


def _open(home: Home) -> duckdb.DuckDBPyConnection | None:
    """The warehouse with the history tables, waiting for another writer; None when unavailable."""
    import duckdb

    from chat_analytics import duck  # (imported here: the DAG file imports this module at parse time)
    from chat_analytics.pipeline.build import release_warehouse

    if not home.warehouse.is_file():  # before the first ingest: the row is written by the next write
        return None
    release_warehouse()  # dbt-duckdb of an in-process Airflow run may still hold the file
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:  # the one opener: memory cap and spill folder as every other connection to the warehouse
            con = duck.connect(home.warehouse, home=home)
            break
        except duck.Locked as exc:
            if time.monotonic() > deadline:
                log.warning("cannot open the warehouse for the run history: %s", exc)
                return None
            time.sleep(0.2)
        except (OSError, UserError, duckdb.Error) as exc:
            log.warning("cannot open the warehouse for the run history: %s", _first_line(exc))
            return None
    try:
        con.execute(ddl())
    except duckdb.Error as exc:
        con.close()
        log.warning("cannot create the history tables: %s", _first_line(exc))
        return None
    return con


def _row(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    cursor = con.execute(f"select * from {SCHEMA}.{RUN_HISTORY} where run_id = ?", [run_id])
    names = [d[0] for d in cursor.description or []]
    found = cursor.fetchone()
    return dict(zip(names, found, strict=True)) if found else None


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
        ).fetchall()
    }


def _record_warehouse_state(
    con: duckdb.DuckDBPyConnection, run_id: str, tests: list[tuple[Any, ...]]
) -> None:
    """test_history rows of the run (replaced: a retried task), quarantine and the newest anomalies."""
    con.execute(f"delete from {SCHEMA}.{TEST_HISTORY} where run_id = ?", [run_id])
    now = datetime.now(UTC)
    if tests:
        con.executemany(
            f"insert into {SCHEMA}.{TEST_HISTORY} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [[run_id, now, *row] for row in tests],
        )
    tables = _tables(con)
    if "quality.quarantined_chats" in tables:
        from chat_analytics.serving.publish import QUARANTINE_REASONS

        reasons = dict.fromkeys(QUARANTINE_REASONS, 0)
        reasons.update(
            con.execute("select reason, count(*) from quality.quarantined_chats group by 1").fetchall()
        )
        con.execute(
            f"update {SCHEMA}.{RUN_HISTORY} set rows_quarantined = ?, quarantined_by_reason = map(?, ?) "
            "where run_id = ?",
            [sum(reasons.values()), list(reasons), list(reasons.values()), run_id],
        )
    if f"{SCHEMA}.volume_anomalies" in tables:
        anomalies = [
            f"{metric} {direction} on {day} (observed {observed:.4g}, expected {expected:.4g})"
            for metric, day, direction, observed, expected in con.execute(
                f"select metric, day, direction, observed, expected from {SCHEMA}.volume_anomalies "
                "where is_recent order by day, metric"
            ).fetchall()
        ]
        con.execute(f"update {SCHEMA}.{RUN_HISTORY} set anomalies = ? where run_id = ?", [anomalies, run_id])


def test_rows(
    nodes: Mapping[str, Mapping[str, Any]], manifest: Mapping[str, Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """(test, unique id, model, severity, status, failing rows, threshold, message) per data test."""
    rows = []
    for unique_id, result in sorted(nodes.items()):
        if not unique_id.startswith("test."):
            continue
        node = manifest.get(unique_id, {})
        config = node.get("config") or {}
        message = str(result.get("message") or "")
        failures = result.get("failures")
        if not isinstance(failures, int):
            got = _GOT_ROWS.search(message)
            failures = int(got.group(1)) if got else (0 if result.get("status") == "pass" else None)
        rows.append(
            (
                str(node.get("name") or unique_id.split(".")[2]),
                unique_id,
                _tested_model(node),
                str(config.get("severity") or "error").lower(),
                str(result.get("status") or ""),
                failures,
                f"warn_if {config.get('warn_if', '!= 0')}; error_if {config.get('error_if', '!= 0')}",
                message or None,
            )
        )
    return rows


def _tested_model(node: Mapping[str, Any]) -> str | None:
    attached = node.get("attached_node") or next(
        iter((node.get("depends_on") or {}).get("nodes") or []), None
    )
    if not attached:
        return None
    parts = str(attached).split(".")
    return ".".join(parts[2:]) if parts[0] == "source" else parts[-1]


def _manifest_tests() -> dict[str, Mapping[str, Any]]:
    """The data tests of dbt's manifest (name, config, tested node) by unique id; empty when missing."""
    try:
        nodes = json.loads(MANIFEST.read_text(encoding="utf-8")).get("nodes", {})
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s for the test history: %s", MANIFEST, exc)
        return {}
    return {uid: node for uid, node in nodes.items() if uid.startswith("test.")}


def _record_seconds(record: Any) -> float | None:
    """Seconds from the build record's start to its last update (the Airflow build's duration)."""
    try:
        start = datetime.fromisoformat(record.started_at)
        end = datetime.fromisoformat(record.finished_at or record.updated_at)
    except (TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---- publishing -------------------------------------------------------------------------------------


def publish_tables(con: duckdb.DuckDBPyConnection, source: str, target: str) -> None:
    """Copy the monitoring tables of catalog `source` (the warehouse) into `target`'s monitoring schema.

    Replaces what a copied previous release holds; a table the warehouse lacks is published empty.
    """
    present = {
        name
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = ? and schema_name = ?",
            [source, SCHEMA],
        ).fetchall()
    }
    for name in PUBLISHED:
        con.execute(f"drop table if exists {sql.qualified(target, SCHEMA, name)}")
    con.execute(ddl(target))  # the history tables, empty, when the warehouse has none yet
    for name in PUBLISHED:
        table = sql.qualified(target, SCHEMA, name)
        if name in present:
            con.execute(
                f"create or replace table {table} as select * from {sql.qualified(source, SCHEMA, name)}"
            )
        elif name in MODEL_STAND_INS:
            con.execute(f"create table {table} ({MODEL_STAND_INS[name]})")


def publish_parquet(con: duckdb.DuckDBPyConnection, target: str, folder: Path) -> None:
    """`<folder>/monitoring/<table>.parquet` for every published monitoring table."""
    out = folder / SCHEMA
    out.mkdir(exist_ok=True)
    for name in PUBLISHED:
        con.execute(
            f"copy {sql.qualified(target, SCHEMA, name)} to {sql.literal(out / f'{name}.parquet')} "
            "(format parquet, compression zstd)"
        )


# ---- Airflow ----------------------------------------------------------------------------------------


def airflow_run(home: Home, context: Mapping[str, Any]) -> PipelineRun:
    """The `PipelineRun` of the Airflow DAG run of a task's (or DAG callback's) `context`."""
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    started = getattr(dag_run, "start_date", None) or datetime.now(UTC)
    try:
        log_location = str(ti.log_url) if ti is not None else "(Airflow task logs)"
    except Exception:  # no [api] base_url configured: still record the run
        log_location = "(Airflow task logs)"
    return PipelineRun(
        home,
        run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "?")),
        trigger="airflow",
        log_location=log_location,
        started_at=started,
    )


def airflow_task_failed(home_dir: str, context: Mapping[str, Any]) -> None:
    """Task `on_failure_callback` (after its retries): the failed step, its error and log (first wins)."""
    from chat_analytics.orchestration.alerts import Alert

    try:
        alert = Alert.from_context(context)
        run = airflow_run(Home(Path(home_dir)), context)
        run._write(
            {"failed_step": alert.task_id, "error": alert.error, "log_location": alert.log_url},
            keep_failure=True,
        )
    except Exception:  # history must never mask the task's own failure
        log.exception("could not record the failed task in the run history")


def airflow_run_finished(home_dir: str, success: bool, context: Mapping[str, Any]) -> None:
    """DAG `on_success_callback` / `on_failure_callback`: end the run's row and send the message.

    On failure the build's test results are recorded too when this run's build ran (publish, which
    records them on the way, did not run).
    """
    from chat_analytics.orchestration.alerts import Alert
    from chat_analytics.pipeline.build_record import BuildRecord

    try:
        home = Home(Path(home_dir))
        run = airflow_run(home, context)
        if success:
            run.finish(SUCCESS)
            return
        try:
            if BuildRecord.load(home).build_id == run.run_id:
                run.record_build()
        except UserError:
            pass
        alert = Alert.from_context(context)
        run.log_location = alert.log_url
        run.finish(FAILED, failed_step=alert.task_id, error=f"task {alert.task_id} failed: see its log")
    except Exception:  # a DAG callback must never raise
        log.exception("could not finish the run history")
