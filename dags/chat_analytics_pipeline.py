"""
### chat_analytics: landing extracts → raw → every dbt model and test

The support-chat warehouse's daily run, every morning at **06:00 Melbourne time** (daylight saving
handled), unattended. One run at a time; no catch-up of missed days: each run loads whatever is new.

1. `ingest`: loads every new file of `landing/chats` and `landing/categories` into the warehouse's
   `raw` schema (`chat-analytics ingest`). **A bad file stops the run here**: it is named in the log
   and the alert, the good files are loaded, nothing downstream runs.
2. `dbt.dbt_producer_watcher`: **one `dbt build`** of every model and data test (source freshness
   first; unit tests left out, as in `chat-analytics build`), like `chat-analytics build`.
3. One task per model and one per model's tests, in dbt's order: `dbt.raw_*` (source freshness and
   the raw tables' tests), `dbt.<model>.run` then `dbt.<model>.test` (a test on several models counts
   in each of them). They start once the build has ended and show what it reported for that node
   (astronomer-cosmos `ExecutionMode.WATCHER`): a failed model or test is the red task.
4. `publish` (the marts to `serving/`, only after a green build) and `report` (`serving/report.html`).

**Severities.** An error-severity test failure fails the build task and that model's tests task, and
stops everything that depends on that model; a warn-severity finding is logged (`WARNING ...` lines)
and the run goes on.

**Failures.** The dbt tasks are not retried (a retried build task would not run dbt again, and a
retried model task would run its model alone): a failed build fails the run; trigger it again. The
other tasks retry twice, with exponential backoff (1-2, then 2-4 minutes); every task times out after
1 hour; a bad landing file fails at once. A task that fails for good logs an `ALERT ...` line and,
when `CHAT_ANALYTICS_ALERT_WEBHOOK` is set, posts a Slack-compatible message (DAG, task, run, log URL,
error).

**One writer.** DuckDB allows one writer per file and an open reader blocks it, so the tasks that write
the warehouse (`ingest`, the build, `publish`, `report`) run in the pool `chat_analytics_warehouse` of
**one slot**: they take turns. The model and test tasks only read the build's results (Airflow XComs).
`ingest`, `publish` and `report` also hold the home's pipeline lock (the one `chat-analytics run` takes)
while they run, waiting up to 10 minutes for a command line run to finish; the build cannot take it.

**Build record.** `ingest` marks a new build started in `warehouse/last_build.json` before dbt runs,
the build task re-marks it running and merges its results, and `publish` marks it finished (green only
when every dbt model and data test reported a result in this run and none failed) before publishing: a
run killed during the build leaves `running` behind, and nothing publishes it.

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

from airflow.sdk import DAG, CronTriggerTimetable, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_DONE_TASK_ID,
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    SourceRenderingBehavior,
    TestBehavior,
)

from chat_analytics import resources
from chat_analytics.airflow_setup import MANIFEST, POOL, WAREHOUSE_ENV, pipeline_home, stale_dbt_inputs
from chat_analytics.alerts import cosmos_warning_alert, dbt_warning_alert, task_failure_alert, warn_findings
from chat_analytics.build_record import (
    ensure_running,
    finish_cosmos_build,
    record_cosmos_freshness,
    record_cosmos_results,
    start_build,
)
from chat_analytics.monitoring import airflow_run, airflow_run_finished, airflow_task_failed
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
#: The task ids of the one `dbt build` (Cosmos' watcher producer) and of its gate inside the `dbt` group.
DBT_BUILD_TASK = f"dbt.{PRODUCER_WATCHER_TASK_ID}"
DBT_BUILD_DONE_TASK = f"dbt.{PRODUCER_WATCHER_DONE_TASK_ID}"
#: Production builds skip dbt unit tests (as `chat-analytics build` does): every dbt command of the DAG.
DBT_SKIP_UNIT_TESTS = {"DBT_EXCLUDE_RESOURCE_TYPES": "unit_test"}

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
            run = airflow_run(home, get_current_context())  # issue 14: run and test history
            run.record_build()
            with run.timed("publish"):
                result = publish(home, run_id=run_id)
            run.record_publish(result)
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
    run = airflow_run(home, get_current_context())  # issue 14: run history
    with _task_lock(home, "report", run.run_id), run.timed("report"):
        path = report(home)
    run.record_report()
    return str(path)


def _task_lock(home: Home, task_id: str, run_id: str) -> Any:
    """The home's pipeline lock for one Python task (waits for a command line run to finish)."""
    return pipeline_lock(home, wait=LOCK_WAIT_SECONDS, command=f"airflow {DAG_ID}.{task_id} {run_id}")


def _dbt_nodes() -> set[str]:
    """Unique ids of every dbt model and data test the DAG's dbt tasks run (from the manifest).

    Unit tests are left out: the DAG's dbt commands exclude them (`DBT_SKIP_UNIT_TESTS`), as
    `chat-analytics build` does.
    """
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    kinds = {"model", "test"}
    return {uid for uid, node in manifest.get("nodes", {}).items() if node.get("resource_type") in kinds}


def _dbt_task_starts(home_dir: str, context: Any) -> None:
    """Every dbt task's `pre_execute`: the build record says running (this run) before dbt touches a model."""
    ensure_running(Home(Path(home_dir)), str(context["run_id"]))


#: The steps after the dbt models and tests, in order; each takes the home folder and creates its task
#: inside the DAG. The first runs once no dbt task failed and must refuse unless the build record is green
#: (as `publish` does); a step touching the warehouse must use `pool=POOL`.
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
            run = airflow_run(home, get_current_context())  # issue 14: run history, start message
            run.start()
            with run.timed("ingest"):
                report = ingest_landing(home)
            run.record_ingest(report)
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


def _freshness_checked(
    home_dir: str, context: Any, dag: Any, group: Any, nodes: Any, sources: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """The build task's `freshness_callback`: record and pass on the freshness; never leave models out.

    Cosmos checks source freshness in the build task before its `dbt build` and hands the result only to
    this callback (no operator `callback`): it goes into the build record and warnings to the warning
    callback here. Cosmos' default would leave every model downstream of a stale (even warn) source out
    of the build; like `chat-analytics build`, the DAG builds them, and the source's task shows the
    freshness (warn: the run goes on; error: that task fails and nothing below it publishes).
    """
    record_cosmos_freshness(home_dir, sources)
    names, messages = warn_findings((sources or {}).get("results") or [], freshness=True)
    if names:
        dbt_warning_alert({**context, "test_names": names, "test_results": messages})
    return []


def _watch_after_the_build(dag: DAG, ingest_task: Any) -> None:
    """Every model's and test's task starts once the one `dbt build` has ended, failed included.

    Cosmos starts the top tasks of a `DbtTaskGroup` beside the producer; they would wait for its
    results (in a `dag.test()` run, forever: it runs tasks one at a time). After it they only read its
    results. They also need `ingest` to have succeeded: when it failed they are `upstream_failed`.
    """
    build = dag.get_task(DBT_BUILD_TASK)
    for sensor in list(dag.tasks):
        if sensor.task_id in (DBT_BUILD_TASK, DBT_BUILD_DONE_TASK) or not sensor.task_id.startswith("dbt."):
            continue
        if sensor.upstream_task_ids <= {ingest_task.task_id, DBT_BUILD_TASK}:
            build >> sensor
            ingest_task >> sensor
            sensor.trigger_rule = TriggerRule.ALL_DONE_MIN_ONE_SUCCESS


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
        default_args={  # issue 14: a task that fails for good names itself in the run history
            **DEFAULT_ARGS,
            "on_failure_callback": [task_failure_alert, functools.partial(airflow_task_failed, str(home))],
        },
        tags=TAGS,
        # issue 14: the run's row in monitoring.run_history ends, and the success or failure message
        on_success_callback=functools.partial(airflow_run_finished, str(home), True),
        on_failure_callback=functools.partial(airflow_run_finished, str(home), False),
    ) as dag:
        loaded = ingest(str(home))
        dbt = DbtTaskGroup(
            group_id="dbt",
            tooltip="dbt (astronomer-cosmos): one dbt build, then each model's and its tests' outcome",
            project_config=ProjectConfig(
                dbt_project_path=DBT_PROJECT_DIR,
                manifest_path=MANIFEST,
                project_name="chat_analytics",
                # the profile's warehouse path, DuckDB memory cap and spill folder
                env_vars={
                    WAREHOUSE_ENV: str(Home(home).warehouse),
                    **resources.dbt_env(Home(home)),
                    **DBT_SKIP_UNIT_TESTS,
                },
                install_dbt_deps=False,  # no dbt packages: never needs the network
            ),
            profile_config=ProfileConfig(
                profile_name="chat_analytics",
                target_name="local",
                profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
            ),
            # One `dbt build` (the producer task, in the warehouse pool) runs every model and data test;
            # one task per model and one per model's tests show its outcome (they only read the
            # producer's results, outside the pool).
            execution_config=ExecutionConfig(
                execution_mode=ExecutionMode.WATCHER,
                invocation_mode=InvocationMode.DBT_RUNNER,
                setup_operator_args={
                    "pool": POOL,
                    "freshness_callback": functools.partial(_freshness_checked, str(home)),
                    # A retry of the producer never re-runs dbt (Cosmos skips it): its failure must stay.
                    "retries": 0,
                },
            ),
            render_config=RenderConfig(
                load_method=LoadMode.DBT_MANIFEST,
                test_behavior=TestBehavior.AFTER_EACH,
                source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
                # a test on several models counts in the tests task of each of them
                should_detach_multiple_parents_tests=False,
                emit_datasets=False,
            ),
            operator_args={
                # A task of a model or of its tests retried (or cleared by hand) would run that dbt
                # node alone, outside the build: no automatic retries; a failed run is triggered again.
                "retries": 0,
                # Every dbt invocation merges its results into <home>/warehouse/last_build.json, which
                # `publish` reads to refuse publishing after an error-severity failure, and logs its
                # warn-severity findings (the `on_warning_callback` below is not called by the build).
                "callback": [record_cosmos_results, cosmos_warning_alert],
                "callback_args": {"home": str(home)},
                # ... and marks the build running before it touches a model (a re-run task included)
                "pre_execute": functools.partial(_dbt_task_starts, str(home)),
            },
            on_warning_callback=dbt_warning_alert,
        )
        loaded >> dbt
        _watch_after_the_build(dag, loaded.operator)
        last: Any = dbt
        for make_step in DOWNSTREAM_STEPS:
            step = make_step(str(home))
            if last is dbt:
                # The first step (publish) runs unless a task above it failed, even when some were
                # skipped (were the build's task retried, Cosmos would skip it and the tasks watching
                # it): it then refuses, the build record lacking results or holding failures. A skip
                # never ends a run green without publishing.
                step.operator.trigger_rule = TriggerRule.NONE_FAILED
            last >> step
            last = step
    return dag


dag = build_dag(pipeline_home())
