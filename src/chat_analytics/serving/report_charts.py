"""Inline SVG charts for the report: no JavaScript, no fonts or files to fetch, tooltips via <title>.

Each function returns one `<svg>` element as text, sized in CSS pixels with a viewBox so it scales
with the page. Every value that comes from data is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
BAR = "#60a5fa"
LINE = "#1e3a8a"
HIGH = "#ea580c"
LOW = "#7c3aed"
# A sequential scale (light yellow-green to deep blue), readable in print and for common colour blindness.
HEAT = ("#f7fcf0", "#e0f3db", "#ccebc5", "#a8ddb5", "#7bccc4", "#4eb3d3", "#2b8cbe", "#0868ac", "#084081")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Day:
    day: date
    resolved: int
    customer: int


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    value_text: str
    tooltip: str


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k) up to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def number(value: float) -> str:
    """1,234 / 2.5 / 0.05: no more decimals than the value needs (up to two)."""
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" style="{FONT};max-width:100%;'
        f'height:auto">' + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", fill: str = MUTED,
          weight: str = "normal", extra: str = "", halo: bool = False) -> str:  # fmt: skip
    if halo:  # a white outline painted under the glyphs keeps a label readable over bars
        extra += ' paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round"'
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
        f'font-weight="{weight}"{extra}>{escape(text)}</text>'
    )


def short_date(day: date, *, year: bool = False) -> str:
    return f"{day.day} {day:%b}" + (f" {day.year}" if year else "")


def long_date(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def _date_ticks(days: Sequence[date]) -> list[int]:
    """Indexes to label: first days of months over long spans, Mondays or every few days otherwise."""
    n = len(days)
    if n > 62:
        picks = [i for i, d in enumerate(days) if d.day == 1]
    elif n > 14:
        picks = [i for i, d in enumerate(days) if d.weekday() == 0]
    else:
        picks = list(range(n))
    return picks or [0]


def daily_chart(days: Sequence[Day], lowest: Day | None, highest: Day | None) -> str:
    """Bars of chats resolved per day, the customer-initiated share as a line, the extremes marked."""
    width, height = 1120, 360
    left, right, top, bottom = 64, 24, 48, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    if not days:
        body.append(_text(width / 2, height / 2, "No resolved chats yet", anchor="middle", size=14))
        return _svg(width, height, "Daily resolved chats: no data", body)
    ticks = nice_ticks(max(d.resolved for d in days))
    y_max = ticks[-1]
    band = plot_w / len(days)

    def y(value: float) -> float:
        return top + plot_h - value / y_max * plot_h

    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 8, y(tick) + 4, number(tick), anchor="end"))
    bar_w = max(1.0, band * 0.78)
    special = {d.day: colour for d, colour in ((lowest, LOW), (highest, HIGH)) if d is not None}
    index = {d.day: i for i, d in enumerate(days)}
    for i, d in enumerate(days):
        x = left + i * band + (band - bar_w) / 2
        h = max(0.0, y(0) - y(d.resolved))
        tip = f"{long_date(d.day)}: {d.resolved:,} resolved, {d.customer:,} customer-initiated"
        body.append(
            f'<rect x="{x:.2f}" y="{y(d.resolved):.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
            f'fill="{special.get(d.day, BAR)}"><title>{escape(tip)}</title></rect>'
        )
    points = " ".join(f"{left + (i + 0.5) * band:.1f},{y(d.customer):.1f}" for i, d in enumerate(days))
    body.append(f'<polyline points="{points}" fill="none" stroke="{LINE}" stroke-width="1.6"/>')
    # axes
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="{MUTED}"/>')
    for n, i in enumerate(_date_ticks([d.day for d in days])):
        x = left + (i + 0.5) * band
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y(0):.1f}" y2="{y(0) + 5:.1f}" stroke="{MUTED}"/>')
        body.append(_text(x, y(0) + 19, short_date(days[i].day, year=n == 0), anchor="middle"))
    body.append(_text(left + plot_w / 2, height - 12, "Resolution date (Melbourne time)", anchor="middle",
                      fill=INK))  # fmt: skip
    body.append(
        _text(16, top + plot_h / 2, "Chats resolved per day", anchor="middle", fill=INK,
              extra=f' transform="rotate(-90 16 {top + plot_h / 2:.1f})"')
    )  # fmt: skip
    legend = [(BAR, "rect", "All chats resolved"), (LINE, "line", "Customer-initiated")]
    for extreme, colour, word in ((highest, HIGH, "Busiest day"), (lowest, LOW, "Quietest day")):
        if extreme is None or extreme.day not in index:
            continue
        x = left + (index[extreme.day] + 0.5) * band
        marker_y = y(extreme.resolved)
        body.append(f'<circle cx="{x:.1f}" cy="{marker_y:.1f}" r="4.5" fill="{colour}" stroke="#fff"/>')
        body.append(
            _text(x, marker_y - 10, f"{extreme.resolved:,}", anchor="middle", fill=colour, weight="700",
                  halo=True)
        )  # fmt: skip
        legend.append((colour, "rect", f"{word}: {long_date(extreme.day)} ({extreme.resolved:,})"))
    x = left
    for colour, shape, label in legend:
        if shape == "rect":
            body.append(f'<rect x="{x}" y="10" width="12" height="12" fill="{colour}"/>')
        else:
            body.append(f'<line x1="{x}" x2="{x + 14}" y1="16" y2="16" stroke="{colour}" stroke-width="2"/>')
        body.append(_text(x + 18, 20, label, fill=INK))
        x += 36 + int(6.8 * len(label))
    return _svg(width, height, "Daily resolved chats with the busiest and quietest days marked", body)


def heat_colour(value: float, top: float) -> str:
    if top <= 0:
        return HEAT[0]
    return HEAT[min(len(HEAT) - 1, int(value / top * (len(HEAT) - 1) + 0.5))]


def heatmap(cells: dict[tuple[int, int], tuple[int, float | None]]) -> str:
    """Weekday (rows, Monday first) x local hour (columns): average chats per week, chats in the tooltip."""
    cell_w, cell_h = 42, 32
    left, top = 96, 40
    width, height = left + 24 * cell_w + 24, top + 7 * cell_h + 92
    averages = [avg for _, avg in cells.values() if avg is not None]
    top_value = max(averages, default=0.0)
    decimals = 0 if top_value >= 100 else 1
    body: list[str] = []
    for hour in range(24):
        body.append(_text(left + (hour + 0.5) * cell_w, top - 10, f"{hour:02d}", anchor="middle"))
    for row, name in enumerate(WEEKDAYS):
        cy = top + row * cell_h
        body.append(_text(left - 10, cy + cell_h / 2 + 4, name, anchor="end", fill=INK))
        for hour in range(24):
            chats, avg = cells.get((row + 1, hour), (0, None))
            x = left + hour * cell_w
            fill = "#f3f4f6" if avg is None else heat_colour(avg, top_value)
            tip = f"{name} {hour:02d}:00-{hour:02d}:59: {chats:,} chats" + (
                f", {avg:.2f} per week on average" if avg is not None else ""
            )
            body.append(
                f'<rect x="{x + 1}" y="{cy + 1}" width="{cell_w - 2}" height="{cell_h - 2}" rx="3" '
                f'fill="{fill}"><title>{escape(tip)}</title></rect>'
            )
            dark = avg is not None and top_value > 0 and avg / top_value > 0.55
            text = "\u2013" if avg is None else f"{avg:.{decimals}f}"
            body.append(
                _text(x + cell_w / 2, cy + cell_h / 2 + 4, text, anchor="middle", size=11,
                      fill="#ffffff" if dark else INK)
            )  # fmt: skip
    base = top + 7 * cell_h
    body.append(
        _text(left + 12 * cell_w, base + 24, "Hour of day (Melbourne time)", anchor="middle", fill=INK)
    )
    # legend
    lx, ly, lw = left, base + 48, 28
    body.append(_text(lx, ly - 6, "Average chats per week in that hour", fill=INK))
    for i, colour in enumerate(HEAT):
        body.append(f'<rect x="{lx + i * lw}" y="{ly}" width="{lw}" height="12" fill="{colour}"/>')
    body.append(_text(lx, ly + 28, "0", size=11))
    body.append(_text(lx + len(HEAT) * lw, ly + 28, f"{top_value:.{decimals}f}", size=11, anchor="end"))
    return _svg(width, height, "Chat arrivals by weekday and hour, Melbourne time", body)


def hbar_chart(bars: Sequence[Bar], *, axis_label: str, colour: str, max_value: float | None = None) -> str:
    """Horizontal bars, one row per item, labels on the left and values at the bar ends."""
    row_h, left, right, top = 26, 132, 96, 8
    width = 540
    height = top + max(1, len(bars)) * row_h + 48
    plot_w = width - left - right
    body: list[str] = []
    if not bars:
        body.append(_text(width / 2, 40, "Nothing to show yet", anchor="middle", size=13))
        return _svg(width, 80, axis_label, body)
    ticks = nice_ticks(max_value if max_value is not None else max(b.value for b in bars), 4)
    x_max = ticks[-1]
    base = top + len(bars) * row_h
    for tick in ticks:
        x = left + tick / x_max * plot_w
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{base}" stroke="{GRID}"/>')
        body.append(_text(x, base + 16, number(tick), anchor="middle", size=11))
    for i, bar in enumerate(bars):
        y = top + i * row_h
        w = max(1.0, bar.value / x_max * plot_w) if bar.value > 0 else 0.0
        body.append(
            _text(left - 8, y + row_h / 2 + 4, bar.label, anchor="end", fill=INK,
                  extra=' font-family="DejaVu Sans Mono,Menlo,Consolas,monospace"')
        )  # fmt: skip
        body.append(
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="2" fill="{colour}">'
            f"<title>{escape(bar.tooltip)}</title></rect>"
        )
        body.append(_text(left + w + 6, y + row_h / 2 + 4, bar.value_text, fill=INK, size=11))
    body.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{base}" stroke="{MUTED}"/>')
    body.append(_text(left + plot_w / 2, base + 36, axis_label, anchor="middle", fill=INK))
    return _svg(width, height, axis_label, body)
