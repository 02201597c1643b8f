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
