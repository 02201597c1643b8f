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

**Engine.** dbt builds on DuckDB (the default) or on a local Spark session, as chosen by
`CHAT_ANALYTICS_ENGINE` (`duckdb` or `spark`) in the environment of the Airflow processes when this file
is parsed. The tasks are the same for both. On Spark the build task also exports the raw layer as
Parquet (`bronze/`) before its `dbt build --target spark` and copies Spark's models into the warehouse
after it, so `publish` and `report` are unchanged. Spark starts a JVM (10-40 s) and its Derby metastore
admits one process at a time, so only the build task runs dbt: one JVM per run, while the model and test
tasks only read what the build reported. A build after one on the other engine rebuilds in full.

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
import os
from datetime import timedelta
from typing import Any

# Cosmos reads its settings when imported: no telemetry, whoever starts Airflow.
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")

from airflow.sdk import DAG, CronTriggerTimetable

from chat_analytics.engine import ENGINE_ENV, resolve_engine
from chat_analytics.orchestration import tasks
from chat_analytics.orchestration.airflow_setup import PIPELINE_TIMEZONE, pipeline_home
from chat_analytics.orchestration.alerts import task_failure_alert
from chat_analytics.orchestration.dbt_group import dbt_task_group, watch_after_the_build
from chat_analytics.pipeline.monitoring import airflow_run_finished, airflow_task_failed

DAG_ID = tasks.DAG_ID
TIMEZONE = PIPELINE_TIMEZONE  # the dbt var `local_timezone`: Australia/Melbourne
SCHEDULE = "0 6 * * *"  # 06:00 local time, every day

home = str(pipeline_home())
# The engine of dbt, chosen by the environment of the Airflow processes when this file is parsed.
engine = resolve_engine()

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,  # the delay doubles with every try (a multiplier in Airflow 3.3)
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(hours=1),
    # a task that fails for good: the alert, and its step, error and log in monitoring.run_history
    "on_failure_callback": [task_failure_alert, functools.partial(airflow_task_failed, home)],
}

with DAG(
    dag_id=DAG_ID,
    description="Daily 06:00 Melbourne: ingest, build and test every dbt model, publish, report"
    + ("" if engine == "duckdb" else f" (dbt on {engine})"),
    doc_md=f"{__doc__}\n**Engine of this deployment: `{engine}`** (`{ENGINE_ENV}`).\n",
    # No start_date: the first scheduled run is the next 06:00 after the DAG is unpaused (no surprise run
    # for a past morning); afterwards catchup=False runs only the latest missed morning.
    schedule=CronTriggerTimetable(SCHEDULE, timezone=TIMEZONE, run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=DEFAULT_ARGS,
    tags=["chat-analytics", "dbt", engine, "daily"],
    # the run's row in monitoring.run_history ends, and the success or failure message goes out
    on_success_callback=functools.partial(airflow_run_finished, home, True),
    on_failure_callback=functools.partial(airflow_run_finished, home, False),
) as dag:
    ingest = tasks.ingest(home)
    dbt = dbt_task_group(home, engine)
    publish = tasks.publish(home, engine)
    report = tasks.report(home)

    ingest >> dbt >> publish >> report
    watch_after_the_build(dag, ingest)
