"""Fault injection: `chat-analytics run` killed with SIGKILL at many points of ingest, build and publish.

A green baseline is published first; then the next days' extracts land and a run is killed: by the
pipeline's own fault hooks (`CHAT_ANALYTICS_FAULT`, inside the ingest commit and between the publish
steps) or from outside, as soon as a given line appears in its log (dbt models and tests mid-build). After
every kill:

* the books balance: every file in the manifest has exactly its rows in raw storage, and nothing of a
  file that is not in the manifest is visible;
* `serving/` holds one whole release, the old one or the new one: the database and the Parquet files come
  from the same run, and the database's rows match its own `_build_info`;
* after a kill inside the build, `publish` refuses (the newest build never finished green) and leaves
  `serving/` as it was;
* a plain rerun goes green, leaves no orphan rows, and publishes exactly the marts of a run that was never
  interrupted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from chat_analytics.paths import Home

CLI = [sys.executable, "-m", "chat_analytics.cli"]
HELD_BACK = 3  # newest chats files that arrive after the baseline
KILL_TIMEOUT = 240  # seconds a run may take to reach its kill point


@dataclass(frozen=True)
class KillPoint:
    name: str
    fault: str | None = None  # CHAT_ANALYTICS_FAULT: the pipeline kills itself
    marker: str | None = None  # regex on the run's log: the test kills it when the line appears
    delay: float = 0.0  # seconds after the marker
    in_build: bool = False  # killed after the build started and before it recorded a green finish


KILL_POINTS = [
    KillPoint("ingest-before-commit", fault="before-commit:{last_file}"),
    KillPoint("ingest-during-commit", fault="during-commit:{last_file}:1"),
    KillPoint("ingest-during-commit-later", fault="during-commit:{last_file}:25"),
    KillPoint(
        "build-incremental-model",
        marker=r"START sql incremental model intermediate\.int_chat_versions_classified",
        delay=0.3,
        in_build=True,
    ),
    KillPoint("build-fct-chats", marker=r"START sql incremental model analytics\.fct_chats", in_build=True),
    KillPoint(
        "build-marts-tests",
        marker=r"OK created sql table model analytics\.daily_resolutions",
        delay=0.2,
        in_build=True,
    ),
    KillPoint("build-finished-before-record", marker=r"Finished running", in_build=True),
    KillPoint("publish-after-database-written", fault="publish:after-database-written"),
    KillPoint("publish-before-switch", fault="publish:before-switch"),
    KillPoint("publish-after-switch", fault="publish:after-switch"),
]


def _run(home: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> int:
    proc = subprocess.run(
        [*CLI, *args, "--home", str(home)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"chat-analytics {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.returncode


def _chats_files(home: Path) -> list[Path]:
    return sorted((home / "landing" / "chats").iterdir())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A green baseline home, the held-back files, and the marts of an uninterrupted follow-up run."""
    root = tmp_path_factory.mktemp("faults")
    base = root / "baseline"
    _run(base, "generate", "--chats", "30000", "--seed", "11")
    held = root / "held"
    held.mkdir()
    for path in _chats_files(base)[-HELD_BACK:]:
        shutil.move(path, held / path.name)
    _run(base, "run")
    expected = root / "expected"
    _copy_home(base, expected)
    _land(held, expected)
    _run(expected, "run")
    return {
        "base": base,
        "held": held,
        "baseline_run": _serving_state(base)["run_id"],
        "expected_marts": _published_marts(expected),
    }


def _copy_home(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)


def _land(held: Path, home: Path) -> None:
    for path in sorted(held.iterdir()):
        shutil.copy2(path, home / "landing" / "chats" / path.name)


def _serving_state(home: Path) -> dict:
    """The published release as a reader sees it; asserts the database and Parquet are one release."""
    serving = home / "serving"
    with duckdb.connect(str(serving / "analytics.duckdb"), read_only=True) as con:
        run_id, counts = con.execute("select run_id, row_counts from analytics._build_info").fetchone()
        chats = con.execute("select count(*) from analytics.fct_chats").fetchone()[0]
        parquet_run = con.execute(
            "select run_id from read_parquet(?)", [str(serving / "parquet" / "_build_info.parquet")]
        ).fetchone()[0]
        parquet_chats = con.execute(
            "select count(*) from read_parquet(?)",
            [str(serving / "parquet" / "fct_chats" / "**" / "*.parquet")],
        ).fetchone()[0]
    assert chats == counts["fct_chats"], "the published database differs from its own _build_info"
    assert parquet_run == run_id, f"database from {run_id}, Parquet from {parquet_run}"
    assert parquet_chats == chats
    return {"run_id": run_id, "chats": chats}


def _parquet_bytes(home: Path) -> dict[str, bytes]:
    folder = home / "serving" / "parquet"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _published_marts(home: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(home / "serving" / "analytics.duckdb"), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'main' "
                "and table_name <> '_build_info' order by 1"
            ).fetchall()
        ]
        return {
            name: sorted(con.execute(f'select * from analytics."{name}"').fetchall(), key=repr)
            for name in names
        }


def _books(home: Path) -> None:
    """Every manifest batch has exactly its rows; raw views show nothing of unlisted batches."""
    with duckdb.connect(str(Home(home).warehouse), read_only=True) as con:
        for entity in ("chats", "categories"):
            bad = con.execute(
                f"""
                select f.file_name, f.rows_loaded, count(d._batch_id)
                from raw.ingested_files as f
                left join raw.{entity}_data as d on d._batch_id = f.batch_id
                where f.entity = ? and f.status = 'loaded'
                group by all
                having count(d._batch_id) <> f.rows_loaded
                """,
                [entity],
            ).fetchall()
            assert not bad, f"{entity}: manifest and raw rows disagree: {bad[:3]}"
            shown = con.execute(f"select count(*) from raw.{entity}").fetchone()[0]
            listed = con.execute(
                "select coalesce(sum(rows_loaded), 0) from raw.ingested_files "
                "where entity = ? and status = 'loaded'",
                [entity],
            ).fetchone()[0]
            assert shown == listed, f"raw.{entity} shows {shown} rows, the manifest lists {listed}"


def _orphans(home: Path) -> int:
    with duckdb.connect(str(Home(home).warehouse), read_only=True) as con:
        return sum(
            con.execute(
                f"select count(*) from raw.{entity}_data "
                "where _batch_id not in (select batch_id from raw.ingested_files)"
            ).fetchone()[0]
            for entity in ("chats", "categories")
        )


def _run_until_killed(home: Path, point: KillPoint, last_file: str) -> str:
    """Start `run`; it dies by its fault hook, or the test kills its process group at the marker."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if point.fault:
        env["CHAT_ANALYTICS_FAULT"] = point.fault.format(last_file=last_file)
    proc = subprocess.Popen(
        [*CLI, "run", "--home", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # dbt logs to stdout, the pipeline to stderr: one stream
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    killed = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if point.marker and not killed.is_set() and re.search(point.marker, line):
                time.sleep(point.delay)
                os.killpg(proc.pid, signal.SIGKILL)
                killed.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=KILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(
            f"{point.name}: the run neither reached its kill point nor ended:\n{''.join(lines)[-3000:]}"
        )
    reader.join(timeout=10)
    log = "".join(lines)
    assert code == -signal.SIGKILL, f"{point.name}: expected a SIGKILL, the run exited {code}:\n{log[-3000:]}"
    return log


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.name)
def test_killed_run_recovers(prepared: dict, point: KillPoint, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _copy_home(prepared["base"], home)
    _land(prepared["held"], home)
    last_file = sorted(prepared["held"].iterdir())[-1].name

    _run_until_killed(home, point, last_file)

    # Right after the kill: one whole release in serving, and the books balance.
    after_kill = _serving_state(home)
    assert after_kill["run_id"] == prepared["baseline_run"] or not point.in_build
    _books(home)
    if point.in_build:
        before = _parquet_bytes(home)
        assert _run(home, "publish", check=False) != 0, "publish went ahead after a killed build"
        assert _serving_state(home)["run_id"] == prepared["baseline_run"]
        assert _parquet_bytes(home) == before

    # A plain rerun completes and publishes what an uninterrupted run would have.
    _run(home, "run")
    assert _orphans(home) == 0
    _books(home)
    final = _serving_state(home)
    assert final["run_id"] != prepared["baseline_run"]
    assert _published_marts(home) == prepared["expected_marts"]
