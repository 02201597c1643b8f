"""The Spark engine beside DuckDB on the same data (issue 15), with the start-up cost per invocation apart.

Usage: .venv/bin/python bench/spark_engine.py [--sizes 1000000,10000000] [--startup-reps 3] [--keep]
       (`make bench-spark`, arguments in BENCH_SPARK_ARGS)

For each size: the sample is generated once (bench.py's homes under <out>/work, default dates), its
landing folder is linked into a fresh home and ingested once; that home (landing and warehouse) is then
copied to a DuckDB home and a Spark home. On each, as its own process, `chat-analytics build` (with
`--engine spark` on the Spark home) and `chat-analytics publish` are timed; then compare() checks that
both published files hold the same data (a difference is logged as an error, recorded, and makes the
bench exit 1 after writing its results). Last, a second build with no new data is timed on each home:
DuckDB's incremental models add nothing, Spark rebuilds every model in full each time.

Each step's wall time is the child's; its peak memory is the summed resident memory of the child and
all its descendants, polled every 0.2 s (bench.child(watch_tree=True)): the JVM pyspark starts is not
reaped by the child, so wait4's figure (kept in the JSON) leaves it out. A build is broken down from its
log: the bronze export (`bronze layer ...: (X s)`), dbt (its `Finished running ... (Xs)` line, which
includes opening the Spark session; how long the build waited for its first node is shown apart, at the
one-second resolution of dbt's log), the copy of Spark's models into the warehouse (`N Spark models
copied ... (X s)`), the source freshness check (dbt's second `Finished running` line) and the rest
(Python and dbt imports, dbt's parse, the JVM's exit). Each build's output is kept in
<work>/spark-logs/.

The start-up cost per invocation is measured apart, after the first size's builds: `dbt show --inline
'select 1 as one'` as its own process, with the environment the build gives dbt (the first size's homes,
a scratch --target-path whose partial-parse state one untimed run warms first), median of
--startup-reps, on the `spark` target and, for contrast, on the DuckDB target `local`.

From the measured sizes, a least-squares line seconds = a + b * millions per engine, for the full build
and for build + publish, and the size from which Spark would be faster on this machine (or none, when its
per-million cost is the higher). The machine (cores, RAM) and the load average at the start and the end
(and before and after each step, in the JSON) are recorded; the machine may be shared, so before each
timed step the bench waits up to --settle seconds for the 1-minute load average to drop below the
number of cores. Figures are printed and written to <out>/spark.json and
<out>/spark.md (git-ignored), the JSON again after every size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # bench/ is not a package: its modules are found through sys.path

from chat_analytics import resources
from chat_analytics.devtools.compare import compare
from chat_analytics.paths import DBT_PROJECT_DIR, Home
from chat_analytics.pipeline import spark
from chat_analytics.pipeline.build import WAREHOUSE_ENV

log = logging.getLogger("bench.spark")

ENGINES = ("duckdb", "spark")
DUCKDB_TARGET = "local"  # dbt/profiles.yml
STARTUP_SQL = "select 1 as one"

_SECONDS = r"(\d+(?:\.\d+)?)"
BRONZE_LINE = re.compile(rf"bronze layer .*: (\d+) batch file\(s\) written.*\({_SECONDS} s\)")
DBT_LINE = re.compile(rf"Finished running .* \({_SECONDS}s\)\.")
IMPORT_LINE = re.compile(rf"(\d+) Spark models copied into .* \({_SECONDS} s\)")
CONCURRENCY_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)  Concurrency: ", re.MULTILINE)
FIRST_NODE_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)  1 of \d+ START ", re.MULTILINE)


class StepFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Homes:
    duckdb: Path
    spark: Path

    def of(self, engine: str) -> Path:
        return self.duckdb if engine == "duckdb" else self.spark


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 1024**3, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------------------------------
# the homes


def _linked_landing(source: Path, home: Path) -> None:
    """`home` with `source`'s landing folder (files hard-linked: the pipeline only reads them)."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(source / "landing", home / "landing", copy_function=os.link)


def prepare(size: int, work: Path) -> tuple[Homes, dict[str, Any]]:
    """Generate (once) and ingest (once) `size` chats, then the DuckDB and the Spark home as copies."""
    source = bench.generated(size, work)
    root = work / f"spark-{size}"
    shutil.rmtree(root, ignore_errors=True)
    base = root / "ingested"
    _linked_landing(source, base)
    ingest = step("ingest (once, shared)", bench.cli("ingest", base))
    homes = Homes(root / "duckdb", root / "spark")
    for engine in ENGINES:
        home = homes.of(engine)
        _linked_landing(source, home)
        shutil.copytree(base / "warehouse", home / "warehouse", symlinks=True)
    shutil.rmtree(base)
    log.info("%s chats: DuckDB and Spark homes ready under %s", f"{size:,}", root)
    return homes, {"ingest": ingest, "csv_gb": bench.csv_gb(source / "landing" / "chats")}


# ----------------------------------------------------------------------------------------------------
# timed steps


#: Before each timed step, wait up to this many seconds for the 1-minute load average to drop below the
#: number of cores (the machine may be shared); main() sets it from --settle.
SETTLE_S = [0.0]


def settle() -> float:
    """Wait (at most SETTLE_S) for the 1-minute load average to drop below the cores; seconds waited."""
    started = time.monotonic()
    cores = os.cpu_count() or 1
    while os.getloadavg()[0] >= cores and time.monotonic() - started < SETTLE_S[0]:
        time.sleep(5)
    return round(time.monotonic() - started, 1)


def step(name: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One child process that must succeed: wall seconds, peak MB of its process tree, its output."""
    waited = settle()
    before = load_average()
    log.info("%s ... (load average %s%s)", name, before, f", after waiting {waited:.0f} s" if waited else "")
    done = bench.child(args, env, watch_tree=True)
    if done.returncode != 0:
        raise StepFailed(f"{name}: {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    log.info("%s: %.1f s, peak %.0f MB (process tree)", name, done.seconds, done.tree_peak_mb)
    return {
        "seconds": round(done.seconds, 2),
        "peak_mb": round(done.tree_peak_mb),
        "wait4_peak_mb": round(done.peak_mb),
        "load_before": before,
        "load_after": load_average(),
        "settle_wait_s": waited,
        "output": done.stdout + done.stderr,
    }


def build_step(name: str, home: Path, engine: str, logs: Path) -> dict[str, Any]:
    """A timed `chat-analytics build`, broken down from its log (kept in `logs`)."""
    args = [*bench.cli("build", home), *(["--engine", engine] if engine == "spark" else [])]
    figures = step(name, args)
    output = figures.pop("output")
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.log").write_text(output)
    figures["breakdown"] = breakdown(output, figures["seconds"])
    parts = figures["breakdown"]
    log.info(
        "  %s: %s",
        name,
        ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in parts.items() if v is not None),
    )
    return figures


def _clock(match: re.Match[str]) -> int:
    hours, minutes, seconds = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def breakdown(output: str, total: float) -> dict[str, float | None]:
    """A build's seconds by part, from its log (None: the part has no line, e.g. no bronze on DuckDB)."""
    bronze = BRONZE_LINE.search(output)
    imported = IMPORT_LINE.search(output)
    dbt_runs = [float(m.group(1)) for m in DBT_LINE.finditer(output)]
    dbt_s = dbt_runs[0] if dbt_runs else None
    freshness = dbt_runs[1] if len(dbt_runs) > 1 else None
    concurrency, first_node = CONCURRENCY_LINE.search(output), FIRST_NODE_LINE.search(output)
    first_node_s = None
    if concurrency and first_node:
        first_node_s = float((_clock(first_node) - _clock(concurrency)) % 86400)
    parts: dict[str, float | None] = {
        "bronze_s": float(bronze.group(2)) if bronze else None,
        "dbt_s": dbt_s,
        "dbt_to_first_node_s": first_node_s,  # inside dbt_s: the Spark session opens there
        "import_s": float(imported.group(2)) if imported else None,
        "freshness_s": freshness,
    }
    counted = sum(v or 0.0 for k, v in parts.items() if k != "dbt_to_first_node_s")
    parts["rest_s"] = round(total - counted, 2)
    return parts


def dbt_env_for(home: Path, engine: str) -> dict[str, str]:
    """The environment `chat-analytics build` gives dbt for `home` on `engine`."""
    resolved = Home.resolve(home)
    env = {**os.environ, WAREHOUSE_ENV: str(resolved.warehouse), **resources.dbt_env(resolved)}
    if engine == "spark":
        env.update(spark.dbt_env(resolved))
    return env


def startup(homes: Homes, reps: int, scratch: Path) -> dict[str, Any]:
    """`dbt show --inline 'select 1'` per engine as its own process: one untimed run (partial parse),
    then the median of `reps`."""
    rows: dict[str, Any] = {}
    for engine in ENGINES:
        target = spark.SPARK_TARGET if engine == "spark" else DUCKDB_TARGET
        args = [
            str(bench.BIN / "dbt"), "show", "--inline", STARTUP_SQL, "--limit", "1",
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target", target, "--target-path", str(scratch / engine),
        ]  # fmt: skip
        env = dbt_env_for(homes.of(engine), engine)
        step(f"start-up {engine}: warm-up (not counted)", args, env)
        runs = [step(f"start-up {engine}: run {rep + 1} of {reps}", args, env) for rep in range(reps)]
        rows[engine] = {
            "target": target,
            "median_s": round(statistics.median(r["seconds"] for r in runs), 2),
            "runs_s": [r["seconds"] for r in runs],
            "peak_mb": max(r["peak_mb"] for r in runs),
            "load_before": [r["load_before"] for r in runs],
        }
    rows["spark_minus_duckdb_s"] = round(rows["spark"]["median_s"] - rows["duckdb"]["median_s"], 2)
    return rows


def measure(size: int, work: Path, reps: int, *, with_startup: bool, keep: bool) -> dict[str, Any]:
    homes, prepared = prepare(size, work)
    result: dict[str, Any] = {"chats": size, "csv_gb": prepared["csv_gb"], "ingest": prepared["ingest"]}
    result["ingest"].pop("output")
    engines: dict[str, dict[str, Any]] = {engine: {} for engine in ENGINES}
    logs = work / "spark-logs"  # each build's output, kept
    result["engines"] = engines
    try:
        for engine in ENGINES:
            home = homes.of(engine)
            row = engines[engine]
            row["build"] = build_step(f"{size:,} {engine}: build", home, engine, logs)
            published = step(f"{size:,} {engine}: publish", bench.cli("publish", home))
            published.pop("output")
            row["publish"] = published
            row["build_plus_publish_s"] = round(row["build"]["seconds"] + published["seconds"], 2)
        problems = compare(
            Home.resolve(homes.duckdb).serving_database, Home.resolve(homes.spark).serving_database
        )
        for problem in problems:
            log.error("DIFFERENT DATA at %s chats: %s", f"{size:,}", problem)
        if not problems:
            log.info("%s chats: both published files hold the same data", f"{size:,}")
        result["differences"] = problems
        for engine in ENGINES:
            engines[engine]["second_build"] = build_step(
                f"{size:,} {engine}: second build (no new data)", homes.of(engine), engine, logs
            )
        if with_startup:
            scratch = work / f"spark-{size}" / "startup-target"
            result["startup"] = startup(homes, reps, scratch)
    except StepFailed as exc:
        log.error("%s chats: %s", f"{size:,}", exc)
        result["error"] = str(exc)
    finally:
        if not keep:
            shutil.rmtree(work / f"spark-{size}", ignore_errors=True)
    return result


# ----------------------------------------------------------------------------------------------------
# fits and the report


def _points(results: list[dict[str, Any]], engine: str, figure: str) -> list[tuple[float, float]]:
    points = []
    for r in results:
        row = r["engines"].get(engine, {})
        if figure == "build" and "build" in row:
            points.append((float(r["chats"]), float(row["build"]["seconds"])))
        elif figure == "build_plus_publish" and "build_plus_publish_s" in row:
            points.append((float(r["chats"]), float(row["build_plus_publish_s"])))
    return points


def crossover(results: list[dict[str, Any]], figure: str, label: str) -> dict[str, Any]:
    """Each engine's least-squares line for `figure` and the size from which Spark would be faster."""
    fits = {engine: bench.linear_fit(_points(results, engine, figure)) for engine in ENGINES}
    duck, sparks = fits["duckdb"], fits["spark"]
    if duck is None or sparks is None:
        return {"figure": label, "statement": f"{label}: not fitted (fewer than two sizes measured)"}
    (duck_b, duck_a), (spark_b, spark_a) = duck, sparks
    lines = (
        f"DuckDB {duck_a:.1f} s + {duck_b:.2f} s per million chats, "
        f"Spark {spark_a:.1f} s + {spark_b:.2f} s per million chats"
    )
    at: float | None = None
    if spark_b >= duck_b:
        verdict = "none: Spark's per-million cost is higher here, so DuckDB is faster at every size"
    else:
        at = (spark_a - duck_a) / (duck_b - spark_b)
        largest = max(r["chats"] for r in results) / 1e6
        if at <= 0:
            verdict = "Spark is faster at every size"
        else:
            beyond = " (extrapolated beyond the largest size measured)" if at > largest else ""
            verdict = f"Spark would be faster from about {at:,.0f} million chats on this machine{beyond}"
    fitted = {
        engine: {"fixed_s": round(fit[1], 2), "per_million_s": round(fit[0], 3)}
        for engine, fit in fits.items()
        if fit is not None
    }
    return {
        "figure": label,
        "fits": fitted,
        "crossover_millions": None if at is None else round(at, 1),
        "statement": f"{label}: {lines}; crossover: {verdict}.",
    }


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


TABLE_HEAD = (
    "| chats | engine | build s | peak MB | 2nd build s | publish s | build + publish s | bronze s "
    "| dbt s (to first node) | import s | freshness s | rest s | load before build (1 min) | same data |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
)


def markdown(stamp: dict[str, Any]) -> str:
    m = stamp["machine"]
    load_start, load_end = (" / ".join(map(str, stamp[key])) for key in ("load_start", "load_end"))
    lines = [
        f"Spark engine beside DuckDB (bench/spark_engine.py), {stamp['measured_on']}: {m['cores']} cores, "
        f"{m['ram_gib']} GiB RAM, {m['platform']}; load average (1/5/15 min) at the start {load_start}, "
        f"at the end {load_end}.",
        "",
        *TABLE_HEAD,
    ]
    notes: list[str] = []
    for r in stamp["sizes"]:
        lines += [size_row(r, engine) for engine, row in r["engines"].items() if "build" in row]
        notes += size_notes(r)
    lines += ["", *notes]
    if stamp.get("startup"):
        lines += ["", *startup_lines(stamp["startup"])]
    lines += ["", "Crossover (least squares over the sizes measured):", ""]
    lines += [f"- {c['statement']}" for c in stamp["crossover"]]
    return "\n".join(lines) + "\n"


def size_row(r: dict[str, Any], engine: str) -> str:
    row = r["engines"][engine]
    build, parts = row["build"], row["build"]["breakdown"]
    same = "reference" if engine == "duckdb" else "—"
    if engine == "spark" and "differences" in r:
        same = "yes" if not r["differences"] else f"NO ({len(r['differences'])} differences)"
    cells = [
        f"{r['chats']:,}", engine, _s(build["seconds"]), f"{build['peak_mb']:,}",
        _s(row.get("second_build", {}).get("seconds")), _s(row.get("publish", {}).get("seconds")),
        _s(row.get("build_plus_publish_s")), _s(parts["bronze_s"]),
        f"{_s(parts['dbt_s'])} ({_s(parts['dbt_to_first_node_s'])})", _s(parts["import_s"]),
        _s(parts["freshness_s"]), _s(parts["rest_s"]), f"{build['load_before'][0]:.1f}", same,
    ]  # fmt: skip
    return f"| {' | '.join(cells)} |"


def size_notes(r: dict[str, Any]) -> list[str]:
    size = f"{r['chats']:,} chats"
    ingest = r["ingest"]
    notes = [
        f"- {size} ({r['csv_gb']} GB of CSV): ingested once in {ingest['seconds']:.1f} s "
        f"(peak {ingest['peak_mb']:,} MB), the same raw layer for both engines."
    ]
    rows = r["engines"]
    if all("second_build" in rows[engine] for engine in ENGINES):
        again = {e: rows[e]["second_build"]["seconds"] for e in ENGINES}
        share = {e: again[e] / rows[e]["build"]["seconds"] for e in ENGINES}
        notes.append(
            f"- {size}, second build with no new data: DuckDB {again['duckdb']:.1f} s "
            f"({share['duckdb']:.0%} of its full build), Spark {again['spark']:.1f} s "
            f"({share['spark']:.0%}: every model again)."
        )
    notes += [f"- DIFFERENT DATA at {size}: {problem}" for problem in r.get("differences", [])]
    if "error" in r:
        notes.append(f"- {size} FAILED: {r['error'][:500]}")
    return notes


def startup_lines(start: dict[str, Any]) -> list[str]:
    lines = [
        f"Start-up per invocation: `dbt show --inline '{STARTUP_SQL}'` as its own process, the build's "
        f"environment, warm partial parse, median of {len(start['spark']['runs_s'])}:",
        "",
        "| target | median s | runs s | peak MB |",
        "| --- | ---: | --- | ---: |",
    ]
    for engine in ENGINES:
        row = start[engine]
        runs = ", ".join(f"{s:.1f}" for s in row["runs_s"])
        lines.append(
            f"| {engine} (`{row['target']}`) | {row['median_s']:.1f} | {runs} | {row['peak_mb']:,} |"
        )
    return [
        *lines,
        "",
        f"- The JVM and the Spark session cost {start['spark_minus_duckdb_s']:.1f} s more per invocation "
        "than DuckDB; every `chat-analytics build --engine spark` pays it once (its freshness check "
        "reuses the session).",
    ]


def write(out: Path, stamp: dict[str, Any]) -> str:
    stamp["crossover"] = [
        crossover(stamp["sizes"], "build", "full build"),
        crossover(stamp["sizes"], "build_plus_publish", "build + publish"),
    ]
    (out / "spark.json").write_text(json.dumps(stamp, indent=2))
    table = markdown(stamp)
    (out / "spark.md").write_text(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated chat counts")
    parser.add_argument("--startup-reps", type=int, default=3, help="timed start-up runs per engine (median)")
    parser.add_argument("--out", type=Path, default=bench.ROOT / "bench" / "results")
    parser.add_argument(
        "--work", type=Path, help="generated homes and scratch homes (default <out>/work, as bench.py)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB and Spark homes of each size")
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="before each timed step, wait up to SECONDS for the 1-minute load average to drop below the "
        "number of cores (0: never wait)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    sizes = sorted(set(bench._counts(args.sizes)))
    SETTLE_S[0] = args.settle
    work = args.work or args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    log.info("Spark engine: %s", spark.require_java())
    stamp: dict[str, Any] = {
        "measured_on": date.today().isoformat(),
        "machine": machine(),
        "load_start": load_average(),
        "sizes": [],
    }
    log.info("machine: %s; load average %s", stamp["machine"], stamp["load_start"])
    for index, size in enumerate(sizes):
        stamp["sizes"].append(measure(size, work, args.startup_reps, with_startup=index == 0, keep=args.keep))
        if "startup" in stamp["sizes"][-1]:
            stamp["startup"] = stamp["sizes"][-1].pop("startup")
        stamp["load_end"] = load_average()
        write(args.out, stamp)
    table = write(args.out, stamp)
    print(table, end="")
    failed = [r["chats"] for r in stamp["sizes"] if r.get("differences") or "error" in r]
    if failed:
        log.error("different data or a failed step at %s chats", ", ".join(f"{n:,}" for n in failed))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
