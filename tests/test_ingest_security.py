"""Hostile input and crashes (issue 11, items 1, 2, 7): file content is data, never SQL; unexpected columns
never widen the raw tables; a process killed inside the ingest commit leaves no orphan rows behind."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from chat_analytics import resources, sql
from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.ingest import ingest
from chat_analytics.pipeline.warehouse import connect
from chat_analytics.serving import report

try:
    from warehouse_checks import q, write
except ImportError:  # tests/ imported as a package
    from tests.warehouse_checks import q, write

HEADER = "id,chat_category_id,created_at,is_customer_initiated,resolved_at"
CATEGORIES = "id,parent_id,disabled\nk1,,false\nk2,k1,\n"
HOSTILE_NAMES = [
    'a"b',
    "it's",
    "semi;colon",
    "line\nbreak",
    "cr\rhere",
    "\"; copy raw.categories_data to '/tmp/x.csv'; drop table raw.categories_data; --",
    "'); drop table raw.chats_data; --",
    "back\\slash",
    "ünï cødé ☃",
    "",
]


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chat_analytics.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def raw_columns(home: Home, table: str) -> list[str]:
    return [
        r[0]
        for r in q(
            home,
            "select column_name from information_schema.columns where table_schema = 'raw' "
            "and table_name = ? order by ordinal_position",
            [table],
        )
    ]


# ---- item 1: one quoting function ------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n])
def test_ident_and_literal_keep_any_text_one_token(name: str) -> None:
    con = duckdb.connect()
    # As a column name: exactly that name comes back, and nothing else ran.
    cursor = con.execute(f"select 1 as {sql.ident(name)}, {sql.literal(name)} as v")
    assert [d[0] for d in cursor.description] == [name, "v"]
    assert cursor.fetchall() == [(1, name)]
    con.execute(f"create table {sql.qualified('main', name)} ({sql.ident(name)} varchar)")
    assert con.execute("select table_name, column_name from information_schema.columns").fetchall() == [
        (name, name)
    ]


def test_ident_and_literal_quote_exactly_and_refuse_nul() -> None:
    assert sql.ident('a"b; drop') == '"a""b; drop"'
    assert sql.literal("it's; x\n") == "'it''s; x\n'"
    assert sql.qualified("raw", 'x"y') == '"raw"."x""y"'
    assert sql.literal(Path("/tmp/o'k")) == "'/tmp/o''k'"
    with pytest.raises(ValueError, match="NUL"):
        sql.ident("a\0b")
    with pytest.raises(ValueError, match="NUL"):
        sql.literal("a\0b")


# ---- item 1: hostile headers, values and paths -----------------------------------------------------


def test_hostile_header_names_are_column_names_not_sql(home: Home, tmp_path: Path, caplog) -> None:
    target = tmp_path / "stolen.csv"
    attack = f"\"; copy raw.categories_data to '{target}'; drop table raw.categories_data; --"
    names = [attack, "x'); drop table raw.chats_data; --", 'q"uote', "semi;colon", "it's"]
    write(home.landing_categories, "categories_2000-01-01.csv", CATEGORIES)
    header = HEADER + "," + ",".join(csv_field(n) for n in names)
    row = "c1,k1,2000-01-01 00:00:00,true,," + ",".join(csv_field(f"v{i}") for i in range(len(names)))
    write(home.landing_chats, "chats_2000-01-01.csv", header + "\n" + row + "\n")
    with caplog.at_level(logging.WARNING):
        result = ingest(home)
    assert result.ok, [o.reason for o in result.failed]
    assert not target.exists() and not Path(str(target).lower()).exists()
    assert q(home, "select count(*) from raw.categories") == [(2,)]
    assert q(home, "select count(*) from raw.chats") == [(1,)]
    stored = dict(q(home, "select unnest(map_keys(_extra)), unnest(map_values(_extra)) from raw.chats")[:])
    assert stored == {n.lower(): f"v{i}" for i, n in enumerate(names)}
    assert q(home, "select extra_columns from raw.ingested_files where entity = 'chats'") == [
        ([n.lower() for n in names],)
    ]
    assert "unexpected column(s)" in caplog.text
    # The warehouse is whole: a second ingest of a new file works.
    write(home.landing_chats, "chats_2000-01-02.csv", HEADER + "\nc2,k2,2000-01-02 00:00:00,false,\n")
    assert ingest(home).ok
    assert q(home, "select count(*) from raw.chats") == [(2,)]


def test_header_field_with_a_line_break_is_one_clear_outcome(home: Home) -> None:
    """A quoted header name holding a line break: the file loads (the name kept) or fails with one
    line; either way no SQL runs from it and the other files load."""
    evil = 'x"; drop table raw.chats_data; --\nsecond line'
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "," + csv_field(evil) + "\nc1,k1,t,true,,v\n")
    write(home.landing_chats, "chats_2000-01-02.csv", HEADER + "\nc2,k2,2000-01-02 00:00:00,false,\n")
    result = ingest(home)
    outcome = {o.file_name: o for o in result.outcomes}
    assert outcome["chats_2000-01-02.csv"].status == "loaded"
    first = outcome["chats_2000-01-01.csv"]
    assert first.status in ("loaded", "failed")
    if first.status == "failed":
        assert first.reason and "\n" not in first.reason
    ids = {r[0] for r in q(home, "select id from raw.chats")}
    assert "c2" in ids
    assert raw_columns(home, "chats_data")[:5] == HEADER.split(",")


def test_hostile_values_are_stored_verbatim(home: Home) -> None:
    values = [
        "'; drop table raw.chats_data; --",
        'say "hi"; select 1',
        "multi\nline; --",
        "back\\slash \\' \\\"",
        "$1 ? $first ?",
        "ünï cødé ☃ \u2028",
    ]
    header = HEADER + ",note"
    rows = [f"c{i},{csv_field(v)},2000-01-01 00:00:00,true,,{csv_field(v)}" for i, v in enumerate(values)]
    write(home.landing_chats, "chats_2000-01-01.csv", header + "\n" + "\n".join(rows) + "\n")
    result = ingest(home)
    assert result.ok, [o.reason for o in result.failed]
    got = q(home, "select id, chat_category_id, _extra['note'], _line_number from raw.chats order by id")
    assert [(g[1], g[2]) for g in got] == [(v, v) for v in values]
    # The row holding the line break twice (a source column and `_extra`) spans three physical lines.
    assert [g[3] for g in got] == [2, 3, 4, 7, 8, 9]
    assert q(home, "select rows_loaded, rows_rejected from raw.ingested_files") == [(6, 0)]


def test_home_path_with_quotes_and_semicolon(tmp_path: Path, monkeypatch) -> None:
    """A home folder named `it's "odd"; here` works for ingest, the spill folder and report's attach."""
    home = Home(tmp_path / 'it\'s "odd"; here')
    home.ensure_landing()
    monkeypatch.setenv(resources.MEMORY_LIMIT_ENV, "500MB")
    write(home.landing_categories, "categories_2000-01-01.csv", CATEGORIES)
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\nc1,k1,2000-01-01 00:00:00,true,\n")
    done = run_cli("ingest", "--home", str(home.root))
    assert done.returncode == 0, done.stderr
    assert q(home, "select count(*) from raw.chats") == [(1,)]
    con = connect(home)
    try:
        assert con.execute("select current_setting('temp_directory')").fetchone() == (
            str(resources.spill_dir(home)),
        )
    finally:
        con.close()
    # report attaches the published file read-only by its path: an empty database at such a path is
    # reported as incomplete (the attach itself worked), never as a parser error.
    published = home.root / "serving" / 'it\'s; "x".duckdb'
    published.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(published)).close()
    with pytest.raises(UserError, match="not a complete published database"):
        report.load(published)


def test_whole_run_in_a_home_with_quotes_and_a_hostile_header(tmp_path: Path) -> None:
    """`run` (ingest, dbt build, publish, report) end to end in such a home, with a file whose extra
    column is named like an injection and holds a line break."""
    root = tmp_path / 'it\'s "odd"; here'
    done = run_cli("generate", "--home", str(root), "--chats", "2000")
    assert done.returncode == 0, done.stderr
    home = Home(root)
    name = csv_field('x"; drop table raw.chats_data; --')
    write(
        home.landing_chats,
        "chats_2000-05-01.csv",
        f'{HEADER},{name}\nzz1,,2000-05-01 00:00:00,true,,"two\nlines"\n',
    )
    done = run_cli("run", "--home", str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (home.serving / "report.html").is_file()
    figures = report.load(home.serving_database)
    assert figures.chats == 2001
    assert q(home, "select _extra, _line_number from raw.chats where id = 'zz1'") == [
        ({'x"; drop table raw.chats_data; --': "two\nlines"}, 2)
    ]


def test_memory_limit_setting_is_a_value_not_sql(home: Home, monkeypatch) -> None:
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\nc1,k1,2000-01-01 00:00:00,true,\n")
    assert ingest(home).ok
    monkeypatch.setenv(resources.MEMORY_LIMIT_ENV, "1GB'; delete from raw.chats_data; select '")
    with pytest.raises(UserError, match=r"CHAT_ANALYTICS_MEMORY_LIMIT=.* is not a memory size"):
        connect(home)
    monkeypatch.delenv(resources.MEMORY_LIMIT_ENV)
    assert q(home, "select count(*) from raw.chats_data") == [(1,)]


# ---- item 2: unexpected columns in one `_extra` column ---------------------------------------------


def test_3000_extra_columns_keep_the_raw_table_width(home: Home) -> None:
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\nc0,k1,2000-01-01 00:00:00,true,\n")
    assert ingest(home).ok
    before = raw_columns(home, "chats_data")
    extra = [f"extra_{i}" for i in range(3000)]
    header = HEADER + "," + ",".join(extra)
    rows = [
        f"c{r},k1,2000-01-02 00:00:00,true,," + ",".join(f"r{r}v{i}" for i in range(3000))
        for r in range(1, 4)
    ]
    write(home.landing_chats, "chats_2000-01-02.csv", header + "\n" + "\n".join(rows) + "\n")
    result = ingest(home)
    assert result.ok, [o.reason for o in result.failed]
    assert raw_columns(home, "chats_data") == before
    assert q(home, "select _extra['extra_2999'], cardinality(_extra) from raw.chats where id = 'c2'") == [
        ("r2v2999", 3000)
    ]
    assert q(
        home,
        "select len(extra_columns) from raw.ingested_files where file_name = ?",
        ["chats_2000-01-02.csv"],
    ) == [(3000,)]
    # Later loads still work and leave the width alone too.
    write(home.landing_chats, "chats_2000-01-03.csv", HEADER + "\nc9,k1,2000-01-03 00:00:00,true,\n")
    assert ingest(home).ok
    assert raw_columns(home, "chats_data") == before
    assert q(home, "select count(*), count(_extra) from raw.chats") == [(5, 3)]


def test_line_break_inside_an_extra_value_reconciles(home: Home) -> None:
    header = HEADER + ",note"
    text = (
        header + '\nc1,k1,2000-01-01 00:00:00,true,,"two\nlines"\nc2,k1,2000-01-01 00:00:00,true,,x\n'
        "c3,k1,2000-01-01 00:00:00,true,,\n"
    )
    write(home.landing_chats, "chats_2000-01-01.csv", text)
    result = ingest(home)
    assert result.ok, [o.reason for o in result.failed]
    # An empty value is not stored: its key reads as null.
    assert q(
        home, "select id, _extra['note'], cardinality(_extra), _line_number from raw.chats order by id"
    ) == [
        ("c1", "two\nlines", 1, 2),
        ("c2", "x", 1, 4),
        ("c3", None, 0, 5),
    ]


def test_warehouse_widened_by_the_old_ingest_still_loads(home: Home) -> None:
    """Before `_extra`, unexpected columns were added as varchar columns: such a warehouse keeps working."""
    home.warehouse_dir.mkdir(parents=True, exist_ok=True)
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\nc1,k1,2000-01-01 00:00:00,true,\n")
    assert ingest(home).ok
    with duckdb.connect(str(home.warehouse)) as con:
        con.execute("alter table raw.chats_data drop column _extra")
        con.execute('alter table raw.chats_data add column "agent_note" varchar')
    write(
        home.landing_chats,
        "chats_2000-01-02.csv",
        HEADER + ",agent_note\nc2,k1,2000-01-02 00:00:00,true,,hi\n",
    )
    assert ingest(home).ok
    assert q(home, "select id, agent_note, _extra['agent_note'] from raw.chats order by id") == [
        ("c1", None, None),
        ("c2", None, "hi"),
    ]


# ---- item 7: orphans ---------------------------------------------------------------------------------


def test_planted_orphans_are_removed_before_anything_loads(home: Home, caplog) -> None:
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\nc1,k1,2000-01-01 00:00:00,true,\n")
    assert ingest(home).ok
    # Rows of batches the manifest does not know: one with the id the next load will be given (it
    # would adopt them), one far ahead; in the data, the rejects and the line gaps.
    with duckdb.connect(str(home.warehouse)) as con:
        next_id = con.execute("select max(batch_id) + 1 from raw.ingested_files").fetchone()[0]
        for batch in (next_id, 999):
            con.execute(
                "insert into raw.chats_data (id, _batch_id) select 'orphan' || range, ? from range(3)",
                [batch],
            )
        con.execute("insert into raw.rejected_rows values (999, 'chats', 'f', 2, 'x', 'r', 't')")
        con.execute("insert into raw.line_gaps values (999, 0, 1)")
    write(home.landing_chats, "chats_2000-01-02.csv", HEADER + "\nc2,k1,2000-01-02 00:00:00,true,\n")
    with caplog.at_level(logging.WARNING):
        result = ingest(home)
    assert result.ok
    assert f"removed 6 orphan row(s) of batch id(s) {next_id}, 999 from raw.chats_data" in caplog.text
    assert "removed 1 orphan row(s) of batch id(s) 999 from raw.rejected_rows" in caplog.text
    assert "removed 1 orphan row(s) of batch id(s) 999 from raw.line_gaps" in caplog.text
    assert q(home, "select count(*) from raw.chats_data where id like 'orphan%'") == [(0,)]
    assert q(home, "select count(*) from raw.rejected_rows") == [(0,)]
    assert q(home, "select count(*) from raw.line_gaps") == [(0,)]
    assert q(home, "select id, _line_number from raw.chats order by id") == [("c1", 2), ("c2", 2)]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert ingest(home).ok
    assert "orphan" not in caplog.text


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~925,000 chats rows in 121 daily files: enough for DuckDB to write the rows ahead of the commit."""
    root = tmp_path_factory.mktemp("generated") / "home"
    done = run_cli("generate", "--home", str(root), "--chats", "800000")
    assert done.returncode == 0, done.stderr
    (root / "landing" / "ground_truth.json").unlink(missing_ok=True)
    return root


def test_kill_inside_the_commit_leaves_no_orphans(generated: Path, tmp_path: Path) -> None:
    """SIGKILL at several moments of the commit of 121 files; each time: all or nothing of them is
    loaded, the next ingest removes any orphan rows first, loads the rest, and the books balance."""
    files = sorted(p.name for p in (generated / "landing" / "chats").iterdir())
    categories = {p.name for p in (generated / "landing" / "categories").iterdir()}
    orphans_seen = {}
    for delay_ms in (0, 10, 30, 100):
        root = tmp_path / f"home-{delay_ms}"
        shutil.copytree(generated, root)
        home = Home(root)
        fault = f"during-commit:{files[-1]}:{delay_ms}"
        killed = run_cli("ingest", "--home", str(root), env={"CHAT_ANALYTICS_FAULT": fault})
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert "killing the process" in killed.stderr
        # After the crash: the chats files (one transaction: they share a header) are loaded entirely
        # and on record, or not at all; rows may be left behind without a manifest row (orphans).
        loaded = dict(
            q(
                home,
                "select file_name, rows_loaded from raw.ingested_files "
                "where entity = 'chats' and status = 'loaded'",
            )
        )
        assert set(loaded) in (set(), set(files)), delay_ms
        counted = dict(q(home, "select _source_file, count(*) from raw.chats group by 1"))
        assert counted == {k: v for k, v in loaded.items() if v}
        orphans_seen[delay_ms] = q(
            home,
            "select count(*) from raw.chats_data "
            "where _batch_id not in (select batch_id from raw.ingested_files)",
        )[0][0]

        again = run_cli("ingest", "--home", str(root))
        assert again.returncode == 0, again.stderr[-2000:]
        assert ("orphan row(s)" in again.stderr) == (orphans_seen[delay_ms] > 0), again.stderr[-2000:]
        assert q(
            home,
            "select count(*) from raw.chats_data where _batch_id not in "
            "(select batch_id from raw.ingested_files where status = 'loaded')",
        ) == [(0,)]
        # The books balance: every landing file loaded exactly once, raw rows = manifest rows, and every
        # row on its own line.
        per_file = q(
            home, "select file_name, count(*) from raw.ingested_files where status = 'loaded' group by 1"
        )
        assert {name for name, n in per_file if n == 1} == set(files) | categories
        assert all(n == 1 for _, n in per_file)
        (rows,) = q(home, "select sum(rows_loaded) from raw.ingested_files where entity = 'chats'")[0]
        assert q(home, "select count(*) from raw.chats_data") == [(rows,)]
        assert q(
            home,
            "select count(*), count(distinct (_batch_id, _line_number)), min(_line_number), "
            "max(_line_number - 1 - rows_loaded) "
            "from raw.chats join raw.ingested_files on batch_id = _batch_id",
        ) == [(rows, rows, 2, 0)]
        shutil.rmtree(root)
    print("orphan rows after each kill, by delay (ms):", orphans_seen)
