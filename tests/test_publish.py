"""`publish`: the analysts' copy of the marts, atomically, only after a green build.

One small `--dirty` sample runs through the whole pipeline once per module (`chat-analytics run`:
ingest, build, publish, report); the tests compare the published file with the working warehouse, read it
with the DuckDB CLI like an analyst, run the seven documented queries, hold it open during a publish and
make a build fail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import PROJECT_ROOT, Home, UserError
from chat_analytics.pipeline.build_record import BuildRecord, record_cosmos_results, record_path
from chat_analytics.serving.publish import (
    BUILD_INFO,
    QUARANTINE_REASONS,
    SCHEMA,
    STORAGE_VERSION,
    WAREHOUSE_SCHEMA,
    PublishRefused,
    publish,
)

try:
    import reference
except ImportError:  # tests/ imported as a package
    from tests import reference

DUCKDB_CLI = Path(sys.executable).with_name("duckdb")
SERVING_DOC = PROJECT_ROOT / "docs" / "serving.md"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("publish") / "home"
    args = ["--home", str(root)]
    assert cli_main(["generate", *args, "--chats", "8000", "--dirty", "--seed", "7"]) == 0
    assert cli_main(["run", *args]) == 0
    return Home(root)


def _published(home: Home) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"attach '{home.serving_database}' as pub (read_only)")
    con.execute(f"attach '{home.warehouse}' as warehouse (read_only)")
    return con


def _schema(database: str) -> str:
    """The marts' schema: `analytics` in the warehouse, the default schema in the published file."""
    return WAREHOUSE_SCHEMA if database == "warehouse" else SCHEMA


def _marts(con: duckdb.DuckDBPyConnection, database: str) -> set[str]:
    rows = con.execute(
        "select table_name from duckdb_tables() where database_name = $db and schema_name = $schema "
        "union all "
        "select view_name from duckdb_views() where database_name = $db and schema_name = $schema",
        {"db": database, "schema": _schema(database)},
    ).fetchall()
    return {name for (name,) in rows}


def _cli(home: Home, sql: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The DuckDB CLI exactly as `make query` starts it, SQL on stdin."""
    command = [
        str(DUCKDB_CLI),
        "-readonly",
        *extra,
        str(home.serving_database),
    ]
    return subprocess.run(command, input=sql, capture_output=True, text=True, timeout=60, check=False)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".publish.lock")
    }


# ----------------------------------------------------------------------------------------------------


def test_published_file_holds_every_mart_unchanged(home: Home) -> None:
    with _published(home) as con:
        marts = _marts(con, "warehouse")
        assert {"fct_chats", "daily_resolutions", "top_categories_customer_chats"} <= marts
        assert _marts(con, "pub") == marts | {BUILD_INFO}
        for name in sorted(marts):
            columns = (
                "select column_name, data_type from duckdb_columns() where database_name = ? "
                "and schema_name = ? and table_name = ? order by column_index"
            )
            assert (
                con.execute(columns, ["pub", SCHEMA, name]).fetchall()
                == con.execute(columns, ["warehouse", WAREHOUSE_SCHEMA, name]).fetchall()
            ), name
            for a, b in (("pub", "warehouse"), ("warehouse", "pub")):
                first, second = f"{a}.{_schema(a)}.{name}", f"{b}.{_schema(b)}.{name}"
                diff = con.execute(f"select count(*) from (from {first} except all from {second})").fetchone()
                assert diff == (0,), f"{name}: rows in {a} missing from {b}"
        # the dbt documentation travels with the tables
        comment = con.execute(
            "select comment from duckdb_columns() where database_name = 'pub' and table_name = 'fct_chats' "
            "and column_name = 'resolution_hours'"
        ).fetchone()
        assert comment is not None and "daylight-saving" in comment[0]
        assert not list(home.serving.glob(".analytics.duckdb.*")), "temporary files left behind"


def test_build_info_describes_the_publish(home: Home) -> None:
    from dbt.version import __version__ as dbt_version

    with _published(home) as con:
        cursor = con.execute(f"from pub.main.{BUILD_INFO}")
        names = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        assert len(rows) == 1
        info = dict(zip(names, rows[0], strict=True))
        assert info["run_id"].startswith("cli-")
        assert datetime.now(UTC) - info["published_at"] < timedelta(minutes=10)
        window = con.execute(
            "select min(created_at_utc), max(created_at_utc), min(created_date_local), "
            "max(created_date_local) from warehouse.analytics.fct_chats"
        ).fetchone()
        assert (
            info["first_chat_at_utc"], info["last_chat_at_utc"],
            info["first_chat_date_local"], info["last_chat_date_local"],
        ) == window  # fmt: skip
        for name, count in info["row_counts"].items():
            assert con.execute(f"select count(*) from pub.main.{name}").fetchone() == (count,), name
        assert set(info["row_counts"]) == _marts(con, "pub") - {BUILD_INFO}
        quarantined = dict(
            con.execute(
                "select reason, count(*) from warehouse.quality.quarantined_chats group by 1"
            ).fetchall()
        )
        assert quarantined, "the --dirty sample quarantines rows"
        assert info["quarantined_by_reason"] == {r: quarantined.get(r, 0) for r in QUARANTINE_REASONS}
        assert info["quarantined_rows"] == sum(quarantined.values())
        assert info["raw_rows"] == con.execute("select count(*) from warehouse.raw.chats_data").fetchone()[0]
    record = BuildRecord.load(home).tests()
    assert (info["tests_pass"], info["tests_warn"], info["tests_error"]) == (
        record.passed, record.warned, 0,
    )  # fmt: skip
    assert info["tests_pass"] > 50 and info["tests_warn"] > 0
    assert "source_chats_id_present" in info["warned_tests"]
    assert info["freshness_status"] == "pass"
    assert info["last_ingested_at"] is not None
    assert info["dbt_version"] == dbt_version
    assert info["duckdb_version"] == duckdb.__version__
    assert info["storage_version"] == STORAGE_VERSION
    assert info["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", info["git_commit"])


def test_duckdb_cli_of_the_dev_dependencies_opens_the_published_file(home: Home) -> None:
    assert DUCKDB_CLI.is_file(), "duckdb-cli is a dev dependency: run `make setup`"
    version = subprocess.run([str(DUCKDB_CLI), "--version"], capture_output=True, text=True, check=True)
    # Pinned on purpose: the library that writes the file is the CLI analysts read it with.
    assert version.stdout.split()[0].lstrip("v") == duckdb.__version__
    done = _cli(home, f"select run_id, row_counts['fct_chats'] as chats from {BUILD_INFO};", "-json")
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    with _published(home) as con:
        assert row["chats"] == con.execute("select count(*) from pub.main.fct_chats").fetchone()[0]
    # a read-only CLI session cannot change the published file
    denied = _cli(home, "create table oops as select 1;")
    assert denied.returncode != 0 and "read-only" in denied.stderr.lower()


BARE_SPELLINGS = ("from daily_resolutions", "from analytics.daily_resolutions")


def test_published_file_answers_both_spellings_with_nothing_typed_first(home: Home, tmp_path: Path) -> None:
    """`duckdb data/serving/analytics.duckdb`, then `from daily_resolutions;` or
    `from analytics.daily_resolutions;`: both work in a bare CLI and in the library (issue 13)."""
    with _published(home) as con:
        expected = con.execute("select count(*) from pub.main.daily_resolutions").fetchone()[0]
    assert expected > 0
    for spelling in BARE_SPELLINGS:
        with duckdb.connect(str(home.serving_database), read_only=True) as con:
            assert con.execute(f"select count(*) from ({spelling})").fetchone() == (expected,), spelling
        done = subprocess.run(
            [str(DUCKDB_CLI), "-readonly", "-json", str(home.serving_database)],
            input=f"select count(*) as n from ({spelling});", capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{spelling}: {done.stderr}"
        assert json.loads(done.stdout) == [{"n": expected}], spelling
    # A copy under another name: its catalog is named after the file, bare names still work, and
    # `attach ... as analytics` (docs/serving.md) brings the `analytics.` spelling back.
    copy = tmp_path / "marts-2000-01.duckdb"
    shutil.copyfile(home.serving_database, copy)
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("select count(*) from daily_resolutions").fetchone() == (expected,)
    with duckdb.connect() as con:
        con.execute(f"attach '{copy}' as analytics (read_only)")
        assert con.execute("select count(*) from analytics.daily_resolutions").fetchone() == (expected,)


def test_make_query_opens_the_cli_on_the_published_file(home: Home) -> None:
    env = {**os.environ, "CHAT_ANALYTICS_HOME": str(home.root)}
    done = subprocess.run(
        ["make", "-s", "-o", "setup", "query"], cwd=PROJECT_ROOT, env=env, input=f"from {BUILD_INFO};",
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cli-" in done.stdout


def test_parquet_has_one_file_per_mart_and_fct_chats_by_month(home: Home) -> None:
    folder = home.serving_parquet
    # layout (issue 11): parquet -> current/parquet, current -> .releases/<token>
    assert folder.is_symlink() and folder.resolve().parent.parent.name == ".releases"
    with _published(home) as con:
        expected = _marts(con, "pub")
        # issue 12: fct_chats is hive-partitioned by local creation month, the other marts one file each
        assert {p.stem for p in folder.glob("*.parquet")} == expected - {"fct_chats"}
        for name in expected - {"fct_chats"}:
            count = con.execute(f"select count(*) from read_parquet('{folder / name}.parquet')").fetchone()
            assert count == con.execute(f"select count(*) from pub.main.{name}").fetchone(), name
        months = {p.name for p in (folder / "fct_chats").iterdir()}
        assert months == {
            f"created_month={m}"
            for (m,) in con.execute(
                "select distinct strftime(created_date_local, '%Y-%m') from pub.main.fct_chats"
            ).fetchall()
        }
        days = {p.stem for p in (folder / "fct_chats").glob("*/*.parquet")}  # one file per day
        assert days == {
            str(d)
            for (d,) in con.execute("select distinct created_date_local from pub.main.fct_chats").fetchall()
        }
        glob = folder / "fct_chats" / "**" / "*.parquet"
        parquet = f"read_parquet('{glob}', hive_partitioning = true)"
        assert con.execute(
            f"select count(*) from (select * exclude (created_month) from {parquet} "
            "except all from pub.main.fct_chats)"
        ).fetchone() == (0,)
        assert (
            con.execute(f"select count(*) from {parquet}").fetchone()
            == con.execute("select count(*) from pub.main.fct_chats").fetchone()
        )
        assert con.execute(
            f"select count(*) from {parquet} where created_month <> strftime(created_date_local, '%Y-%m')"
        ).fetchone() == (0,)
    assert not list(home.serving.glob(".parquet-*"))


def _doc_queries() -> dict[int, str]:
    text = SERVING_DOC.read_text(encoding="utf-8")
    section = text.split("## The seven questions", 1)[1].split("\n## ", 1)[0]
    queries: dict[int, str] = {}
    for number, body in re.findall(r"^### (\d)\. .*?\n```sql\n(.*?)```", section, flags=re.S | re.M):
        queries[int(number)] = body
    return queries


def test_the_seven_documented_queries_answer_from_the_published_file(home: Home) -> None:
    queries = _doc_queries()
    assert sorted(queries) == [1, 2, 3, 4, 5, 6, 7], "docs/serving.md: one ```sql block per question"
    answers = {}
    for number, sql in queries.items():
        done = _cli(home, sql, "-json")
        assert done.returncode == 0, f"question {number}: {done.stderr}"
        answers[number] = json.loads(done.stdout)
        assert answers[number], f"question {number} returned nothing"
    with _published(home) as con:
        q = "pub.main"
        days = con.execute(
            f"select count(*), count(*) filter (chats_resolved = 0) from {q}.daily_resolutions"
        )
        n_days, _zero_days = days.fetchone()
        assert len(answers[1]) == n_days
        first, last = con.execute(
            "select min(resolved_date_local), max(resolved_date_local) from warehouse.analytics.fct_chats"
        ).fetchone()
        assert (answers[1][0]["resolution_date"], answers[1][-1]["resolution_date"]) == (
            str(first),
            str(last),
        )
        assert n_days == (last - first).days + 1, "every day, zero days included"
    # questions 2 and 3 against the independent Python reference (raw rows -> figures), never against
    # the marts they select from
    ref = reference.compute_reference(reference.load_raw(home.warehouse))
    extremes = {r.extreme: r for r in ref.resolution_extremes.itertuples()}
    assert [(r["extreme"], r["resolution_date"], r["weekday"], r["chats_resolved"]) for r in answers[2]] == [
        (name, str(day.resolution_date), f"{day.resolution_date:%A}", day.chats_resolved)
        for name, day in (("lowest", extremes["lowest"]), ("highest", extremes["highest"]))
    ]
    median = ref.customer_resolutions_median.iloc[0]
    assert answers[3] == [
        {"median_per_day": median["median_per_day"], "days_counted": median["days_counted"]}
    ]
    assert median["days_counted"] == n_days
    for number in (4, 5, 6):
        levels = [r["category_level"] for r in answers[number]]
        assert set(levels) == {"leaf", "root"} and levels == sorted(levels)
        assert [r["rank"] for r in answers[number] if r["category_level"] == "leaf"][:3] == [1, 2, 3]
    rates = [r["resolution_rate_pct"] for r in answers[5] if r["category_level"] == "leaf"]
    assert rates == sorted(rates)
    minutes = [r["avg_resolution_minutes"] for r in answers[6] if r["category_level"] == "leaf"]
    assert minutes == sorted(minutes)
    assert [r["day_name"] for r in answers[7]] == [
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
    ]  # fmt: skip
    assert [k for k in answers[7][0] if k.isdigit()] == [f"{h:02d}" for h in range(24)]
    with _published(home) as con:
        chats = con.execute("select count(*) from pub.main.fct_chats").fetchone()[0]
    assert sum(r[f"{h:02d}"] for r in answers[7] for h in range(24)) == chats


def test_an_open_reader_neither_blocks_publish_nor_sees_a_partial_file(home: Home) -> None:
    reader = duckdb.connect(str(home.serving_database), read_only=True)
    try:
        before = reader.execute(f"select run_id from analytics.{BUILD_INFO}").fetchone()
        [parquet_file, *_] = sorted((home.serving_parquet / "fct_chats").glob("*/*.parquet"))
        parquet_reader = parquet_file.open("rb")
        result = publish(home, run_id="second-publish")
        assert result.run_id == "second-publish" and result.row_counts["fct_chats"] > 0
        # the old session still reads the old, complete file
        assert reader.execute(f"select run_id from analytics.{BUILD_INFO}").fetchone() == before
        assert reader.execute("select count(*) from analytics.fct_chats").fetchone()[0] > 0
        assert parquet_reader.read(4) == b"PAR1"
        parquet_reader.close()
    finally:
        reader.close()
    with duckdb.connect(str(home.serving_database), read_only=True) as fresh:
        assert fresh.execute(f"select run_id from analytics.{BUILD_INFO}").fetchone() == ("second-publish",)
    leftovers = sorted(p.name for p in home.serving.iterdir() if p.name.startswith("."))
    assert leftovers == [".releases"]  # layout (issue 11): releases, no publish lock in serving/


def test_leftovers_of_an_interrupted_publish_are_cleaned(home: Home) -> None:
    (home.serving / ".analytics.duckdb.20000101T000000-abc.tmp").write_bytes(b"half a file")
    (home.serving / ".parquet-20000101T000000-abc").mkdir()
    publish(home, run_id="after-crash")
    assert not list(home.serving.glob(".analytics.duckdb.*.tmp"))
    assert not list(home.serving.glob(".parquet-*"))  # layout (issue 11): Parquet lives in the release


def test_a_failed_build_publishes_nothing(
    home: Home, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Home(tmp_path / "broken")
    shutil.copytree(home.root, broken.root, symlinks=True)
    before = _digest(broken.serving)
    # A new extract where 40 of 41 chats have no id: far above the 0.1 % error threshold.
    rows = ["id,chat_category_id,created_at,is_customer_initiated,resolved_at"]
    rows += [f",,2000-05-02 0{i % 10}:00:00,true," for i in range(40)]
    rows += ["fresh-chat,,2000-05-02 01:00:00,true,"]
    (broken.landing_chats / "chats_2000-05-02.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    with caplog.at_level(logging.INFO):
        assert cli_main(["run", "--home", str(broken.root)]) == 1
    assert "not publishing" in caplog.text
    assert not BuildRecord.load(broken).ok
    assert _digest(broken.serving) == before, "run after a failed build changed serving/"

    caplog.clear()
    assert cli_main(["publish", "--home", str(broken.root)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("not publishing: the last build failed")
    assert "source_chats_id_present" in errors[0] and "stays as it was" in errors[0]
    assert _digest(broken.serving) == before, "publish after a failed build changed serving/"


def test_publish_without_a_build_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = Home(tmp_path / "nothing")
    with pytest.raises(UserError, match="no build outcome recorded"):
        publish(empty)
    with caplog.at_level(logging.ERROR):
        assert cli_main(["publish", "--home", str(empty.root)]) == 2
    assert "run `chat-analytics build` first" in caplog.text
    assert not empty.serving.exists()


# ---- the build record (no dbt needed) --------------------------------------------------------------


def _target(folder: Path, statuses: dict[str, str]) -> Path:
    target = folder / "target"
    target.mkdir(parents=True, exist_ok=True)
    results = [{"unique_id": uid, "status": status, "message": None} for uid, status in statuses.items()]
    metadata = {"dbt_version": "1.11.16", "invocation_id": "abc"}
    (target / "run_results.json").write_text(json.dumps({"metadata": metadata, "results": results}))
    return folder


def test_cosmos_callback_merges_node_results_latest_wins(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    model, test = "model.chat_analytics.fct_chats", "test.chat_analytics.unique_fct_chats_chat_id.1a2b3c"
    record_cosmos_results(str(_target(tmp_path / "t1", {model: "success"})), home=str(home.root))
    record_cosmos_results(str(_target(tmp_path / "t2", {test: "fail"})), home=str(home.root))
    record = BuildRecord.load(home)
    assert not record.ok and record.tests().failed_nodes == ["unique_fct_chats_chat_id"]
    with pytest.raises(PublishRefused, match="unique_fct_chats_chat_id"):
        publish(home)
    record_cosmos_results(str(_target(tmp_path / "t3", {test: "warn"})), home=str(home.root))
    record = BuildRecord.load(home)
    # issue 11: green only once the build is marked finished (the DAG's publish task does this)
    assert not record.ok and record.status == "running"
    record.finish()
    record.save(home)
    record = BuildRecord.load(home)
    assert record.ok and record.dbt_version == "1.11.16"
    assert (record.tests().passed, record.tests().warned, record.tests().warned_tests) == (
        0, 1, ["unique_fct_chats_chat_id"],
    )  # fmt: skip
    assert json.loads(record_path(home).read_text())["format"] == 2  # issue 11: status and times


def test_an_unreadable_build_record_is_a_clear_error(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    record_path(home).parent.mkdir(parents=True)
    record_path(home).write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        BuildRecord.load(home)
