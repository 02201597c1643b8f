"""
### chat_analytics_sample_feed: a synthetic daily extract, for demos

Plays the source system: every day at **05:30 Melbourne time**, half an hour before the
`chat_analytics` run, it drops the **next day's** chats extract into `landing/chats/`: the day after the
newest `chats_YYYY-MM-DD.csv` there, with about as many chats as an average day of the existing sample
data and the same category tree (`chat_analytics.orchestration.sample_feed`).

Try a daily cycle: trigger this DAG, then trigger `chat_analytics`, and watch the new file get loaded
(`ingest` returns `files_loaded: 1`) and the marts rebuilt. Leave it paused on real data: it writes
synthetic extracts into the landing folder of `$CHAT_ANALYTICS_HOME`.

The file is written beside landing and moved in with one rename, so it never races `ingest`; the
task does not touch the warehouse, so it needs no slot of the warehouse pool.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, task

from chat_analytics.orchestration.airflow_setup import PIPELINE_TIMEZONE, pipeline_home
from chat_analytics.orchestration.alerts import task_failure_alert

TIMEZONE = PIPELINE_TIMEZONE  # the dbt var `local_timezone`

with DAG(
    dag_id="chat_analytics_sample_feed",
    description="Demo source system: the next day's synthetic chats extract into landing, 05:30 Melbourne",
    doc_md=__doc__,
    schedule=CronTriggerTimetable("30 5 * * *", timezone=TIMEZONE, run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-platform",
        "retries": 1,
        "retry_delay": timedelta(minutes=1),
        "execution_timeout": timedelta(minutes=10),
        "on_failure_callback": task_failure_alert,
    },
    tags=["chat-analytics", "sample-data", "demo"],
) as dag:

    @task(task_id="drop_next_extract", doc_md="Write the next day's synthetic chats extract into landing.")
    def drop_next_extract(home_dir: str) -> dict[str, str | int | None]:
        from chat_analytics.orchestration.sample_feed import drop_next_extract as drop
        from chat_analytics.paths import Home

        result = drop(Home(Path(home_dir)))
        return {
            "day": result.day.isoformat(),
            "chats_file": str(result.chats_file),
            "categories_file": str(result.categories_file) if result.categories_file else None,
            "chats": result.chats,
        }

    drop_next_extract(str(pipeline_home()))
