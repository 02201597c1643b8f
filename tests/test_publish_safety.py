"""Publishing safely: releases switched as one unit, killed builds and publishes, one pipeline at a time.

* A killed build leaves its record `running`, and `publish` refuses it (issue 11, item 3).
* `serving/` is a set of fixed links to `current`, a link to one complete, read-only release: a
  read-write session opened before a publish cannot change what later readers see; a publish killed at
  any point leaves the old release whole (database and Parquet from the same run) and the next one
  tidies up; an older layout is migrated (item 6).
* One pipeline command at a time per home: a second exits at once with one line naming the holder, or
  waits with `--wait SECONDS` (item 9).
* A serving path or a home that cannot be written ends in one clear line, never a traceback (item 14).

Commands run as real `chat-analytics` subprocesses where a kill or a second process is the point.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from chat_analytics.cli import _parser
from chat_analytics.cli import main as cli_main
from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.build_record import (
    FINISHED,
    RUNNING,
    BuildRecord,
    ensure_running,
    finish_cosmos_build,
    record_path,
    start_build,
)
from chat_analytics.pipeline.lock import PipelineBusy, holder, lock_path, pipeline_lock
from chat_analytics.serving.publish import (
    BUILD_INFO,
    CURRENT,
    RELEASES,
    PublishRefused,
    current_release,
    publish,
)

CLI = str(Path(sys.executable).with_name("chat-analytics"))
TIMEOUT = 300


@pytest.fixture(scope="module")
def green(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A home after one green `run` (small sample): the tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("safety") / "green"
    args = ["--home", str(root)]
    assert cli_main(["generate", *args, "--chats", "3000", "--seed", "3"]) == 0
    assert cli_main(["run", *args]) == 0
    return Home(root)


@pytest.fixture
def home(green: Home, tmp_path: Path) -> Home:
    """A private copy of the green home (links copied as links, as `cp -a` would)."""
    copy = Home(tmp_path / "home")
    shutil.copytree(green.root, copy.root, symlinks=True)
    return copy


def _cli(home: Home, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args, "--home", str(home.root)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _state(home: Home) -> dict[str, object]:
    """What a reader sees: run id and chats of the database and of the Parquet files (must agree)."""
    with duckdb.connect(str(home.serving_database), read_only=True) as con:
        run_id, counts = con.execute(f"select run_id, row_counts from analytics.{BUILD_INFO}").fetchone()
        chats = con.execute("select count(*) from analytics.fct_chats").fetchone()[0]
        parquet = home.serving_parquet
        parquet_run = con.execute(
            "select run_id from read_parquet(?)", [str(parquet / f"{BUILD_INFO}.parquet")]
        ).fetchone()[0]
        parquet_chats = con.execute(
            "select count(*) from read_parquet(?)", [str(parquet / "fct_chats" / "**" / "*.parquet")]
        ).fetchone()[0]
    assert chats == counts["fct_chats"], "the published database differs from its own _build_info"
    assert (parquet_run, parquet_chats) == (run_id, chats), "database and Parquet from different runs"
    return {"run_id": run_id, "chats": chats}


def _visible(home: Home) -> dict[str, str]:
    """Digest of serving/ as readers see it (through the links) plus the links themselves."""
    serving = home.serving
    seen = {}
    for name in ("analytics.duckdb", "report.html"):
        seen[name] = hashlib.sha256((serving / name).read_bytes()).hexdigest()
    parquet = home.serving_parquet
    for path in sorted(p for p in parquet.rglob("*") if p.is_file()):
        seen[f"parquet/{path.relative_to(parquet)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in (CURRENT, "analytics.duckdb", "parquet"):
        if (serving / name).is_symlink():
            seen[f"link {name}"] = os.readlink(serving / name)
    return seen


def _all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_tidy(home: Home, releases: int) -> None:
    """Exactly `releases` complete releases (current first), the fixed links, no temporary leftovers."""
    serving = home.serving
    assert os.readlink(serving / "analytics.duckdb") == "current/analytics.duckdb"
    assert os.readlink(serving / "parquet") == "current/parquet"
    current = current_release(home)
    assert current is not None and current.parent == (serving / RELEASES).resolve()
    kept = sorted(p.name for p in (serving / RELEASES).iterdir())
    assert len(kept) == releases and current.name in kept, kept
    hidden = sorted(p.name for p in serving.iterdir() if p.name.startswith("."))
    assert hidden == [RELEASES], hidden
    stray = [str(p) for p in serving.rglob("*") if p.name.endswith((".wal", ".tmp")) or ".tmp-" in p.name]
    assert not stray, stray


# ---- item 6: releases ------------------------------------------------------------------------------


def test_serving_is_fixed_links_to_one_read_only_release(green: Home) -> None:
    serving = green.serving
    release = current_release(green)
    assert release is not None
    assert os.readlink(serving / CURRENT) == f"{RELEASES}/{release.name}"  # relative: the home can move
    _assert_tidy(green, releases=1)
    assert green.serving_database.resolve() == release / "analytics.duckdb"
    assert green.serving_parquet.resolve() == release / "parquet"
    files = [p for p in (release / "parquet").rglob("*") if p.is_file()]
    assert any(p.parent.name.startswith("created_month=") for p in files)  # issue 12: by month
    for path in [release / "analytics.duckdb", release / "publish_state.json", *files]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    assert _state(green)["run_id"].startswith("cli-")


def test_a_read_write_session_opened_before_a_publish_cannot_change_the_published_data(home: Home) -> None:
    first = current_release(home)
    assert first is not None
    if os.geteuid() != 0:  # the release is read-only: a read-write open is refused outright ...
        with pytest.raises(duckdb.Error):
            duckdb.connect(str(home.serving_database))
        (first / "analytics.duckdb").chmod(0o644)  # ... so force it, as root could, to test the rest
    analyst = duckdb.connect(str(home.serving_database))  # read-write, through the link
    try:
        before = analyst.execute("select count(*) from analytics.fct_chats").fetchone()[0]
        result = publish(home, run_id="after-the-session")
        analyst.execute("insert into analytics.fct_chats select * from analytics.fct_chats limit 5")
        analyst.execute(f"delete from analytics.{BUILD_INFO}")
        assert analyst.execute("select count(*) from analytics.fct_chats").fetchone()[0] == before + 5
    finally:
        analyst.close()
    # the analyst's rows went into the old release; readers of serving/ see exactly the new one
    assert (first / "analytics.duckdb").exists() and current_release(home) == result.release != first
    state = _state(home)
    assert state == {"run_id": "after-the-session", "chats": result.row_counts["fct_chats"]}
    assert not list(result.release.glob("*.wal")) and not list(home.serving.glob("*.wal"))
    # the next publish removes the release the analyst wrote into; the previous one stays for readers
    second = publish(home, run_id="next")
    assert not first.exists() and result.release.is_dir() and current_release(home) == second.release
    _assert_tidy(home, releases=2)
    assert _state(home)["run_id"] == "next"


@pytest.mark.parametrize(
    "fault", ["publish:after-database-written", "publish:before-switch", "publish:after-switch"]
)
def test_a_killed_publish_leaves_one_whole_release_and_the_next_one_tidies_up(home: Home, fault: str) -> None:
    before, seen = _state(home), _visible(home)
    done = _cli(home, "publish", "--run-id", "killed", env={"CHAT_ANALYTICS_FAULT": fault})
    assert done.returncode == -signal.SIGKILL, done.stderr
    after = _state(home)  # asserts the database and the Parquet files are from one run
    if fault == "publish:after-switch":  # killed after the one rename: the new release is whole
        assert after["run_id"] == "killed" and after["chats"] == before["chats"]
    else:
        assert after == before and _visible(home) == seen, "a killed publish changed what readers see"
        assert list((home.serving / RELEASES).iterdir()) != [current_release(home)], "left something"
    done = _cli(home, "publish", "--run-id", "rerun")
    assert done.returncode == 0, done.stderr
    assert _state(home)["run_id"] == "rerun"
    _assert_tidy(home, releases=2)


def test_the_older_layout_is_migrated(home: Home) -> None:
    """A plain analytics.duckdb, `parquet` -> .parquet-<stamp>/, and what killed publishes left then."""
    serving, release = home.serving, current_release(home)
    assert release is not None
    for name in ("analytics.duckdb", "parquet", CURRENT):
        (serving / name).unlink()
    shutil.copy(release / "analytics.duckdb", serving / "analytics.duckdb")
    shutil.copytree(release / "parquet", serving / ".parquet-20000101T000000-abc")
    (serving / "parquet").symlink_to(".parquet-20000101T000000-abc")
    shutil.rmtree(serving / RELEASES)
    (serving / ".parquet-19990101T000000-old").mkdir()
    for name in (".analytics.duckdb.1999.tmp", ".analytics.duckdb.1999.tmp.wal", ".publish.lock"):
        (serving / name).write_bytes(b"left behind")
    old = _state(home)

    result = publish(home, run_id="migrated")
    assert _state(home) == {"run_id": "migrated", "chats": old["chats"]}
    _assert_tidy(home, releases=1)
    assert current_release(home) == result.release
    assert (serving / "report.html").is_file(), "files publish does not own stay"


def test_a_plain_parquet_folder_is_replaced_too(home: Home) -> None:
    serving, release = home.serving, current_release(home)
    assert release is not None
    (serving / "parquet").unlink()
    shutil.copytree(release / "parquet", serving / "parquet")
    publish(home, run_id="from-a-folder")
    assert _state(home)["run_id"] == "from-a-folder"
    _assert_tidy(home, releases=2)


@contextmanager
def _undeletable(path: Path) -> Iterator[None]:
    """`path` (a file) cannot be removed in the block: immutable for root, else in a read-only folder."""
    if os.geteuid() != 0:
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    done = subprocess.run([chattr or "chattr", "+i", str(path)], capture_output=True, check=False)
    if chattr is None or done.returncode != 0:
        pytest.skip("root, and `chattr +i` is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_an_old_release_that_cannot_be_removed_is_named_in_a_warning(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    first = current_release(home)
    assert first is not None
    # issue 12: a month of fct_chats, hard-linked into the later releases while it did not change
    [stuck, *_] = sorted((first / "parquet" / "fct_chats").glob("*/*.parquet"))
    publish(home, run_id="second")  # the first release is kept, as the previous one
    with _undeletable(stuck), caplog.at_level(logging.WARNING, logger="chat_analytics.serving.publish"):
        publish(home, run_id="third")  # removes the first release: all but one file of it
        assert stuck.exists()
    assert _state(home)["run_id"] == "third", "published all the same"
    [warning] = [r.getMessage() for r in caplog.records if "could not remove" in r.getMessage()]
    assert first.name in warning and stuck.name in warning and "remove it by hand" in warning, warning
    publish(home, run_id="fourth")  # removable again: the next publish removes it
    assert not first.exists()
    _assert_tidy(home, releases=2)


@pytest.mark.parametrize(
    ("fault", "killed"),
    [
        ("test:point", True),
        ("test:point:0", True),  # from a timer thread, just after the point
        ("test:pointer", False),
        ("test:point:file.csv", False),  # another point, not a delay
        ("test", False),
        ("", False),
    ],
)
def test_one_fault_hook_for_every_step(fault: str, killed: bool) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, time\n"
            "from chat_analytics.pipeline.faults import fault_point\n"
            "fault_point('test:point')\n"
            "time.sleep(60 if os.environ['CHAT_ANALYTICS_FAULT'].endswith(':0') else 0)\n",  # the timer
        ],
        env={**os.environ, "CHAT_ANALYTICS_FAULT": fault},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == (-signal.SIGKILL if killed else 0), done.stderr
    package = Path(__file__).parents[1] / "src" / "chat_analytics"
    for module in ("pipeline/ingest", "pipeline/build", "serving/publish"):  # the steps use this hook
        source = (package / f"{module}.py").read_text()
        assert (
            "from chat_analytics.pipeline.faults import fault_point" in source and "FAULT_ENV" not in source
        )


def test_the_duckdb_cli_and_make_query_read_through_the_links(green: Home) -> None:
    duckdb_cli = Path(sys.executable).with_name("duckdb")
    done = subprocess.run(
        [str(duckdb_cli), "-readonly", "-json", str(green.serving_database)],
        input=f"select run_id from {BUILD_INFO};",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["run_id"] == _state(green)["run_id"]


# ---- item 3: a killed build is never published -----------------------------------------------------


def _kill_build_mid_model(home: Home) -> str:
    """Start `chat-analytics build`; SIGKILL it as soon as dbt starts a model; return its output."""
    proc = subprocess.Popen(
        [CLI, "build", "--home", str(home.root)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"START sql \w+ model", line):
                os.killpg(proc.pid, signal.SIGKILL)
                return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    assert code == -signal.SIGKILL, "".join(lines)[-3000:]
    return "".join(lines)


def test_a_killed_build_is_not_published(home: Home) -> None:
    assert BuildRecord.load(home).ok, "starts from a green build"
    before = _all_files(home.serving)
    _kill_build_mid_model(home)
    record = BuildRecord.load(home)
    assert record.status == RUNNING and not record.ok and record.started_at

    done = _cli(home, "publish")
    assert done.returncode == 1
    [line] = _log_lines(done.stderr)
    assert "not publishing: the last build" in line and "never finished" in line
    assert str(home.serving_database) in line and "stays as it was" in line
    assert _all_files(home.serving) == before, "publish after a killed build changed serving/"

    assert _cli(home, "build").returncode == 0
    record = BuildRecord.load(home)
    assert record.ok and record.status == FINISHED and record.finished_at
    assert _cli(home, "publish", "--run-id", "after-rebuild").returncode == 0
    assert _state(home)["run_id"] == "after-rebuild"


def test_raw_changes_after_the_build_started_are_not_published_as_its_marts(home: Home) -> None:
    """Files loaded or retracted after a build started (a CLI `ingest`/`retract` between `build` and
    `publish`, or between two dbt tasks of an Airflow run) make publish refuse until a new build."""
    assert BuildRecord.load(home).ok, "starts from a green build"
    before = _all_files(home.serving)
    chats = sorted(home.landing_chats.iterdir())
    extra = home.landing_chats / "chats_2001-01-01.csv"
    header = chats[0].read_text(encoding="utf-8").splitlines()[0]
    extra.write_text(f"{header}\nlate-1,,2001-01-01 10:00:00,true,\n", encoding="utf-8")
    assert _cli(home, "ingest").returncode == 0

    done = _cli(home, "publish")
    assert done.returncode == 1
    [line] = _log_lines(done.stderr)
    assert "raw data changed since build" in line and "build again" in line
    assert _all_files(home.serving) == before, "publish after a raw change changed serving/"

    assert _cli(home, "build").returncode == 0
    assert _cli(home, "retract", extra.name).returncode == 0
    assert _cli(home, "publish").returncode == 1, "a retraction after the build must block publish too"
    assert _all_files(home.serving) == before

    assert _cli(home, "build").returncode == 0
    assert _cli(home, "publish", "--run-id", "after-rebuild").returncode == 0
    assert _state(home)["run_id"] == "after-rebuild"


def test_build_record_format_and_the_airflow_path(home: Home, tmp_path: Path) -> None:
    # a record written before builds marked their start reads as a finished build
    data = json.loads(record_path(home).read_text())
    assert data["format"] == 2 and data["status"] == FINISHED and data["build_id"].startswith("cli-")
    old = {k: v for k, v in data.items() if k not in {"status", "build_id", "started_at", "finished_at"}}
    record_path(home).write_text(json.dumps({**old, "format": 1}))
    assert BuildRecord.load(home).ok

    # Airflow: ingest starts the record, each dbt task keeps it running, publish finishes it
    nodes = set(data["nodes"])
    start_build(home, build_id="run-1")
    with pytest.raises(PublishRefused, match=r"run-1 .*never finished"):
        publish(home)
    record = BuildRecord.load(home)
    record.nodes = data["nodes"]  # what the dbt tasks' callbacks merge
    record.save(home)
    ensure_running(home, "run-1")
    assert BuildRecord.load(home).nodes == data["nodes"], "a dbt task keeps the results so far"
    with pytest.raises(UserError, match="not this run's"):
        finish_cosmos_build(home, "run-2", expected=nodes)
    assert finish_cosmos_build(home, "run-1", expected=nodes).ok
    assert publish(home, run_id="run-1").run_id == "run-1"
    # a build whose dbt tasks did not all report is not green
    start_build(home, build_id="run-3")
    record = BuildRecord.load(home)
    record.nodes = {k: v for k, v in data["nodes"].items() if not k.startswith("model.")}
    record.save(home)
    finished = finish_cosmos_build(home, "run-3", expected=nodes)
    assert not finished.ok and "no dbt result" in (finished.error or "")
    with pytest.raises(PublishRefused, match="no dbt result"):
        publish(home)


def test_a_build_between_two_airflow_tasks_lends_this_run_none_of_its_results(home: Home) -> None:
    """The DAG's ingest starts run-1, then `chat-analytics build` runs (green) before run-1's next dbt
    task: that task must not carry on with the CLI build's results, error or freshness."""
    green = BuildRecord.load(home)
    assert green.ok and green.freshness, "starts from a green build with freshness"
    expected = set(green.nodes)
    start_build(home, build_id="run-1")
    between = start_build(home, build_id="cli-in-between")  # the CLI build: every node, green
    between.nodes, between.freshness = green.nodes, green.freshness
    between.finish()
    between.save(home)

    ensure_running(home, "run-1")  # run-1's next dbt task starts
    record = BuildRecord.load(home)
    assert (record.build_id, record.status) == ("run-1", RUNNING)
    assert record.nodes == {} and record.freshness == {} and record.error is None, "kept another build's"
    finished = finish_cosmos_build(home, "run-1", expected=expected)
    assert not finished.ok and "no dbt result" in (finished.error or "")
    with pytest.raises(PublishRefused, match="no dbt result"):
        publish(home)

    # the same build's results stay (a retried dbt task adds to them), even after it was finished
    start_build(home, build_id="run-2")
    record = BuildRecord.load(home)
    record.nodes = green.nodes
    record.save(home)
    ensure_running(home, "run-2")
    assert BuildRecord.load(home).nodes == green.nodes
    assert finish_cosmos_build(home, "run-2", expected=expected).ok
    ensure_running(home, "run-2")
    record = BuildRecord.load(home)
    assert record.status == RUNNING and record.nodes == green.nodes
    # an unreadable record: this build starts afresh too
    record_path(home).write_text("{")
    ensure_running(home, "run-3")
    record = BuildRecord.load(home)
    assert (record.build_id, record.status, record.nodes) == ("run-3", RUNNING, {})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"format": 2, "status": "finished", "nodes": {"model.p.x": "pass"}}', "nodes['model.p.x']"),
        ('{"format": 2, "status": "finished", "nodes": ["model.p.x"]}', "'nodes' is not an object"),
        ('{"format": 2, "status": "finished", "nodes": {"m": {"status": ["error"]}}}', "status is not"),
        ('{"format": 2, "status": "finished", "freshness": {"raw.chats": 1}}', "freshness['raw.chats']"),
        ('{"format": 2, "status": 1}', "'status' is 1"),
        ('{"format": 2, "status": "done"}', "'status' is 'done'"),
        ('{"format": 2, "status": "finished", "finished_at": "yesterday"}', "not an ISO time"),
        ('{"format": 2, "status": "finished", "error": {"x": 1}}', "'error' is neither"),
        ('{"format": 2, "status": "finished", "dbt_version": 1.11}', "'dbt_version' is not a string"),
        ('{"format": 2, "status": "finished", "surprise": 1}', "unknown field(s) 'surprise'"),
        ('[{"format": 2}]', "not a JSON object"),
        ('{"format": 2, "status": "finished", "nodes": {"model', "Unterminated string"),
        ("", "Expecting value"),
    ],
)
def test_a_malformed_build_record_is_one_clear_line(
    tmp_path: Path, text: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    home = Home(tmp_path / "home")
    home.warehouse_dir.mkdir(parents=True)
    record_path(home).write_text(text)
    with pytest.raises(UserError) as raised:
        BuildRecord.load(home)
    message = str(raised.value)
    assert problem in message and str(record_path(home)) in message, message
    assert "run `chat-analytics build`" in message
    with caplog.at_level(logging.ERROR):
        assert cli_main(["publish", "--home", str(home.root)]) == 2
    assert problem in caplog.text


def test_a_malformed_build_record_stops_publish_without_a_traceback(home: Home) -> None:
    before = _all_files(home.serving)
    record_path(home).write_text('{"format": 2, "status": "finished", "nodes": {"x": "pass"}}')
    done = _cli(home, "publish")
    assert done.returncode == 2, done.stderr
    [line] = _log_lines(done.stderr)
    assert "Traceback" not in done.stderr and str(record_path(home)) in line and "nodes['x']" in line
    assert _all_files(home.serving) == before


# ---- item 9: one pipeline at a time ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bigger(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("lock") / "home"
    done = subprocess.run(
        [CLI, "generate", "--home", str(root), "--chats", "20000"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Home(root)


def _wait_for_holder(home: Home, proc: subprocess.Popen[str]) -> dict[str, object]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        info = holder(home)
        if info and info.get("pid") == proc.pid:
            return info
        assert proc.poll() is None, "the first run ended before it was seen holding the lock"
        time.sleep(0.05)
    pytest.fail("the first run never took the pipeline lock")


def test_a_second_run_stops_at_once_naming_the_holder_or_waits(bigger: Home) -> None:
    first = subprocess.Popen(
        [CLI, "run", "--home", str(bigger.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    waiting: subprocess.Popen[str] | None = None
    try:
        info = _wait_for_holder(bigger, first)
        assert info["command"] == f"chat-analytics run --home {bigger.root}" and info["host"]
        second = _cli(bigger, "run")
        waiting = subprocess.Popen(
            [CLI, "run", "--home", str(bigger.root), "--wait", "120"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert first.poll() is None, "inconclusive: the first run finished before the second started"
        _, first_err = first.communicate(timeout=TIMEOUT)
        _, waited_err = waiting.communicate(timeout=TIMEOUT)
    finally:
        for proc in (first, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert second.returncode == 2
    [line] = _log_lines(second.stderr)
    assert f"pid {first.pid}" in line and "chat-analytics run" in line and "--wait SECONDS" in line
    assert str(bigger.root) in line and f"on host {info['host']}" in line
    assert first.returncode == 0, first_err[-3000:]
    assert waiting.returncode == 0, waited_err[-3000:]
    assert f"waiting up to 120 s for the pipeline lock, held by pid {first.pid}" in waited_err
    assert "published" in waited_err


def test_every_pipeline_command_takes_the_lock(green: Home) -> None:
    commands = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        has_wait = any("--wait" in action.option_strings for action in sub._actions)
        assert has_wait == (name != "generate"), name
    with pipeline_lock(green, command="test holder"):
        assert holder(green)["pid"] == os.getpid()
        for name in ("ingest", "build", "publish", "report", "run"):
            done = _cli(green, name)
            assert done.returncode == 2, (name, done.stderr)
            [line] = _log_lines(done.stderr)
            assert f"held by pid {os.getpid()} (`test holder`)" in line, line
        # re-entrant within one process: `run` holds it while its steps take it again
        with pipeline_lock(green):
            pass
        assert holder(green)["pid"] == os.getpid()
    # free again: another process gets it
    done = _cli(green, "report")
    assert done.returncode == 0, done.stderr


def test_the_lock_is_released_when_its_holder_is_killed(green: Home) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from chat_analytics.paths import Home\n"
            "from chat_analytics.pipeline.lock import pipeline_lock\n"
            "with pipeline_lock(Home.resolve(sys.argv[1]), command='sleeper'):\n"
            "    print('locked', flush=True); time.sleep(600)\n",
            str(green.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(PipelineBusy, match=rf"pid {child.pid} .*sleeper"), pipeline_lock(green):
            pass
    finally:
        child.kill()
        child.wait()
    with pipeline_lock(green):  # the kernel released it with the process
        assert holder(green)["pid"] == os.getpid()
    assert lock_path(green).parent == green.warehouse_dir


_HOLD_UNTIL_STDIN_CLOSES = (
    "import sys\n"
    "from chat_analytics.paths import Home\n"
    "from chat_analytics.pipeline.lock import pipeline_lock\n"
    "with pipeline_lock(Home.resolve(sys.argv[1]), command=sys.argv[2]):\n"
    "    print('locked', flush=True); sys.stdin.read()\n"
)


def _holder_process(home: Home, command: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_UNTIL_STDIN_CLOSES, str(home.root), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def _busy_message(home: Home) -> str:
    """The message a pipeline command gets while a holder that has not written its name holds the lock."""
    fd = os.open(lock_path(home), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a holder that has not written its name (yet)
        with pytest.raises(PipelineBusy) as busy, pipeline_lock(home):
            pass
        return str(busy.value)
    finally:
        os.close(fd)


def test_the_lock_never_names_a_holder_that_has_exited(green: Home) -> None:
    # a holder that finished clears its name before it unlocks
    earlier = _holder_process(green, "earlier-holder")
    assert holder(green)["pid"] == earlier.pid
    earlier.communicate(timeout=60)
    assert earlier.returncode == 0
    assert lock_path(green).read_text() == "" and holder(green) is None
    message = _busy_message(green)
    assert "unknown holder" in message and "earlier-holder" not in message, message

    # a killed holder cannot clear it: its pid is no longer alive, so it is not named either
    killed = _holder_process(green, "killed-holder")
    killed.kill()
    killed.wait()
    assert holder(green)["pid"] == killed.pid, "the killed holder's name stays in the file"
    message = _busy_message(green)
    assert "unknown holder" in message and f"pid {killed.pid}" not in message, message
    assert "killed-holder" not in message

    # a live holder is named
    alive = _holder_process(green, "live-holder")
    try:
        with pytest.raises(PipelineBusy, match=rf"pid {alive.pid} \(`live-holder`\)"), pipeline_lock(green):
            pass
    finally:
        alive.communicate(timeout=60)


# ---- item 14: what cannot be written ---------------------------------------------------------------


def test_a_serving_path_that_is_a_file_is_one_clear_line(
    home: Home, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(home.serving)
    home.serving.write_text("not a folder")
    for command, code in (("publish", 2), ("report", 2)):
        done = _cli(home, command)
        assert done.returncode == code, done.stderr
        [line] = _log_lines(done.stderr)
        assert str(home.serving) in line and "Traceback" not in done.stderr, line
    assert home.serving.read_text() == "not a folder"
    with caplog.at_level(logging.ERROR):
        assert cli_main(["publish", "--home", str(home.root)]) == 2
    assert "must be a folder this user can write" in caplog.text


def test_a_home_whose_warehouse_cannot_be_created_is_one_clear_line(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure_landing()
    home.warehouse_dir.write_text("a file where the warehouse folder belongs")
    for command in ("ingest", "run", "publish"):
        done = _cli(home, command)
        assert done.returncode == 2, done.stderr
        [line] = _log_lines(done.stderr)
        assert "cannot create the pipeline lock" in line and str(home.root) in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0555")
def test_read_only_serving_and_home_folders_are_one_clear_line(home: Home, tmp_path: Path) -> None:
    home.serving.chmod(0o555)
    try:
        done = _cli(home, "publish")
        assert done.returncode == 2, done.stderr
        [line] = _log_lines(done.stderr)
        assert str(home.serving) in line and "Traceback" not in done.stderr
    finally:
        home.serving.chmod(0o755)
    locked_out = Home(tmp_path / "read-only-home")
    locked_out.ensure_landing()
    locked_out.root.chmod(0o555)
    try:
        done = _cli(locked_out, "ingest")
        assert done.returncode == 2, done.stderr
        [line] = _log_lines(done.stderr)
        assert "cannot create the pipeline lock" in line
    finally:
        locked_out.root.chmod(0o755)


@pytest.fixture(autouse=True)
def _no_leaked_locks() -> Iterator[None]:
    from chat_analytics.pipeline import lock as module

    yield
    assert not module._held, "a pipeline lock was left held in this process"
