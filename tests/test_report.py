"""`report`: one self-contained HTML page, looked at in headless Chromium the way a person would; and the
offline dbt docs site.

One `--dirty` sample runs through `chat-analytics run` once per module. Chromium is Debian's `chromium`
(`make test` installs it first when missing, see `make browser`); the test fails, never skips, without it.
"""

from __future__ import annotations

import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import Home, UserError
from chat_analytics.serving import report_charts as charts
from chat_analytics.serving.dbt_docs import generate_docs
from chat_analytics.serving.report import report, short_id

try:
    import reference
    from browser import check_page
except ImportError:  # tests/ imported as a package
    from tests import reference
    from tests.browser import check_page


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("report") / "home"
    args = ["--home", str(root)]
    assert cli_main(["generate", *args, "--chats", "8000", "--dirty", "--seed", "5"]) == 0
    assert cli_main(["run", *args]) == 0
    assert Home(root).report.is_file(), "`run` ends with the report"
    return Home(root)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class _Links(HTMLParser):
    """Every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.fetching: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "poster", "data", "action", "xlink:href"} and value:
                self.fetching.append(f"<{tag} {name}={value}>")


def test_report_renders_in_chromium_without_errors_or_requests(home: Home, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    result = check_page(home.report, screenshot=shot)
    assert result.console_errors == []
    assert result.requests == [], "the report must not fetch anything"
    width, height = _png_size(shot)
    assert width == 1280 and height == result.height > 2000  # the whole page, not just the viewport
    assert shot.stat().st_size > 100_000, "a screenshot of a rendered page, not a blank one"


def test_the_browser_check_does_catch_errors_and_requests(tmp_path: Path) -> None:
    """The detector itself: a page that logs an error and fetches from the network is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>bad</title></head><body>'
        '<img src="http://127.0.0.1:9/pixel.png"><script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    result = check_page(page)
    assert any("boom" in error for error in result.console_errors)
    assert result.requests == ["http://127.0.0.1:9/pixel.png"] == result.external_requests
    assert not result.clean


def test_report_is_one_self_contained_file(home: Home) -> None:
    html = home.report.read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(html)
    assert parser.fetching == []
    assert "script" not in parser.tags and "iframe" not in parser.tags and "img" not in parser.tags
    assert "url(" not in html and "@import" not in html
    # the only URL is the SVG namespace, an identifier that is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {"http://www.w3.org/2000/svg"}
    assert parser.tags.count("svg") >= 8  # daily, heatmap and six category charts
    for text in (
        "Hour of day (Melbourne time)",
        "Resolution date (Melbourne time)",
        "Chats resolved per day",
    ):
        assert text in html, f"axis label {text!r}"


def test_report_shows_the_published_figures(home: Home) -> None:
    html = home.report.read_text(encoding="utf-8")
    with duckdb.connect(str(home.serving_database), read_only=True) as con:
        chats, resolved = con.execute(
            "select count(*), count(*) filter (is_resolved) from fct_chats"
        ).fetchone()
        extremes = dict(con.execute("select extreme, resolution_date from resolution_extremes").fetchall())
        top_leaf = con.execute(
            "select category_id from top_categories_customer_chats "
            "where category_level = 'leaf' and rank_customer_chats = 1"
        ).fetchone()[0]
        info = con.execute("select run_id, quarantined_by_reason, warned_tests from _build_info").fetchone()
        days = con.execute("select count(*) from daily_resolutions").fetchone()[0]
    assert f">{chats:,}<" in html and f">{resolved:,}<" in html
    for day in extremes.values():
        assert charts.long_date(day) in html
    assert f">{short_id(top_leaf)}<" in html and top_leaf in html  # label and tooltip
    assert info[0] in html
    for reason, count in info[1].items():
        assert re.search(rf"<code>{reason}</code></td><td class=\"num\">{count:,}<", html), reason
    for test in info[2]:
        assert f"<code>{test}</code>" in html
    # one bar per day; 7 x 24 heatmap cells, weekday names from Monday
    assert html.count("customer-initiated</title></rect>") == days
    assert len(re.findall(r"<title>(Monday|Sunday) \d\d:00-\d\d:59", html)) == 48


_CARD = re.compile(
    r'<div class="card[^"]*"><div class="label">(.*?)</div><div class="value[^"]*">(.*?)</div>'
    r'<div class="sub">(.*?)</div></div>'
)


def _long_date(day) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def test_report_headline_cards_match_the_reference(home: Home) -> None:
    """The headline cards against figures the Python reference computes from the raw rows (no mart,
    no report code): a wrong median, busiest or quietest day fails here."""
    cards = {label: (value, sub) for label, value, sub in _CARD.findall(home.report.read_text("utf-8"))}
    ref = reference.compute_reference(reference.load_raw(home.warehouse))
    median = ref.customer_resolutions_median.iloc[0]
    assert cards["Median per day"] == (
        f"{median['median_per_day']:,.1f}".removesuffix(".0"),
        f"customer-initiated chats resolved per day, over {int(median['days_counted']):,} days "
        "(zeros included)",
    )
    extremes = {r.extreme: r for r in ref.resolution_extremes.itertuples()}
    for label, extreme in (("Busiest day", "highest"), ("Quietest day", "lowest")):
        day = extremes[extreme]
        expected = (_long_date(day.resolution_date), f"{day.chats_resolved:,} chats resolved")
        assert cards[label] == expected, label
    chats = ref.fct_chats
    assert cards["Chats"][0] == f"{len(chats):,}"
    assert cards["Resolved"][0] == f"{int(chats['is_resolved'].sum()):,}"


def test_report_reads_only_the_published_file(home: Home, tmp_path: Path) -> None:
    parked = tmp_path / "parked-warehouse"
    home.warehouse_dir.rename(parked)
    try:
        before = home.report.stat().st_mtime_ns
        assert report(home) == home.report
        assert home.report.stat().st_mtime_ns >= before
    finally:
        parked.rename(home.warehouse_dir)
    empty = Home(tmp_path / "unpublished")
    with pytest.raises(UserError, match="run `chat-analytics publish` first"):
        report(empty)
    assert cli_main(["report", "--home", str(empty.root)]) == 2


def test_dbt_docs_site_works_offline_with_the_lineage_graph(home: Home) -> None:
    page = generate_docs(home)
    assert page == home.docs and page.stat().st_size > 1_000_000
    html = page.read_text(encoding="utf-8")
    assert "model.chat_analytics.fct_chats" in html and "model.chat_analytics.daily_resolutions" in html
    result = check_page(page, fragment="!/model/model.chat_analytics.fct_chats?g_v=1")
    # dbt's page requests a few file: icon templates and a data: logo; nothing may leave the machine
    assert result.external_requests == []
    assert result.height > 500


# ---- the chart helpers ------------------------------------------------------------------------------


def test_nice_ticks_and_numbers() -> None:
    assert charts.nice_ticks(42) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert charts.nice_ticks(0) == [0.0, 1.0]
    assert charts.nice_ticks(0.17, 4)[-1] >= 0.17
    assert [charts.number(v) for v in (1234, 2.5, 0.05, 0.1)] == ["1,234", "2.5", "0.05", "0.1"]


def test_charts_escape_text_and_cope_with_no_data() -> None:
    bar = charts.Bar("<b>&", 3, "3 <x>", "tip \"'<script>")
    svg = charts.hbar_chart([bar], axis_label="A & B", colour="#000")
    assert "<b>&" not in svg and "&lt;b&gt;&amp;" in svg and "<script>" not in svg
    assert "Nothing to show yet" in charts.hbar_chart([], axis_label="x", colour="#000")
    assert "No resolved chats yet" in charts.daily_chart([], None, None)
    empty_heatmap = charts.heatmap({})
    assert empty_heatmap.count("<rect") >= 7 * 24
