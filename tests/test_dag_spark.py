"""The Airflow DAG on the Spark engine (issue 15): a whole `dag.test()` run with CHAT_ANALYTICS_ENGINE=spark.

The DAG file reads the engine when it is parsed, and a Spark session (with its JVM) would outlive the run
in the test process and leak into other tests, so the run happens in a fresh Python: tests/dag_probe.py
runs bench/dag_run.py's `dag.test()` with probes that log every dbt invocation and every JVM start with
the task that made it. The published file must hold the same data as `chat-analytics run` on DuckDB over
a copy of the same landing files. Needs Java 17+ (skipped without it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from chat_analytics.devtools.compare import compare
from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline import spark

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = str(BIN / "chat-analytics")
PROBE = Path(__file__).resolve().parent / "dag_probe.py"
MANIFEST = PROJECT / "dbt" / "target" / "manifest.json"
CHATS = 2_000
#: The Cosmos producer: the DAG's one `dbt build` (chat_analytics.orchestration.dbt_group.DBT_BUILD_TASK,
#: not imported here: that module imports Airflow, which this test keeps out of its own process).
BUILD_TASK = "dbt.dbt_producer_watcher"
RUN_TIMEOUT_SECONDS = 1_200


@pytest.fixture(scope="module")
def java() -> str:
    try:
        return spark.require_java()
    except UserError as exc:
        pytest.skip(str(exc))


#: Settings of this environment a run must not inherit: each run gets its own home, engine and Airflow.
NOT_INHERITED = (
    *("CHAT_ANALYTICS_HOME", "CHAT_ANALYTICS_WAREHOUSE", "CHAT_ANALYTICS_ENGINE"),
    *(spark.SPARK_DIR_ENV, spark.BRONZE_DIR_ENV),
)


def _env(**extra: str) -> dict[str, str]:
    """This environment without a home, engine, Spark folder or Airflow chosen, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED and not k.startswith("AIRFLOW")}
    return {**env, "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False", "DO_NOT_TRACK": "1", **extra}


def _probes(path: Path) -> list[dict[str, Any]]:
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def _manifest_nodes() -> set[str]:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {u for u, n in manifest["nodes"].items() if n["resource_type"] in ("model", "test")}


def test_dag_on_spark_publishes_what_the_duckdb_cli_publishes(java: str, tmp_path: Path) -> None:
    dag_home, cli_home = Home(tmp_path / "dag"), Home(tmp_path / "cli")
    subprocess.run(
        [CLI, "generate", "--home", str(dag_home.root), "--chats", str(CHATS)],
        check=True,
        env=_env(),
        capture_output=True,
    )
    shutil.copytree(dag_home.landing, cli_home.landing)
    # the reference beside the DAG run: DuckDB, a few seconds
    reference = subprocess.Popen(
        [CLI, "run", "--home", str(cli_home.root), "--engine", "duckdb"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    probe_file = tmp_path / "probes.jsonl"
    started = time.perf_counter()
    try:
        run = subprocess.run(
            [sys.executable, str(PROBE), "--home", str(dag_home.root)],
            env=_env(CHAT_ANALYTICS_ENGINE="spark", CHAT_ANALYTICS_PROBE_FILE=str(probe_file)),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )
    finally:
        reference_output, _ = reference.communicate(timeout=RUN_TIMEOUT_SECONDS)
    assert reference.returncode == 0, reference_output[-3000:]
    assert run.returncode == 0, run.stderr[-5000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    took = time.perf_counter() - started
    print(f"Spark DAG run: dag.test() {outcome['dag_test_s']:.0f} s, {took:.0f} s in all")
    assert outcome["state"] == "success" and outcome["retried"] == [], outcome

    # one process ran dbt (freshness, then the build) and started the run's one JVM: the build task's
    probes = _probes(probe_file)
    dbt_calls = [(p["task"], p["args"][:2]) for p in probes if p["event"] == "dbt"]
    assert dbt_calls == [(BUILD_TASK, ["source", "freshness"]), (BUILD_TASK, ["build", "--log-format"])]
    assert [p["task"] for p in probes if p["event"] == "jvm"] == [BUILD_TASK]

    # the same data as DuckDB's, published with the engine that built it
    published = dag_home.serving / "analytics.duckdb"
    assert published.is_file() and (dag_home.serving / "report.html").is_file()
    with duckdb.connect(str(published), read_only=True) as con:
        engine, run_id = con.execute("select engine, run_id from analytics._build_info").fetchone()
    assert engine == "spark"
    assert compare(published, cli_home.serving / "analytics.duckdb") == []

    # every model and data test reached the build record, the warn-severity finding of the sample too
    record = json.loads((dag_home.warehouse_dir / "last_build.json").read_text(encoding="utf-8"))
    assert record["build_id"] == run_id and record["status"] == "finished" and record["error"] is None
    nodes = {u: n for u, n in record["nodes"].items() if u.split(".")[0] in ("model", "test")}
    assert set(nodes) == _manifest_nodes()
    statuses = {n["status"] for n in nodes.values()}
    assert "warn" in statuses and statuses <= {"success", "pass", "warn"}
    # ... and monitoring its rows: the run's history, the build's test results
    with duckdb.connect(str(dag_home.warehouse), read_only=True) as con:
        history = con.execute("select run_id, trigger, status from monitoring.run_history").fetchall()
        tests = con.execute(
            "select count(*) from monitoring.test_history where run_id = ?", [run_id]
        ).fetchone()
    assert history == [(run_id, "airflow", "success")]
    assert tests and tests[0] == len([u for u in nodes if u.startswith("test.")])
