"""
### chat_analytics: landing extracts → raw → every dbt model and test

The support-chat warehouse's daily run, every morning at **06:00 Melbourne time** (daylight saving
handled), unattended. One run at a time; no catch-up of missed days: each run loads whatever is new.

1. `ingest`: loads every new file of `landing/chats` and `landing/categories` into the warehouse's
   `raw` schema (`chat-analytics ingest`). **A bad file stops the run here**: it is named in the log
   and the alert, the good files are loaded, nothing downstream runs.
2. `dbt.raw_*`: the source checks first: freshness (`dbt source freshness`) and the data-quality
   tests of the raw tables.
3. `dbt.<model>.run` then `dbt.<model>.test`: each dbt model, then its own data and unit tests right
   after it; a test on several models (`dbt.<test>_test`) runs once all of them are built.
4. `publish` (the marts to `serving/`, only after a green build) and `report` (`serving/report.html`).

**Severities.** An error-severity test failure fails its task and stops everything that depends on that
model; a warn-severity finding is logged (`WARNING ...` lines) and the run goes on.

**Failures.** Each task retries twice, with exponential backoff (1-2, then 2-4 minutes), and times
out after 1 hour; a bad landing file fails at once. A task that fails for good logs an `ALERT ...`
line and, when `CHAT_ANALYTICS_ALERT_WEBHOOK` is set, posts a Slack-compatible message (DAG, task,
run, log URL, error).

**One writer.** DuckDB allows one writer per file and an open reader blocks it, so every task here runs
in the pool `chat_analytics_warehouse` of **one slot**: tasks that look parallel in the graph take turns.
`ingest`, `publish` and `report` also hold the home's pipeline lock (the one `chat-analytics run` takes)
while they run, waiting up to 10 minutes for a command line run to finish; the dbt tasks cannot take it.

**Build record.** `ingest` marks a new build started in `warehouse/last_build.json` before any dbt task
runs, every dbt task re-marks it running and merges its results, and `publish` marks it finished (green
only when every dbt model and data test reported a result and none failed) before publishing: a run killed in
the middle of the dbt tasks leaves `running` behind, and nothing publishes it.

Data home: `$CHAT_ANALYTICS_HOME` (default: the project's `data/` folder). The dbt graph is rendered by
astronomer-cosmos from `dbt/target/manifest.json` (`make setup` runs `dbt parse`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

# Cosmos reads its settings when imported: no telemetry, whoever starts Airflow.
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")

from airflow.sdk import DAG, CronTriggerTimetable, task
from airflow.sdk.exceptions import AirflowFailException
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior
from cosmos.operators.local import DbtTestLocalOperator

from chat_analytics import resources
from chat_analytics.airflow_setup import MANIFEST, POOL, WAREHOUSE_ENV, pipeline_home, stale_dbt_inputs
from chat_analytics.alerts import dbt_warning_alert, task_failure_alert
from chat_analytics.build_record import (
    ensure_running,
    finish_cosmos_build,
    record_cosmos_results,
    start_build,
)
from chat_analytics.paths import DBT_PROJECT_DIR, Home
from chat_analytics.pipeline_lock import pipeline_lock

log = logging.getLogger(__name__)

DAG_ID = "chat_analytics"
TIMEZONE = "Australia/Melbourne"
SCHEDULE = "0 6 * * *"  # 06:00 local time, every day
OWNER = "data-platform"
TAGS = ["chat-analytics", "dbt", "duckdb", "daily"]
#: How long a Python task waits for the pipeline lock (held by a `chat-analytics` command on the same
#: home) before it fails and its retries take over.
LOCK_WAIT_SECONDS = 600.0

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,  # the delay doubles with every try (a multiplier in Airflow 3.3)
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=1),
    "on_failure_callback": task_failure_alert,
}


@task(
    task_id="publish",
    pool=POOL,
    doc_md="Copy the `analytics` marts to `serving/analytics.duckdb` and `serving/parquet/` (atomic rename), "
    "only when no dbt test failed at error severity (`chat-analytics publish`).",
)
def publish_marts(home_dir: str) -> dict[str, Any]:
    """Finish this run's build record, then publish its marts; refuse (no retry) unless it is green."""
    from airflow.sdk import get_current_context

    from chat_analytics.paths import UserError
    from chat_analytics.publish import PublishRefused, publish

    home, run_id = Home(Path(home_dir)), get_current_context()["run_id"]
    with _task_lock(home, "publish", run_id):
        try:
            finish_cosmos_build(home, run_id, expected=_dbt_nodes())
            result = publish(home, run_id=run_id)
        except PublishRefused as exc:
            raise AirflowFailException(str(exc)) from None
        except UserError as exc:  # the record is another build's: retrying cannot help
            if "not this run's" in str(exc):
                raise AirflowFailException(str(exc)) from None
            raise
    return {"database": str(result.database), "rows": result.row_counts}


@task(
    task_id="report",
    pool=POOL,
    doc_md="Write `serving/report.html` from the published file (`chat-analytics report`).",
)
def write_report(home_dir: str) -> str:
    """The offline HTML report, from the published file (in the pool: it reads what publish wrote)."""
    from airflow.sdk import get_current_context

    from chat_analytics.report import report

    home = Home(Path(home_dir))
    with _task_lock(home, "report", get_current_context()["run_id"]):
        return str(report(home))


def _task_lock(home: Home, task_id: str, run_id: str) -> Any:
    """The home's pipeline lock for one Python task (waits for a command line run to finish)."""
    return pipeline_lock(home, wait=LOCK_WAIT_SECONDS, command=f"airflow {DAG_ID}.{task_id} {run_id}")


def _dbt_nodes() -> set[str]:
    """Unique ids of every dbt model and data test the DAG's dbt tasks run (from the manifest).

    Unit tests are left out: Cosmos runs them only for models that also have data tests.
    """
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    kinds = {"model", "test"}
    return {uid for uid, node in manifest.get("nodes", {}).items() if node.get("resource_type") in kinds}


def _dbt_task_starts(home_dir: str, context: Any) -> None:
    """Every dbt task's `pre_execute`: the build record says running (this run) before dbt touches a model."""
    ensure_running(Home(Path(home_dir)), str(context["run_id"]))


#: The steps after the dbt models and tests, in order; each takes the home folder and creates its task
#: inside the DAG. The first runs once every dbt task succeeded; a step touching the warehouse must use
#: `pool=POOL`.
DOWNSTREAM_STEPS: list[Callable[[str], Any]] = [publish_marts, write_report]


def _check_manifest() -> None:
    """Fail the parse with a clear message without a manifest; warn when it is older than the dbt files."""
    if not MANIFEST.is_file():
        raise FileNotFoundError(
            f"dbt manifest {MANIFEST} not found: run `make setup` (it runs `dbt parse`), "
            "or `python -m chat_analytics.airflow_setup manifest`"
        )
    stale = stale_dbt_inputs()
    if stale:
        log.warning(
            "dbt manifest %s is older than %s (and %d more): the DAG shows the old dbt graph until "
            "`make setup` re-parses it",
            MANIFEST,
            stale[0],
            len(stale) - 1,
        )


@task(task_id="ingest", pool=POOL, doc_md="Load new landing files into `raw` (`chat-analytics ingest`).")
def ingest(home_dir: str) -> dict[str, int]:
    """Load every new landing file; fail (no retry) when any file is bad, after loading the good ones."""
    from airflow.sdk import get_current_context

    from chat_analytics.ingest import ingest as ingest_landing
    from chat_analytics.paths import UserError
    from chat_analytics.warehouse import read_raw_state

    home, run_id = Home(Path(home_dir)), get_current_context()["run_id"]
    try:
        with _task_lock(home, "ingest", run_id):
            report = ingest_landing(home)
            if report.ok and home.warehouse.is_file():
                # before any dbt task: until `publish` finishes this build, nothing publishes it
                start_build(home, build_id=run_id, raw_state=read_raw_state(home.warehouse))
    except UserError as exc:  # missing folders, warehouse in use: may clear up, so retries apply
        raise RuntimeError(str(exc)) from None
    if not report.ok:
        bad = "; ".join(f"{o.file_name}: {o.reason}" for o in report.failed)
        raise AirflowFailException(
            f"{len(report.failed)} bad landing file(s), nothing downstream runs until they are fixed or "
            f"removed from {home.landing}: {bad}"
        )
    if not home.warehouse.is_file():
        raise AirflowFailException(
            f"no landing files in {home.landing} and no warehouse yet: drop extracts into landing, run "
            "`chat-analytics generate`, or trigger the chat_analytics_sample_feed DAG"
        )
    loaded = [o for o in report.outcomes if o.status == "loaded"]
    return {
        "files_loaded": len(loaded),
        "rows_loaded": sum(o.rows_loaded for o in loaded),
        "rows_rejected": sum(o.rows_rejected for o in loaded),
        "files_skipped": report.count("skipped"),
    }


def _gate_on_detached_tests(dag: DAG) -> None:
    """A test on several models runs once all of them are built; what depends on any of them waits for it.

    Cosmos renders such a test as its own task after its models' test tasks; like `dbt build`, its
    failure must also stop the models downstream of those models.
    """
    for test in list(dag.tasks):
        if not isinstance(test, DbtTestLocalOperator) or len(test.upstream_task_ids) < 2:
            continue
        ancestors = test.get_flat_relative_ids(upstream=True)
        for parent_id in sorted(test.upstream_task_ids):
            for child_id in sorted(dag.get_task(parent_id).downstream_task_ids):
                if child_id != test.task_id and child_id not in ancestors:
                    test >> dag.get_task(child_id)


def build_dag(home: Path) -> DAG:
    """The `chat_analytics` DAG working on the chat-analytics home `home`."""
    _check_manifest()
    with DAG(
        dag_id=DAG_ID,
        description="Daily 06:00 Melbourne: ingest, build and test every dbt model, publish, report",
        doc_md=__doc__,
        # No start_date: the first scheduled run is the next 06:00 after the DAG is unpaused (no surprise
        # run for a past morning); afterwards catchup=False runs only the latest missed morning.
        schedule=CronTriggerTimetable(SCHEDULE, timezone=TIMEZONE, run_immediately=timedelta(0)),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        default_args=DEFAULT_ARGS,
        tags=TAGS,
    ) as dag:
        loaded = ingest(str(home))
        dbt = DbtTaskGroup(
            group_id="dbt",
            tooltip="dbt (astronomer-cosmos): source checks first, then each model and its tests",
            project_config=ProjectConfig(
                dbt_project_path=DBT_PROJECT_DIR,
                manifest_path=MANIFEST,
                project_name="chat_analytics",
                # the profile's warehouse path, DuckDB memory cap and spill folder
                env_vars={WAREHOUSE_ENV: str(Home(home).warehouse), **resources.dbt_env(Home(home))},
                install_dbt_deps=False,  # no dbt packages: never needs the network
            ),
            profile_config=ProfileConfig(
                profile_name="chat_analytics",
                target_name="local",
                profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
            ),
            execution_config=ExecutionConfig(
                execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER
            ),
            render_config=RenderConfig(
                load_method=LoadMode.DBT_MANIFEST,
                test_behavior=TestBehavior.AFTER_EACH,
                source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
                # a test on two models runs once both are built, not with the first one
                should_detach_multiple_parents_tests=True,
                emit_datasets=False,
            ),
            operator_args={
                "pool": POOL,
                # Every dbt task merges its results into <home>/warehouse/last_build.json, which
                # `publish` reads to refuse publishing after an error-severity failure.
                "callback": record_cosmos_results,
                "callback_args": {"home": str(home)},
                # ... and marks the build running before it touches a model (a re-run task included)
                "pre_execute": functools.partial(_dbt_task_starts, str(home)),
            },
            on_warning_callback=dbt_warning_alert,
        )
        _gate_on_detached_tests(dag)
        loaded >> dbt
        last: Any = dbt
        for make_step in DOWNSTREAM_STEPS:
            step = make_step(str(home))
            last >> step
            last = step
    return dag


dag = build_dag(pipeline_home())
