"""`chat-analytics build`: run the dbt project (models and data tests) on a home's warehouse.

dbt runs in-process through `dbtRunner`; the project and its profile live in `DBT_PROJECT_DIR` and the
profile reads the warehouse path from `$CHAT_ANALYTICS_WAREHOUSE`, which `build` sets from the home.
Production builds skip dbt's unit tests (they test the SQL logic on fixed fixtures, not the data: dbt's
own guidance runs them in development and CI); `build(..., unit_tests=True)` (`chat-analytics build
--unit-tests`) runs them too, and `make test` does so (tests/test_dbt_pipeline.py). Data tests run in
every build.
The exit code follows dbt's severities: warnings (including warn-level data-quality findings) keep it
0; a model error, an error-severity data test failure or (with unit tests) a failing unit test makes
it 1.
Source freshness (on `_ingested_at`) is checked after the build and reported, never fatal: stale
raw data still gives correct marts for what was ingested.
Every build records its outcome (each node's status, freshness, dbt version) in
`<home>/warehouse/last_build.json` (chat_analytics.pipeline.build_record); `publish` reads it. The record says
`running` before dbt starts and `finished` only at the end, so a build killed half-way is never taken
for the previous green one.
dbt's JSON artefacts cost more than its partial parse on this small project: each invocation serialises
the whole manifest twice (about 0.25 s of CPU each). A build therefore lets dbt write them, manifest.json
included, only when `dbt/target/manifest.json` is missing or older than a dbt project file (the file the
Airflow DAG renders from, see airflow_setup); otherwise it writes just `run_results.json` and
`sources.json` itself, from the in-process results.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chat_analytics import duck, resources
from chat_analytics.engine import DEFAULT_ENGINE, resolve_engine
from chat_analytics.paths import DBT_PROJECT_DIR, Home, UserError
from chat_analytics.pipeline import spark
from chat_analytics.pipeline.build_record import start_build
from chat_analytics.pipeline.faults import fault_point
from chat_analytics.pipeline.warehouse import raw_state

log = logging.getLogger(__name__)

WAREHOUSE_ENV = "CHAT_ANALYTICS_WAREHOUSE"
REQUIRED_RAW_TABLES = ("chats", "categories")
TARGET = "target"  # dbt_project.yml: target-path


class BuildExit(int):
    """`build`'s exit code (0 or 1) that also names what failed.

    An int, so `chat-analytics build` exits with it and callers compare it with 0; its repr lists each
    failing dbt node with dbt's message, so a test's `assert build(home) == 0` shows the unit test or
    model that failed rather than a missing table further down.
    """

    failures: tuple[str, ...]

    def __new__(cls, code: int, failures: Iterable[str] = ()) -> BuildExit:
        exit_code = super().__new__(cls, code)
        exit_code.failures = tuple(failures)
        return exit_code

    def __repr__(self) -> str:
        if not self.failures:
            return str(int(self))
        return f"{int(self)} (dbt build failed:\n" + "\n".join(self.failures) + "\n)"

    def __str__(self) -> str:
        return str(int(self))


def _require_raw_tables(home: Home) -> str | None:
    """A clear message instead of a dbt stack of 'table not found' errors; returns the raw state
    (warehouse.raw_state) the build starts from, read on the same connection."""
    with duck.connect(home.warehouse, home=home) as con:
        state = raw_state(con)
        present = {
            name
            for (name,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        }
    missing = [f"raw.{name}" for name in REQUIRED_RAW_TABLES if name not in present]
    if missing:
        raise UserError(
            f"warehouse {home.warehouse} has no {', '.join(missing)}: run `chat-analytics ingest` first"
        )
    return state


def preload_dbt(engine: str = DEFAULT_ENGINE) -> threading.Thread:
    """Start importing dbt in a background thread and return it.

    Importing dbt costs about 2 s of CPU, nearly all pure Python. `chat-analytics run` starts this
    before ingest, whose time goes mostly to DuckDB (which releases the GIL), so on a machine with two
    or more cores the import overlaps the ingest. Harmless when it fails: `build` imports dbt again and
    reports the real error. Not a daemon thread, so the interpreter never exits half-way through it.
    """
    thread = threading.Thread(target=_import_dbt, args=(engine,), name="preload-dbt")
    thread.start()
    return thread


def _import_dbt(engine: str = DEFAULT_ENGINE) -> None:
    try:
        # dbtRunner, and the adapter plugin dbt registers at the start of a build
        for module in ("dbt.cli.main", f"dbt.adapters.{engine}"):
            importlib.import_module(module)
    except Exception as exc:  # the build's own import raises it again, where it is reported
        log.debug("preloading dbt failed: %s", exc)


def _dbt_args(command: Sequence[str], project: Path, engine: str = DEFAULT_ENGINE) -> list[str]:
    args = [*command, "--project-dir", str(project), "--profiles-dir", str(project)]
    if engine == "spark":
        # Its own target folder: the manifest the Airflow DAG renders from (and dbt's partial-parse
        # state) stay DuckDB's.
        args += ["--target", spark.SPARK_TARGET, "--target-path", spark_target_path(project)]
    return args


def spark_target_path(project: Path) -> str:
    return str(project / TARGET / spark.SPARK_TARGET)


def _invoke(args: list[str]) -> Any:
    from dbt.cli.main import dbtRunner

    log.debug("dbt %s", " ".join(args))
    try:
        return dbtRunner().invoke(args)
    finally:
        release_warehouse()


def release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an invocation.

    Otherwise the warehouse file stays locked (and opening it read-only from this process fails with
    "different configuration") until the process exits. dbt-duckdb has no public API for this.
    """
    if "dbt.adapters.duckdb.connections" not in sys.modules:
        return  # dbt never ran in this process: nothing to release (and no dbt import to pay for)
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if env is not None:
            try:
                env.close()
            except Exception as exc:  # closing must never hide the build's own outcome
                log.debug("closing the dbt-duckdb environment failed: %s", exc)


def build(
    home: Home,
    *,
    full_refresh: bool = False,
    unit_tests: bool = False,
    project_dir: Path = DBT_PROJECT_DIR,
    engine: str | None = None,
) -> BuildExit:
    """Run `dbt build` on the home's warehouse; 0 when nothing failed at error severity, else 1 (with
    the failing nodes and dbt's messages, see BuildExit).

    Models and data tests always run; dbt unit tests only with `unit_tests` (development and CI).
    `project_dir` is the dbt project (and profile) to run: the repository's, unless a test runs a copy.
    `engine`: `duckdb` or `spark` (default: $CHAT_ANALYTICS_ENGINE, else duckdb; pipeline.spark).
    """
    engine = resolve_engine(engine)
    if engine == "spark":
        log.info("Spark engine: %s", spark.require_java())
    warehouse = home.warehouse
    if not warehouse.is_file():
        raise UserError(f"no warehouse at {warehouse}: run `chat-analytics ingest` first")
    state = _require_raw_tables(home)
    os.environ[WAREHOUSE_ENV] = str(warehouse)
    os.environ.update(resources.dbt_env(home))
    resources.spill_dir(home).mkdir(parents=True, exist_ok=True)

    # What runs is decided here, by flags: never by a DBT_[EXCLUDE_]RESOURCE_TYPES variable left in this
    # process (Cosmos sets the DAG's in os.environ when it runs dbt in-process).
    for name in ("DBT_RESOURCE_TYPES", "DBT_EXCLUDE_RESOURCE_TYPES"):
        os.environ.pop(name, None)
    if not full_refresh and spark.engine_switched(home, engine):
        log.info(
            "the last build of this home ran on %s: rebuilding in full on %s", spark.last_engine(home), engine
        )
        full_refresh = True
    if engine == "spark":
        os.environ.update(spark.dbt_env(home))
        spark.sync_bronze(home)
        if unit_tests:
            log.warning("dbt unit tests run on DuckDB only (`make test`); skipped on Spark")
            unit_tests = False
    command = ["build", *(["--full-refresh"] if full_refresh else [])]
    if not unit_tests:
        command += ["--exclude-resource-type", "unit_test"]
    # A Spark build writes its artefacts to its own target folder, always (they are what import reads).
    write_json = engine == "spark" or _manifest_is_stale(project_dir)
    command.append("--write-json" if write_json else "--no-write-json")
    log.info(
        "dbt build%s%s on %s",
        " --full-refresh" if full_refresh else "",
        " --unit-tests" if unit_tests else "",
        f"Spark ({spark.spark_dir(home)}), models copied into {warehouse}"
        if engine == "spark"
        else warehouse,
    )
    # Before dbt touches any model: until this build finishes, publish refuses (a killed build
    # leaves `running` behind, never the previous build's green outcome).
    record = start_build(
        home,
        build_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}",
        raw_state=state,
    )
    fault_point("build:after-start")
    started = time.monotonic()
    outcome = _invoke(_dbt_args(command, project_dir, engine))
    elapsed = time.monotonic() - started

    record.dbt_version = _dbt_version()
    if outcome.exception is not None or outcome.result is None:
        log.error("dbt build could not run: %s", outcome.exception or "no result")
        record.error = str(outcome.exception or "dbt returned no result")
        record.finish()
        record.save(home)
        return BuildExit(1, [f"dbt build could not run: {record.error}"])

    if not write_json:
        _write_artifact(outcome.result, project_dir / TARGET / "run_results.json")
    record.set_nodes(outcome.result.results)
    summary = record.summary()
    if engine == "spark" and not summary.failed and outcome.success:
        # From here the warehouse's models are Spark's: a DuckDB build after this one rebuilds in full.
        spark.record_engine(home, engine)
        try:
            spark.import_models(home, Path(spark_target_path(project_dir)))
        except Exception as exc:  # the marts did not reach the warehouse: this build failed
            log.error("copying Spark's models into %s failed: %s", warehouse, exc)
            record.error = f"copying Spark's models into the warehouse failed: {duck.first_line(exc)}"
            record.finish()
            record.save(home)
            return BuildExit(1, [record.error])
    for status, kind, name, message in summary.problems:
        level = logging.WARNING if status == "warn" else logging.ERROR
        first_line = message.splitlines()[0] if message else ""
        log.log(level, "%s %s %s: %s", status.upper(), kind, name, first_line)
    failed = summary.failed or not outcome.success
    log.log(
        logging.ERROR if failed else logging.INFO,
        "dbt build %s in %.1f s: %s",
        "FAILED" if failed else "passed",
        elapsed,
        summary.line(),
    )
    record.invocation_id = _invocation_id()
    if not outcome.success and not summary.failed:
        record.error = "dbt reported failure"
    record.set_freshness(_report_freshness(project_dir, write_json=write_json, engine=engine))
    record.finish()
    if not summary.failed and outcome.success:
        spark.record_engine(home, engine)
    log.debug("build outcome recorded in %s", record.save(home))
    if not failed:
        return BuildExit(0)
    return BuildExit(1, summary.failures or [record.error or "dbt reported failure"])


def _dbt_version() -> str:
    from dbt.version import __version__

    return str(__version__)


def _invocation_id() -> str:
    from dbt_common.invocation import get_invocation_id

    return get_invocation_id()


def _manifest_is_stale(project: Path) -> bool:
    """True when dbt/target/manifest.json is missing or older than a file of the dbt project: the build
    then lets dbt write its JSON artefacts (manifest included) as a plain `dbt build` would."""
    from chat_analytics.orchestration.airflow_setup import stale_dbt_inputs

    stale = stale_dbt_inputs(project / TARGET / "manifest.json", project)
    if stale:
        log.debug("dbt manifest missing or older than %s: dbt writes its JSON artefacts", stale[0])
    return bool(stale)


def _write_artifact(result: Any, path: Path) -> None:
    """Write a dbt result's own artefact (run_results.json, sources.json) to dbt's target folder, as
    dbt would with --write-json; never fatal (the build record is what publish reads)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        result.write(str(path))
    except Exception as exc:  # an artefact for people debugging, never the build's outcome
        log.warning("could not write %s: %s", path, exc)


def _report_freshness(project: Path, *, write_json: bool = True, engine: str = DEFAULT_ENGINE) -> list[Any]:
    """Log source freshness of the raw tables; informative only (never changes the exit code)."""
    json_flag = "--write-json" if write_json else "--no-write-json"
    outcome = _invoke(_dbt_args(["source", "freshness", json_flag], project, engine))
    results = getattr(outcome.result, "results", None) or []
    if not write_json and outcome.result is not None and hasattr(outcome.result, "write"):
        _write_artifact(outcome.result, project / TARGET / "sources.json")
    if outcome.exception is not None or not results:
        log.warning("source freshness could not be checked: %s", outcome.exception or "no result")
        return []
    for result in results:
        if not str(getattr(result.node, "unique_id", "")).startswith("source."):
            continue
        status = str(result.status).lower()
        name = f"{result.node.source_name}.{result.node.name}"
        age = getattr(result, "age", None)
        loaded = getattr(result, "max_loaded_at", None)
        if age is None or loaded is None or loaded.year < 1971:  # dbt reports an empty table as epoch
            when = "no rows ingested yet"
        else:
            when = f"last ingested {age / 3600:.1f} h ago"
        if status == "pass":
            log.info("freshness %s: %s", name, when)
        else:
            log.warning("freshness %s: %s (%s)", name, status.upper(), when)
    return list(results)
