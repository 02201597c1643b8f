"""The sample feed behind the `chat_analytics_sample_feed` DAG: the next day's extract, fitting the data."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import duckdb

from chat_analytics.devtools.generate import generate
from chat_analytics.orchestration.sample_feed import drop_next_extract
from chat_analytics.paths import Home
from chat_analytics.pipeline.ingest import ingest


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_next_day_extract_fits_the_existing_data(tmp_path: Path) -> None:
    home = Home(tmp_path)
    generate(home, chats=1_000, start=date(2000, 1, 1), end=date(2000, 1, 5), seed=9, dirty=False)
    before = {p.name for p in home.landing_chats.iterdir()}
    (snapshot,) = home.landing_categories.iterdir()
    categories = {row["id"] for row in _rows(snapshot)}
    old_ids = {row["id"] for p in home.landing_chats.iterdir() for row in _rows(p)}

    first = drop_next_extract(home)
    second = drop_next_extract(home)

    assert (first.day, second.day) == (date(2000, 1, 6), date(2000, 1, 7))
    assert {p.name for p in home.landing_chats.iterdir()} == before | {
        "chats_2000-01-06.csv",
        "chats_2000-01-07.csv",
    }
    assert first.categories_file is None and list(home.landing_categories.iterdir()) == [snapshot]
    assert not list(home.root.glob(".sample_feed*")) and not list(home.landing_chats.glob(".*"))
    rows = _rows(first.chats_file) + _rows(second.chats_file)
    assert len(rows) == 400 == first.chats + second.chats  # 1,000 chats over 5 days: 200 a day
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids) and not set(ids) & old_ids  # new chats every day
    used = {row["chat_category_id"] for row in rows} - {""}
    assert used and used <= categories  # the existing category tree
    assert {row["created_at"][:10] for row in _rows(first.chats_file)} == {"2000-01-06"}

    assert ingest(home).ok
    with duckdb.connect(str(home.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.chats").fetchone()[0] > 1_000


def test_an_empty_home_gets_a_first_day_with_its_categories(tmp_path: Path) -> None:
    home = Home(tmp_path / "new")
    result = drop_next_extract(home, chats=50)
    assert result.day == date(2000, 1, 1)
    assert result.categories_file is not None and result.categories_file.is_file()
    categories = {row["id"] for row in _rows(result.categories_file)}
    assert {row["chat_category_id"] for row in _rows(result.chats_file)} - {""} <= categories
    assert len(_rows(result.chats_file)) == 50
    assert ingest(home).ok
