"""Issue 14 on real runs: run and test history, volume anomalies, notifications, the report's History.

Every run is `chat-analytics run` (in-process through `cli.main`) on generated sample data; the webhook
is a local HTTP server in a thread. The Airflow side (trigger `airflow`) is in tests/test_dags.py.
"""

from __future__ import annotations

import csv
import http.server
import json
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from chat_analytics.cli import main
from chat_analytics.devtools.generate import generate
from chat_analytics.paths import Home
from chat_analytics.pipeline import notify

MELBOURNE = ZoneInfo("Australia/Melbourne")
CUT_DAY = date(2000, 3, 30)  # a Thursday among the newest complete days of a 1 Jan - 31 Mar extract
KEEP_SHARE = 0.3


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]]
    delay: float = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(self.delay)
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _serve(delay: float = 0.0) -> tuple[http.server.ThreadingHTTPServer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), type("Hook", (_Webhook,), {"received": received, "delay": delay})
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, received


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    server, received = _serve()
    monkeypatch.setenv("CHAT_ANALYTICS_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_address[1]}/hook")
    monkeypatch.delenv("CHAT_ANALYTICS_NOTIFY", raising=False)
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


def _cut_short(home: Home, day: date, keep: float) -> int:
    """Drop all rows of most chats created on Melbourne `day` (an extract that arrived short)."""
    start = datetime(day.year, day.month, day.day, tzinfo=MELBOURNE).astimezone(UTC).replace(tzinfo=None)
    end = start + timedelta(days=1)
    dropped: set[str] = set()
    for path in sorted(home.landing_chats.glob("*.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        kept = [rows[0]]
        for row in rows[1:]:
            created = datetime.fromisoformat(row[2])
            if start <= created < end and zlib.crc32(row[0].encode()) % 1000 >= keep * 1000:
                dropped.add(row[0])
                continue
            kept.append(row)
        with path.open("w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(kept)
    return len(dropped)


def _query(path: Path, query: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(query).fetchall()


def _texts(received: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in received]


def test_cut_short_day_is_flagged_there_only_and_history_survives_full_refresh(
    tmp_path: Path, webhook: list[dict[str, Any]]
) -> None:
    home = Home(tmp_path / "home")
    generate(home, chats=30_000, start=date(2000, 1, 1), end=date(2000, 3, 31), seed=7, dirty=False)
    assert _cut_short(home, CUT_DAY, KEEP_SHARE) > 100

    assert main(["run", "--home", str(home.root)]) == 0
    warehouse = home.warehouse
    anomalies = _query(warehouse, "select metric, day, direction, is_recent from monitoring.volume_anomalies")
    assert anomalies == [("chats_created", CUT_DAY, "low", True)]
    # the partial first and last local days (1 Jan from 11:00, 1 Apr until 11:00) are never judged
    first, last = _query(warehouse, "select min(day), max(day) from monitoring.volume_bands")[0]
    assert first > date(2000, 1, 1) and last == date(2000, 3, 31)
    band = _query(
        warehouse,
        f"select observed, lower_bound, expected from monitoring.volume_bands "
        f"where metric = 'chats_created' and day = '{CUT_DAY}'",
    )[0]
    assert band[0] < band[1] < band[2]

    # the warn test reached the history; the run's row names the anomaly
    (run_id, status, trigger, warnings, named, loaded) = _query(
        warehouse,
        "select run_id, status, trigger, test_warnings, anomalies, rows_loaded from monitoring.run_history",
    )[0]
    assert (status, trigger) == ("success", "cli") and warnings >= 1 and loaded > 25_000
    assert len(named) == 1 and str(CUT_DAY) in named[0] and "chats_created low" in named[0]
    warned = _query(
        warehouse,
        "select model, severity, status, failing_rows from monitoring.test_history "
        "where test_name = 'volume_anomalies_newest_days_normal'",
    )
    assert warned == [("volume_anomalies", "warn", "warn", 1)]

    # start and success messages; the success names duration, rows, warnings and the anomaly's day
    texts = _texts(webhook)
    assert len(texts) == 2 and "started (cli)" in texts[0] and run_id in texts[0]
    assert "succeeded in" in texts[1] and str(CUT_DAY) in texts[1] and "chats published" in texts[1]
    assert webhook[1]["blocks"][0]["type"] == "section"

    # a second run, with --full-refresh: history is kept, one row per run
    assert main(["run", "--home", str(home.root), "--full-refresh"]) == 0
    rows = _query(warehouse, "select run_id, status from monitoring.run_history order by started_at")
    assert len(rows) == 2 and rows[0][0] == run_id and {s for _, s in rows} == {"success"}
    per_run = dict(_query(warehouse, "select run_id, count(*) from monitoring.test_history group by 1"))
    assert set(per_run) == {r for r, _ in rows} and len(set(per_run.values())) == 1
    assert len(_texts(webhook)) == 4

    # published for analysts: database and Parquet, the report's History section
    published = home.serving / "analytics.duckdb"
    assert len(_query(published, "select * from analytics.monitoring.run_history")) == 2
    assert _query(published, "select count(*) from analytics.monitoring.volume_anomalies") == [(1,)]
    parquet = home.serving / "parquet" / "monitoring" / "run_history.parquet"
    assert duckdb.sql(f"select count(*) from '{parquet}'").fetchone() == (2,)
    page = home.report.read_text()
    assert "<h2>History</h2>" in page and "Anomalous days:" in page and "low" in page


def _unreadable_chat_times(home: Home) -> None:
    for path in home.landing_chats.iterdir():
        lines = path.read_text().splitlines()
        rows = [line.split(",") for line in lines[1:]]
        path.write_text(
            "\n".join([lines[0], *(",".join([r[0], r[1], "bad", r[3], ""]) for r in rows)]) + "\n"
        )


def test_failing_build_is_recorded_and_notified(tmp_path: Path, webhook: list[dict[str, Any]]) -> None:
    home = Home(tmp_path / "home")
    generate(home, chats=300, start=date(2000, 1, 1), end=date(2000, 1, 2), seed=3, dirty=False)
    _unreadable_chat_times(home)

    assert main(["run", "--home", str(home.root)]) == 1

    (status, step, error, log_location, errors) = _query(
        home.warehouse,
        "select status, failed_step, error, log_location, test_errors from monitoring.run_history",
    )[0]
    assert (status, step) == ("failed", "build") and errors >= 1
    assert "dbt build failed" in error and "created_at" in error
    assert "chat-analytics run" in log_location
    failed_tests = _query(
        home.warehouse, "select count(*) from monitoring.test_history where status = 'fail'"
    )
    assert failed_tests[0][0] >= 1
    texts = _texts(webhook)
    assert len(texts) == 2 and "started" in texts[0]
    assert "FAILED at build" in texts[1] and "created_at" in texts[1] and "Log" in json.dumps(webhook[1])


def test_notifications_follow_the_setting_and_never_hang(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server, received = _serve(delay=3.0)
    try:
        monkeypatch.setenv("CHAT_ANALYTICS_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_address[1]}/")
        monkeypatch.setenv("CHAT_ANALYTICS_NOTIFY", "failures")
        assert notify.notify(notify.START, "run started") is False
        assert notify.notify(notify.SUCCESS, "run succeeded") is False
        # a slow webhook: bounded by the timeout per attempt, a warning, never an exception
        monkeypatch.setenv("CHAT_ANALYTICS_NOTIFY_TIMEOUT", "0.5")
        began = time.monotonic()
        with caplog.at_level(logging.WARNING):
            assert notify.notify(notify.FAILURE, "run failed", [("Step", "build")]) is False
        assert time.monotonic() - began < 5
        assert "not delivered" in caplog.text
    finally:
        server.shutdown()
        server.server_close()
    # nothing but the failure was ever sent (it arrived late, after the timeout)
    assert all("failed" in m["text"] for m in received)
