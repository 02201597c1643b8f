"""The DAG's engine (issue 15): what its one `dbt build` runs on, duckdb or spark, and what that adds.

The engine is `$CHAT_ANALYTICS_ENGINE` of the Airflow processes (default duckdb), read when the DAG file is
parsed. Both engines keep the same tasks: the Cosmos producer runs the one `dbt build`, on the dbt target
of the engine, and the model and test tasks show what it reported. Spark starts a JVM and its Derby
metastore admits one process at a time, so everything Spark-specific happens in that one task's process:

- before dbt (`dbt_build_starts`, the producer's `pre_execute`): Java is checked and the raw layer is
  exported as the Parquet bronze layer the Spark sources read;
- after dbt (`dbt_build_ended`, a Cosmos `callback`, called in the same process before the task ends):
  a green build's published models are copied from Spark's tables into the warehouse, so `publish` and
  `report` run unchanged.

On either engine a build that follows one of the other engine rebuilds in full (`--full-refresh`), as
`chat-analytics build` does, and a green build records its engine (`warehouse/engine.json`): `publish`
refuses marts built by another engine and writes the engine into `_build_info`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from chat_analytics.duck import first_line
from chat_analytics.engine import DEFAULT_ENGINE
from chat_analytics.orchestration.tasks import dbt_task_starts
from chat_analytics.paths import Home
from chat_analytics.pipeline import spark
from chat_analytics.pipeline.build_record import BuildRecord

log = logging.getLogger(__name__)

#: The target of dbt/profiles.yml each engine builds on.
DBT_TARGETS = {"duckdb": "local", "spark": spark.SPARK_TARGET}


def dbt_target(engine: str) -> str:
    return DBT_TARGETS[engine]


def dbt_env(home: Home, engine: str) -> dict[str, str]:
    """What the engine's dbt target reads from the environment, beyond the warehouse's settings."""
    return spark.dbt_env(home) if engine == "spark" else {}


def dbt_build_starts(home_dir: str, engine: str, context: Any) -> None:
    """The one `dbt build`'s `pre_execute` (Cosmos' producer task), after the record says running.

    Runs in the build task's process, in the warehouse pool: the only process of the run that starts
    dbt, and on Spark the JVM.
    """
    dbt_task_starts(home_dir, context)
    home = Home(Path(home_dir))
    if spark.engine_switched(home, engine):
        # The incremental models' state is the other engine's: rebuild them, as `chat-analytics build`.
        log.info(
            "the last build of this home ran on %s: rebuilding in full on %s", spark.last_engine(home), engine
        )
        context["task"].full_refresh = True
    if engine == "spark":
        log.info("Spark engine: %s", spark.require_java())
        spark.sync_bronze(home)  # the sources of the Spark target (registered by an on-run-start hook)


def dbt_build_ended(
    project_dir: str, home: str | None = None, engine: str = DEFAULT_ENGINE, **_: Any
) -> None:
    """astronomer-cosmos operator `callback`, after `record_cosmos_results`: adopt a green build.

    Cosmos calls it with the temporary project folder of the dbt invocation (its `target/` holds the
    manifest of the build that ran) after every dbt command, failed ones included, before it fails the
    task. When the build record holds results and none failed, the warehouse's models are `engine`'s
    from now on (recorded first, so a half-done copy still makes the next DuckDB build rebuild in full);
    on Spark they are copied in. A failed copy is the build's failure: it goes into the build record (so
    `publish` refuses) and fails the task.
    """
    chosen = Home.resolve(home)
    record = BuildRecord.load(chosen)
    if not record.nodes or record.error or record.summary().failed:
        log.info("the build did not pass: the warehouse's models stay those of the last green build")
        return
    spark.record_engine(chosen, engine)
    if engine != "spark":
        return
    try:
        spark.import_models(chosen, Path(project_dir) / "target")
    except Exception as exc:
        record.error = f"copying Spark's models into the warehouse failed: {first_line(exc)}"
        record.save(chosen)
        raise
