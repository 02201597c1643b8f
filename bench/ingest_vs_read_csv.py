"""Ingest speed against the floor: a bare DuckDB `read_csv` of the same chats files into a table.

Usage: .venv/bin/python bench/ingest_vs_read_csv.py --chats 10000000 [--reps 3] [--work DIR]

Generates the sample once, then alternates, in fresh database files each time:
  floor:  create table chats as select * from read_csv('<landing>/chats/*.csv')   (DuckDB's defaults)
  ingest: chat-analytics ingest (text columns, lineage, rejects, reconciliation, manifest)
and prints the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

from chat_analytics.devtools.generate import generate
from chat_analytics.paths import Home

log = logging.getLogger("bench")


def floor(home: Home, db: Path) -> float:
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(db)) as con:
        con.execute("set enable_progress_bar = false")
        con.execute(f"create table chats as select * from read_csv('{home.landing_chats}/*.csv')")
    return time.perf_counter() - started


def ingest(home: Home) -> float:
    shutil.rmtree(home.warehouse_dir, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "chat-analytics"), "ingest", "--home", str(home.root)],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("bench/results/ingest-floor"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    home = Home(args.work.resolve() / f"home-{args.chats}")
    if not any(home.landing_chats.glob("*.csv")) if home.landing_chats.exists() else True:
        generate(home, chats=args.chats, start=date(2000, 1, 1), end=date(2000, 4, 30), seed=42, dirty=False)
    size = sum(p.stat().st_size for p in home.landing_chats.glob("*.csv")) / 1e9
    floors, ingests = [], []
    for rep in range(args.reps):
        floors.append(floor(home, args.work.resolve() / "floor.duckdb"))
        ingests.append(ingest(home))
        log.info("rep %d: floor %.2f s, ingest %.2f s", rep + 1, floors[-1], ingests[-1])
    f, i = statistics.median(floors), statistics.median(ingests)
    print(f"chats: {args.chats:,} ({size:.2f} GB of CSV), median of {args.reps}")
    print(f"floor  (bare read_csv into a table): {f:7.2f} s")
    print(f"ingest (chat-analytics ingest):      {i:7.2f} s")
    print(f"ratio ingest / floor:                {i / f:7.2f}x")


if __name__ == "__main__":
    main()
