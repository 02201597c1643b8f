"""Live: `airflow standalone` as `make airflow` starts it, driven through the REST API v2.

Starts the launcher (`python -m chat_analytics.orchestration.airflow_setup start`) with its own
AIRFLOW_HOME, data home and free ports, logs in with the known user (`/auth/token`), unpauses and triggers
`chat_analytics`, and polls until the run ends. The run must succeed with every task on its first try (no
"Could not set lock" hidden by a retry) and the tasks that write the warehouse must never overlap in time:
the pool of one slot at work, with LocalExecutor parallelism 4. Every process started is stopped (process
group) at the end. Bounded: the test gives up DEADLINE_SECONDS after starting Airflow (stopping it takes
seconds more).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from chat_analytics.devtools.generate import generate
from chat_analytics.orchestration.airflow_setup import POOL, POOL_SLOTS
from chat_analytics.paths import Home

# bench/ is not a package: one REST client (bench/airflow_run.py) for the bench and this test
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from airflow_run import Api

DEADLINE_SECONDS = 360
DAG_ID = "chat_analytics"
USER, PASSWORD = "tester", "live-test-password"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_processes(pgid: int) -> list[str]:
    """Live (non-zombie) processes of the group."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
            fields = rest.rsplit(")", 1)[1].split()
        except (OSError, IndexError, ValueError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(pid)
    return alive


@pytest.fixture
def live_airflow(tmp_path: Path) -> Iterator[tuple[Api, Home, Path, float]]:
    home = Home(tmp_path / "home")
    generate(home, chats=2_000, start=date(2000, 1, 1), end=date(2000, 1, 10), seed=21, dirty=False)
    airflow_home = tmp_path / "airflow"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "CHAT_ANALYTICS_AIRFLOW_HOME": str(airflow_home),
            "CHAT_ANALYTICS_AIRFLOW_PORT": str(port),
            "CHAT_ANALYTICS_AIRFLOW_USER": USER,
            "CHAT_ANALYTICS_AIRFLOW_PASSWORD": PASSWORD,
            "CHAT_ANALYTICS_HOME": str(home.root),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        }
    )
    env.pop("CHAT_ANALYTICS_ALERT_WEBHOOK", None)
    launcher = [sys.executable, "-m", "chat_analytics.orchestration.airflow_setup"]
    pid_file = airflow_home / "standalone.pid"
    airflow_home.mkdir()
    (airflow_home / "standalone.log").write_text("the previous start's log\n")  # kept: make airflow rotates
    started = time.monotonic()
    try:
        start = subprocess.run(
            [*launcher, "start"], env=env, capture_output=True, text=True, timeout=240, check=False
        )
        log = airflow_home / "standalone.log"
        assert start.returncode == 0, f"{start.stderr}\n{log.read_text()[-5000:] if log.exists() else ''}"
        assert f"{USER} / {PASSWORD}" in start.stdout  # the login is printed on start
        assert (airflow_home / "standalone.log.1").read_text() == "the previous start's log\n"
        print(f"airflow standalone up in {time.monotonic() - started:.0f} s on port {port}")
        yield Api(f"http://localhost:{port}"), home, airflow_home, started
    finally:
        pgid = int(pid_file.read_text()) if pid_file.exists() else None
        subprocess.run([*launcher, "stop"], env=env, capture_output=True, timeout=120, check=False)
        if pgid is not None:
            leftovers = _group_processes(pgid)
            if leftovers:  # never leave anything behind, even when the clean stop failed
                os.killpg(pgid, signal.SIGKILL)
            assert not leftovers, f"processes left after make airflow-stop: {leftovers}"


def _wait_for_dag(api: Api, deadline: float) -> dict[str, Any]:
    while True:
        try:
            return api.call("GET", f"/api/v2/dags/{DAG_ID}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or time.monotonic() > deadline:
                errors = api.call("GET", "/api/v2/importErrors")
                raise AssertionError(f"DAG {DAG_ID} not loaded: {errors}") from exc
        time.sleep(2)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_standalone_runs_the_pipeline_through_the_rest_api(
    live_airflow: tuple[Api, Home, Path, float],
) -> None:
    api, home, airflow_home, started = live_airflow
    deadline = started + DEADLINE_SECONDS  # start included
    api.login(USER, PASSWORD)

    pool = api.call("GET", f"/api/v2/pools/{POOL}")
    assert pool["slots"] == POOL_SLOTS  # created by the launcher, no manual step
    dag = _wait_for_dag(api, deadline)
    assert dag["is_paused"] is True  # new DAGs start paused
    assert api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})["is_paused"] is False
    run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})
    run_id = run["dag_run_id"]
    quoted = urllib.request.quote(run_id, safe="")
    triggered = time.monotonic()
    while True:
        state = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")["state"]
        if state in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"run {run_id} still {state}: over {DEADLINE_SECONDS} s in all"
        time.sleep(3)
    print(f"run {run_id}: {state} in {time.monotonic() - triggered:.0f} s")

    tis = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances?limit=1000")
    tis = tis["task_instances"]
    summary = {t["task_id"]: (t["state"], t["try_number"]) for t in tis}
    assert state == "success", summary
    assert all(s == ("success", 1) for s in summary.values()), summary
    # the tasks that write the warehouse (ingest, the one `dbt build`, publish, report) take turns in
    # the pool; the model and test tasks only read the build's results, beside them
    writers = [t for t in tis if t["pool"] == POOL]
    assert {t["task_id"] for t in writers} == {"ingest", "dbt.dbt_producer_watcher", "publish", "report"}
    spans = sorted((_instant(t["start_date"]), _instant(t["end_date"]), t["task_id"]) for t in writers)
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        assert start >= end, f"{second} started while {first} was running: two warehouse tasks at once"
    task_logs = "".join(p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*.log"))
    assert "Could not set lock" not in task_logs

    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from analytics.fct_chats").fetchone()[0] > 1_500

    # the sample's warn-severity findings: green tasks, but noted on the build task and on the run
    record = json.loads((home.warehouse_dir / "last_build.json").read_text())
    warned = [u.split(".")[2] for u, n in record["nodes"].items() if n["status"] == "warn"]
    assert warned
    run_note = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")["note"]
    build_note = {t["task_id"]: t["note"] for t in tis}["dbt.dbt_producer_watcher"]
    assert run_note.startswith(f"**{len(warned)} warn-severity finding"), run_note
    assert (home.serving / "report.html").as_uri() in run_note
    assert build_note.startswith(f"{len(warned)} warn-severity finding"), build_note
    assert all(name in build_note for name in warned)
