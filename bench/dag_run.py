"""Time one whole `dag.test()` run of the Airflow DAG `chat_analytics` on an existing chat-analytics home.

Usage: .venv/bin/python bench/dag_run.py --home <home dir>

Meant to be run by bench/bench.py as a child process, one process per run. Like tests/test_dags.py, it
points Airflow at a private AIRFLOW_HOME (SQLite metadata database in a temp folder, removed at exit)
before importing it, creates the metadata database and the warehouse pool, loads the DAGs with a DagBag
(CHAT_ANALYTICS_HOME = --home), then runs the pipeline DAG in-process with `dag.test()`.

Only the `dag.test()` call is timed as `dag_test_s` (it includes Airflow's own re-sync of the DAG folder
that `dag.test()` does first); the set-up before it (metadata database, pool, DagBag parse) is `setup_s`.
The home needs its landing files (`chat-analytics generate`) and the dbt manifest dbt/target/manifest.json
(`make setup`). Progress and figures are logged on stderr; stdout carries only the final JSON line:

    {"dag_test_s": 42.1, "setup_s": 3.2, "state": "success", "tasks": 43, "retried": []}

Exit status 0 when the run and every task instance succeeded; 1 (after the JSON line, with the tasks that
did not succeed on stderr) otherwise; 2 when the run could not be set up (bad --home, DAG import errors).
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

PROJECT = Path(__file__).resolve().parents[1]
DAGS = PROJECT / "dags"
MANIFEST = PROJECT / "dbt" / "target" / "manifest.json"
PIPELINE = "chat_analytics"

log = logging.getLogger("bench.dag_run")


class SetupError(Exception):
    """The DAG run could not be prepared (exit status 2)."""


def private_airflow_home(home: Path) -> Path:
    """Point Airflow (not imported yet) at a fresh temp AIRFLOW_HOME, removed at exit; the DAGs at `home`."""
    if "airflow" in sys.modules:  # settings are read once, at the first import
        raise SetupError("Airflow was imported before its private home was set up")
    airflow_home = Path(tempfile.mkdtemp(prefix="chat-analytics-airflow-bench-"))
    atexit.register(shutil.rmtree, airflow_home, ignore_errors=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "CHAT_ANALYTICS_HOME": str(home),
        }
    )
    return airflow_home


def set_up() -> Any:
    """Metadata database, pool, DagBag: the pipeline DAG, ready for `dag.test()`."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    from chat_analytics.orchestration.airflow_setup import ensure_pool

    db.initdb()
    ensure_pool()
    bag = DagBag(str(DAGS))
    if bag.import_errors:
        errors = "\n".join(f"{file}: {error}" for file, error in bag.import_errors.items())
        raise SetupError(f"the DAGs in {DAGS} do not import:\n{errors}")
    if PIPELINE not in bag.dags:
        raise SetupError(f"no DAG {PIPELINE!r} in {DAGS} (found: {', '.join(sorted(bag.dag_ids))})")
    return bag.dags[PIPELINE]


def release_warehouse() -> None:
    """Close the warehouse dbt-duckdb keeps open in this process (a clean file for whatever runs next)."""
    from chat_analytics.pipeline.build import release_warehouse as release

    release()


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM exits normally (the temp AIRFLOW_HOME is removed), but only until the first task runs.

    Airflow's in-process task runner then installs its own SIGTERM handler (the task's `on_kill`) and
    never restores this one: a SIGTERM during `dag.test()` is swallowed and the run goes on to the end.
    """
    raise SystemExit(128 + signum)


def _stdout_for_json_only() -> IO[str]:
    """The real stdout for the JSON line; everything else written to stdout (Airflow, dbt) goes to stderr."""
    sys.stdout.flush()
    result = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="an existing chat-analytics home")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s dag_run: %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # Airflow reconfigures the root logger when imported
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    out = _stdout_for_json_only()

    home: Path = args.home.expanduser().resolve()
    try:
        if not (home / "landing" / "chats").is_dir():
            raise SetupError(f"{home} is not a chat-analytics home: no landing/chats (run `generate` first)")
        if not MANIFEST.is_file():
            raise SetupError(f"dbt manifest {MANIFEST} not found: run `make setup`")
        airflow_home = private_airflow_home(home)
        log.info("home %s, private AIRFLOW_HOME %s", home, airflow_home)

        started = time.perf_counter()
        import airflow  # noqa: F401  (Airflow first: it reads the settings above)
        import cosmos  # noqa: F401

        imports_s = time.perf_counter() - started
        log.info("imports (airflow, cosmos): %.2f s", imports_s)

        started = time.perf_counter()
        dag = set_up()
        setup_s = time.perf_counter() - started
        log.info("set-up (metadata db, pool, DagBag parse): %.2f s; %d tasks", setup_s, len(dag.tasks))
    except SetupError as exc:
        log.error("%s", exc)
        return 2

    started = time.perf_counter()
    dag_run = dag.test()
    dag_test_s = time.perf_counter() - started
    release_warehouse()

    state = str(dag_run.state)
    tis = dag_run.get_task_instances()
    not_ok = {ti.task_id: str(ti.state) for ti in tis if str(ti.state) != "success"}
    retried = {ti.task_id: ti.try_number for ti in tis if (ti.try_number or 0) > 1}
    log.info(
        "dag.test(): %.2f s for %d task instances, run %s: %s", dag_test_s, len(tis), dag_run.run_id, state
    )
    if retried:
        log.warning("retried tasks (their retry delays are in the time): %s", retried)
    print(
        json.dumps(
            {
                "dag_test_s": round(dag_test_s, 3),
                "setup_s": round(setup_s, 3),
                "state": state,
                "tasks": len(tis),
                "retried": sorted(retried),
            }
        ),
        file=out,
        flush=True,
    )
    if state != "success" or not_ok:
        by_state: dict[str, list[str]] = {}
        for task_id, task_state in sorted(not_ok.items()):
            by_state.setdefault(task_state, []).append(task_id)
        log.error(
            "DAG run %s ended %s; tasks not successful: %s",
            dag_run.run_id,
            state,
            "; ".join(f"{s} ({len(ids)}): {', '.join(ids)}" for s, ids in sorted(by_state.items())) or "none",
        )
        return 1
    published = home / "serving" / "analytics.duckdb"
    if not published.is_file():  # the run said success but publish left nothing: do not trust the figure
        log.error("DAG run %s succeeded but %s does not exist", dag_run.run_id, published)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
