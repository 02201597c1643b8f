"""Time one real, triggered Airflow run of the DAG `chat_analytics` on an existing chat-analytics home.

Usage: .venv/bin/python bench/airflow_run.py --home <home dir> [--timeout 1800]

Starts `airflow standalone` the way `make airflow` does (orchestration.airflow_setup.Standalone: SQLite,
LocalExecutor, the warehouse pool, a known login) in a private AIRFLOW_HOME (a temp folder, removed at
exit) on free ports, with CHAT_ANALYTICS_HOME = --home. Then, through the REST API v2: log in, wait for
the DAG to be parsed, unpause it, trigger one run and poll it until it ends; finally stop Airflow and
every process it started.

`seconds` is the wall time from the trigger request to the end of the run as the API reports it (the
run's `end_date` minus the time the trigger was sent, so polling does not add to it); `startup_s` is
the time to start Airflow and see the DAG. Progress goes to stderr; stdout carries only one JSON line:

    {"seconds": 25.3, "state": "success", "tasks": 36, "startup_s": 31.0, "not_ok": {}}

Exit status 0 when the run and every task succeeded; 1 (after the JSON line) otherwise; 2 when Airflow
could not be started or the DAG not triggered (no JSON line). bench/bench.py runs it as a child process.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

DAG_ID = "chat_analytics"
USER, PASSWORD = "bench", "bench-airflow-run"
POLL_SECONDS = 1.0

log = logging.getLogger("bench.airflow_run")


class RunError(Exception):
    """Airflow could not be started or the run not triggered (exit status 2)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    """The REST API v2 of one Airflow, with a bearer token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def login(self, user: str, password: str) -> None:
        self.token = self.call("POST", "/auth/token", {"username": user, "password": password})[
            "access_token"
        ]


def _wait_for_dag(api: Api, deadline: float) -> None:
    while True:
        try:
            api.call("GET", f"/api/v2/dags/{DAG_ID}")
            return
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
        if time.monotonic() > deadline:
            errors = api.call("GET", "/api/v2/importErrors")
            raise RunError(f"DAG {DAG_ID} not loaded in time: {errors}")
        time.sleep(1)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run(
    home: Path, timeout: float, then: Callable[[Api, str, str], None] | None = None
) -> tuple[dict[str, Any], bool]:
    """Start Airflow, trigger and wait for one run, stop Airflow; the figures and whether all succeeded.

    `then(api, base_url, run_id)`, when given, runs after the run ended, before Airflow stops (logged in).
    """
    for key in [k for k in os.environ if k.startswith("AIRFLOW")]:
        del os.environ[key]  # only this instance's settings
    os.environ["CHAT_ANALYTICS_HOME"] = str(home)
    from chat_analytics.orchestration.airflow_setup import Standalone

    airflow_home = Path(tempfile.mkdtemp(prefix="chat-analytics-airflow-run-"))
    atexit.register(shutil.rmtree, airflow_home, ignore_errors=True)
    os.environ["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(_free_port())
    os.environ["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(_free_port())
    standalone = Standalone(
        airflow_home=airflow_home, port=_free_port(), user=USER, password=PASSWORD, pipeline_home=home
    )
    started = time.monotonic()
    try:
        try:
            standalone.start()
        except RuntimeError as exc:
            raise RunError(str(exc)) from None
        api = Api(standalone.url)
        api.login(USER, PASSWORD)
        _wait_for_dag(api, started + 300)
        startup_s = time.monotonic() - started
        log.info("Airflow up and DAG parsed in %.1f s (AIRFLOW_HOME %s)", startup_s, airflow_home)
        api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        triggered_wall = time.time()
        triggered = time.monotonic()
        dag_run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None})
        quoted = urllib.parse.quote(dag_run["dag_run_id"], safe="")
        log.info("triggered run %s", dag_run["dag_run_id"])
        while True:
            dag_run = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
            if dag_run["state"] in ("success", "failed"):
                break
            if time.monotonic() - triggered > timeout:
                raise RunError(f"run {dag_run['dag_run_id']} still {dag_run['state']} after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
        ended = dag_run.get("end_date")
        seconds = _instant(ended).timestamp() - triggered_wall if ended else time.monotonic() - triggered
        tis = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances?limit=1000")
        tis = tis["task_instances"]
        not_ok = {t["task_id"]: t["state"] for t in tis if t["state"] != "success"}
        retried = sorted(t["task_id"] for t in tis if (t.get("try_number") or 0) > 1)
        if then is not None:
            then(api, standalone.url, dag_run["dag_run_id"])
    finally:
        standalone.stop()
    log.info("run %s: %s in %.1f s, %d tasks", dag_run["dag_run_id"], dag_run["state"], seconds, len(tis))
    figures = {
        "seconds": round(seconds, 3),
        "state": dag_run["state"],
        "tasks": len(tis),
        "startup_s": round(startup_s, 3),
        "not_ok": not_ok,
        "retried": retried,
    }
    return figures, dag_run["state"] == "success" and not not_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="an existing chat-analytics home")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on the run after this (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)-7s airflow_run: %(message)s"
    )
    home: Path = args.home.expanduser().resolve()
    if not (home / "landing" / "chats").is_dir():
        log.error("%s is not a chat-analytics home: no landing/chats (run `generate` first)", home)
        return 2
    try:
        figures, ok = run(home, args.timeout)
    except (RunError, urllib.error.URLError) as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(figures), flush=True)
    if not ok:
        log.error("run ended %s; tasks not successful: %s", figures["state"], figures["not_ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
