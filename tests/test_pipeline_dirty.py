"""End to end through the real CLI: a `--dirty` sample's quarantine matches the generator's ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chat_analytics.cli", *args],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600,
    )  # fmt: skip


def test_dirty_run_matches_ground_truth_exactly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = cli("generate", "--home", str(home), "--chats", "8000", "--dirty", "--seed", "11")
    assert done.returncode == 0, done.stderr
    truth = json.loads((home / "landing" / "ground_truth.json").read_text())["expected"]["dbt"]
    run = cli("run", "--home", str(home))
    assert run.returncode == 0, run.stderr[-3000:]
    # Source tests warn about the injected defects, and the run still goes on.
    assert "WARN" in run.stderr

    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        reasons = dict(
            con.execute("select reason, count(*) from quality.quarantined_chats group by 1").fetchall()
        )
        assert reasons == {k: v for k, v in truth["quarantined"].items() if v}
        statuses = dict(
            con.execute("select category_status, count(*) from analytics.fct_chats group by 1").fetchall()
        )
        assert statuses == {k: v for k, v in truth["category_status"].items() if v}
        assert con.execute("select count(*) from raw.chats").fetchone()[0] == truth["raw_rows"]
        assert con.execute("select count(*) from analytics.fct_chats").fetchone()[0] == truth["valid_chats"]
        # Every quarantined record keeps its lineage back to the file and line.
        lineage = con.execute(
            "select count(*) from quality.quarantined_chats "
            "where _source_file is null or _line_number is null"
        ).fetchone()[0]
        assert lineage == 0
        books = con.execute("select * from quality.chat_books").fetchone()
        assert books == (
            truth["raw_rows"], truth["valid_chats"], truth["quarantined_rows"],
            truth["collapsed_exact_duplicates"], truth["superseded_versions"], 0,
        )  # fmt: skip


def test_chats_at_the_ends_of_time_cost_no_more_than_a_normal_run(tmp_path: Path) -> None:
    """Two valid rows, one created in year 0001 and one in 9999 (both inside the data contract), stretch
    the period to 3.65 million days: the marts keep every day, but the monitoring models and the report
    are bounded (they took minutes and wrote a 464 MB page before)."""
    home = tmp_path / "home"
    assert cli("generate", "--home", str(home), "--chats", "300", "--end", "2000-01-10").returncode == 0
    (home / "landing" / "chats" / "chats_2000-01-11.csv").write_text(
        "id,chat_category_id,created_at,is_customer_initiated,resolved_at\n"
        "first,,0001-01-01 00:00:00,true,\n"
        "last,,9999-12-31 00:00:00,true,9999-12-31 10:00:00\n"
    )
    run = cli("run", "--home", str(home))
    assert run.returncode == 0, run.stderr[-3000:]
    assert (home / "serving" / "report.html").stat().st_size < 2_000_000
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        days = con.execute("select count(*) from analytics.daily_resolutions").fetchone()[0]
        assert days > 2_900_000  # 2000 to 9999: the period is what the data says
        monitored = con.execute("select count(*), max(day) from monitoring.volume_daily_metrics").fetchone()
        assert monitored[0] <= 731 + 7 * 8 + 1 and str(monitored[1]) == "9999-12-31"
        local = con.execute(
            "select created_at_local from analytics.fct_chats where chat_id in ('first', 'last') order by 1"
        ).fetchall()
        # Outside the hourly offset table (1970-2100): converted row by row, local mean time in year 1.
        assert [str(t) for (t,) in local] == ["0001-01-01 09:39:52", "9999-12-31 11:00:00"]
