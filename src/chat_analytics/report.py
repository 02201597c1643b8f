"""`chat-analytics report`: one self-contained HTML page of the published marts, `serving/report.html`.

It reads only the PUBLISHED file (`serving/analytics.duckdb`, attached read-only), never the pipeline's
working warehouse, so it can run whenever a publish has happened. The page works offline: CSS inline,
charts as inline SVG generated here (report_charts), no JavaScript, no fonts, images or links to fetch.
It is written under a temporary name and renamed into place.

Sections: headline figures, daily resolved chats with the busiest and quietest days marked, arrivals by
weekday x hour in Melbourne time, top categories (leaf and root), lowest resolution rates, fastest
resolution, and data quality (quarantined rows by reason, test results and warnings, freshness).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

import duckdb

from chat_analytics import report_charts as charts
from chat_analytics import report_history, sql
from chat_analytics.paths import Home, UserError
from chat_analytics.publish import BUILD_INFO, SCHEMA, database_path

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
LOCAL_TZ = "Australia/Melbourne"
TOP_N = 10
TITLE = "Customer-support chats"
DASH = "\u2013"  # en dash: "no value" and date ranges
_DB = "published"
_RANKINGS = {
    "top": ("top_categories_customer_chats", "rank_customer_chats"),
    "lowest_rate": ("lowest_resolution_rate_categories", "rank_lowest_resolution_rate"),
    "fastest": ("fastest_resolution_categories", "rank_fastest_resolution"),
}


def report_path(home: Home) -> Path:
    return home.serving / REPORT_NAME


@dataclass
class Figures:
    """Everything the page shows, read from the published file."""

    info: dict[str, Any]
    chats: int = 0
    customer_chats: int = 0
    resolved: int = 0
    median_per_day: float | None = None
    days_counted: int = 0
    days: list[charts.Day] = field(default_factory=list)
    lowest: charts.Day | None = None
    highest: charts.Day | None = None
    cells: dict[tuple[int, int], tuple[int, float | None]] = field(default_factory=dict)
    rankings: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    history: report_history.History | None = None  # issue 14: the History section


def report(home: Home) -> Path:
    """Write `serving/report.html` from the published marts; returns its path."""
    source = database_path(home)
    if not source.is_file():
        raise UserError(f"no published database at {source}: run `chat-analytics publish` first")
    figures = load(source)
    target = report_path(home)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(render(figures), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink()
        raise UserError(
            f"cannot write the report {target}: {exc.strerror or exc}; {home.serving} must be a folder "
            "this user can write"
        ) from None
    log.info("report written to %s (run %s)", target, figures.info.get("run_id"))
    return target


# ---- reading ----------------------------------------------------------------------------------------


def load(source: Path) -> Figures:
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")
        con.execute(f"set TimeZone = {sql.literal(LOCAL_TZ)}")
        con.execute(f"attach {sql.literal(source)} as {sql.ident(_DB)} (read_only)")
        return _figures(con)
    except duckdb.CatalogException as exc:
        raise UserError(
            f"{source} is not a complete published database ({exc}): run `publish` again"
        ) from None
    finally:
        con.close()


def _rows(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None
) -> list[dict[str, Any]]:
    """Run `query` with `@name` meaning the published relation `name` (a constant of this module)."""
    cursor = con.execute(query.replace("@", sql.qualified(_DB, SCHEMA) + "."), params or [])
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _figures(con: duckdb.DuckDBPyConnection) -> Figures:
    info = _rows(
        con,
        "select *, strftime(published_at, '%a %-d %b %Y %H:%M') as published_local, "
        "strftime(last_ingested_at, '%a %-d %b %Y %H:%M') as last_ingested_local, "
        "date_diff('minute', last_ingested_at, published_at) / 60.0 as ingest_age_hours "
        f"from @{sql.ident(BUILD_INFO)}",
    )
    figures = Figures(info=info[0] if info else {})
    totals = _rows(
        con,
        "select count(*) as chats, count(*) filter (is_customer_initiated) as customer, "
        "count(*) filter (is_resolved) as resolved from @fct_chats",
    )[0]
    figures.chats, figures.customer_chats, figures.resolved = (
        int(totals["chats"]), int(totals["customer"]), int(totals["resolved"])
    )  # fmt: skip
    median = _rows(con, "select median_per_day, days_counted from @customer_resolutions_median")
    if median:
        figures.median_per_day, figures.days_counted = median[0]["median_per_day"], median[0]["days_counted"]
    figures.days = [
        charts.Day(r["resolution_date"], int(r["chats_resolved"]), int(r["customer_initiated_resolved"]))
        for r in _rows(con, "select * from @daily_resolutions order by resolution_date")
    ]
    for r in _rows(con, "select * from @resolution_extremes"):
        day = charts.Day(r["resolution_date"], int(r["chats_resolved"]), 0)
        if r["extreme"] == "lowest":
            figures.lowest = day
        else:
            figures.highest = day
    figures.cells = {
        (int(r["day_of_week"]), int(r["hour_of_day"])): (int(r["chats"]), r["avg_chats_per_week"])
        for r in _rows(con, "select * from @hourly_distribution")
    }
    for key, (view, rank) in _RANKINGS.items():
        for level in ("leaf", "root"):
            figures.rankings[(key, level)] = _rows(
                con,
                f"select * from @{sql.ident(view)} where category_level = ? and {sql.ident(rank)} <= ? "
                f"order by {sql.ident(rank)}",
                [level, TOP_N],
            )
    figures.history = report_history.load(con, _DB)  # issue 14
    return figures


# ---- rendering --------------------------------------------------------------------------------------


def render(f: Figures) -> str:
    template = Template((files("chat_analytics") / "templates" / "report.html").read_text(encoding="utf-8"))
    info = f.info
    window = ""
    if info.get("first_chat_date_local") and info.get("last_chat_date_local"):
        first, last = info["first_chat_date_local"], info["last_chat_date_local"]
        window = f"{charts.long_date(first)} {DASH} {charts.long_date(last)}"
    subtitle = " · ".join(
        part
        for part in (
            f"Chats created {window} (Melbourne time)" if window else "No chats yet",
            f"published {info.get('published_local', '?')} Melbourne time",
            f"run {info.get('run_id', '?')}",
        )
        if part
    )
    body = "\n".join(
        [
            _cards(f),
            _section(
                "Daily resolved chats",
                "Chats resolved per Melbourne calendar day, every day from the first to the last resolution "
                "(days without resolutions count as zero). Hover a bar for the day's figures.",
                charts.daily_chart(f.days, f.lowest, f.highest),
            ),
            _section(
                "When chats arrive",
                "Average chats per week created in each weekday and hour, Melbourne local time (daylight "
                "saving applied). Darker is busier; hover a cell for the total.",
                charts.heatmap(f.cells),
            ),
            _category_section(
                f,
                "top",
                "Top categories by customer-initiated chats",
                "Categories with the most chats started by customers: the chat's own category (leaf) and "
                "its top-level category (root). Categories are shown by the first 8 characters of their "
                "id; hover for the full id and figures.",
            ),
            _category_section(
                f,
                "lowest_rate",
                "Lowest resolution rates",
                "Share of the category's chats that have been resolved, lowest first (n = chats).",
            ),
            _category_section(
                f,
                "fastest",
                "Fastest resolution",
                "Average time from creation to resolution over resolved chats, fastest first "
                "(n = resolved chats).",
            ),
            _quality(f),
            report_history.section(f.history),  # issue 14
        ]
    )
    commit = str(info.get("git_commit") or "unknown")[:12]
    footer = (
        f"Generated from <code>serving/analytics.duckdb</code> ({escape(SCHEMA)} schema) · "
        f"git {escape(commit)} · dbt {escape(str(info.get('dbt_version')))} · "
        f"DuckDB {escape(str(info.get('duckdb_version')))}. Volume figures count every chat; category "
        "figures count chats in current, enabled categories."
    )
    return template.substitute(title=escape(TITLE), subtitle=escape(subtitle), body=body, footer=footer)


def _section(title: str, note: str, content: str) -> str:
    return f'<section><h2>{escape(title)}</h2><p class="note">{escape(note)}</p>{content}</section>'


def _card(label: str, value: str, sub: str, css: str = "") -> str:
    return (
        f'<div class="card {css}"><div class="label">{escape(label)}</div>'
        f'<div class="value {"date" if css in {"high", "low"} else ""}">{escape(value)}</div>'
        f'<div class="sub">{escape(sub)}</div></div>'
    )


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole else DASH


def _cards(f: Figures) -> str:
    median = DASH if f.median_per_day is None else charts.number(round(f.median_per_day, 1))
    cards = [
        _card("Chats", f"{f.chats:,}", f"{_pct(f.customer_chats, f.chats)} started by the customer"),
        _card("Resolved", f"{f.resolved:,}", f"{_pct(f.resolved, f.chats)} of all chats"),
        _card(
            "Median per day",
            median,
            f"customer-initiated chats resolved per day, over {f.days_counted:,} days (zeros included)",
        ),
        _card(
            "Busiest day",
            charts.long_date(f.highest.day) if f.highest else DASH,
            f"{f.highest.resolved:,} chats resolved" if f.highest else "no resolutions yet",
            "high",
        ),
        _card(
            "Quietest day",
            charts.long_date(f.lowest.day) if f.lowest else DASH,
            f"{f.lowest.resolved:,} chats resolved" if f.lowest else "no resolutions yet",
            "low",
        ),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def short_id(category_id: str) -> str:
    return category_id[:8] if len(category_id) > 10 else category_id


def _duration(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _bar(kind: str, row: dict[str, Any], scale: float = 1.0) -> charts.Bar:
    rate, hours = row["resolution_rate_pct"], row["avg_resolution_hours"]
    tooltip = (
        f"{row['category_id']}: {row['customer_initiated_chats']:,} customer-initiated of "
        f"{row['total_chats']:,} chats, {rate:.1f}% resolved"
        + (f", {_duration(hours)} on average" if hours is not None else "")
    )
    label = short_id(row["category_id"])
    if kind == "top":
        value, text = float(row["customer_initiated_chats"]), f"{row['customer_initiated_chats']:,}"
    elif kind == "lowest_rate":
        value, text = float(rate), f"{rate:.0f}% (n={row['total_chats']:,})"
    else:
        value, text = float(hours) * scale, f"{_duration(hours)} (n={row['resolved_chats']:,})"
    return charts.Bar(label, value, text, tooltip)


_AXES = {
    "top": ("Customer-initiated chats", "#2563eb", None),
    "lowest_rate": ("Chats resolved (% of the category's chats)", "#db2777", 100.0),
    "fastest": ("Average resolution time (hours)", "#0d9488", None),
}


def _category_section(f: Figures, kind: str, title: str, note: str) -> str:
    axis, colour, max_value = _AXES[kind]
    panels = []
    for level, heading in (("leaf", "Leaf category (the chat's own)"), ("root", "Root (top-level) category")):
        rows = f.rankings.get((kind, level), [])
        label, scale = axis, 1.0
        if kind == "fastest" and rows and max(r["avg_resolution_hours"] for r in rows) < 2:
            label, scale = "Average resolution time (minutes)", 60.0
        bars = [_bar(kind, row, scale) for row in rows]
        chart = charts.hbar_chart(bars, axis_label=label, colour=colour, max_value=max_value)
        panels.append(f"<div><h3>{escape(heading)}</h3>{chart}</div>")
    return _section(title, note, f'<div class="pair">{"".join(panels)}</div>')


def _chip(status: str | None, text: str | None = None) -> str:
    css = status if status in {"pass", "warn", "error"} else "unknown"
    return f'<span class="chip {css}">{escape(text or status or "unknown")}</span>'


def _quality(f: Figures) -> str:
    info = f.info
    reasons: dict[str, int] = dict(info.get("quarantined_by_reason") or {})
    quarantined = int(info.get("quarantined_rows") or 0)
    raw_rows = info.get("raw_rows")
    rows = "".join(
        f'<tr><td><code>{escape(reason)}</code></td><td class="num">{count:,}</td></tr>'
        for reason, count in reasons.items()
    )
    share = f" ({quarantined / raw_rows * 100:.2f}% of {raw_rows:,} raw rows)" if raw_rows else ""
    quarantine = (
        "<div><h3>Quarantined rows by reason</h3>"
        f'<table><tr><th>reason</th><th class="num">rows</th></tr>{rows}'
        f'<tr class="total"><td>total{escape(share)}</td><td class="num">{quarantined:,}</td></tr></table>'
        "</div>"
    )
    warned = list(info.get("warned_tests") or [])
    warn_list = "".join(f"<li><code>{escape(name)}</code></li>" for name in warned)
    passed, warns, errors = (int(info.get(k) or 0) for k in ("tests_pass", "tests_warn", "tests_error"))
    chips = " ".join(
        [
            _chip("pass", f"{passed} passed"),
            _chip("warn" if warns else "pass", f"{warns} warned"),
            _chip("error" if errors else "pass", f"{errors} errors"),
        ]
    )
    if warned:
        warnings = (
            '<p class="note">Warnings (findings below the error thresholds):</p>'
            f'<ul class="tests">{warn_list}</ul>'
        )
    else:
        warnings = '<p class="note">No warnings.</p>'
    tests = f"<div><h3>dbt tests in the last build</h3><p>{chips}</p>{warnings}</div>"
    age = info.get("ingest_age_hours")
    freshness = (
        "<div><h3>Freshness <small>(Melbourne time)</small></h3>"
        f"<p>Source freshness: {_chip(info.get('freshness_status'))}</p>"
        f"<p>Last landing file loaded: <b>{escape(str(info.get('last_ingested_local') or 'never'))}</b>"
        + (f" ({age:.1f} h before publishing)" if age is not None else "")
        + "</p>"
        f"<p>Published: <b>{escape(str(info.get('published_local', '?')))}</b><br>"
        f"Run: <code>{escape(str(info.get('run_id', '?')))}</code></p></div>"
    )
    return _section(
        "Data quality",
        "Raw rows that could not be trusted are quarantined, never counted; warnings are findings below "
        "the error thresholds (a build with an error is never published).",
        f'<div class="quality">{quarantine}{tests}{freshness}</div>',
    )
