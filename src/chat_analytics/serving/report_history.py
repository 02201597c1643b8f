"""The report's "History" section (issue 14): runs over time and daily chats against their expected band.

Read from the published file's `monitoring` schema (chat_analytics.pipeline.monitoring.publish_tables): run
durations and outcomes, test warnings and errors per run, and `chats_created` per Melbourne day from
`volume_bands` with the expected band shaded and the anomalous days marked. Inline SVG like
report_charts (no JavaScript); every value from data is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from html import escape
from typing import Any

import duckdb

from chat_analytics import sql
from chat_analytics.serving.report_charts import (
    GRID,
    HIGH,
    INK,
    LINE,
    LOW,
    MUTED,
    _svg,
    _text,
    long_date,
    nice_ticks,
    number,
)
from chat_analytics.serving.report_charts import short_date as _short_date

MAX_RUNS = 60
STATUS_COLOURS = {"success": "#16a34a", "failed": "#dc2626", "running": "#9ca3af"}
WARN = "#d97706"
ERROR = "#dc2626"
BAND = "#bfdbfe"


@dataclass(frozen=True)
class Run:
    run_id: str
    trigger: str
    started_at: datetime
    status: str
    seconds: float | None
    warnings: int
    errors: int
    failed_step: str | None


@dataclass(frozen=True)
class BandDay:
    day: date
    observed: float
    expected: float
    lower: float
    upper: float
    direction: str | None


@dataclass
class History:
    runs: list[Run] = field(default_factory=list)
    days: list[BandDay] = field(default_factory=list)
    available: bool = False


def load(con: duckdb.DuckDBPyConnection, catalog: str) -> History:
    """The newest runs and the chats_created band of the published file attached as `catalog`."""
    tables = {
        name
        for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = ? and schema_name = 'monitoring'",
            [catalog],
        ).fetchall()
    }
    history = History(available={"run_history", "volume_bands"} <= tables)
    if not history.available:
        return history
    runs = con.execute(
        "select run_id, trigger, started_at, status, "
        "coalesce(date_diff('millisecond', started_at, finished_at) / 1000.0, "
        "coalesce(ingest_seconds, 0) + coalesce(build_seconds, 0) + coalesce(publish_seconds, 0) "
        "+ coalesce(report_seconds, 0)), coalesce(test_warnings, 0), coalesce(test_errors, 0), failed_step "
        f"from {sql.qualified(catalog, 'monitoring', 'run_history')} order by started_at desc limit ?",
        [MAX_RUNS],
    ).fetchall()
    history.runs = [Run(*row) for row in reversed(runs)]
    history.days = [
        BandDay(*row)
        for row in con.execute(
            "select day, observed, expected, lower_bound, upper_bound, direction "
            f"from {sql.qualified(catalog, 'monitoring', 'volume_bands')} "
            "where metric = 'chats_created' order by day"
        ).fetchall()
    ]
    return history


def section(history: History | None) -> str:
    """The History section: three charts, or a note when the published file has no history yet."""
    if history is None or not history.available or not history.runs:
        content = '<p class="note">No run history in the published file yet.</p>'
    else:
        anomalies = [d for d in history.days if d.direction]
        listed = ", ".join(f"{long_date(d.day)} ({d.direction}, {d.observed:,.0f} chats)" for d in anomalies)
        content = (
            "<h3>Run durations and outcomes</h3>"
            + runs_chart(history.runs)
            + "<h3>dbt test warnings and errors per run</h3>"
            + tests_chart(history.runs)
            + "<h3>Daily chats created against the expected band</h3>"
            + band_chart(history.days)
            + f'<p class="note">{escape("Anomalous days: " + listed if listed else "No anomalous day.")}</p>'
        )
    return (
        "<section><h2>History</h2>"
        '<p class="note">The last runs of the pipeline (the run that published this file shows as running), '
        "and chats created per Melbourne day with the band expected from the same weekday of the previous "
        "weeks (monitoring.volume_bands); days outside it are marked low or high.</p>"
        f"{content}</section>"
    )


def _run_axis(runs: Sequence[Run], top: float, label: str, body: list[str]) -> tuple[Any, float, float]:
    """Grid, y labels and x labels of a per-run bar chart; returns (y, band width, left)."""
    width, height, left, right, top_pad, bottom = 1120, 220, 64, 24, 16, 44
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    ticks = nice_ticks(top)

    def y(value: float) -> float:
        return top_pad + plot_h - value / ticks[-1] * plot_h

    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 8, y(tick) + 4, number(tick), anchor="end"))
    band = plot_w / max(len(runs), 1)
    step = max(1, len(runs) // 8)
    for i in range(0, len(runs), step):
        x = left + (i + 0.5) * band
        body.append(_text(x, height - 24, f"{runs[i].started_at:%d %b %H:%M}", anchor="middle", size=11))
    body.append(_text(left + plot_w / 2, height - 6, label, anchor="middle", fill=INK))
    return y, band, left


def runs_chart(runs: Sequence[Run]) -> str:
    """One bar per run: its duration, coloured by outcome."""
    body: list[str] = []
    y, band, left = _run_axis(
        runs, max((r.seconds or 0) for r in runs), "Run start (Melbourne time); bar = seconds", body
    )
    for i, run in enumerate(runs):
        seconds = run.seconds or 0.0
        x = left + (i + 0.5) * band - _bar_width(band) / 2
        tip = f"{run.run_id} ({run.trigger}): {run.status}, {seconds:.1f} s" + (
            f", failed at {run.failed_step}" if run.failed_step else ""
        )
        body.append(
            f'<rect x="{x:.1f}" y="{y(seconds):.1f}" width="{_bar_width(band):.1f}" '
            f'height="{y(0) - y(seconds):.1f}" fill="{STATUS_COLOURS.get(run.status, MUTED)}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    body += _legend([(c, s) for s, c in STATUS_COLOURS.items()])
    return _svg(1120, 220, "Run durations and outcomes", body)


def tests_chart(runs: Sequence[Run]) -> str:
    """Per run: test warnings (amber) stacked under errors (red)."""
    body: list[str] = []
    y, band, left = _run_axis(
        runs, max(r.warnings + r.errors for r in runs), "Run start (Melbourne time); bar = tests", body
    )
    for i, run in enumerate(runs):
        x = left + (i + 0.5) * band - _bar_width(band) / 2
        tip = f"{run.run_id}: {run.warnings} warning(s), {run.errors} error(s)"
        for base, value, colour in ((0, run.warnings, WARN), (run.warnings, run.errors, ERROR)):
            if value:
                body.append(
                    f'<rect x="{x:.1f}" y="{y(base + value):.1f}" width="{_bar_width(band):.1f}" '
                    f'height="{y(base) - y(base + value):.1f}" fill="{colour}">'
                    f"<title>{escape(tip)}</title></rect>"
                )
    body += _legend([(WARN, "warnings"), (ERROR, "errors")])
    return _svg(1120, 220, "dbt test warnings and errors per run", body)


def band_chart(days: Sequence[BandDay]) -> str:
    """Observed chats per day (line), the expected band (shaded), anomalous days marked low / high."""
    width, height, left, right, top, bottom = 1120, 300, 64, 24, 36, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    if not days:
        body.append(
            _text(width / 2, height / 2, "Not enough complete days for a baseline yet", anchor="middle")
        )
        return _svg(width, height, "Daily chats against the expected band: no data", body)
    ticks = nice_ticks(max(max(d.observed, d.upper) for d in days))
    step = plot_w / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return left + i * step

    def y(value: float) -> float:
        return top + plot_h - value / ticks[-1] * plot_h

    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 8, y(tick) + 4, number(tick), anchor="end"))
    upper = [f"{x(i):.1f},{y(d.upper):.1f}" for i, d in enumerate(days)]
    lower = [f"{x(i):.1f},{y(d.lower):.1f}" for i, d in reversed(list(enumerate(days)))]
    body.append(f'<polygon points="{" ".join(upper + lower)}" fill="{BAND}" opacity="0.8"/>')
    expected = " ".join(f"{x(i):.1f},{y(d.expected):.1f}" for i, d in enumerate(days))
    body.append(f'<polyline points="{expected}" fill="none" stroke="{MUTED}" stroke-dasharray="4 3"/>')
    observed = " ".join(f"{x(i):.1f},{y(d.observed):.1f}" for i, d in enumerate(days))
    body.append(f'<polyline points="{observed}" fill="none" stroke="{LINE}" stroke-width="1.6"/>')
    for i, d in enumerate(days):
        tip = (
            f"{long_date(d.day)}: {d.observed:,.0f} chats, expected {d.expected:,.0f} "
            f"({d.lower:,.0f}-{d.upper:,.0f})" + (f", {d.direction.upper()}" if d.direction else "")
        )
        colour = {"low": LOW, "high": HIGH}.get(d.direction or "", LINE)
        radius = 5.5 if d.direction else 2.0
        body.append(
            f'<circle cx="{x(i):.1f}" cy="{y(d.observed):.1f}" r="{radius}" fill="{colour}" stroke="#fff">'
            f"<title>{escape(tip)}</title></circle>"
        )
        if d.direction:
            body.append(
                _text(
                    x(i),
                    y(d.observed) - 9,
                    d.direction,
                    anchor="middle",
                    fill=colour,
                    weight="700",
                    halo=True,
                )
            )
    for i in range(0, len(days), max(1, len(days) // 10)):
        body.append(_text(x(i), height - 26, _short_date(days[i].day), anchor="middle", size=11))
    body.append(
        _text(left + plot_w / 2, height - 6, "Creation date (Melbourne time)", anchor="middle", fill=INK)
    )
    body += _legend([(LINE, "chats created"), (BAND, "expected band"), (LOW, "low"), (HIGH, "high")])
    return _svg(width, height, "Daily chats created against the expected band, anomalies marked", body)


def _bar_width(band: float) -> float:
    return min(band * 0.7, 36.0)


def _legend(items: Sequence[tuple[str, str]]) -> list[str]:
    parts, x = [], 760
    for colour, label in items:
        parts.append(f'<rect x="{x}" y="2" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, 11, label, size=11, fill=INK))
        x += 24 + int(6.5 * len(label))
    return parts
