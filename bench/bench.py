"""Pipeline benchmark: every step timed in a fresh home, against a plain-SQL floor, per size.

Usage: .venv/bin/python bench/bench.py [--sizes 50000,1000000,10000000] [--with-100m] [--reps 3]

For each size, in a fresh home under --out: generate, then time `chat-analytics ingest`, `build` and
`publish` (in that order, on a fresh warehouse) and, separately, the whole `chat-analytics run`. Each step
runs as its own process; its wall time and its peak resident memory come from the operating system
(`wait4` rusage of that child). Steps whose run takes under a minute are repeated --reps times and the
median is reported. The floor is one DuckDB process that reads the same chats files once with explicit
column types and computes the seven analyses in plain SQL, nothing else: DuckDB's defaults, in memory,
retried in a database file when memory runs out (the JSON says which ran; at 100 M chats on a 24 GB
machine both run out of memory, and the bench stops there).

Incremental row (--incremental-size, default 10 M): the newest daily file is held back while the full
runs are timed, then landed on the history and `run` is timed again. Orchestration row
(--orchestration-size, default 1 M): `dag.test()` of the DAG `chat_analytics` (bench/dag_run.py) from a
fresh warehouse, against `run` on the same data. Figures are printed and written to <out>/bench.json and
<out>/bench.md (git-ignored), with a least-squares fit of `run` seconds per million chats.
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
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REPEAT_BELOW_SECONDS = 60.0
log = logging.getLogger("bench")

FLOOR_SQL = """
set enable_progress_bar = false;
set preserve_insertion_order = false;
set temp_directory = '{spill}';
create table chats as
select id, chat_category_id as category_id, created_at, is_customer_initiated as customer, resolved_at
from read_csv('{chats}/*.csv', header = true, auto_detect = false, filename = true,
    columns = {{'id': 'VARCHAR', 'chat_category_id': 'VARCHAR', 'created_at': 'TIMESTAMP',
               'is_customer_initiated': 'BOOLEAN', 'resolved_at': 'TIMESTAMP'}})
qualify row_number() over (partition by id order by filename desc) = 1;
create table daily as
with days as (
    select cast(timezone('Australia/Melbourne', resolved_at::timestamptz) as date) as day, customer
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
create table categories as select * from read_csv('{categories}/*.csv', header = true, all_varchar = true);
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
with local as (select timezone('Australia/Melbourne', created_at::timestamptz) as t from chats)
select isodow(t) as day_of_week, hour(t) as hour_of_day, count(*) as chats from local group by all;
"""


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


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a child process; its wall seconds and peak resident memory (MB) from wait4's rusage."""
    seconds, peak, _ = timed_output(args, env)
    return seconds, peak


def timed_output(args: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """`timed`, plus what the child printed on stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, env=env)
        assert child.stderr is not None
        stderr = child.stderr.read()  # to its end, then reap the child ourselves for its rusage
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0)
        stdout = out.read()
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}):\n{stderr.decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout.decode()


def cli(step: str, home: Path) -> list[str]:
    return [str(BIN / "chat-analytics"), step, "--home", str(home)]


def reset(home: Path) -> None:
    for folder in ("warehouse", "serving"):
        shutil.rmtree(home / folder, ignore_errors=True)


def measure(
    size: int, work: Path, reps: int, *, incremental: bool, orchestration: bool, floor_only: bool = False
) -> dict[str, object]:
    home = work / f"home-{size}"
    chats = home / "landing" / "chats"
    held = home / "held_back"
    if not chats.is_dir():
        seconds, peak = timed([*cli("generate", home), "--chats", str(size)])
        log.info("%s chats: generated in %.1f s (%.0f MB)", f"{size:,}", seconds, peak)
    for leftover in held.glob("*.csv"):  # an interrupted earlier bench: the history is all the days
        leftover.rename(chats / leftover.name)
    newest_day = max(chats.glob("*.csv"))
    if incremental:  # the full runs see the history without the newest day; it lands afterwards
        held.mkdir(exist_ok=True)
        newest_day = newest_day.rename(held / newest_day.name)
    csv_gb = sum(p.stat().st_size for p in chats.glob("*.csv")) / 1e9
    floor_modes: list[str] = []
    names = ["ingest", "build", "publish", "run", "floor"] + (["incremental run"] if incremental else [])
    steps = {name: Step(name) for name in names}
    floor = FLOOR_SQL.format(
        chats=chats, categories=home / "landing" / "categories", spill=work / "floor-spill"
    )
    if floor_only:
        names = ["floor"]
        steps = {"floor": Step("floor")}
    for rep in range(reps):
        if floor_only:
            record(steps["floor"], floor_run(floor, work / "floor.duckdb", floor_modes))
            if steps["floor"].seconds[-1] >= REPEAT_BELOW_SECONDS:
                break
            continue
        reset(home)
        for name in ("ingest", "build", "publish"):
            record(steps[name], timed(cli(name, home)))
        reset(home)
        record(steps["run"], timed(cli("run", home)))
        record(steps["floor"], floor_run(floor, work / "floor.duckdb", floor_modes))
        if incremental:  # one new daily file on top of the history just run
            landed = newest_day.rename(chats / newest_day.name)
            try:
                record(steps["incremental run"], timed(cli("run", home)))
            finally:
                newest_day = landed.rename(held / landed.name)
        log.info(
            "%s chats, rep %d: %s", f"{size:,}", rep + 1,
            ", ".join(f"{s.name} {s.seconds[-1]:.1f} s" for s in steps.values()),
        )  # fmt: skip
        if steps["run"].seconds[-1] >= REPEAT_BELOW_SECONDS:
            break
    if floor_only:
        if incremental:
            newest_day.rename(chats / newest_day.name)
        return {"chats": size, "csv_gb": round(csv_gb, 3), "floor": {
            "median_s": steps["floor"].median_seconds, "peak_mb": steps["floor"].peak,
            "runs": steps["floor"].seconds, "database": sorted(set(floor_modes)),
        }}  # fmt: skip
    result: dict[str, object] = {
        "chats": size,
        "csv_gb": round(csv_gb, 3),
        "steps": {
            name: {"median_s": s.median_seconds, "peak_mb": s.peak, "runs": s.seconds}
            for name, s in steps.items()
        },
        "run_over_floor": steps["run"].median_seconds / steps["floor"].median_seconds,
        "floor_database": sorted(set(floor_modes)),
    }
    if incremental:
        result["incremental"] = new_file_figures(home, newest_day.name)
        result["incremental_over_run"] = steps["incremental run"].median_seconds / steps["run"].median_seconds
    if incremental:
        newest_day.rename(chats / newest_day.name)  # leave the home complete for the next bench
    if orchestration:
        result["orchestration"] = orchestrate(home, reps, steps["run"].median_seconds)
    return result


def floor_run(sql: str, file: Path, modes: list[str]) -> tuple[float, float]:
    """The floor in one DuckDB process with its defaults: in memory, or, when its tables do not fit in
    memory (100 M chats), in a database file that DuckDB can evict to (the attempt that ran out of memory
    is not counted)."""
    code = "import duckdb; duckdb.connect(DATABASE).execute(" + repr(sql) + ")"
    try:
        figures = timed([sys.executable, "-c", code.replace("DATABASE", repr(":memory:"), 1)])
        modes.append("in memory")
        return figures
    except SystemExit as exc:
        if "Out of Memory" not in str(exc):
            raise
        log.info("  floor: out of memory in memory; again with a database file")
    file.unlink(missing_ok=True)
    try:
        figures = timed([sys.executable, "-c", code.replace("DATABASE", repr(str(file)), 1)])
    finally:
        file.unlink(missing_ok=True)
    modes.append("file")
    return figures


def record(step: Step, figures: tuple[float, float]) -> None:
    step.seconds.append(figures[0])
    step.peak_mb.append(figures[1])
    log.info("  %s: %.1f s, peak %.0f MB", step.name, figures[0], figures[1])


def new_file_figures(home: Path, name: str) -> dict[str, object]:
    """Rows of the newly landed file, and how many of them are new versions of earlier chats."""
    import duckdb

    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        rows, updates, history = con.execute(
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
    return {
        "file": name, "rows": rows, "updates_to_earlier_chats": updates, "share_of_history": rows / history,
    }  # fmt: skip


def orchestrate(home: Path, reps: int, run_seconds: float) -> dict[str, object]:
    """`dag.test()` of the DAG `chat_analytics` on the same data from a fresh warehouse (bench/dag_run.py)."""
    step = Step("dag.test")
    inside: list[float] = []  # the dag.test() call alone, without Airflow's imports and set-up
    for _ in range(reps):
        reset(home)
        seconds, peak, out = timed_output(
            [sys.executable, str(ROOT / "bench" / "dag_run.py"), "--home", str(home)]
        )
        figures = json.loads(out.strip().splitlines()[-1])
        if figures["retried"]:  # a retry delay would be in the time: not a figure to report
            raise SystemExit(f"dag.test() on {home} retried tasks {figures['retried']}: see its log")
        record(step, (seconds, peak))
        inside.append(figures["dag_test_s"])
        log.info(
            "dag.test() on %s: %.1f s (process %.1f s, %d tasks)",
            home.name,
            inside[-1],
            seconds,
            figures["tasks"],
        )
        if seconds >= REPEAT_BELOW_SECONDS:
            break
    return {
        "median_s": step.median_seconds,
        "dag_test_median_s": statistics.median(inside),
        "tasks": figures["tasks"],
        "peak_mb": step.peak,
        "runs": step.seconds,
        "over_run": step.median_seconds / run_seconds,
    }


def markdown(results: list[dict[str, object]]) -> str:
    steps = ("ingest", "build", "publish", "run")
    lines = [
        "| chats | CSV GB | ingest s | build s | publish s | run s | floor s | run / floor | peak MB "
        "(ingest / build / publish / run) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        s = r["steps"]
        assert isinstance(s, dict)
        seconds = " | ".join(f"{s[name]['median_s']:.1f}" for name in (*steps, "floor"))
        peaks = " / ".join(f"{s[name]['peak_mb']:,.0f}" for name in steps)
        lines.append(f"| {r['chats']:,} | {r['csv_gb']} | {seconds} | {r['run_over_floor']:.2f}x | {peaks} |")
    lines.append("")
    for r in results:
        s = r["steps"]
        assert isinstance(s, dict)
        if "incremental" in r:
            new = r["incremental"]
            assert isinstance(new, dict)
            inc = s["incremental run"]
            lines.append(
                f"- Incremental: one new daily file ({new['rows']:,} rows, {new['share_of_history']:.2%} "
                f"of the history, {new['updates_to_earlier_chats']:,} of them new versions of earlier "
                f"chats) on the {r['chats']:,}-chat history: `run` {inc['median_s']:.1f} s = "
                f"{r['incremental_over_run']:.1%} of the full `run`, peak {inc['peak_mb']:,.0f} MB."
            )
        if "orchestration" in r:
            dag = r["orchestration"]
            assert isinstance(dag, dict)
            lines.append(
                f"- Orchestrated at {r['chats']:,} chats: `dag.test()` of `chat_analytics` "
                f"({dag['tasks']} tasks) {dag['median_s']:.1f} s as a process "
                f"({dag['dag_test_median_s']:.1f} s in the call) vs "
                f"`chat-analytics run` {s['run']['median_s']:.1f} s = {dag['over_run']:.2f}x, "
                f"peak {dag['peak_mb']:,.0f} MB."
            )
    fit = linear_fit([(float(r["chats"]), float(r["steps"]["run"]["median_s"])) for r in results])  # type: ignore[index]
    if fit:
        per_million, fixed = fit
        lines.append(
            f"- Fitted `run` cost: {fixed:.1f} s + {per_million:.2f} s per million chats "
            f"(least squares over {len(results)} sizes)."
        )
    return "\n".join(lines) + "\n"


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
        "--incremental-size",
        type=int,
        default=10_000_000,
        help="size whose newest daily file is held back and then landed on the history (0: none)",
    )
    parser.add_argument(
        "--orchestration-size",
        type=int,
        default=1_000_000,
        help="size at which dag.test() of chat_analytics is timed against `run` (0: none)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    if args.with_100m:
        sizes.append(100_000_000)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [
        measure(
            size, args.out / "work", args.reps,
            incremental=size == args.incremental_size and not args.floor_only,
            orchestration=size == args.orchestration_size and not args.floor_only,
            floor_only=args.floor_only,
        )
        for size in sizes
    ]  # fmt: skip
    stamp = {"measured_on": date.today().isoformat(), "cores": os.cpu_count(), "results": results}
    (args.out / "bench.json").write_text(json.dumps(stamp, indent=2))
    table = json.dumps(results, indent=1) + "\n" if args.floor_only else markdown(results)
    (args.out / "bench.md").write_text(table)
    print(table, end="")


if __name__ == "__main__":
    main()
