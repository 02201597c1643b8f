"""The Spark engine (issue 15): the same dbt project on a local Spark session publishes the same data.

One dirty sample plus hostile extracts (every accepted timestamp spelling and the edges just outside
them, boolean spellings, a category snapshot with a missing parent, a 70-level chain and
inherited flags) is run through `chat-analytics run` on DuckDB and, in another home with the same
landing files, with `CHAT_ANALYTICS_ENGINE=spark`. Every published table must hold the same rows
(chat_analytics.devtools.compare). Each command runs as its own process, as a user runs it: the Spark
session (a JVM, an embedded Derby metastore that admits one process) never lives in the pytest process.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from chat_analytics.devtools.compare import compare

try:
    from test_parsing import BOOLEANS, CLOCKS, EDGES, FRACTIONS, SEPARATORS, ZONES
except ImportError:  # tests/ imported as a package
    from tests.test_parsing import BOOLEANS, CLOCKS, EDGES, FRACTIONS, SEPARATORS, ZONES

# Dates of the accepted forms: both 2000 daylight-saving transitions of Melbourne (25 March, 29 October,
# unusual that year), a year end and a leap day. Years 0001 and 9999 stay out of the valid values: one
# chat there stretches every calendar of the marts over thousands of years, on either engine.
DATES = ["2000-03-25", "2000-10-29", "1999-12-31", "2000-02-29"]
VALID_BOOLEANS = ["true", "false", "t", "f", "1", "0", "yes", "no", "TRUE", "False", "Yes", "NO", " true "]
HOSTILE_DAY = "2000-05-01"  # after the generated extracts: its categories snapshot is the one in force


def cli(
    *args: str | Path, engine: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop("CHAT_ANALYTICS_ENGINE", None)
    if engine:
        environment["CHAT_ANALYTICS_ENGINE"] = engine
    return subprocess.run(
        [sys.executable, "-m", "chat_analytics.cli", *map(str, args)],
        capture_output=True, text=True, env=environment, timeout=1200,
    )  # fmt: skip


def forms() -> list[str]:
    return [
        f"{day}{sep}{clock}{fraction}{zone}"
        for day in DATES
        for sep in SEPARATORS
        for clock in CLOCKS
        for fraction in FRACTIONS
        for zone in ZONES
    ]


def hostile_categories(landing: Path) -> list[str]:
    """A new snapshot: the generated categories plus a missing parent, a deep chain and flags in every
    spelling; returns the ids chats may point at. (Loops fail the build by design: see the last test.)"""
    generated = sorted((landing / "categories").glob("categories_*.csv"))[-1]
    with generated.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    extra = [
        ["orphan", "no-such-category", "false"], ["below-orphan", "orphan", ""],
        ["flags-root", "null", "false"], ["flags-off", "flags-root", " TRUE "],
        ["flags-inherit", "flags-off", ""],
        ["flags-on-again", "flags-inherit", "false"], ["flags-null", "flags-root", "NULL"],
        ["flags-yes", "flags-root", "yes"], ["flags-bad", "flags-root", "maybe"],
        ["twice", "flags-root", "false"], ["twice", "flags-root", "true"],
    ]  # fmt: skip
    # (few empty `disabled`: ten in the newest snapshot fail the build by design)
    flags = {35: "", 36: "true"}
    chain = [["deep-00", "", "false"]] + [
        [f"deep-{i:02d}", f"deep-{i - 1:02d}", flags.get(i, "false")] for i in range(1, 70)
    ]
    with (landing / "categories" / f"categories_{HOSTILE_DAY}.csv").open(
        "w", newline="", encoding="utf-8"
    ) as out:
        csv.writer(out).writerows([header, *body, *extra, *chain])
    return (
        [row[0] for row in body[:20]] + [row[0] for row in extra] + ["deep-69", "deep-40", "unknown-id", ""]
    )


def hostile_chats(landing: Path, categories: list[str]) -> None:
    """Every timestamp form and edge as created_at (unresolved) and as resolved_at, boolean spellings,
    exact and conflicting duplicates, and a newer version of a generated chat."""
    first = sorted((landing / "chats").glob("chats_*.csv"))[0]
    with first.open(newline="", encoding="utf-8") as handle:
        generated = list(csv.reader(handle))[1]
    values = [*forms(), *EDGES]
    rows: list[list[str]] = []
    for i, value in enumerate(values):
        flag = BOOLEANS[i] if i < len(BOOLEANS) else VALID_BOOLEANS[i % len(VALID_BOOLEANS)]
        category = categories[i % len(categories)]
        rows.append([f"created-{i}", category, "" if value is None else value, flag, ""])
        rows.append(
            [f"resolved-{i}", category, "1999-12-01 00:00:00", "true", "" if value is None else value]
        )
    rows += [
        ["dup-exact", categories[0], "2000-04-30 10:00:00", "true", "2000-04-30 11:00:00"],
        ["dup-exact", categories[0], "2000-04-30 10:00:00", "true", "2000-04-30 11:00:00"],
        ["dup-conflict", categories[1], "2000-04-30 10:00:00", "true", ""],
        ["dup-conflict", categories[1], "2000-04-30 10:05:00", "true", ""],
        ["resolved-early", categories[2], "2000-04-30 10:00:00", "no", "0001-01-01 00:00:00"],
        ["resolved-past-range", categories[2], "2000-04-30 10:00:00", "no", "9999-12-31 23:59:59-00:01"],
        [generated[0], generated[1], generated[2], generated[3], "2000-04-30 23:59:59.999999"],
    ]
    with (landing / "chats" / f"chats_{HOSTILE_DAY}.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "chat_category_id", "created_at", "is_customer_initiated", "resolved_at"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(DuckDB home, Spark home), each after a green `chat-analytics run` on the same landing files."""
    base = tmp_path_factory.mktemp("engines")
    duck_home, spark_home = base / "duckdb", base / "spark"
    made = cli("generate", "--home", duck_home, "--chats", "8000", "--dirty", "--seed", "11")
    assert made.returncode == 0, made.stderr
    hostile_chats(duck_home / "landing", hostile_categories(duck_home / "landing"))
    shutil.copytree(duck_home / "landing", spark_home / "landing")
    on_duckdb = cli("run", "--home", duck_home)
    assert on_duckdb.returncode == 0, on_duckdb.stderr[-4000:]
    on_spark = cli("run", "--home", spark_home, engine="spark")
    assert on_spark.returncode == 0, on_spark.stderr[-4000:]
    assert "Spark engine: " in on_spark.stderr and "Spark models copied into" in on_spark.stderr
    return duck_home, spark_home


def serving(home: Path) -> Path:
    return home / "serving" / "analytics.duckdb"


def test_spark_publishes_the_same_marts_as_duckdb(homes: tuple[Path, Path]) -> None:
    duck_home, spark_home = homes
    assert compare(serving(duck_home), serving(spark_home)) == []
    for home, engine in ((duck_home, "duckdb"), (spark_home, "spark")):
        with duckdb.connect(str(serving(home)), read_only=True) as con:
            assert con.execute("select engine from _build_info").fetchone() == (engine,)
    # The hostile cases were there to compare: every quarantine reason, each tree status, a long path.
    with duckdb.connect(str(spark_home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        reasons = {
            r for (r,) in con.execute("select distinct reason from quality.quarantined_chats").fetchall()
        }
        assert reasons == {
            "missing_id", "invalid_created_at", "invalid_resolved_at", "resolved_before_created",
            "invalid_is_customer_initiated", "conflicting_duplicate",
        }  # fmt: skip
        # A category whose parent is missing acts as a root: its subtree hangs from it.
        roots = dict(
            con.execute("select category_id, root_category_id from analytics.dim_categories").fetchall()
        )
        assert roots["orphan"] == roots["below-orphan"] == "orphan" and roots["deep-69"] == "deep-00"
        depth, path = con.execute(
            "select depth, path from analytics.dim_categories where category_id = 'deep-69'"
        ).fetchone()
        assert depth == 69 and path.startswith("deep-00/…/deep-06/")
        # Timestamps with offsets became UTC instants, local times straddle both 2000 transitions.
        offsets = con.execute(
            "select count(*) from analytics.fct_chats where chat_id like 'created-%' "
            "and created_date_local in (date '2000-03-25', date '2000-03-26', date '2000-10-29')"
        ).fetchone()[0]
        assert offsets > 500


def test_bronze_layer_holds_every_loaded_batch_once(homes: tuple[Path, Path]) -> None:
    _, spark_home = homes
    with duckdb.connect(str(spark_home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        loaded = con.execute(
            "select entity, count(*), sum(rows_loaded) from raw.ingested_files "
            "where status = 'loaded' group by 1"
        ).fetchall()
        for entity, batches, rows in loaded:
            files = sorted((spark_home / "bronze" / entity).glob("batch_*.parquet"))
            assert len(files) == batches
            assert (
                con.execute(
                    f"select count(*) from read_parquet('{spark_home / 'bronze' / entity}/*.parquet')"
                ).fetchone()[0]
                == rows
            )


def test_a_duckdb_build_after_a_spark_build_rebuilds_in_full(
    homes: tuple[Path, Path], tmp_path: Path
) -> None:
    duck_home, spark_home = homes
    switched = tmp_path / "switched"
    shutil.copytree(spark_home, switched, symlinks=True)
    # The copy's Spark metastore and published links point at the original's paths.
    for folder in ("spark", "serving"):
        shutil.rmtree(switched / folder)
    refused = cli("publish", "--home", switched, "--engine", "duckdb")
    assert refused.returncode == 1 and "built by spark, not duckdb" in refused.stderr
    built = cli("build", "--home", switched)
    assert built.returncode == 0, built.stderr[-4000:]
    assert "last build of this home ran on spark: rebuilding in full on duckdb" in built.stderr
    published = cli("publish", "--home", switched)
    assert published.returncode == 0, published.stderr[-4000:]
    assert compare(serving(duck_home), serving(switched)) == []
    with duckdb.connect(str(serving(switched)), read_only=True) as con:
        assert con.execute("select engine from _build_info").fetchone() == ("duckdb",)


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, stderr
    return errors[0]


def test_no_java_is_one_clear_line(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH without java
    bare.mkdir()
    env = {"PATH": str(bare), "JAVA_HOME": ""}
    done = cli("build", "--home", tmp_path / "home", "--engine", "spark", env=env)
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "needs Java 17+" in line and "no `java` on PATH" in line and "openjdk-17-jre-headless" in line


def test_an_old_java_is_one_clear_line(tmp_path: Path) -> None:
    fake = tmp_path / "jdk" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    done = cli("run", "--home", tmp_path / "home", env={"JAVA_HOME": str(tmp_path / "jdk")}, engine="spark")
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "is Java 11" in line and "Java 17" in line and "JAVA_HOME" in line


def test_an_unknown_engine_is_refused(tmp_path: Path) -> None:
    done = cli("build", "--home", tmp_path / "home", engine="flink")
    assert done.returncode == 2
    assert "unknown engine 'flink'" in _one_error_line(done.stderr)


def test_both_engines_walk_category_loops_alike(homes: tuple[Path, Path], tmp_path: Path) -> None:
    """The category walk is the one model whose algorithm differs by engine (pointer doubling on DuckDB,
    one parent per round on Spark). A snapshot with loops fails the build on both (the error-severity
    test int_category_tree_no_cycles) after int_category_tree was built: its rows must be equal."""
    trees = {}
    for home, engine in zip(homes, ("duckdb", "spark"), strict=True):
        copy = tmp_path / engine
        for folder in ("landing", "warehouse"):
            shutil.copytree(home / folder, copy / folder)
        snapshot = sorted((copy / "landing" / "categories").glob("categories_*.csv"))[-1]
        lines = snapshot.read_text(encoding="utf-8").splitlines()
        loops = [
            "loop-a,loop-b,false", "loop-b,loop-c,", "loop-c,loop-a,true", "self-loop,self-loop,false",
            "below-loop,loop-b,false", "below-below,below-loop,",
        ]  # fmt: skip
        (copy / "landing" / "categories" / "categories_2000-05-02.csv").write_text(
            "\n".join([*lines, *loops]) + "\n", encoding="utf-8"
        )
        assert cli("ingest", "--home", copy).returncode == 0
        built = cli("build", "--home", copy, engine=engine)
        assert built.returncode == 1 and "int_category_tree_no_cycles" in built.stderr, built.stderr[-3000:]
        with duckdb.connect() as con:
            if engine == "duckdb":
                con.execute(f"attach '{copy / 'warehouse' / 'warehouse.duckdb'}' as w (read_only)")
                relation = "w.intermediate.int_category_tree"
            else:  # not copied into the warehouse (the build failed): read from Spark's files
                files = copy / "spark" / "warehouse" / "intermediate.db" / "int_category_tree"
                relation = f"read_parquet('{files}/*.parquet')"
            trees[engine] = sorted(
                con.execute(
                    "select category_id, parent_id, disabled_raw, tree_status, root_category_id, depth, "
                    "path, "
                    f"is_disabled_inherited, is_disabled_effective from {relation}"
                ).fetchall(),
                key=repr,
            )
    assert trees["duckdb"] == trees["spark"]
    statuses = {row[0]: row[3] for row in trees["spark"]}
    looping = ("loop-a", "loop-b", "loop-c", "self-loop", "below-loop", "below-below")
    assert {statuses[c] for c in looping} == {"cycle"}


def test_bronze_follows_retractions_and_never_reuses_another_warehouse_s_files(tmp_path: Path) -> None:
    """No Spark needed: the export alone. A retracted file's batch leaves bronze; a warehouse rebuilt
    from scratch (batch ids reused for other files) gets its own files, never the old ones."""
    from chat_analytics.paths import Home
    from chat_analytics.pipeline.spark import sync_bronze

    home = tmp_path / "home"
    assert cli("generate", "--home", home, "--chats", "300", "--end", "2000-01-10").returncode == 0
    assert cli("ingest", "--home", home).returncode == 0
    first = sync_bronze(Home(home))
    assert (first.written, first.removed) == (11, 0)  # ten chats files and one categories snapshot
    assert sync_bronze(Home(home)).written == 0
    assert cli("retract", "--home", home, "chats_2000-01-03.csv").returncode == 0
    after = sync_bronze(Home(home))
    assert (after.written, after.removed, after.kept) == (0, 1, 10)
    rows = "select count(*) from read_parquet('{}/*.parquet')"
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        assert (
            con.execute(rows.format(home / "bronze" / "chats")).fetchone()
            == con.execute("select count(*) from raw.chats").fetchone()
        )
    # The same home, its warehouse rebuilt from other extracts: batch ids 1.. again, other content.
    shutil.rmtree(home / "warehouse")
    shutil.rmtree(home / "landing")
    assert (
        cli("generate", "--home", home, "--chats", "200", "--end", "2000-01-05", "--seed", "7").returncode
        == 0
    )
    assert cli("ingest", "--home", home).returncode == 0
    rebuilt = sync_bronze(Home(home))
    assert (rebuilt.written, rebuilt.kept) == (6, 0)
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        exported = con.execute(
            f"select id, created_at, _batch_id from read_parquet('{home / 'bronze' / 'chats'}/*.parquet') "
            "except all select id, created_at, _batch_id from raw.chats"
        ).fetchall()
    assert exported == []
