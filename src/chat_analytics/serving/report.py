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
from pathlib import Path
from typing import Any

import duckdb
import jinja2
from markupsafe import Markup

from chat_analytics import duck, sql
from chat_analytics.dbt_vars import local_timezone
from chat_analytics.paths import BUILD_INFO, SERVING_SCHEMA, Home, UserError
from chat_analytics.serving import report_charts as charts
from chat_analytics.serving import report_history

log = logging.getLogger(__name__)

LOCAL_TZ = local_timezone()
TOP_N = 10
CHART_DAYS = 731  # at most two years of daily bars (the newest)
TITLE = "Customer-support chats"
DASH = "\u2013"  # en dash: "no value" and date ranges
_DB = "published"
_RANKINGS = {
    "top": ("top_categories_customer_chats", "rank_customer_chats"),
    "lowest_rate": ("lowest_resolution_rate_categories", "rank_lowest_resolution_rate"),
    "fastest": ("fastest_resolution_categories", "rank_fastest_resolution"),
}


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
    days_in_period: int = 0  # rows of daily_resolutions; the chart shows at most CHART_DAYS of them
    lowest: charts.Day | None = None
    highest: charts.Day | None = None
    cells: dict[tuple[int, int], tuple[int, float | None]] = field(default_factory=dict)
    rankings: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    history: report_history.History | None = None  # the History section


def report(home: Home) -> Path:
    """Write `serving/report.html` from the published marts; returns its path."""
    source = home.serving_database
    if not source.is_file():
        raise UserError(f"no published database at {source}: run `chat-analytics publish` first")
    figures = load(source)
    target = home.report
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
    con = duck.connect()
    try:
        con.execute(f"set TimeZone = {sql.literal(LOCAL_TZ)}")
        duck.attach(con, source, _DB)
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
    cursor = con.execute(query.replace("@", sql.qualified(_DB, SERVING_SCHEMA) + "."), params or [])
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
    figures.days_in_period = int(_rows(con, "select count(*) as n from @daily_resolutions")[0]["n"])
    figures.days = [  # the newest CHART_DAYS: a chat dated year 9999 must not make a page of millions of bars
        charts.Day(r["resolution_date"], int(r["chats_resolved"]), int(r["customer_initiated_resolved"]))
        for r in reversed(
            _rows(con, "select * from @daily_resolutions order by resolution_date desc limit ?", [CHART_DAYS])
        )
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
    figures.history = report_history.load(con, _DB)
    return figures


# ---- rendering --------------------------------------------------------------------------------------

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("chat_analytics.serving", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_CATEGORY_SECTIONS = (
    (
        "top",
        "Top categories by customer-initiated chats",
        "Categories with the most chats started by customers: the chat's own category (leaf) and "
        "its top-level category (root). Categories are shown by the first 8 characters of their "
        "id; hover for the full id and figures.",
    ),
    (
        "lowest_rate",
        "Lowest resolution rates",
        "Share of the category's chats that have been resolved, lowest first (n = chats).",
    ),
    (
        "fastest",
        "Fastest resolution",
        "Average time from creation to resolution over resolved chats, fastest first (n = resolved chats).",
    ),
)


def render(f: Figures) -> str:
    """The page: `templates/report.html.j2`, every value escaped by Jinja2's autoescape; the charts are
    SVG that report_charts builds (and escapes) itself."""
    info = f.info
    window = ""
    if info.get("first_chat_date_local") and info.get("last_chat_date_local"):
        first, last = info["first_chat_date_local"], info["last_chat_date_local"]
        window = f"{charts.long_date(first)} {DASH} {charts.long_date(last)}"
    subtitle = " · ".join(
        (
            f"Chats created {window} (Melbourne time)" if window else "No chats yet",
            f"published {info.get('published_local', '?')} Melbourne time",
            f"run {info.get('run_id', '?')}",
        )
    )
    return _ENV.get_template("report.html.j2").render(
        title=TITLE,
        subtitle=subtitle,
        cards=_cards(f),
        daily_chart=Markup(charts.daily_chart(f.days, f.lowest, f.highest)),
        daily_note=(
            f" The chart shows the newest {len(f.days):,} of {f.days_in_period:,} days; all of them are in "
            "daily_resolutions."
            if f.days_in_period > len(f.days)
            else ""
        ),
        heatmap=Markup(charts.heatmap(f.cells)),
        categories=[
            {"title": title, "note": note, "panels": _category_panels(f, kind)}
            for kind, title, note in _CATEGORY_SECTIONS
        ],
        quality=_quality(f),
        history=Markup(report_history.section(f.history)),
        commit=str(info.get("git_commit") or "unknown")[:12],
        dbt_version=str(info.get("dbt_version")),
        duckdb_version=str(info.get("duckdb_version")),
    )


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole else DASH


def _card(label: str, value: str, sub: str, css: str = "") -> dict[str, str]:
    return {"label": label, "value": value, "sub": sub, "css": css}


def _cards(f: Figures) -> list[dict[str, str]]:
    median = DASH if f.median_per_day is None else charts.number(round(f.median_per_day, 1))
    per_day = f"customer-initiated chats resolved per day, over {f.days_counted:,} days (zeros included)"
    return [
        _card("Chats", f"{f.chats:,}", f"{_pct(f.customer_chats, f.chats)} started by the customer"),
        _card("Resolved", f"{f.resolved:,}", f"{_pct(f.resolved, f.chats)} of all chats"),
        _card("Median per day", median, per_day),
        _day_card("Busiest day", f.highest, "high"),
        _day_card("Quietest day", f.lowest, "low"),
    ]


def _day_card(label: str, day: charts.Day | None, css: str) -> dict[str, str]:
    if day is None:
        return _card(label, DASH, "no resolutions yet", css)
    return _card(label, charts.long_date(day.day), f"{day.resolved:,} chats resolved", css)


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


def _category_panels(f: Figures, kind: str) -> list[dict[str, str]]:
    axis, colour, max_value = _AXES[kind]
    panels = []
    for level, heading in (("leaf", "Leaf category (the chat's own)"), ("root", "Root (top-level) category")):
        rows = f.rankings.get((kind, level), [])
        label, scale = axis, 1.0
        if kind == "fastest" and rows and max(r["avg_resolution_hours"] for r in rows) < 2:
            label, scale = "Average resolution time (minutes)", 60.0
        bars = [_bar(kind, row, scale) for row in rows]
        chart = charts.hbar_chart(bars, axis_label=label, colour=colour, max_value=max_value)
        panels.append({"heading": heading, "chart": Markup(chart)})
    return panels


def _quality(f: Figures) -> dict[str, Any]:
    info = f.info
    quarantined = int(info.get("quarantined_rows") or 0)
    raw_rows = info.get("raw_rows")
    age = info.get("ingest_age_hours")
    return {
        "reasons": list(dict(info.get("quarantined_by_reason") or {}).items()),
        "quarantined": quarantined,
        "share": f" ({quarantined / raw_rows * 100:.2f}% of {raw_rows:,} raw rows)" if raw_rows else "",
        "passed": int(info.get("tests_pass") or 0),
        "warns": int(info.get("tests_warn") or 0),
        "errors": int(info.get("tests_error") or 0),
        "warned_tests": list(info.get("warned_tests") or []),
        "freshness_status": info.get("freshness_status"),
        "last_ingested": str(info.get("last_ingested_local") or "never"),
        "ingest_age": f" ({age:.1f} h before publishing)" if age is not None else "",
        "published": str(info.get("published_local", "?")),
        "run_id": str(info.get("run_id", "?")),
    }
