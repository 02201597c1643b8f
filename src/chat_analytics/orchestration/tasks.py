"""The Python tasks of the `chat_analytics` DAG: thin wrappers over the pipeline's steps.

Each task holds the home's pipeline lock (the one `chat-analytics run` takes, waiting for a command line
run to finish) and runs in the warehouse pool of one slot. What a retry cannot fix fails at once
(`AirflowFailException`); what may clear up (a warehouse in use, a missing folder) is left to retries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow.sdk import TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from chat_analytics.engine import DEFAULT_ENGINE
from chat_analytics.orchestration.airflow_setup import MANIFEST, POOL
from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.build_record import ensure_running, finish_cosmos_build
from chat_analytics.pipeline.lock import pipeline_lock
from chat_analytics.pipeline.monitoring import airflow_run
from chat_analytics.pipeline.steps import StepFailed, ingest_step, publish_step, report_step

DAG_ID = "chat_analytics"
#: How long a Python task waits for the pipeline lock (held by a `chat-analytics` command on the same
#: home) before it fails and its retries take over.
LOCK_WAIT_SECONDS = 600.0


def _task_lock(home: Home, task_id: str) -> Any:
    run_id = get_current_context()["run_id"]
    return pipeline_lock(home, wait=LOCK_WAIT_SECONDS, command=f"airflow {DAG_ID}.{task_id} {run_id}")


@task(task_id="ingest", pool=POOL, doc_md="Load new landing files into `raw` (`chat-analytics ingest`).")
def ingest(home_dir: str) -> dict[str, int]:
    """Load every new landing file; fail (no retry) when any file is bad, after loading the good ones."""
    home = Home(Path(home_dir))
    try:
        with _task_lock(home, "ingest"):
            context = get_current_context()
            return ingest_step(home, airflow_run(home, context), build_id=context["run_id"])
    except StepFailed as exc:
        raise AirflowFailException(str(exc)) from None
    except UserError as exc:  # missing folders, warehouse in use: may clear up, so retries apply
        raise RuntimeError(str(exc)) from None


@task(
    task_id="publish",
    pool=POOL,
    # Runs unless a task above it failed, even when some were skipped (were the build's task retried,
    # Cosmos would skip it and the tasks watching it): it then refuses, the build record lacking results
    # or holding failures. A skip never ends a run green without publishing.
    trigger_rule=TriggerRule.NONE_FAILED,
    doc_md="Copy the `analytics` marts to `serving/analytics.duckdb` and `serving/parquet/` (atomic rename), "
    "only when no dbt test failed at error severity (`chat-analytics publish`).",
)
def publish(home_dir: str, engine: str = DEFAULT_ENGINE) -> dict[str, Any]:
    """Finish this run's build record, then publish its marts; refuse (no retry) unless it is green and
    its marts were built by `engine` (the DAG's)."""
    from chat_analytics.serving.publish import PublishRefused

    home, run_id = Home(Path(home_dir)), get_current_context()["run_id"]
    with _task_lock(home, "publish"):
        try:
            finish_cosmos_build(home, run_id, expected=dbt_nodes())
            run = airflow_run(home, get_current_context())
            run.record_build()  # the build's test results into monitoring.test_history
            return publish_step(home, run, run_id=run_id, engine=engine)
        except PublishRefused as exc:
            raise AirflowFailException(str(exc)) from None
        except UserError as exc:  # the record is another build's: retrying cannot help
            if "not this run's" in str(exc):
                raise AirflowFailException(str(exc)) from None
            raise


@task(task_id="report", pool=POOL, doc_md="Write `serving/report.html` from the published file.")
def report(home_dir: str) -> str:
    """The offline HTML report, from the published file (in the pool: it reads what publish wrote)."""
    home = Home(Path(home_dir))
    with _task_lock(home, "report"):
        return str(report_step(home, airflow_run(home, get_current_context())))


def dbt_nodes() -> set[str]:
    """Unique ids of every dbt model and data test the DAG's dbt tasks run (from the manifest).

    Unit tests are left out: the DAG's dbt commands exclude them, as `chat-analytics build` does.
    """
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    kinds = {"model", "test"}
    return {uid for uid, node in manifest.get("nodes", {}).items() if node.get("resource_type") in kinds}


def dbt_task_starts(home_dir: str, context: Any) -> None:
    """Every dbt task's `pre_execute`: the build record says running (this run) before dbt touches a model."""
    ensure_running(Home(Path(home_dir)), str(context["run_id"]))
