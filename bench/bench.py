"""Pipeline benchmark: every step timed in a fresh home, against a plain-SQL floor, per size and per variant.

Usage: .venv/bin/python bench/bench.py [--sizes 50000,1000000,10000000] [--with-100m] [--reps 3]
       [--variants clean,iso-z-millis,...] [--variant-size 10000000] [--next-day-sizes 1000000,10000000]

Size rows (--sizes): in a fresh home under --out, generate, then time `chat-analytics ingest`, `build` and
`publish` (in that order, on a fresh warehouse) and, separately, the whole `chat-analytics run`. Each step
runs as its own process; its wall time and its peak resident memory come from the operating system
(`wait4` rusage of that child). Steps whose run takes under a minute are repeated --reps times and the
median is reported.

The floor is one DuckDB process that reads the same chats files once with explicit column types (the
variant's: TIMESTAMPTZ where values carry a zone; the boolean words and `null`/`NULL` read by DuckDB's CSV
reader) and computes the seven analyses in plain SQL, nothing else (exact repeats of earlier rows are
collapsed first where a variant has them, else the newest file's row of a chat wins). Below
--floor-file-from chats it runs in memory with DuckDB's defaults (retried as below when memory runs out);
from there on, in a database file with `memory_limit` --floor-memory-limit and a `temp_directory`, so its
tables are evicted to the file and its operators spill: it finishes at 100 M chats. The JSON says which
ran and how much it spilled.

Next-day rows (--next-day-sizes, default 1 M and 10 M; added to --sizes): the newest daily file (the
generator's: new chats plus new versions of earlier ones) is held back while the size row is timed, so
that row's `run` is the full run on the history. Then the warehouse and serving folders are copied aside
and, --reps times (each from that copy), the newest file is landed and `chat-analytics run` is timed.

Variant rows (--variants, default all of bench/variants.py; --variant-size, default 10 M): each variant's
files are made from the generator's output at that size into a fresh home; `chat-analytics run` and the
floor are timed on them. Correctness guard: the variants that only change spellings or the file layout
must publish clean's marts (bench/marts_guard.py: row counts and checksums of every serving table), and
no variant may quarantine, reject or fail more than clean; a difference is logged as an error, recorded,
and makes the bench exit with status 1 after writing its results. The worst run / floor counts.

Orchestration rows (--orchestration-size, default 1 M), on the same data as that size's `run`, from a
fresh warehouse: `dag.test()` of the DAG `chat_analytics` (bench/dag_run.py), and a real triggered
Airflow run through the REST API (bench/airflow_run.py, when it exists); a failure is recorded in the
results instead of stopping the bench. Each is reported as x of `run`.

Figures are printed and written to <out>/bench.json and <out>/bench.md (git-ignored): a table of the
sizes, the next-day rows, a table of the variants, the orchestration rows, a least-squares fit of `run`
seconds per million chats, and one verdict per target of issue 12.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import marts_guard  # bench/ is not a package: its modules are found through sys.path
import variants

from chat_analytics.dbt_vars import local_timezone
from chat_analytics.sql import literal

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPEAT_BELOW_SECONDS = 60.0
log = logging.getLogger("bench")

# targets of issue 12
TARGET_SMALL_RUN_S = 8.0
TARGET_RUN_OVER_FLOOR = 4.0
TARGET_NEXT_DAY_SHARE = 0.10
TARGET_NEXT_DAY_GROWTH = 2.0
TARGET_ORCHESTRATION = 1.5
TARGET_PEAK_MB = 8 * 1024

FLOOR_SQL = """
set enable_progress_bar = false;
set preserve_insertion_order = false;
set TimeZone = 'UTC';
set temp_directory = {spill};
{settings}
create table chats as
{latest};
create table daily as
with days as (
    select cast(timezone({zone}, resolved_at::timestamptz) as date) as day, customer
    from chats where resolved_at is not null
),
span as (select range::date as day from range((select min(day) from days), (select max(day) from days)
    + interval 1 day, interval 1 day))
select span.day, count(days.day) as resolved, count(days.day) filter (where days.customer) as customer
from span left join days using (day) group by span.day;
create table extremes as
select * from (select 'lowest' as extreme, day, resolved from daily order by resolved, day limit 1)
union all select * from (select 'highest', day, resolved from daily order by resolved desc, day limit 1);
create table median as select median(customer) as median_per_day, count(*) as days from daily;
create table categories as
select try_cast(id as UUID) as id, disabled from read_csv({categories}, header = true, all_varchar = true);
create table ranked as
select c.category_id, count(*) filter (where customer) as customer_chats, count(*) as total,
    count(resolved_at) * 100.0 / count(*) as resolution_rate,
    avg(epoch(resolved_at) - epoch(created_at)) / 3600 as avg_hours
from chats as c join categories as k on c.category_id = k.id
where coalesce(k.disabled, 'false') <> 'true' group by c.category_id;
create table top_customer as select * from ranked order by customer_chats desc, category_id limit 10;
create table lowest_rate as select * from ranked order by resolution_rate, category_id limit 10;
create table fastest as
select * from ranked where avg_hours is not null order by avg_hours, category_id limit 10;
create table hourly as
with local as (select timezone({zone}, created_at::timestamptz) as t from chats)
select isodow(t) as day_of_week, hour(t) as hour_of_day, count(*) as chats from local group by all;
"""

#: The chats files, read once, with the day in each file's name: ids as UUID (a fixed-size key, so the
#: aggregation below spills to disk when memory runs short); `{timestamp}` is TIMESTAMP or TIMESTAMPTZ;
#: empty, `null`, `NULL` are NULL; the boolean words are DuckDB's own.
FLOOR_READ = r"""(
    select *, regexp_extract(filename, '(\d{{4}}-\d{{2}}-\d{{2}})\.csv$', 1)::DATE as file_day
    from read_csv({chats}, header = true, auto_detect = false, filename = true,
        nullstr = ['', 'null', 'NULL'],
        columns = {{'id': 'UUID', 'chat_category_id': 'UUID', 'created_at': '{timestamp}',
                   'is_customer_initiated': 'BOOLEAN', 'resolved_at': '{timestamp}'}})
)"""
#: Exact repeats collapse to their first file first (a repeat of an old version must not win).
FLOOR_COLLAPSED = """(
    select id, chat_category_id, created_at, is_customer_initiated, resolved_at, min(file_day) as file_day
    from {read} group by all
)"""
#: Each chat's row from the newest file holding it, by a hash aggregation with fixed-size states (a
#: window over the rows does not spill: at 100 M chats it ran out of memory even with 19 GB).
FLOOR_LATEST = """select id, arg_max_null(chat_category_id, file_day) as category_id,
    arg_max_null(created_at, file_day) as created_at,
    arg_max_null(is_customer_initiated, file_day) as customer,
    arg_max_null(resolved_at, file_day) as resolved_at
from {rows} group by id"""


@dataclass
class Step:
    name: str
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak(self) -> float:
        return max(self.peak_mb)

    def figures(self) -> dict[str, Any]:
        return {"median_s": self.median_seconds, "peak_mb": self.peak, "runs": self.seconds}


@dataclass(frozen=True)
class FloorOptions:
    memory_limit: str  # for the database-file floor
    file_from: int  # sizes from which the floor runs in a database file straight away


@dataclass(frozen=True)
class Child:
    seconds: float
    peak_mb: float
    returncode: int
    stdout: str
    stderr: str
    tree_peak_mb: float = 0.0  # with watch_tree: the child and all its descendants, polled


def child(args: list[str], env: dict[str, str] | None = None, *, watch_tree: bool = False) -> Child:
    """Run a child process to its end: wall seconds, peak resident memory (wait4's rusage), output.

    wait4 counts only the descendants the child reaps itself: a JVM that pyspark starts (the Spark
    engine) is not among them. `watch_tree` also polls the summed resident memory of the child and all
    its descendants every 0.2 s (Child.tree_peak_mb)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, env=env)
        assert process.stderr is not None
        pid = process.pid
        with polled_peak(lambda: tree_rss_mb(pid)) if watch_tree else nullcontext([0.0]) as tree:
            stderr = process.stderr.read()  # to its end, then reap the child ourselves for its rusage
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        stdout = out.read()
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    return Child(
        seconds, usage.ru_maxrss / 1024, code, stdout.decode(), stderr.decode(errors="replace"), tree[0]
    )


def tree_rss_mb(root: int) -> float:
    """Resident MB of process `root` and all its descendants, from /proc (0 when it is gone)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # a process that ended while listing
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    pages = 0
    for pid in tree:
        try:
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2  # MB as wait4's figures: ru_maxrss KB / 1024


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak MB of a child that must succeed."""
    done = child(args, env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.seconds, done.peak_mb


def cli(step: str, home: Path) -> list[str]:
    return [str(BIN / "chat-analytics"), step, "--home", str(home)]


def reset(home: Path) -> None:
    for folder in ("warehouse", "serving"):
        shutil.rmtree(home / folder, ignore_errors=True)


def record(step: Step, figures: tuple[float, float]) -> None:
    step.seconds.append(figures[0])
    step.peak_mb.append(figures[1])
    log.info("  %s: %.1f s, peak %.0f MB", step.name, figures[0], figures[1])


def csv_gb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.glob("*.csv")) / 1e9, 3)


# ----------------------------------------------------------------------------------------------------
# the floor


def floor_sql(home: Path, spill: Path, variant: variants.Variant | None = None) -> str:
    """The floor over the chats and categories files of `home`, read as `variant` needs."""
    read = FLOOR_READ.format(
        chats=literal(home / "landing" / "chats" / "*.csv"),
        timestamp=variant.floor_timestamp if variant else "TIMESTAMP",
    )
    rows = FLOOR_COLLAPSED.format(read=read) if variant and variant.stale_repeats else read
    return FLOOR_SQL.format(
        spill=literal(spill),
        settings="{settings}",
        latest=FLOOR_LATEST.format(rows=rows),
        categories=literal(home / "landing" / "categories" / "*.csv"),
        zone=literal(local_timezone()),
    )


@contextmanager
def polled_peak(measure: Callable[[], float | None]) -> Iterator[list[float]]:
    """Call `measure` every 0.2 s while the block runs; the list holds the peak of its values afterwards
    (a None, a reading that failed, is skipped)."""
    peak = [0.0]
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.2):
            value = measure()
            if value is not None:
                peak[0] = max(peak[0], value)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def folder_peak(folder: Path) -> AbstractContextManager[list[float]]:
    """Poll the size of `folder` while the block runs; the list holds its peak in MB afterwards."""

    def size_mb() -> float | None:
        try:
            return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
        except OSError:  # a file went away while listing
            return None

    return polled_peak(size_mb)


def floor_run(
    sql: str, work: Path, modes: list[str], options: FloorOptions, *, size: int
) -> tuple[float, float]:
    """The floor in one DuckDB process. Below `options.file_from` chats: in memory with DuckDB's
    defaults, and, when that runs out of memory, in a database file (the attempt that ran out is not
    counted). From `options.file_from`: in the database file straight away. The database file has
    `memory_limit` = `options.memory_limit`, so DuckDB evicts its tables to the file and spills
    operators to the temp directory instead of failing."""
    spill = work / "floor-spill"
    database = work / "floor.duckdb"
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute(sys.argv[2])"
    if size < options.file_from:
        shutil.rmtree(spill, ignore_errors=True)
        done = child([sys.executable, "-c", code, ":memory:", sql.replace("{settings}", "")])
        if done.returncode == 0:
            modes.append("in memory")
            return done.seconds, done.peak_mb
        if "Out of Memory" not in done.stderr:
            raise SystemExit(f"the floor failed ({done.returncode}):\n{done.stderr[-3000:]}")
        log.info("  floor: out of memory in memory; again in a database file")
    shutil.rmtree(spill, ignore_errors=True)
    database.unlink(missing_ok=True)
    limited = sql.replace("{settings}", f"set memory_limit = {literal(options.memory_limit)};")
    try:
        with folder_peak(spill) as spilled:
            done = child([sys.executable, "-c", code, str(database), limited])
        file_mb = database.stat().st_size / 1e6 if database.exists() else 0.0
    finally:
        database.unlink(missing_ok=True)
        Path(f"{database}.wal").unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"the floor failed in a database file ({done.returncode}):\n{done.stderr[-3000:]}")
    modes.append(
        f"database file, memory_limit {options.memory_limit}, file {file_mb:,.0f} MB, "
        f"temp peak {spilled[0]:,.0f} MB"
    )
    return done.seconds, done.peak_mb


# ----------------------------------------------------------------------------------------------------
# size rows, next-day rows, orchestration rows


def generated(size: int, work: Path) -> Path:
    """The home with `size` generated chats (generated once, kept for later benches)."""
    home = work / f"home-{size}"
    chats = home / "landing" / "chats"
    if not chats.is_dir() or not any(chats.glob("*.csv")):
        seconds, peak = timed([*cli("generate", home), "--chats", str(size)])
        log.info("%s chats: generated in %.1f s (%.0f MB)", f"{size:,}", seconds, peak)
    for leftover in (home / "held_back").glob("*.csv"):  # an interrupted bench: the history is every day
        leftover.rename(chats / leftover.name)
    return home


def measure(
    size: int,
    work: Path,
    reps: int,
    floor_options: FloorOptions,
    *,
    next_day: bool,
    orchestration: bool,
    floor_only: bool = False,
) -> dict[str, Any]:
    home = generated(size, work)
    chats = home / "landing" / "chats"
    held = home / "held_back"
    newest = max(chats.glob("*.csv"))
    if next_day:  # the full runs see the history without the newest day; it lands afterwards
        held.mkdir(exist_ok=True)
        newest = newest.rename(held / newest.name)
    try:
        result = _measure(size, home, work, reps, floor_options, floor_only=floor_only)
        if floor_only:
            return result
        run_s = result["steps"]["run"]["median_s"]
        if next_day:
            result["next_day"] = next_day_runs(home, newest, reps, run_s)
        if orchestration:  # on the same data as the timed run (the newest day still held back)
            result["dag_test"] = dag_test_row(home, reps, run_s)
            result["airflow"] = airflow_row(home, reps, run_s)
        return result
    finally:
        if next_day and (held / newest.name).exists():  # leave the home complete for the variants
            (held / newest.name).rename(chats / newest.name)


def _measure(
    size: int, home: Path, work: Path, reps: int, floor_options: FloorOptions, *, floor_only: bool
) -> dict[str, Any]:
    floor_modes: list[str] = []
    names = ["floor"] if floor_only else ["ingest", "build", "publish", "run", "floor"]
    steps = {name: Step(name) for name in names}
    floor = floor_sql(home, work / "floor-spill")
    for rep in range(reps):
        if not floor_only:
            reset(home)
            for name in ("ingest", "build", "publish"):
                record(steps[name], timed(cli(name, home)))
            reset(home)
            record(steps["run"], timed(cli("run", home)))
        record(steps["floor"], floor_run(floor, work, floor_modes, floor_options, size=size))
        log.info(
            "%s chats, rep %d: %s", f"{size:,}", rep + 1,
            ", ".join(f"{s.name} {s.seconds[-1]:.1f} s" for s in steps.values()),
        )  # fmt: skip
        if steps["floor" if floor_only else "run"].seconds[-1] >= REPEAT_BELOW_SECONDS:
            break
    result: dict[str, Any] = {
        "chats": size,
        "csv_gb": csv_gb(home / "landing" / "chats"),
        "steps": {name: s.figures() for name, s in steps.items()},
        "floor_database": sorted(set(floor_modes)),
    }
    if not floor_only:
        result["run_over_floor"] = steps["run"].median_seconds / steps["floor"].median_seconds
    return result


def _copy_state(source: Path, target: Path) -> None:
    for folder in ("warehouse", "serving"):
        shutil.rmtree(target / folder, ignore_errors=True)
        if (source / folder).exists():
            shutil.copytree(source / folder, target / folder, symlinks=True)


def next_day_runs(home: Path, newest: Path, reps: int, full_run_s: float) -> dict[str, Any]:
    """Land the held-back newest file on the history just run and time `run`; --reps times, each from a
    copy of the history's warehouse and serving folders."""
    chats = home / "landing" / "chats"
    snapshot = home.parent / f"{home.name}-history-state"
    _copy_state(home, snapshot)
    step = Step("next-day run")
    figures: dict[str, Any] = {}
    try:
        for rep in range(reps):
            if rep:
                _copy_state(snapshot, home)
            landed = newest.rename(chats / newest.name)
            try:
                record(step, timed(cli("run", home)))
                figures = figures or new_file_figures(home, landed.name)
            finally:
                newest = landed.rename(newest)
            if step.seconds[-1] >= REPEAT_BELOW_SECONDS:
                break
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    return {
        **step.figures(),
        **figures,
        "reps": len(step.seconds),
        "over_full_run": step.median_seconds / full_run_s,
    }


def new_file_figures(home: Path, name: str) -> dict[str, Any]:
    """Rows of the newly landed file, and how many of them are new versions of earlier chats."""
    import duckdb

    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute(
            """
            with new_file as (select id from raw.chats where _source_file = ?),
            history as (select id from raw.chats where _source_file <> ?)
            select
                (select count(*) from new_file),
                (select count(*) from new_file where id in (select id from history)),
                (select count(*) from history)
            """,
            [name, name],
        ).fetchone()
    assert row is not None
    rows, updates, history = row
    return {
        "file": name, "rows": rows, "updates_to_earlier_chats": updates, "share_of_history": rows / history,
    }  # fmt: skip


def _json_line(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def dag_test_row(home: Path, reps: int, run_seconds: float) -> dict[str, Any]:
    """`dag.test()` of the DAG `chat_analytics` on the same data from a fresh warehouse (bench/dag_run.py);
    a failure is recorded, not raised."""
    step = Step("dag.test")
    inside: list[float] = []  # the dag.test() call alone, without Airflow's imports and set-up
    figures: dict[str, Any] = {}
    for _ in range(reps):
        reset(home)
        done = child([sys.executable, str(ROOT / "bench" / "dag_run.py"), "--home", str(home)])
        try:
            figures = _json_line(done.stdout)
        except ValueError:
            figures = {}
        if done.returncode != 0 or figures.get("retried"):
            # a retry delay would be in the time: not a figure to report
            error = f"dag_run.py exit {done.returncode}, result {figures}: {done.stderr[-2000:]}"
            log.error("dag.test() on %s failed: %s", home, error)
            return {"error": error, "runs": step.seconds}
        record(step, (done.seconds, done.peak_mb))
        inside.append(figures["dag_test_s"])
        log.info("dag.test() on %s: %.1f s (process %.1f s, %d tasks)", home.name, inside[-1], done.seconds,
                 figures["tasks"])  # fmt: skip
        if done.seconds >= REPEAT_BELOW_SECONDS:
            break
    return {
        **step.figures(),
        "dag_test_median_s": statistics.median(inside),
        "tasks": figures["tasks"],
        "over_run": step.median_seconds / run_seconds,
        "call_over_run": statistics.median(inside) / run_seconds,
    }


def airflow_row(home: Path, reps: int, run_seconds: float) -> dict[str, Any]:
    """A real triggered run of `chat_analytics` in `airflow standalone` (bench/airflow_run.py) on the same
    data from a fresh warehouse: `seconds` from the trigger to the end of the run. A missing script or a
    failure is recorded, not raised."""
    script = ROOT / "bench" / "airflow_run.py"
    if not script.exists():
        return {"error": f"{script.relative_to(ROOT)} does not exist"}
    step = Step("airflow run")
    triggered: list[float] = []
    figures: dict[str, Any] = {}
    for _ in range(reps):
        reset(home)
        done = child([sys.executable, str(script), "--home", str(home)])
        try:
            figures = _json_line(done.stdout)
        except ValueError:
            figures = {}
        if done.returncode != 0 or figures.get("state") != "success" or "seconds" not in figures:
            error = f"airflow_run.py exit {done.returncode}, result {figures}: {done.stderr[-2000:]}"
            log.error("triggered Airflow run on %s failed: %s", home, error)
            return {"error": error, "runs": step.seconds, "triggered_runs": triggered}
        record(step, (done.seconds, done.peak_mb))
        triggered.append(float(figures["seconds"]))
        log.info("Airflow run on %s: %.1f s from the trigger (process %.1f s, %s tasks)", home.name,
                 triggered[-1], done.seconds, figures.get("tasks"))  # fmt: skip
        if done.seconds >= REPEAT_BELOW_SECONDS:
            break
    median = statistics.median(triggered)
    return {
        "median_s": median,
        "triggered_runs": triggered,
        "process": step.figures(),
        "tasks": figures.get("tasks"),
        "startup_s": figures.get("startup_s"),
        "over_run": median / run_seconds,
    }


# ----------------------------------------------------------------------------------------------------
# variant rows


def measure_variants(
    names: list[str], size: int, work: Path, reps: int, floor_options: FloorOptions, *, keep: bool
) -> dict[str, Any]:
    """Each variant at `size`: make its files, time `run` and the floor, check it against clean."""
    base = generated(size, work)
    rows: dict[str, dict[str, Any]] = {}
    clean: tuple[marts_guard.Signature, dict[str, Any]] | None = None
    failures: list[str] = []
    for name in names:
        variant = variants.VARIANTS[name]
        home = work / "variants" / name
        shutil.rmtree(home, ignore_errors=True)
        made = variants.make(name, base, home)
        run, floor = Step("run"), Step("floor")
        modes: list[str] = []
        sql = floor_sql(home, work / "floor-spill", variant)
        for _ in range(reps):
            reset(home)
            record(run, timed(cli("run", home)))
            record(floor, floor_run(sql, work, modes, floor_options, size=size))
            if run.seconds[-1] >= REPEAT_BELOW_SECONDS:
                break
        signature = marts_guard.signature(home, variants.fraction_sql(name, "chat_id"))
        health = marts_guard.health(home)
        problems: list[str] = []
        if clean is None:
            clean = signature, health
        else:
            problems = marts_guard.worse_health(clean[1], health)
            if variant.same_marts_as_clean:
                problems += marts_guard.differences(clean[0], signature)
        for problem in problems:
            log.error("GUARD FAILED: variant %s: %s", name, problem)
            failures.append(f"{name}: {problem}")
        rows[name] = {
            "summary": variant.summary,
            "files": made.files,
            "rows": made.rows,
            "csv_gb": round(made.bytes / 1e9, 3),
            "make_s": round(made.seconds, 1),
            "extras": made.extras,
            "run": run.figures(),
            "floor": floor.figures(),
            "floor_database": sorted(set(modes)),
            "run_over_floor": run.median_seconds / floor.median_seconds,
            "health": health,
            "guard": "baseline"
            if name == "clean"
            else "same marts as clean"
            if variant.same_marts_as_clean
            else "no more quarantined than clean",
            "guard_problems": problems,
        }
        log.info(
            "variant %s: run %.1f s, floor %.1f s, %.2fx%s", name, run.median_seconds, floor.median_seconds,
            rows[name]["run_over_floor"], "" if not problems else f"; GUARD FAILED ({len(problems)})",
        )  # fmt: skip
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    worst = max(rows, key=lambda n: rows[n]["run_over_floor"])
    log.info(
        "worst variant at %s chats: %s, run / floor %.2fx", f"{size:,}", worst, rows[worst]["run_over_floor"]
    )
    return {"chats": size, "variants": rows, "worst": worst, "guard_failures": failures}


# ----------------------------------------------------------------------------------------------------
# report


def markdown(results: list[dict[str, Any]], variant_rows: dict[str, Any] | None, verdict: list[str]) -> str:
    lines = size_table(results) if results else []
    for r in results:
        if "next_day" in r:
            new = r["next_day"]
            lines.append(
                f"- Next day at {r['chats']:,} chats: the newest daily file ({new['rows']:,} rows, "
                f"{new['share_of_history']:.2%} of the history, {new['updates_to_earlier_chats']:,} of them "
                f"new versions of earlier chats) landed on the history: `run` {new['median_s']:.1f} s "
                f"(median of {new['reps']}) = {new['over_full_run']:.1%} of the full `run` "
                f"({r['steps']['run']['median_s']:.1f} s), peak {new['peak_mb']:,.0f} MB."
            )
        if "dag_test" in r:
            dag = r["dag_test"]
            if "error" in dag:
                lines.append(f"- `dag.test()` at {r['chats']:,} chats: failed: {dag['error'][:300]}")
            else:
                lines.append(
                    f"- `dag.test()` of `chat_analytics` at {r['chats']:,} chats ({dag['tasks']} tasks): "
                    f"{dag['median_s']:.1f} s as a process ({dag['dag_test_median_s']:.1f} s in the call) vs "
                    f"`chat-analytics run` {r['steps']['run']['median_s']:.1f} s = {dag['over_run']:.2f}x, "
                    f"peak {dag['peak_mb']:,.0f} MB."
                )
        if "airflow" in r:
            air = r["airflow"]
            if "error" in air:
                lines.append(f"- Triggered Airflow run at {r['chats']:,} chats: failed: {air['error'][:300]}")
            else:
                lines.append(
                    f"- Triggered Airflow run (REST) at {r['chats']:,} chats ({air['tasks']} tasks): "
                    f"{air['median_s']:.1f} s from the trigger (Airflow start-up {air['startup_s']} s "
                    f"not counted) vs `chat-analytics run` {r['steps']['run']['median_s']:.1f} s = "
                    f"{air['over_run']:.2f}x."
                )
    fit = linear_fit([(float(r["chats"]), float(r["steps"]["run"]["median_s"])) for r in results])
    if fit:
        per_million, fixed = fit
        lines.append(
            f"- Fitted `run` cost: {fixed:.1f} s + {per_million:.2f} s per million chats "
            f"(least squares over {len(results)} sizes)."
        )
    if variant_rows:
        lines += ["", *variant_table(variant_rows)]
    lines += ["", "Verdicts (issue 12 targets):", "", *[f"- {v}" for v in verdict]]
    return "\n".join(lines) + "\n"


def size_table(results: list[dict[str, Any]]) -> list[str]:
    steps = ("ingest", "build", "publish", "run")
    lines = [
        "| chats | CSV GB | ingest s | build s | publish s | run s | floor s | run / floor | peak MB "
        "(ingest / build / publish / run) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r["steps"]
        seconds = " | ".join(f"{s[name]['median_s']:.1f}" for name in (*steps, "floor"))
        peaks = " / ".join(f"{s[name]['peak_mb']:,.0f}" for name in steps)
        lines.append(f"| {r['chats']:,} | {r['csv_gb']} | {seconds} | {r['run_over_floor']:.2f}x | {peaks} |")
    return [*lines, ""]


def variant_table(v: dict[str, Any]) -> list[str]:
    lines = [
        f"Extract variants at {v['chats']:,} chats (bench/variants.py; each in a fresh home):",
        "",
        "| variant | files | rows | CSV GB | make s | run s | floor s | run / floor | run peak MB | "
        "quarantined | guard |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, row in v["variants"].items():
        guard = (
            "FAILED: " + "; ".join(row["guard_problems"]) if row["guard_problems"] else f"ok ({row['guard']})"
        )
        lines.append(
            f"| {name} | {row['files']} | {row['rows']:,} | {row['csv_gb']} | {row['make_s']:.1f} | "
            f"{row['run']['median_s']:.1f} | {row['floor']['median_s']:.1f} | {row['run_over_floor']:.2f}x | "
            f"{row['run']['peak_mb']:,.0f} | {row['health']['quarantined_rows']:,} | {guard} |"
        )
    lines.append("")
    for name, row in v["variants"].items():
        extras = f" ({', '.join(f'{k} {x:,}' for k, x in row['extras'].items())})" if row["extras"] else ""
        lines.append(f"- `{name}`: {row['summary']}{extras}.")
    worst = v["worst"]
    lines.append(f"- Worst variant: `{worst}`, run / floor {v['variants'][worst]['run_over_floor']:.2f}x.")
    return lines


def verdicts(results: list[dict[str, Any]], variant_rows: dict[str, Any] | None) -> list[str]:
    """One line per target of issue 12: met, not met (with the figure) or not measured."""
    by_size = {r["chats"]: r for r in results}

    def judged(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    out: list[str] = []
    small = by_size.get(50_000)
    if small:
        run_s = small["steps"]["run"]["median_s"]
        out.append(
            f"50 k full `run` <= {TARGET_SMALL_RUN_S:.0f} s: "
            f"{judged(run_s <= TARGET_SMALL_RUN_S)} ({run_s:.1f} s)"
        )
    else:
        out.append("50 k full `run`: not measured")
    if variant_rows:
        worst = variant_rows["worst"]
        ratio = variant_rows["variants"][worst]["run_over_floor"]
        out.append(
            f"{variant_rows['chats']:,} full `run` <= {TARGET_RUN_OVER_FLOOR:.0f}x the floor, every variant: "
            f"{judged(ratio <= TARGET_RUN_OVER_FLOOR)} (worst `{worst}` {ratio:.2f}x)"
        )
        failures = variant_rows["guard_failures"]
        out.append(
            "spelling variants publish clean's marts, no variant quarantines more: "
            + ("met" if not failures else f"NOT MET ({len(failures)} problems)")
        )
    else:
        out.append("full `run` vs floor per variant: not measured")
    next_days = {r["chats"]: r["next_day"] for r in results if "next_day" in r}
    big = next_days.get(10_000_000)
    if big:
        out.append(
            f"next day on 10 M <= {TARGET_NEXT_DAY_SHARE:.0%} of the full 10 M `run`: "
            f"{judged(big['over_full_run'] <= TARGET_NEXT_DAY_SHARE)} ({big['over_full_run']:.1%}, "
            f"{big['median_s']:.1f} s)"
        )
    if big and 1_000_000 in next_days:
        growth = big["median_s"] / next_days[1_000_000]["median_s"]
        out.append(
            f"next day on 10 M <= {TARGET_NEXT_DAY_GROWTH:.0f}x next day on 1 M: "
            f"{judged(growth <= TARGET_NEXT_DAY_GROWTH)} ({growth:.2f}x)"
        )
    if not big:
        sizes = ", ".join(
            f"{n:,}: {d['median_s']:.1f} s = {d['over_full_run']:.1%}" for n, d in next_days.items()
        )
        out.append(f"next day on 10 M: not measured{f' (measured {sizes})' if sizes else ''}")
    for key, label in (("airflow", "triggered Airflow run"), ("dag_test", "`dag.test()`")):
        rows = [r for r in results if key in r]
        if not rows:
            out.append(f"{label} <= {TARGET_ORCHESTRATION}x `run`: not measured")
        for r in rows:
            row = r[key]
            if "error" in row:
                out.append(f"{label} at {r['chats']:,}: NOT MET (failed: {row['error'][:200]})")
            else:
                out.append(
                    f"{label} at {r['chats']:,} <= {TARGET_ORCHESTRATION}x `run`: "
                    f"{judged(row['over_run'] <= TARGET_ORCHESTRATION)} ({row['over_run']:.2f}x)"
                )
    huge = by_size.get(100_000_000)
    if huge:
        peak = max(huge["steps"][name]["peak_mb"] for name in ("ingest", "build", "publish", "run"))
        out.append(
            f"100 M completes with peak <= 8 GB: {judged(peak <= TARGET_PEAK_MB)} (peak {peak:,.0f} MB); "
            f"run / floor {huge['run_over_floor']:.2f}x"
        )
    else:
        out.append("100 M: not measured (--with-100m)")
    return out


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (seconds per million chats, fixed seconds); None with fewer than two sizes."""
    if len({x for x, _ in points}) < 2:
        return None
    xs = [x / 1e6 for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    return slope, mean_y - slope * mean_x


def _counts(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="50000,1000000,10000000", help="comma-separated chat counts")
    parser.add_argument("--with-100m", action="store_true", help="also 100 million chats (~13 GB of CSV)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of steps under a minute (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--floor-only", action="store_true", help="time only the floor at each size")
    parser.add_argument(
        "--next-day-sizes",
        default="1000000,10000000",
        help="sizes whose newest daily file is held back, then landed on the history ('' for none)",
    )
    parser.add_argument(
        "--orchestration-size",
        type=int,
        default=1_000_000,
        help="size at which dag.test() and a triggered Airflow run are timed against `run` (0: none)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(variants.VARIANTS),
        help="comma-separated extract variants ('' for none; clean is always added as the baseline)",
    )
    parser.add_argument(
        "--variant-size", type=int, default=10_000_000, help="chats of the variants (0: none)"
    )
    parser.add_argument("--keep-variants", action="store_true", help="keep the variants' homes")
    parser.add_argument(
        "--floor-memory-limit", default="5GB", help="memory_limit of the floor in a database file"
    )
    parser.add_argument(
        "--floor-file-from",
        type=int,
        default=50_000_000,
        help="sizes from which the floor runs in a database file with the memory limit straight away",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    next_day_sizes = set(_counts(args.next_day_sizes))
    sizes = sorted(set(_counts(args.sizes)) | (set() if args.floor_only else next_day_sizes))
    if args.with_100m:
        sizes.append(100_000_000)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in variants.VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(variants.VARIANTS)}")
    if names and "clean" not in names:
        names.insert(0, "clean")
    names.sort(key=lambda n: n != "clean")  # the baseline first
    floor_options = FloorOptions(args.floor_memory_limit, args.floor_file_from)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    results = [
        measure(
            size, work, args.reps, floor_options,
            next_day=size in next_day_sizes and not args.floor_only,
            orchestration=size == args.orchestration_size and not args.floor_only,
            floor_only=args.floor_only,
        )
        for size in sizes
    ]  # fmt: skip
    variant_rows = None
    if names and args.variant_size and not args.floor_only:
        variant_rows = measure_variants(
            names, args.variant_size, work, args.reps, floor_options, keep=args.keep_variants
        )
    verdict = [] if args.floor_only else verdicts(results, variant_rows)
    stamp = {
        "measured_on": date.today().isoformat(),
        "cores": os.cpu_count(),
        "results": results,
        "variants": variant_rows,
        "verdicts": verdict,
    }
    (args.out / "bench.json").write_text(json.dumps(stamp, indent=2))
    table = (
        json.dumps(results, indent=1) + "\n" if args.floor_only else markdown(results, variant_rows, verdict)
    )
    (args.out / "bench.md").write_text(table)
    print(table, end="")
    if variant_rows and variant_rows["guard_failures"]:
        log.error("GUARD FAILED: %s", "; ".join(variant_rows["guard_failures"]))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
