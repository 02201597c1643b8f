"""False-alarm rate of `monitoring.volume_anomalies` on clean sample data (README: Monitoring).

For each seed and size: `chat-analytics generate` into a fresh home, `ingest`, `build`, then count the
evaluated (metric, day) pairs of `monitoring.volume_bands` and the flagged ones. Clean sample data has
no anomaly by construction, so every flagged day is a false alarm. Prints one line per home and the
totals; `--keep` leaves the homes in place.

    .venv/bin/python bench/anomaly_false_alarms.py --sizes 50000 500000 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

log = logging.getLogger("anomaly_false_alarms")
CLI = Path(sys.executable).with_name("chat-analytics")


def measure(home: Path, chats: int, seed: int, looser: float) -> tuple[int, int, int, list[str], int]:
    """(days evaluated, metric-days evaluated, metric-days flagged, flagged descriptions, days that a
    sensitivity of `looser` would flag) of one home."""
    subprocess.run([CLI, "generate", "--home", home, "--chats", str(chats), "--seed", str(seed)], check=True)
    for step in ("ingest", "build"):
        subprocess.run([CLI, step, "--home", home], check=True, capture_output=True)
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        days, evaluated, flagged = con.execute(
            "select count(distinct day), count(*), count(*) filter (where is_anomaly) "
            "from monitoring.volume_bands"
        ).fetchone()  # type: ignore[misc]
        looser_days = con.execute(
            "select count(distinct day) from monitoring.volume_bands where abs(score) > ?", [looser]
        ).fetchone()[0]  # type: ignore[index]
        found = [
            f"{metric} {day} {direction} (score {score:.1f})"
            for metric, day, direction, score in con.execute(
                "select metric, day, direction, score from monitoring.volume_anomalies order by day"
            ).fetchall()
        ]
    return int(days), int(evaluated), int(flagged), found, int(looser_days)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--looser", type=float, default=3.0, help="also count the days this sensitivity would flag (3)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated homes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(tempfile.mkdtemp(prefix="anomaly-fa-"))
    totals = [0, 0, 0, 0, 0]
    try:
        for chats in args.sizes:
            for seed in args.seeds:
                days, evaluated, flagged, found, looser = measure(
                    root / f"{chats}-{seed}", chats, seed, args.looser
                )
                days_flagged = len({f.split()[1] for f in found})
                for index, value in enumerate((days, days_flagged, evaluated, flagged, looser)):
                    totals[index] += value
                log.info(
                    "chats %s seed %d: %d of %d days flagged, %d of %d metric-days %s "
                    "(sensitivity %g: %d days)",
                    f"{chats:,}", seed, days_flagged, days, flagged, evaluated, "; ".join(found), args.looser,
                    looser,
                )  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    days, days_flagged, evaluated, flagged, looser_days = totals
    log.info(
        "total: %d of %d days flagged (%.2f %%), %d of %d metric-days (%.2f %%); "
        "sensitivity %g: %d days (%.2f %%)",
        days_flagged, days, 100 * days_flagged / max(days, 1), flagged, evaluated,
        100 * flagged / max(evaluated, 1), args.looser, looser_days, 100 * looser_days / max(days, 1),
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
