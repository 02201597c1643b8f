"""The Airflow DAGs in-process: integrity, a whole run with `dag.test()`, and the failure paths.

Airflow reads its settings when first imported, so this module points it at a private AIRFLOW_HOME
(SQLite metadata database in a temp folder) before importing it. Runs use generated data in tmp homes.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

if "airflow" in sys.modules:  # pragma: no cover - another test module imported Airflow with its settings
    pytest.fail("Airflow was imported before test_dags.py could point it at a private home", pytrace=False)

PROJECT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="chat-analytics-airflow-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_AIRFLOW_HOME / "logs"),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
    }
)

import http.server  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

import airflow  # noqa: E402, F401  (Airflow before Cosmos)
import cosmos  # noqa: E402, F401
import duckdb  # noqa: E402

from chat_analytics.devtools.generate import generate  # noqa: E402
from chat_analytics.orchestration.airflow_setup import POOL  # noqa: E402
from chat_analytics.orchestration.alerts import task_failure_alert  # noqa: E402
from chat_analytics.orchestration.dbt_group import DBT_BUILD_DONE_TASK, DBT_BUILD_TASK  # noqa: E402
from chat_analytics.paths import Home  # noqa: E402

DAGS = PROJECT / "dags"
PIPELINE = "chat_analytics"
FEED = "chat_analytics_sample_feed"
MANIFEST = PROJECT / "dbt" / "target" / "manifest.json"
START, END = date(2000, 1, 1), date(2000, 1, 31)


@pytest.fixture(scope="module")
def airflow_db() -> None:
    from airflow.utils import db

    db.initdb()


def _dagbag(home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CHAT_ANALYTICS_HOME", str(home))
    bag = DagBag(str(DAGS))
    assert bag.import_errors == {}
    return bag


def _states(dag_run: Any) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances()}


def _marts(warehouse: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [
            n
            for (n,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'analytics' order by 1"
            ).fetchall()
        ]
        return {n: con.execute(f"select * from analytics.{n} order by all").fetchall() for n in names}


def _recorded_nodes(home: Home) -> dict[str, dict[str, Any]]:
    """The dbt models and tests of the home's build record (hooks and exposures left out) by unique id."""
    record = json.loads((home.warehouse_dir / "last_build.json").read_text())
    return {u: n for u, n in record["nodes"].items() if u.split(".")[0] in {"model", "test"}}


def _manifest_nodes(*kinds: str) -> set[str]:
    """Unique ids of the dbt project's nodes of these resource types (unit tests are not nodes)."""
    manifest = json.loads(MANIFEST.read_text())
    return {u for u, n in manifest["nodes"].items() if n["resource_type"] in kinds}


def _test_counts(published: Path) -> tuple[int, int, int]:
    with duckdb.connect(str(published), read_only=True) as con:
        query = "select tests_pass, tests_warn, tests_error from analytics._build_info"
        return con.execute(query).fetchone()


def _release_dbt_duckdb() -> None:
    """dbt-duckdb keeps the last warehouse open in this process; close it before reading the file here."""
    from chat_analytics.pipeline.build import release_warehouse

    release_warehouse()


# ----------------------------------------------------------------------------------------------------
# integrity


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Any:
    mp = pytest.MonkeyPatch()
    try:
        yield _dagbag(tmp_path_factory.mktemp("integrity-home"), mp)
    finally:
        mp.undo()


def test_dags_import_without_errors_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    # no network and no warehouse needed: refuse every connection, point at a home that does not exist
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise OSError("network used while parsing the DAGs")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("CHAT_ANALYTICS_HOME", str(tmp_path / "nowhere"))
    started = time.perf_counter()
    bag = DagBag(str(DAGS))
    total = time.perf_counter() - started
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {PIPELINE, FEED}
    assert not (tmp_path / "nowhere").exists()
    per_file = {Path(s.file).name: s.duration.total_seconds() for s in bag.dagbag_stats}
    with capsys.disabled():
        print(
            f"\nDAG parse time: {', '.join(f'{n} {s:.3f} s' for n, s in sorted(per_file.items()))} "
            f"(DagBag total {total:.3f} s)"
        )  # printed, never asserted: timings are the bench's (bench/dag_run.py), not a test's


def _model_task(tasks: dict[str, Any], name: str) -> Any:
    return tasks.get(f"dbt.{name}.run") or tasks[f"dbt.{name}_run"]  # a model without tests: one task


def test_pipeline_shape(bag: Any) -> None:
    dag = bag.dags[PIPELINE]
    manifest = json.loads(MANIFEST.read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    tasks = dag.task_dict
    build, done = tasks[DBT_BUILD_TASK], tasks[DBT_BUILD_DONE_TASK]

    assert [t.task_id for t in dag.roots] == ["ingest"]
    # one `dbt build` after ingest; every other dbt task starts after it and after ingest
    assert build.upstream_task_ids == {"ingest"} and done.upstream_task_ids == {build.task_id}
    watchers = [t for t in dag.tasks if t.task_id.startswith("dbt.") and t not in (build, done)]
    for task in watchers:
        ancestors = task.get_flat_relative_ids(upstream=True)
        assert {"ingest", build.task_id} <= ancestors, task.task_id
    for name, node in models.items():
        run = _model_task(tasks, name)
        # each model's tests right after it
        if f"dbt.{name}.test" in tasks:
            assert tasks[f"dbt.{name}.test"].upstream_task_ids == {run.task_id}
        # after everything it reads from: the upstream models' tests, the sources' checks
        ancestors = run.get_flat_relative_ids(upstream=True)
        for parent in node["depends_on"]["nodes"]:
            kind, *_, parent_name = parent.split(".")
            if kind == "model":
                last = tasks.get(f"dbt.{parent_name}.test") or _model_task(tasks, parent_name)
                assert last.task_id in ancestors, (name, parent)
            elif kind == "source":
                source = parent.split(".")[-2] + "_" + parent_name
                checks = [t for t in tasks if t.startswith(f"dbt.{source}")]
                if checks:  # sources with tests or freshness are checked first
                    assert any(t in ancestors for t in checks), (name, parent)
    # no task of its own for a test on several models: it counts in each model's tests task
    assert not [t for t in tasks if t.startswith("dbt.") and t.endswith("_test")]
    # after the dbt group: publish once no dbt task failed (it checks the build record), then the report
    assert {t.task_id for t in dag.tasks if not t.task_id.startswith("dbt.")} == {
        "ingest",
        "publish",
        "report",
    }
    assert [t.task_id for t in dag.leaves] == ["report"]
    assert tasks["report"].upstream_task_ids == {"publish"}
    assert tasks["publish"].trigger_rule == "none_failed"
    dbt_leaves = {
        t.task_id
        for t in dag.tasks
        if t.task_id.startswith("dbt.") and not t.downstream_task_ids - {"publish"}
    }
    assert done.task_id in dbt_leaves and tasks["publish"].upstream_task_ids == dbt_leaves


def test_only_the_build_runs_dbt_and_every_warehouse_task_is_in_the_single_slot_pool(bag: Any) -> None:
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    dag = bag.dags[PIPELINE]
    writers = {"ingest", DBT_BUILD_TASK, "publish", "report"}
    assert {t.task_id for t in dag.tasks if isinstance(t, DbtProducerWatcherOperator)} == {DBT_BUILD_TASK}
    assert {t.task_id: t.pool for t in dag.tasks if t.task_id in writers} == {t: POOL for t in writers}
    # the model and test tasks only read the build's results: not in the pool, so they do not queue
    assert {t.pool for t in dag.tasks if t.task_id not in writers} == {"default_pool"}
    # the dbt commands leave out unit tests, as `chat-analytics build` does
    build = dag.get_task(DBT_BUILD_TASK)
    assert build.env["DBT_EXCLUDE_RESOURCE_TYPES"] == "unit_test"
    feed = bag.dags[FEED]
    assert [t.task_id for t in feed.tasks] == ["drop_next_extract"]


def test_schedule_retries_timeout_alerts_and_docs(bag: Any) -> None:
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    for dag_id in (PIPELINE, FEED):
        dag = bag.dags[dag_id]
        assert dag.catchup is False
        assert dag.max_active_runs == 1
        assert dag.doc_md and dag.description and dag.tags
        for task in dag.tasks:
            assert task.execution_timeout is not None, task.task_id
            assert task_failure_alert in task.on_failure_callback, task.task_id
            assert task.owner == "data-platform"
            # dbt's tasks are not retried: a retry would run one dbt node alone, outside the build
            dbt_task = task.task_id.startswith("dbt.") and task.task_id != "dbt.dbt_producer_watcher_done"
            assert task.retries == 0 if dbt_task else task.retries >= 1, task.task_id
    pipeline = bag.dags[PIPELINE]
    assert {t.retry_exponential_backoff for t in pipeline.tasks} == {2.0}

    # 06:00 in Melbourne on both sides of a daylight-saving change (AEDT UTC+11 -> AEST UTC+10 at 03:00
    # on Sunday 5 April 2026): 19:00 UTC on the 4th, 20:00 UTC from the 5th on
    timetable = coerce_to_core_timetable(pipeline.timetable)
    runs = []
    last = DataInterval.exact(datetime(2026, 4, 2, 19, 0, tzinfo=UTC))
    for _ in range(4):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last, restriction=TimeRestriction(None, None, catchup=True)
        )
        assert info is not None
        runs.append(info.run_after)
        last = info.data_interval
    assert [r.in_timezone("UTC").hour for r in runs] == [19, 20, 20, 20]
    assert {r.in_timezone("Australia/Melbourne").hour for r in runs} == {6}


def test_on_spark_the_same_tasks_and_one_build_on_the_spark_target(
    bag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CHAT_ANALYTICS_ENGINE=spark when the DAG file is parsed: DuckDB's tasks, pools and dependencies, the
    one build on dbt's `spark` target (tests/test_dag_spark.py runs it)."""
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    from chat_analytics.pipeline.spark import BRONZE_DIR_ENV, SPARK_DIR_ENV

    on_duckdb = bag.dags[PIPELINE]
    monkeypatch.setenv("CHAT_ANALYTICS_ENGINE", "spark")
    home = tmp_path / "home"
    dag = _dagbag(home, monkeypatch).dags[PIPELINE]

    def shape(d: Any) -> dict[str, tuple[str, list[str], int]]:
        return {t.task_id: (t.pool, sorted(t.upstream_task_ids), t.retries) for t in d.tasks}

    assert shape(dag) == shape(on_duckdb)
    assert [t.task_id for t in dag.tasks if isinstance(t, DbtProducerWatcherOperator)] == [DBT_BUILD_TASK]
    build = dag.get_task(DBT_BUILD_TASK)
    assert build.profile_config.target_name == "spark"
    assert on_duckdb.get_task(DBT_BUILD_TASK).profile_config.target_name == "local"
    assert build.env[SPARK_DIR_ENV] == str(home / "spark")
    assert build.env[BRONZE_DIR_ENV] == str(home / "bronze")
    assert build.env["DBT_EXCLUDE_RESOURCE_TYPES"] == "unit_test"
    assert "spark" in dag.tags and "duckdb" not in dag.tags and "duckdb" in on_duckdb.tags
    assert "Engine of this deployment: `spark`" in dag.doc_md and "on spark" in dag.description


def test_a_build_after_the_other_engine_rebuilds_in_full_and_only_a_green_one_is_adopted(
    tmp_path: Path,
) -> None:
    """The build task's hooks (chat_analytics.orchestration.engines), without dbt: `--full-refresh` after
    the other engine's build; the engine recorded after a green build only; a failed copy of Spark's
    models fails the task and goes into the build record, so publish refuses."""
    from types import SimpleNamespace

    from chat_analytics.orchestration.engines import dbt_build_ended, dbt_build_starts
    from chat_analytics.pipeline.build_record import BuildRecord, start_build
    from chat_analytics.pipeline.spark import last_engine, record_engine

    home = Home(tmp_path / "home")
    home.warehouse_dir.mkdir(parents=True)
    for last, rebuilt in (("spark", True), ("duckdb", False)):
        record_engine(home, last)
        start_build(home, "run-1")
        task = SimpleNamespace(full_refresh=False)
        dbt_build_starts(str(home.root), "duckdb", {"run_id": "run-1", "task": task})
        assert task.full_refresh is rebuilt, last

    def built(status: str) -> None:
        record = BuildRecord.load(home)
        node = SimpleNamespace(unique_id="model.chat_analytics.fct_chats")
        record.set_nodes([SimpleNamespace(node=node, status=status, message="", failures=None)])
        record.save(home)

    record_engine(home, "spark")
    built("error")
    dbt_build_ended(str(tmp_path), home=str(home.root), engine="duckdb")
    assert last_engine(home) == "spark"  # a failed build: the warehouse's models are still Spark's
    built("success")
    dbt_build_ended(str(tmp_path), home=str(home.root), engine="duckdb")
    assert last_engine(home) == "duckdb"
    with pytest.raises(FileNotFoundError):  # no manifest: Spark's models cannot be copied
        dbt_build_ended(str(tmp_path / "no-project"), home=str(home.root), engine="spark")
    record = BuildRecord.load(home)
    assert record.error and record.error.startswith("copying Spark's models into the warehouse failed")


# ----------------------------------------------------------------------------------------------------
# whole runs


def test_dag_run_builds_the_same_marts_as_the_cli(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dag_home, cli_home = tmp_path / "dag", tmp_path / "cli"
    for home in (dag_home, cli_home):
        generate(Home(home), chats=5_000, start=START, end=END, seed=11, dirty=False)
    reference = subprocess.Popen(
        [str(PROJECT / ".venv" / "bin" / "chat-analytics"), "run", "--home", str(cli_home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        dag = _dagbag(dag_home, monkeypatch).dags[PIPELINE]
        started = time.perf_counter()
        dag_run = dag.test()
        print(f"dag.test(): {time.perf_counter() - started:.1f} s for {len(dag.tasks)} tasks")
    finally:
        output, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, output

    states = _states(dag_run)
    assert str(dag_run.state) == "success", states
    assert {s for s, _ in states.values()} == {"success"}
    assert all(tries == 1 for _, tries in states.values())
    # warn-severity findings (the sample data has categories with an empty `disabled`) reach the
    # warning callback from the one `dbt build` task
    warnings = [
        r.getMessage() for r in caplog.records if "(warn severity: the run goes on)" in r.getMessage()
    ]
    assert any(w.startswith("WARNING dbt.dbt_producer_watcher: ") for w in warnings), warnings

    # the DAG ran the same models and data tests as `chat-analytics run`, and no unit test: the ids each
    # build recorded, compared with each other and with every model and data test of the dbt project
    dag_nodes, cli_nodes = _recorded_nodes(Home(dag_home)), _recorded_nodes(Home(cli_home))
    dag_tests = {u for u in dag_nodes if u.startswith("test.")}
    cli_tests = {u for u in cli_nodes if u.startswith("test.")}
    assert dag_tests == cli_tests, (sorted(cli_tests - dag_tests), sorted(dag_tests - cli_tests))
    assert set(dag_nodes) == set(cli_nodes) == _manifest_nodes("model", "test")
    assert {u.split(".")[0] for u in dag_nodes} == {"model", "test"}
    assert {"success", "pass", "warn"} >= {n["status"] for n in dag_nodes.values()}
    # the staging view of the chats has unit tests only (CI's), so no test task: nothing of it left out
    assert not [u for u in _manifest_nodes("test") if "stg_raw__chats" in u]

    _release_dbt_duckdb()
    dag_marts, cli_marts = _marts(Home(dag_home).warehouse), _marts(Home(cli_home).warehouse)
    assert set(dag_marts) == set(cli_marts)
    assert {"fct_chats", "daily_resolutions", "hourly_distribution"} <= set(dag_marts)
    for name in cli_marts:
        assert dag_marts[name] == cli_marts[name], name
    assert len(dag_marts["fct_chats"]) > 4_000

    # publish and report ran after the dbt group, fed by the Cosmos callback's build record
    published = Home(dag_home).serving / "analytics.duckdb"
    assert published.is_file() and (Home(dag_home).serving / "report.html").is_file()
    with duckdb.connect(str(published), read_only=True) as con:
        info = "select run_id, tests_error, engine from analytics._build_info"
        run_id, errors, engine = con.execute(info).fetchone()
        rows = con.execute("select count(*) from analytics.fct_chats").fetchone()[0]
    assert run_id == dag_run.run_id and errors == 0
    # the green build recorded its engine: a Spark build after it rebuilds in full
    assert engine == "duckdb"
    assert json.loads((Home(dag_home).warehouse_dir / "engine.json").read_text()) == {"engine": "duckdb"}
    assert rows == len(dag_marts["fct_chats"])
    # ... and both published files count the same tests
    assert _test_counts(published) == _test_counts(Home(cli_home).serving / "analytics.duckdb")

    # issue 14: one history row per run, from the same code for both orchestrators
    history = "select run_id, trigger, status, files_loaded, chats_published from monitoring.run_history"
    (airflow_row,) = duckdb.connect(str(Home(dag_home).warehouse), read_only=True).execute(history).fetchall()
    assert airflow_row == (dag_run.run_id, "airflow", "success", airflow_row[3], rows) and airflow_row[3] > 0
    (cli_row,) = duckdb.connect(str(Home(cli_home).warehouse), read_only=True).execute(history).fetchall()
    assert cli_row[1:3] == ("cli", "success")


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def test_bad_landing_file_fails_at_ingest_alerts_and_stops_everything(
    airflow_db: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    webhook: tuple[str, list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, received = webhook
    home = Home(tmp_path / "home")
    generate(home, chats=300, start=START, end=date(2000, 1, 3), seed=5, dirty=False)
    bad = home.landing_chats / "chats_2000-01-04.csv"
    bad.write_text("id,chat_category_id,created_at,is_customer_initiated\nx,,2000-01-04 10:00:00,true\n")
    monkeypatch.setenv("CHAT_ANALYTICS_ALERT_WEBHOOK", url)

    dag = _dagbag(home.root, monkeypatch).dags[PIPELINE]
    dag_run = dag.test()

    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states.pop("ingest") == ("failed", 1)  # a bad file is not retried
    assert {s for s, _ in states.values()} == {"upstream_failed"}, states

    alerts = [m for m in received if "attachments" in m]  # the task alert; the run's messages: issue 14
    assert len(alerts) == 1
    alert = alerts[0]
    texts = [m["text"] for m in received if "attachments" not in m]
    assert len(texts) == 2 and "started (airflow)" in texts[0]
    assert "FAILED at ingest" in texts[1] and bad.name in texts[1]
    fields = {f["title"]: f["value"] for f in alert["attachments"][0]["fields"]}
    assert fields["DAG"] == PIPELINE and fields["Task"] == "ingest"
    assert fields["Run"] == dag_run.run_id
    assert fields["Log"].startswith("http") and "/dags/chat_analytics/runs/" in fields["Log"]
    assert bad.name in fields["Error"] and "resolved_at" in fields["Error"]
    assert "ingest" in alert["text"]
    assert f"ALERT {PIPELINE}: task ingest failed in run {dag_run.run_id}" in caplog.text


def _unreadable_chat_times(home: Home) -> None:
    """Every chat timestamp unreadable: far above any error threshold of the chats checks."""
    for path in home.landing_chats.iterdir():
        lines = path.read_text().splitlines()
        rows = [line.split(",") for line in lines[1:]]
        path.write_text(
            "\n".join([lines[0], *(",".join([r[0], r[1], "not a time", r[3], ""]) for r in rows)]) + "\n"
        )


def test_error_severity_fails_the_run_on_the_first_try_and_shows_where(
    airflow_db: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    home = Home(tmp_path / "home")
    generate(home, chats=300, start=START, end=date(2000, 1, 2), seed=3, dirty=False)
    _unreadable_chat_times(home)
    monkeypatch.setenv("CHAT_ANALYTICS_ALERT_WEBHOOK", url)
    dag = _dagbag(home.root, monkeypatch).dags[PIPELINE]
    build = DBT_BUILD_TASK

    dag_run = dag.test()  # the DAG's own retries: none on the dbt tasks, so nothing to wait for

    states = _states(dag_run)
    failed = {t for t, (s, _) in states.items() if s == "failed"}
    assert str(dag_run.state) == "failed"
    assert states[build] == ("failed", 1)  # the build failed on its first and only try
    watchers = failed - {build}
    assert watchers and all(t.startswith("dbt.") and t.endswith("test") for t in watchers), failed
    assert all(states[t][1] == 1 for t in failed)
    # what depends on a failed check is stopped; the branches that do not still show their models
    stopped = set().union(*(dag.get_task(t).get_flat_relative_ids(upstream=False) for t in watchers))
    stopped |= dag.get_task(build).get_flat_relative_ids(upstream=False) & {
        "dbt.dbt_producer_watcher_done",
        "publish",
        "report",
    }
    for task_id, (state, _) in states.items():
        if task_id in failed:
            continue
        expected = "upstream_failed" if task_id in stopped else "success"
        assert state == expected, (task_id, state)
    assert states["ingest"] == ("success", 1)
    assert states["dbt.stg_raw__categories.test"] == ("success", 1)
    alerts = [m for m in received if "attachments" in m]  # the run's own messages: issue 14
    alerted = {f["value"] for a in alerts for f in a["attachments"][0]["fields"] if f["title"] == "Task"}
    assert alerted == failed
    assert [m["text"] for m in received if "attachments" not in m][-1].count("FAILED at dbt.") == 1
    _release_dbt_duckdb()
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        status, step, trigger = con.execute(
            "select status, failed_step, trigger from monitoring.run_history"
        ).fetchone()
        assert (status, trigger) == ("failed", "airflow") and step in failed
        assert (
            con.execute("select count(*) from monitoring.test_history where status = 'fail'").fetchone()[0]
            >= 1
        )
    assert not (home.serving / "analytics.duckdb").exists()
    _release_dbt_duckdb()


def test_a_retry_never_turns_a_failed_build_green(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with retries configured on every dbt task (the build's too), a failure is never dropped.

    Cosmos skips a retried build task (no second `dbt build`) and with it the tasks watching it; a
    retried model or test task runs its dbt node again on the same data. Either way the run fails:
    `publish` still runs after skipped tasks and refuses the build record's failures.
    """
    home = Home(tmp_path / "home")
    generate(home, chats=300, start=START, end=date(2000, 1, 2), seed=3, dirty=False)
    _unreadable_chat_times(home)
    dag = _dagbag(home.root, monkeypatch).dags[PIPELINE]
    for task in dag.tasks:
        if task.task_id.startswith("dbt."):
            task.retries, task.retry_delay, task.retry_exponential_backoff = 1, timedelta(0), 0

    dag_run = dag.test()

    states = _states(dag_run)
    assert str(dag_run.state) == "failed", states
    assert "success" not in {states["publish"][0], states["report"][0]}
    assert states["publish"][0] in ("failed", "upstream_failed")
    assert not (home.serving / "analytics.duckdb").exists()
    record = json.loads((home.warehouse_dir / "last_build.json").read_text())
    assert record["build_id"] == dag_run.run_id
    assert {"fail", "error"} & {n["status"] for n in record["nodes"].values()}
    _release_dbt_duckdb()


def test_publish_refuses_when_the_build_reported_nothing(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build task marked successful without running (as by hand in the UI): every model's task goes
    green (no result to watch), but publish finds no dbt result of this run in the record and refuses."""
    home = Home(tmp_path / "home")
    generate(home, chats=300, start=START, end=date(2000, 1, 2), seed=8, dirty=False)
    dag = _dagbag(home.root, monkeypatch).dags[PIPELINE]
    build = DBT_BUILD_TASK

    dag_run = dag.test(mark_success_pattern=re.escape(build))

    states = _states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states["publish"] == ("failed", 1)  # refused, not retried
    assert states["report"][0] == "upstream_failed"
    assert not (home.serving / "analytics.duckdb").exists()
    record = json.loads((home.warehouse_dir / "last_build.json").read_text())
    assert record["build_id"] == dag_run.run_id and record["status"] == "finished"
    assert record["error"].startswith("no dbt result for ")
    _release_dbt_duckdb()


@pytest.fixture
def api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Airflow's own API server (REST API v2, simple auth manager) on this test's metadata database."""
    import uvicorn
    from airflow.api_fastapi.app import create_app, purge_cached_app

    user, password = "note-tester", "note-test-password"
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({user: password}))
    for key, value in {
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "test-only-secret-" + "x" * 48,
        "CHAT_ANALYTICS_AIRFLOW_USER": user,
        "CHAT_ANALYTICS_AIRFLOW_PASSWORD": password,
    }.items():
        monkeypatch.setenv(key, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(apps="core"), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.1)
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("CHAT_ANALYTICS_AIRFLOW_API_URL", url)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        purge_cached_app()


def test_warnings_become_notes_on_the_task_and_the_run(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_server: str
) -> None:
    """A warn-severity finding leaves the build task green but noted, and the run's note counts it."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    home = Home(tmp_path / "home")
    generate(home, chats=300, start=START, end=date(2000, 1, 2), seed=3, dirty=False)
    dag = _dagbag(home.root, monkeypatch).dags[PIPELINE]
    build = DBT_BUILD_TASK

    dag_run = dag.test()

    assert str(dag_run.state) == "success", _states(dag_run)
    record = json.loads((home.warehouse_dir / "last_build.json").read_text())
    warned = sorted(u.split(".")[2] for u, n in record["nodes"].items() if n["status"] == "warn")
    assert warned  # the sample's categories have empty `disabled` values: warn-severity findings
    with create_session() as session:
        run_note = session.query(DagRun).filter_by(dag_id=PIPELINE, run_id=dag_run.run_id).one().note
        ti = (
            session.query(TaskInstance).filter_by(dag_id=PIPELINE, run_id=dag_run.run_id, task_id=build).one()
        )
        build_state, build_note = str(ti.state), ti.note
    assert build_state == "success"  # warnings never fail the task
    assert run_note and run_note.startswith(f"**{len(warned)} warn-severity finding")
    assert (home.serving / "report.html").as_uri() in run_note and "/dags/chat_analytics/runs/" in run_note
    assert build_note and build_note.startswith(f"{len(warned)} warn-severity finding")
    assert all(name in build_note and name in run_note for name in warned)
    # what the UI shows: the same notes through the REST API
    token = _api_call(
        api_server, "POST", "/auth/token", {"username": "note-tester", "password": "note-test-password"}
    )
    run_path = f"/api/v2/dags/{PIPELINE}/dagRuns/{urllib.parse.quote(dag_run.run_id, safe='')}"
    assert _api_call(api_server, "GET", run_path, token=token["access_token"])["note"] == run_note
    shown = _api_call(api_server, "GET", f"{run_path}/taskInstances/{build}", token=token["access_token"])
    assert shown["note"] == build_note
    # the other tasks carry no note
    with create_session() as session:
        noted = {t.task_id for t in session.query(TaskInstance).filter_by(run_id=dag_run.run_id) if t.note}
    assert noted == {build}
    _release_dbt_duckdb()


def _api_call(base: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_sample_feed_dag_drops_the_next_day(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "home")
    generate(home, chats=300, start=START, end=date(2000, 1, 3), seed=4, dirty=False)
    dag = _dagbag(home.root, monkeypatch).dags[FEED]
    dag_run = dag.test()
    assert str(dag_run.state) == "success"
    assert (home.landing_chats / "chats_2000-01-04.csv").is_file()
