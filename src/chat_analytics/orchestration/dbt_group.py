"""The DAG's dbt task group (astronomer-cosmos): one `dbt build`, a task per model and per model's tests.

`ExecutionMode.WATCHER`: the producer task runs one `dbt build` of every model and data test (source
freshness first, unit tests left out as in `chat-analytics build`) in the warehouse pool; one task per
model and one per model's tests mirror what the build reported for that node, so the UI shows each
model's outcome without a dbt invocation (and a DuckDB writer) per task. Warnings go to the alert
callback; every dbt result is merged into the build record that `publish` checks.

The same group runs either engine (chat_analytics.orchestration.engines): the build runs on the engine's
dbt target, and on Spark its task also exports the bronze layer first and copies Spark's models into
the warehouse last, so the one JVM of the run is that task's. Cosmos runs every dbt command in a
temporary copy of the project, so a Spark build never touches the DuckDB manifest in `dbt/target/` the
DAG renders from (the command line needs `--target-path` for that; the DAG does not).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, TriggerRule
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
from chat_analytics.engine import DEFAULT_ENGINE
from chat_analytics.orchestration.airflow_setup import MANIFEST, POOL, WAREHOUSE_ENV, stale_dbt_inputs
from chat_analytics.orchestration.alerts import cosmos_warning_alert, dbt_warning_alert, warn_findings
from chat_analytics.orchestration.engines import dbt_build_ended, dbt_build_starts, dbt_env, dbt_target
from chat_analytics.orchestration.tasks import dbt_task_starts
from chat_analytics.paths import DBT_PROJECT_DIR, Home
from chat_analytics.pipeline.build_record import record_cosmos_freshness, record_cosmos_results

log = logging.getLogger(__name__)

GROUP_ID = "dbt"
#: The task ids of the one `dbt build` (Cosmos' watcher producer) and of its gate inside the group.
DBT_BUILD_TASK = f"{GROUP_ID}.{PRODUCER_WATCHER_TASK_ID}"
DBT_BUILD_DONE_TASK = f"{GROUP_ID}.{PRODUCER_WATCHER_DONE_TASK_ID}"
#: Production builds skip dbt unit tests (as `chat-analytics build` does): every dbt command of the DAG.
DBT_SKIP_UNIT_TESTS = {"DBT_EXCLUDE_RESOURCE_TYPES": "unit_test"}


def check_manifest() -> None:
    """Fail the parse with a clear message without a manifest; warn when it is older than the dbt files."""
    if not MANIFEST.is_file():
        raise FileNotFoundError(
            f"dbt manifest {MANIFEST} not found: run `make setup` (it runs `dbt parse`), "
            "or `python -m chat_analytics.orchestration.airflow_setup manifest`"
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
        dbt_warning_alert({**context, "home": home_dir, "test_names": names, "test_results": messages})
    return []


def dbt_task_group(home_dir: str | Path, engine: str = DEFAULT_ENGINE) -> DbtTaskGroup:
    """The `dbt` task group on the home folder `home_dir`, building on `engine` (inside a `DAG` context)."""
    check_manifest()
    home = Home(Path(home_dir))
    return DbtTaskGroup(
        group_id=GROUP_ID,
        tooltip="dbt (astronomer-cosmos): one dbt build, then each model's and its tests' outcome",
        project_config=ProjectConfig(
            dbt_project_path=DBT_PROJECT_DIR,
            manifest_path=MANIFEST,
            project_name="chat_analytics",
            # the profile's warehouse path, DuckDB memory cap and spill folder
            env_vars={
                WAREHOUSE_ENV: str(home.warehouse),
                **resources.dbt_env(home),
                **dbt_env(home, engine),
                **DBT_SKIP_UNIT_TESTS,
            },
            install_dbt_deps=False,  # no dbt packages: never needs the network
        ),
        profile_config=ProfileConfig(
            profile_name="chat_analytics",
            target_name=dbt_target(engine),
            profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
        ),
        # One `dbt build` (the producer task, in the warehouse pool) runs every model and data test; one
        # task per model and one per model's tests show its outcome (they only read the producer's
        # results, outside the pool).
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.DBT_RUNNER,
            setup_operator_args={
                "pool": POOL,
                "freshness_callback": functools.partial(_freshness_checked, str(home.root)),
                # A retry of the producer never re-runs dbt (Cosmos skips it): its failure must stay.
                "retries": 0,
                # the record says running; a switch of engine rebuilds in full; Spark's bronze layer
                "pre_execute": functools.partial(dbt_build_starts, str(home.root), engine),
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
            # A task of a model or of its tests retried (or cleared by hand) would run that dbt node
            # alone, outside the build: no automatic retries; a failed run is triggered again.
            "retries": 0,
            # Every dbt invocation merges its results into <home>/warehouse/last_build.json, which
            # `publish` reads to refuse publishing after an error-severity failure, and logs its
            # warn-severity findings (the `on_warning_callback` below is not called by the build); a
            # green build's models become the engine's (on Spark: copied into the warehouse).
            "callback": [
                record_cosmos_results,
                cosmos_warning_alert,
                functools.partial(dbt_build_ended, engine=engine),
            ],
            "callback_args": {"home": str(home.root)},
            # ... and marks the build running before it touches a model (a re-run task included)
            "pre_execute": functools.partial(dbt_task_starts, str(home.root)),
        },
        on_warning_callback=dbt_warning_alert,
    )


def watch_after_the_build(dag: DAG, upstream: Any) -> None:
    """Every model's and test's task starts once the one `dbt build` has ended, failed included.

    Cosmos starts the top tasks of a `DbtTaskGroup` beside the producer; they would wait for its results
    (in a `dag.test()` run, forever: it runs tasks one at a time). After it they only read its results.
    They also need `upstream` (ingest) to have succeeded: when it failed they are `upstream_failed`.
    """
    upstream_task = getattr(upstream, "operator", upstream)
    build = dag.get_task(DBT_BUILD_TASK)
    for sensor in list(dag.tasks):
        if sensor.task_id in (DBT_BUILD_TASK, DBT_BUILD_DONE_TASK) or not sensor.task_id.startswith(
            f"{GROUP_ID}."
        ):
            continue
        if sensor.upstream_task_ids <= {upstream_task.task_id, DBT_BUILD_TASK}:
            build >> sensor
            upstream_task >> sensor
            sensor.trigger_rule = TriggerRule.ALL_DONE_MIN_ONE_SUCCESS
