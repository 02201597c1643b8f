"""The pipeline's steps, shared by `chat-analytics run` and the Airflow DAG's tasks.

Each step takes the home and the run's history row (`PipelineRun`: `monitoring.run_history` and the run
messages) and does one thing; what the CLI and the DAG do differently (exit codes, Airflow exceptions, the
pipeline lock, how a failure ends the run) stays with them. A step that cannot give the next one what it
needs raises `StepFailed` with the message a user acts on: retrying does not help until they do.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chat_analytics.paths import Home
from chat_analytics.pipeline.monitoring import PipelineRun

log = logging.getLogger(__name__)


class StepFailed(Exception):
    """A step ended without what the next step needs; the message says what to do."""


def ingest_step(home: Home, run: PipelineRun, *, build_id: str | None = None) -> dict[str, int]:
    """Start the run, load every new landing file; `StepFailed` when any file is bad (the good ones load).

    With `build_id` (the DAG, whose dbt build runs elsewhere), a new build is marked started in the build
    record before any model is touched: until `publish` finishes it, nothing publishes it.
    """
    from chat_analytics.pipeline.build_record import start_build
    from chat_analytics.pipeline.ingest import ingest
    from chat_analytics.pipeline.warehouse import read_raw_state

    run.start()
    with run.stage("ingest"):
        report = ingest(home)
    run.record_ingest(report)
    if report.ok and build_id is not None and home.warehouse.is_file():
        start_build(home, build_id=build_id, raw_state=read_raw_state(home.warehouse))
    if not report.ok:
        bad = "; ".join(f"{o.file_name}: {o.reason}" for o in report.failed)
        raise StepFailed(
            f"{len(report.failed)} bad landing file(s), nothing downstream runs until they are fixed or "
            f"removed from {home.landing}: {bad}"
        )
    if not home.warehouse.is_file():
        raise StepFailed(
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


def publish_step(
    home: Home, run: PipelineRun, *, run_id: str | None = None, engine: str | None = None
) -> dict[str, object]:
    """Publish the marts of the newest green build (`PublishRefused` otherwise; also when `engine` is
    given and the marts were built by another engine)."""
    from chat_analytics.serving.publish import publish

    with run.stage("publish"):
        result = publish(home, run_id=run_id, engine=engine)
    run.record_publish(result)
    return {"database": str(result.database), "rows": result.row_counts}


def report_step(home: Home, run: PipelineRun) -> Path:
    """Write `serving/report.html` from the published file."""
    from chat_analytics.serving.report import report

    with run.stage("report"):
        path = report(home)
    run.record_report()
    return path
