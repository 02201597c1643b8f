"""Incremental fct_chats and marts (issue 12, decision 4): a daily build rewrites what changed, and the
result equals a `--full-refresh` of the same warehouse after every kind of change: new daily files, a new
categories snapshot (only the chats whose category maps differently are rewritten), a snapshot that maps
nothing differently (nothing rewritten), a re-delivered file and a retracted file. Every build is also
checked against the independent Python reference (tests/reference.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import Home
from chat_analytics.pipeline.build import build
from chat_analytics.pipeline.ingest import ingest

try:
    from warehouse_checks import assert_equals_full_refresh, q
except ImportError:  # tests/ imported as a package
    from tests.warehouse_checks import assert_equals_full_refresh, q

HELD_BACK = 3  # newest daily files landed one step at a time


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, list[Path]]:
    """A generated home (3,000 chats over January 2000) with its newest daily files held back."""
    root = tmp_path_factory.mktemp("incremental")
    home = Home.resolve(root / "home")
    args = [
        "generate",
        "--home",
        str(home.root),
        "--chats",
        "3000",
        "--start",
        "2000-01-01",
        "--end",
        "2000-01-31",
    ]
    assert cli_main(args) == 0
    held = root / "held"
    held.mkdir()
    newest = sorted(home.landing_chats.glob("chats_*.csv"))[-HELD_BACK:]
    for path in newest:
        path.rename(held / path.name)
    return home, [held / path.name for path in newest]


def rewritten(home: Home) -> int:
    """fct_chats rows the newest build wrote."""
    return q(
        home,
        "select count(*) from analytics.fct_chats "
        "where _resolved_seq = (select max(_resolved_seq) from analytics.fct_chats)",
    )[0][0]


def seq_profile(home: Home) -> list[tuple]:
    return q(home, "select _resolved_seq, count(*) from analytics.fct_chats group by all order by all")


def categories(home: Home) -> list[dict[str, str]]:
    path = sorted(home.landing_categories.glob("categories_*.csv"))[0]
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_categories(home: Home, name: str, rows: list[dict[str, str]]) -> None:
    with (home.landing_categories / name).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "parent_id", "disabled"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def chats_by_category(home: Home) -> dict[str, int]:  # source category id -> chats
    return dict(
        q(
            home,
            "select source_category_id, count(*) from analytics.fct_chats "
            "where source_category_id is not null group by all",
        )
    )


def test_daily_builds_rewrite_what_changed_and_equal_a_full_refresh(
    history: tuple[Home, list[Path]], tmp_path: Path
) -> None:
    home, held = history
    assert ingest(home).ok and build(home) == 0
    assert_equals_full_refresh(home, tmp_path, "first")
    total = q(home, "select count(*) from analytics.fct_chats")[0][0]

    # A new daily file: its new chats and new versions of earlier chats are rewritten, nothing else.
    day = held[0].rename(home.landing_chats / held[0].name)
    assert ingest(home).ok and build(home) == 0
    touched = q(
        home,
        "select count(distinct id) from raw.chats "
        "where _source_file = ? and id in (select chat_id from analytics.fct_chats)",
        [day.name],
    )[0][0]
    assert 0 < rewritten(home) <= touched < total
    assert_equals_full_refresh(home, tmp_path, "new-day")

    # A categories snapshot that disables one used category, re-enables a disabled one, moves one under
    # another root and drops one: only the chats of those categories are rewritten.
    rows = categories(home)
    used = chats_by_category(home)
    status = dict(
        q(
            home,
            "select category_id, category_status from analytics.fct_chats "
            "where category_id is not null group by all",
        )
    )
    enabled = [
        r
        for r in rows
        if r["id"] in used and status.get(r["id"]) == "ok" and r["parent_id"] not in ("", "null")
    ]
    disabled = [r for r in rows if r["id"] in used and r["disabled"] == "true"]
    assert len(enabled) >= 3 and disabled
    to_disable, to_move, to_drop = enabled[0], enabled[1], enabled[2]
    to_disable["disabled"] = "true"
    disabled[0]["disabled"] = "false"
    roots = [r["id"] for r in rows if r["parent_id"] in ("", "null") and r["disabled"] == "false"]
    to_move["parent_id"] = next(root for root in roots if root != to_move["parent_id"])
    rows.remove(to_drop)
    write_categories(home, "categories_2000-01-29.csv", rows)
    before = category_view(home)
    assert ingest(home).ok and build(home) == 0
    after = category_view(home)
    differing = {chat for chat in before if before[chat] != after[chat]}
    assert len(differing) > used[to_disable["id"]]  # a subtree moved, and the rest
    assert rewritten(home) == len(differing)  # exactly the chats whose figures change
    assert_equals_full_refresh(home, tmp_path, "snapshot")

    # The same tree in another row order and another spelling: nothing maps differently, nothing is rewritten.
    before = seq_profile(home)
    shuffled = [dict(r, disabled=r["disabled"].upper()) for r in reversed(rows)]
    write_categories(home, "categories_2000-01-30.csv", shuffled)
    assert ingest(home).ok and build(home) == 0
    assert seq_profile(home) == before
    assert_equals_full_refresh(home, tmp_path, "same-mapping")

    # A re-delivered earlier day (one chat dropped, one resolved later) and a retracted day.
    for path in held[1:]:
        path.rename(home.landing_chats / path.name)
    early = sorted(home.landing_chats.glob("chats_*.csv"))[3]
    lines = early.read_text().splitlines()
    assert len(lines) > 3
    early.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    assert ingest(home).ok and build(home) == 0
    assert_equals_full_refresh(home, tmp_path, "redelivered")
    retracted = sorted(home.landing_chats.glob("chats_*.csv"))[5].name
    assert cli_main(["retract", "--home", str(home.root), retracted, "--reason", "test"]) == 0
    assert build(home) == 0
    assert (
        q(
            home,
            "select count(*) from intermediate.int_chat_versions_classified where disposition = 'withdrawn'",
        )[0][0]
        > 0
    )
    assert_equals_full_refresh(home, tmp_path, "retracted")


def category_view(home: Home) -> dict[str, tuple]:
    """Each chat's category figures in fct_chats."""
    rows = q(home, "select chat_id, category_id, root_category_id, category_status from analytics.fct_chats")
    return {chat: rest for chat, *rest in rows}
