"""Incremental `publish` (issue 12, decision 4): it costs what changed and equals a full publish.

A small sample home is published once in full; then, each followed by an incremental publish:
a new daily file; a re-delivered file and a retraction (two builds, one
publish); a new categories snapshot. After every publish the served database and Parquet files equal,
table for table and row for row, what a full publish from scratch of the same warehouse writes; the
Parquet files (one per local creation day) of days that did not change are the previous release's
files (same inode), changed ones are new files. A publish killed at each of its fault points on the
incremental path leaves the previous release whole, and the next publish still starts from it. A
previous release that cannot be trusted (its database written to after its publish, its state
unreadable) makes the publish full, and says why.

Real `chat-analytics` runs (dbt included) on real DuckDB files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import Home
from chat_analytics.serving.publish import (
    BUILD_INFO,
    current_release,
    publish,
)
from chat_analytics.serving.publish_delta import STATE_NAME, ReleaseState

CLI = str(Path(sys.executable).with_name("chat-analytics"))
HELD_BACK = "chats_2000-04-30.csv"
REDELIVERED = "chats_2000-02-15.csv"
RETRACTED = "chats_2000-03-10.csv"
# _build_info columns that differ between two publishes of the same warehouse by design
PER_PUBLISH = {"run_id", "published_at", "git_commit"}


def _cli(home: Home, *args: str) -> None:
    assert cli_main([*args, "--home", str(home.root)]) == 0, args


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The home after each step, copied (links as links, times kept), with the publish result."""
    root = tmp_path_factory.mktemp("incremental")
    home = Home(root / "home")
    held = root / "held"
    held.mkdir()
    _cli(home, "generate", "--chats", "6000", "--seed", "5")
    shutil.move(home.landing_chats / HELD_BACK, held / HELD_BACK)
    _cli(home, "run")
    steps: dict[str, object] = {}

    def step(name: str) -> None:
        """Publish, then keep a copy of the home and the inodes of both releases' month files."""
        previous = current_release(home)
        assert previous is not None
        before = _day_files(previous)
        result = publish(home)
        copy = Home(root / name)
        shutil.copytree(home.root, copy.root, symlinks=True)
        steps[name] = (copy, result, before, _day_files(result.release))

    _cli(home, "build")  # a second build of the same data: nothing to publish but a new _build_info
    step("first")

    # a new daily file
    shutil.copy2(held / HELD_BACK, home.landing_chats / HELD_BACK)
    _cli(home, "ingest")
    _cli(home, "build")
    step("new-day")

    # a re-delivered file (fewer rows, one chat resolved later) and a retraction, two builds, one publish
    path = home.landing_chats / REDELIVERED
    lines = path.read_text(encoding="utf-8").splitlines()
    first = lines[1].split(",")
    first[4] = "2000-02-28 10:00:00"
    path.write_text("\n".join([lines[0], ",".join(first), *lines[2:-5]]) + "\n", encoding="utf-8")
    _cli(home, "ingest")
    _cli(home, "build")
    _cli(home, "retract", RETRACTED)
    _cli(home, "build")  # (a --full-refresh would rewrite every row's `_resolved_seq`, so every day)
    step("redelivered-retracted")

    # a new categories snapshot: the first enabled root category is disabled
    [snapshot_file] = sorted(home.landing_categories.glob("*.csv"))
    rows = snapshot_file.read_text(encoding="utf-8").splitlines()
    root_index = next(i for i, row in enumerate(rows[1:], 1) if row.endswith(",,false"))
    rows[root_index] = rows[root_index].removesuffix("false") + "true"
    (home.landing_categories / "categories_2000-05-01.csv").write_text("\n".join(rows) + "\n")
    _cli(home, "ingest")
    _cli(home, "build")
    step("categories")
    return {"root": root, "home": home, "steps": steps}


def _full_from_scratch(home: Home, target: Path) -> Home:
    """The same warehouse published in full into an empty serving folder."""
    full = Home(target)
    shutil.copytree(home.root, full.root, symlinks=True, ignore=shutil.ignore_patterns("serving"))
    result = publish(full)
    assert result.full_reason == "no previous release"
    return full


def _tables(con: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str | None]]:
    return con.execute(
        "select table_name, comment from duckdb_tables() "
        "where database_name = ? and schema_name = 'main' order by 1",
        [database],
    ).fetchall()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def _assert_same_publish(incremental: Home, full: Home) -> None:
    """Database and Parquet of two homes' current releases: equal table for table, row for row."""
    with duckdb.connect() as con:
        con.execute(f"attach '{incremental.serving_database}' as inc (read_only)")
        con.execute(f"attach '{full.serving_database}' as ful (read_only)")
        assert _tables(con, "inc") == _tables(con, "ful")
        columns = (
            "select table_name, column_name, data_type, comment from duckdb_columns() "
            "where database_name = ? and schema_name = 'main' order by table_name, column_index"
        )
        assert con.execute(columns, ["inc"]).fetchall() == con.execute(columns, ["ful"]).fetchall()
        for name, _ in _tables(con, "ful"):
            if name == BUILD_INFO:
                keep = [
                    c
                    for (c,) in con.execute(
                        "select column_name from duckdb_columns() where database_name = 'ful' "
                        "and table_name = ? order by column_index",
                        [name],
                    ).fetchall()
                    if c not in PER_PUBLISH
                ]
                select = ", ".join(keep)
            else:
                select = "*"
            assert _rows(con, f"select {select} from inc.main.{name}") == _rows(
                con, f"select {select} from ful.main.{name}"
            ), name
    inc_files, full_files = _parquet_files(incremental), _parquet_files(full)
    assert sorted(inc_files) == sorted(full_files), "the Parquet layouts differ"
    with duckdb.connect() as con:
        for relative in full_files:
            if relative == f"{BUILD_INFO}.parquet":
                continue
            assert _rows(con, f"from read_parquet('{incremental.serving_parquet / relative}')") == _rows(
                con, f"from read_parquet('{full.serving_parquet / relative}')"
            ), relative
        glob = "fct_chats/**/*.parquet"
        assert _rows(
            con, f"from read_parquet('{incremental.serving_parquet / glob}', hive_partitioning = true)"
        ) == _rows(con, f"from read_parquet('{full.serving_parquet / glob}', hive_partitioning = true)")


def _parquet_files(home: Home) -> dict[str, Path]:
    folder = home.serving_parquet.resolve()
    return {str(p.relative_to(folder)): p for p in folder.rglob("*.parquet")}


def _day_files(release: Path) -> dict[str, tuple[int, int]]:
    """Day -> (device, inode) of its Parquet file `fct_chats/created_month=YYYY-MM/YYYY-MM-DD.parquet`."""
    folder = release / "parquet" / "fct_chats"
    found = {p.stem: (p.stat().st_dev, p.stat().st_ino) for p in folder.glob("*/*.parquet")}
    assert all(p.parent.name == f"created_month={p.stem[:7]}" for p in folder.glob("*/*.parquet"))
    return found


# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["first", "new-day", "redelivered-retracted", "categories"])
def test_an_incremental_publish_equals_a_full_publish_of_the_same_warehouse(
    story: dict, step: str, tmp_path: Path
) -> None:
    home, result, _, _ = story["steps"][step]
    assert result.full_reason is None, f"{step}: published in full: {result.full_reason}"
    _assert_same_publish(home, _full_from_scratch(home, tmp_path / "full"))


def test_a_new_day_rewrites_only_its_days_and_links_the_others(story: dict) -> None:
    _, first, _, _ = story["steps"]["first"]
    _, new_day, old, new = story["steps"]["new-day"]
    assert not first.changed_days and not first.written_days, "nothing changed between two builds"
    # the held-back UTC day, 30 April, is Melbourne's 30 April and 1 May; chats resolved that day were
    # created on the days just before
    assert new_day.written_days == new_day.changed_days
    assert "2000-04-30" in new_day.changed_days and "2000-05-01" in new_day.changed_days
    assert min(new_day.changed_days) >= "2000-04-01" and len(new_day.changed_days) < 20
    assert set(new_day.linked_days) == set(new) - set(new_day.written_days)
    assert {"2000-01-01", "2000-02-15", "2000-03-31"} <= set(new_day.linked_days)
    for day in new_day.linked_days:
        assert new[day] == old[day], day  # the same file: a hard link
    for day in new_day.written_days:
        assert day not in old or new[day] != old[day], day
    assert "2000-05-01" not in old and "2000-05-01" in new


def test_redelivery_retraction_and_categories_touch_what_they_change(story: dict) -> None:
    _, changed, old, new = story["steps"]["redelivered-retracted"]
    assert any(day.startswith("2000-02-1") for day in changed.changed_days)
    assert any(day.startswith("2000-03-1") for day in changed.changed_days)
    assert max(changed.changed_days) < "2000-03-12", "only chats created up to the retracted day"
    assert "2000-04-30" in changed.linked_days
    for day in changed.linked_days:
        assert new[day] == old[day], day
    for day in changed.written_days:
        assert new[day] != old[day], day
    _, categories, _, _ = story["steps"]["categories"]
    assert categories.full_reason is None and categories.changed_days


def test_the_release_records_what_it_was_made_from(story: dict) -> None:
    home: Home = story["home"]
    release = current_release(home)
    assert release is not None
    state = ReleaseState.load(release)
    assert set(state.files) == set(state.days) == set(_day_files(release))
    assert oct((release / STATE_NAME).stat().st_mode & 0o777) == oct(0o444)
    with duckdb.connect(str(home.serving_database), read_only=True) as con:
        months = con.execute(
            "select distinct strftime(created_date_local, '%Y-%m') as month "
            "from analytics.fct_chats order by 1"
        ).fetchall()
        chats = con.execute("select count(*) from analytics.fct_chats").fetchone()
        hive = con.execute(
            "select count(*), count(*) filter (created_month <> strftime(created_date_local, '%Y-%m')) "
            "from read_parquet(?, hive_partitioning = true)",
            [str(home.serving_parquet / "fct_chats" / "**" / "*.parquet")],
        ).fetchone()
    assert sorted({day[:7] for day in _day_files(release)}) == [m for (m,) in months]
    assert hive == (chats[0], 0)
    assert sum(rows for rows, _ in state.days.values()) == chats[0]


# ---- falling back to a full publish ---------------------------------------------------------------


@pytest.fixture
def published(story: dict, tmp_path: Path) -> Home:
    """A private copy of the home after the last step."""
    copy = Home(tmp_path / "home")
    shutil.copytree(story["home"].root, copy.root, symlinks=True)
    return copy


def test_a_previous_database_written_after_its_publish_is_not_reused(
    published: Home, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = current_release(published)
    assert release is not None
    (release / "analytics.duckdb").chmod(0o644)  # as root could, without asking
    with duckdb.connect(str(published.serving_database)) as session:
        session.execute("delete from analytics.fct_chats where chat_id in (select chat_id from "
                        "analytics.fct_chats limit 3)")  # fmt: skip
        session.execute("create table analytics.oops as select 1 as x")
    with caplog.at_level(logging.INFO, logger="chat_analytics.serving.publish"):
        result = publish(published)
    assert result.full_reason is not None and "changed after its publish" in result.full_reason
    assert "full publish (the previous release's analytics.duckdb changed" in caplog.text
    _assert_same_publish(published, _full_from_scratch(published, tmp_path / "full"))


@pytest.mark.parametrize("damage", ["missing", "garbage", "other-format"])
def test_an_unreadable_state_means_a_full_publish(published: Home, tmp_path: Path, damage: str) -> None:
    release = current_release(published)
    assert release is not None
    state = release / STATE_NAME
    state.chmod(0o644)
    if damage == "missing":
        state.unlink()
    elif damage == "garbage":
        state.write_text('{"format": 1, "layout"')
    else:
        state.write_text(state.read_text().replace('"format": 1', '"format": 0'))
    result = publish(published)
    assert result.full_reason is not None and STATE_NAME in result.full_reason
    assert result.written_days and not result.linked_days
    # and the release it wrote is reusable again
    assert publish(published).full_reason is None


def test_a_changed_parquet_file_is_rewritten(published: Home, tmp_path: Path) -> None:
    release = current_release(published)
    assert release is not None
    victim = release / "parquet" / "fct_chats" / "created_month=2000-02" / "2000-02-10.parquet"
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 1))
    result = publish(published)
    assert result.full_reason is None and result.written_days == ("2000-02-10",)
    _assert_same_publish(published, _full_from_scratch(published, tmp_path / "full"))


# ---- killed on the incremental path ----------------------------------------------------------------


def _visible(home: Home) -> dict[str, str]:
    seen = {"analytics.duckdb": hashlib.sha256(home.serving_database.read_bytes()).hexdigest()}
    for relative, path in sorted(_parquet_files(home).items()):
        seen[f"parquet/{relative}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    seen["current"] = os.readlink(home.serving / "current")
    return seen


@pytest.fixture(scope="module")
def pending(story: dict, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The last step's home with one more chats file ingested and built, not yet published."""
    home = Home(tmp_path_factory.mktemp("pending") / "home")
    shutil.copytree(story["home"].root, home.root, symlinks=True)
    extra = home.landing_chats / "chats_2000-05-01.csv"
    extra.write_text(
        "id,chat_category_id,created_at,is_customer_initiated,resolved_at\n"
        "late-1,,2000-05-01 02:00:00,true,2000-05-01 03:00:00\n"
        "late-2,,2000-05-01 03:00:00,false,\n",
        encoding="utf-8",
    )
    _cli(home, "ingest")
    _cli(home, "build")
    return home


@pytest.mark.parametrize(
    "fault", ["publish:after-database-written", "publish:before-switch", "publish:after-switch"]
)
def test_a_killed_incremental_publish_leaves_the_previous_release_whole(
    pending: Home, fault: str, tmp_path: Path
) -> None:
    home = Home(tmp_path / "home")
    shutil.copytree(pending.root, home.root, symlinks=True)
    previous = current_release(home)
    seen = _visible(home)
    done = subprocess.run(
        [CLI, "publish", "--home", str(home.root), "--run-id", "killed"],
        env={**os.environ, "CHAT_ANALYTICS_FAULT": fault},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    if fault == "publish:after-switch":
        assert current_release(home) != previous
    else:
        assert current_release(home) == previous and _visible(home) == seen
    assert previous is not None and (previous / STATE_NAME).is_file()
    result = publish(home)
    assert result.full_reason is None, result.full_reason
    _assert_same_publish(home, _full_from_scratch(home, tmp_path / "full"))
