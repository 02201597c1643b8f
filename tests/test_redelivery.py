"""Re-delivered, retracted and repeated landing files; category trees of any depth (issue 11, items 4, 5, 8).

Contracts (docs/data-contract.md):
* the newest-dated categories snapshot is in force, even when its bytes equal an earlier snapshot's;
* a category at any depth under a disabled root is disabled; a cycle stays an error;
* a re-delivered file (same name, new content) replaces its earlier version entirely; `chat-analytics
  retract FILE_NAME` withdraws a file; the earlier rows stop counting anywhere and stay stored for audit;
  an incremental build after either equals a full refresh and the independent reference.

Real warehouses, real `ingest` / `build` / `run` (dbt) on small hand-made extracts.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from itertools import count
from pathlib import Path

import duckdb
import pytest

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import Home
from chat_analytics.pipeline.build import build
from chat_analytics.pipeline.ingest import FileOutcome, IngestReport, ingest

try:
    from warehouse_checks import assert_equals_full_refresh, q
except ImportError:  # tests/ imported as a package
    from tests.warehouse_checks import assert_equals_full_refresh, q

try:
    import reference
except ImportError:  # tests/ imported as a package
    from tests import reference

CHATS_HEADER = "id,chat_category_id,created_at,is_customer_initiated,resolved_at"
CATEGORIES_HEADER = "id,parent_id,disabled"
BUILT_SCHEMAS = ("intermediate", "analytics", "quality")
_mtimes = count(1_600_000_000)


def new_home(tmp_path: Path) -> Home:
    home = Home.resolve(tmp_path / "home")
    home.ensure_landing()
    return home


def land(home: Home, name: str, lines: list[str]) -> Path:
    """Write a landing file (header + lines) with a fresh modification time."""
    entity = name.split("_", 1)[0]
    folder = home.landing / entity
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    header = CHATS_HEADER if entity == "chats" else CATEGORIES_HEADER
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    stamp = next(_mtimes)
    os.utime(path, (stamp, stamp))
    return path


def chat(chat_id: str, category: str, created: datetime, resolved: datetime | None = None) -> str:
    fmt = "%Y-%m-%d %H:%M:%S"
    return f"{chat_id},{category},{created.strftime(fmt)},true,{resolved.strftime(fmt) if resolved else ''}"


def day_chats(prefix: str, day: date, n: int, categories: list[str], *, resolved_every: int = 2) -> list[str]:
    """n chats created on `day` (UTC), every `resolved_every`-th resolved the same day."""
    start = datetime(day.year, day.month, day.day, 1)
    return [
        chat(
            f"{prefix}{i:02d}",
            categories[i % len(categories)],
            start + timedelta(minutes=37 * i),
            start + timedelta(minutes=37 * i + 45) if i % resolved_every == 0 else None,
        )
        for i in range(n)
    ]


def manifest(home: Home) -> list[tuple]:
    return q(
        home,
        "select file_name, version, status from raw.ingested_files "
        "where status <> 'failed' order by batch_id",
    )


def outcome(report: IngestReport, name: str) -> FileOutcome:
    return next(o for o in report.outcomes if o.file_name == name)


# ----------------------------------------------------------------------------------------------------
# item 4 (same-content snapshot) and item 5 (any depth)

DEPTH = 200


def snapshot(root_disabled: str, k_disabled: str) -> list[str]:
    # explicit `false` all the way down: under a disabled root they are disabled all the same (subtree)
    chain = [f"deep-{i:03d},{'root-r' if i == 1 else f'deep-{i - 1:03d}'},false" for i in range(1, DEPTH + 1)]
    return [f"root-r,,{root_disabled}", *chain, f"cat-k,root-e,{k_disabled}", "root-e,,false"]


def test_newest_snapshot_counts_even_with_known_bytes_and_any_depth(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    snapshot_a = snapshot(root_disabled="true", k_disabled="false")  # the 200-deep chain disabled
    snapshot_b = snapshot(root_disabled="false", k_disabled="true")
    land(home, "categories_2000-01-01.csv", snapshot_a)
    land(home, "categories_2000-01-02.csv", snapshot_b)
    day = date(2000, 1, 1)
    land(home, "chats_2000-01-01.csv", day_chats("c", day, 8, ["deep-200", "deep-100", "cat-k", "root-e"]))
    assert ingest(home).ok
    assert build(home) == 0
    statuses = dict(q(home, "select chat_id, category_status from analytics.fct_chats"))
    assert statuses["c00"] == statuses["c01"] == "ok" and statuses["c02"] == "disabled"  # B in force

    # A snapshot dated later with exactly the bytes of A: it is in force now.
    path = land(home, "categories_2000-01-03.csv", snapshot_a)
    assert path.read_bytes() == (home.landing_categories / "categories_2000-01-01.csv").read_bytes()
    report = ingest(home)
    assert outcome(report, "categories_2000-01-03.csv").status == "loaded", outcome(
        report, "categories_2000-01-03.csv"
    ).reason
    assert build(home) == 0
    fct = {
        r[0]: r[1:] for r in q(home, "select chat_id, category_status, category_id from analytics.fct_chats")
    }
    assert fct["c00"] == ("disabled", None)  # deep-200: 200 levels below the disabled root: no category
    assert fct["c01"] == ("disabled", None)  # deep-100
    assert fct["c02"] == ("ok", "cat-k")
    assert fct["c03"] == ("ok", "root-e")
    dim = {r[0]: r[1:] for r in q(home, "select category_id, root_category_id, depth, is_disabled_effective "
                                          "from analytics.dim_categories")}  # fmt: skip
    assert all(dim[f"deep-{i:03d}"] == ("root-r", i, True) for i in range(1, DEPTH + 1))
    assert q(home, "select distinct tree_status from intermediate.int_category_tree") == [("ok",)]
    reference.assert_warehouse_matches_reference(home.warehouse)
    # Ingest again: nothing new (the known snapshots are recognised, not loaded twice).
    again = ingest(home)
    assert again.count("loaded") == 0 and again.ok


def test_same_content_chats_extract_loads_only_when_it_can_matter(tmp_path: Path) -> None:
    """A later-dated copy only collapses (skipped); an earlier-dated copy takes over as first version."""
    home = new_home(tmp_path)
    rows = day_chats("c", date(2000, 1, 5), 4, [""])
    land(home, "chats_2000-01-05.csv", rows)
    assert ingest(home).ok
    land(home, "chats_2000-01-07.csv", rows)
    land(home, "chats_2000-01-03.csv", rows)
    report = ingest(home)
    later, earlier = outcome(report, "chats_2000-01-07.csv"), outcome(report, "chats_2000-01-03.csv")
    assert later.status == "skipped" and "same content as chats_2000-01-05.csv" in later.reason
    assert earlier.status == "loaded", earlier.reason
    # The same name and bytes again (touched): already loaded.
    stamp = next(_mtimes)
    os.utime(home.landing_chats / "chats_2000-01-05.csv", (stamp, stamp))
    touched = outcome(ingest(home), "chats_2000-01-05.csv")
    assert touched.status == "skipped" and touched.reason.startswith("already loaded")


# ----------------------------------------------------------------------------------------------------
# item 8: replacement and retraction, incremental = full refresh = reference

CATEGORIES = ["root-a,,false", "cat-1,root-a,", "cat-2,root-a,true", "root-b,,", "cat-3,root-b,false"]
CATS = ["cat-1", "cat-2", "cat-3", "root-b", "", "cat-gone"]


def test_replaced_and_retracted_files_stop_counting_incrementally(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    d1, d2, d3 = date(2000, 1, 1), date(2000, 1, 2), date(2000, 1, 3)
    t2 = datetime(2000, 1, 2, 5)
    land(home, "categories_2000-01-01.csv", CATEGORIES)
    day1 = day_chats("c", d1, 20, CATS, resolved_every=3)
    land(home, "chats_2000-01-01.csv", day1)
    unresolved_day1 = [line for line in day1 if line.endswith(",")]
    v1 = [
        *day_chats("d", d2, 10, CATS),
        *[line + t2.strftime("%Y-%m-%d %H:%M:%S") for line in unresolved_day1[:5]],  # resolved versions
        day1[0],  # an exact duplicate of a day-1 row
        chat("x-conflict", "cat-1", t2, None),  # two different rows for one id in one file: quarantined
        chat("x-conflict", "cat-3", t2, None),
    ]
    land(home, "chats_2000-01-02.csv", v1)
    day3 = [
        *day_chats("e", d3, 5, CATS),
        chat("d01", CATS[1], datetime(2000, 1, 2, 1, 37), datetime(2000, 1, 3, 9)),  # a later version
        unresolved_day1[6] + "2000-01-03 08:00:00",
    ]
    land(home, "chats_2000-01-03.csv", day3)
    assert ingest(home).ok
    assert build(home) == 0
    assert q(home, "select count(*) from quality.quarantined_chats") == [(2,)]
    raw_rows_v1 = q(home, "select count(*) from raw.chats_data")[0][0]

    # Re-delivery of day 2: d05-d09, the conflicting pair and four resolved versions are gone,
    # one resolved version changes, d20 is new.
    v2 = [
        *day_chats("d", d2, 5, CATS),
        unresolved_day1[0] + "2000-01-02 07:00:00",
        chat("d20", "cat-3", t2, t2 + timedelta(hours=2)),
    ]
    land(home, "chats_2000-01-02.csv", v2)
    report = ingest(home)
    assert report.ok and outcome(report, "chats_2000-01-02.csv").version == 2
    assert manifest(home)[-1] == ("chats_2000-01-02.csv", 2, "loaded")
    assert ("chats_2000-01-02.csv", 1, "replaced") in manifest(home)
    (action,) = q(
        home,
        "select a.action, a.replaced_by = f2.batch_id, a.acted_by is not null from raw.file_actions as a "
        "join raw.ingested_files as f2 on f2.file_name = a.file_name and f2.status = 'loaded'",
    )
    assert action == ("replaced", True, True)
    # kept for audit, not counted
    assert q(home, "select count(*) from raw.chats_data")[0][0] == raw_rows_v1 + len(v2)
    assert q(home, "select count(*) from raw.chats where _source_file = 'chats_2000-01-02.csv'") == [
        (len(v2),)
    ]
    assert build(home) == 0
    fct = dict(q(home, "select chat_id, is_resolved from analytics.fct_chats"))
    assert "d07" not in fct and "x-conflict" not in fct and fct["d20"]
    assert q(home, "select count(*) from quality.quarantined_chats") == [(0,)]
    assert q(home, "select unaccounted_rows from quality.chat_books") == [(0,)]
    assert_equals_full_refresh(home, tmp_path, "replaced", BUILT_SCHEMAS)

    # Retract day 3: its new chats vanish, its later versions no longer count.
    assert cli_main(["retract", "--home", str(home.root), "chats_2000-01-03.csv", "--reason", "test"]) == 0
    assert q(home, "select status from raw.ingested_files where file_name = 'chats_2000-01-03.csv'") == [
        ("retracted",)
    ]
    assert q(
        home, "select action, reason from raw.file_actions where file_name = 'chats_2000-01-03.csv'"
    ) == [("retracted", "test")]
    report = ingest(home)
    skipped = outcome(report, "chats_2000-01-03.csv")
    assert report.ok and skipped.status == "skipped" and "retracted on" in skipped.reason
    assert build(home) == 0
    fct = dict(q(home, "select chat_id, is_resolved from analytics.fct_chats"))
    assert "e01" not in fct and fct["d01"] is False
    assert_equals_full_refresh(home, tmp_path, "retracted", BUILT_SCHEMAS)


# ----------------------------------------------------------------------------------------------------
# item 8: the pipeline-blocking scenario, through `run`


def test_bad_extract_no_longer_blocks_the_pipeline(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home = new_home(tmp_path)
    args = ["--home", str(home.root)]
    land(home, "categories_2000-01-01.csv", CATEGORIES)
    land(home, "chats_2000-01-01.csv", day_chats("c", date(2000, 1, 1), 12, CATS))
    good2 = day_chats("d", date(2000, 1, 2), 10, CATS)
    bad2 = [
        line.replace("2000-01-02 0", "02/01/2000 0", 1) if i < 3 else line for i, line in enumerate(good2)
    ]
    land(home, "chats_2000-01-02.csv", bad2)  # 3 of 10 rows with an invalid created_at: over 1 %
    with caplog.at_level(logging.INFO):
        assert cli_main(["run", *args]) == 1
    assert "source_chats_created_at_parseable" in caplog.text

    # The corrected re-export under the same name: the next run is green.
    land(home, "chats_2000-01-02.csv", good2)
    assert cli_main(["run", *args]) == 0
    assert manifest(home)[-2:] == [
        ("chats_2000-01-02.csv", 1, "replaced"),
        ("chats_2000-01-02.csv", 2, "loaded"),
    ]
    kept = q(home, "select count(*) from raw.chats_data where created_at like '02/01/2000%'")
    assert kept == [(3,)]  # the v1 rows are still stored
    assert q(home, "select count(*) from raw.chats where created_at like '02/01/2000%'") == [(0,)]
    assert q(home, "select count(*) from analytics.fct_chats") == [(22,)]

    # Another bad extract, withdrawn without replacement: the next run is green without it.
    land(home, "chats_2000-01-03.csv", [*day_chats("e", date(2000, 1, 3), 4, CATS), "e9,cat-1,never,true,"])
    assert cli_main(["run", *args]) == 1
    assert cli_main(["retract", *args, "chats_2000-01-03.csv", "--reason", "broken export"]) == 0
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cli_main(["run", *args]) == 0
    assert "retracted on" in caplog.text
    assert q(home, "select count(*) from analytics.fct_chats") == [(22,)]
    serving = duckdb.connect(str(home.serving / "analytics.duckdb"), read_only=True)
    try:
        assert serving.execute("select count(*) from analytics.fct_chats").fetchone() == (22,)
    finally:
        serving.close()
    # Retracting it again, or a name never loaded: refused, one line, exit 2.
    caplog.clear()
    assert cli_main(["retract", *args, "chats_2000-01-03.csv"]) == 2
    assert "not currently loaded" in caplog.text
    done = subprocess.run(
        [sys.executable, "-m", "chat_analytics.cli", "retract", *args, "nonexistent.csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "nonexistent.csv" in done.stderr and "ever ingested" in done.stderr

    # A corrected file under the retracted name loads as a new version and counts.
    land(home, "chats_2000-01-03.csv", day_chats("e", date(2000, 1, 3), 4, CATS))
    assert cli_main(["run", *args]) == 0
    assert manifest(home)[-1] == ("chats_2000-01-03.csv", 2, "loaded")
    assert q(home, "select count(*) from analytics.fct_chats") == [(26,)]


# ----------------------------------------------------------------------------------------------------
# review fixes: a re-delivery equal to another extract, big trees, retracting a failed file


def test_redelivery_equal_to_an_earlier_extract_still_replaces(tmp_path: Path) -> None:
    """The new content of a known name replaces its loaded version even when another, earlier-dated
    extract has exactly these bytes (its rows all collapse there, but the old version must stop counting)."""
    home = new_home(tmp_path)
    land(home, "chats_2000-01-20.csv", day_chats("a", date(2000, 1, 20), 4, [""]))
    land(home, "chats_2000-01-21.csv", day_chats("b", date(2000, 1, 21), 3, [""]))
    assert ingest(home).ok
    shutil.copyfile(home.landing_chats / "chats_2000-01-20.csv", home.landing_chats / "chats_2000-01-21.csv")
    stamp = next(_mtimes)
    os.utime(home.landing_chats / "chats_2000-01-21.csv", (stamp, stamp))
    report = ingest(home)
    redelivered = outcome(report, "chats_2000-01-21.csv")
    assert report.ok and redelivered.status == "loaded", redelivered.reason
    assert redelivered.version == 2
    assert manifest(home)[1:] == [
        ("chats_2000-01-21.csv", 1, "replaced"),
        ("chats_2000-01-21.csv", 2, "loaded"),
    ]
    # The old version's chats b00-b02 count nowhere; day 21 now holds day 20's rows again.
    assert q(home, "select count(*) from raw.chats where id like 'b%'") == [(0,)]
    assert q(home, "select _source_file, count(*) from raw.chats group by 1 order by 1") == [
        ("chats_2000-01-20.csv", 4),
        ("chats_2000-01-21.csv", 4),
    ]
    # Ingesting again changes nothing: both names are loaded with their current bytes.
    assert ingest(home).count("loaded") == 0


def test_bytes_of_an_older_version_put_back_after_a_retraction_are_a_redelivery(tmp_path: Path) -> None:
    """A retracted version blocks its bytes only while it is the newest version of its name: retract A,
    deliver B (replaces), put A back (even with A's size and modification time): A loads and replaces B."""
    home = new_home(tmp_path)
    name = "chats_2000-01-20.csv"
    original = land(home, name, day_chats("a", date(2000, 1, 20), 4, [""]))
    kept = tmp_path / "original.csv"
    shutil.copy2(original, kept)
    assert ingest(home).ok
    assert cli_main(["retract", "--home", str(home.root), name, "--reason", "test"]) == 0
    land(home, name, day_chats("b", date(2000, 1, 20), 3, [""]))
    assert outcome(ingest(home), name).version == 2
    shutil.copy2(kept, home.landing_chats / name)  # same bytes, size and mtime as version 1
    report = ingest(home)
    put_back = outcome(report, name)
    assert report.ok and put_back.status == "loaded", put_back.reason
    assert manifest(home) == [(name, 1, "retracted"), (name, 2, "replaced"), (name, 3, "loaded")]
    assert q(home, "select count(*) from raw.chats where id like 'a%'") == [(4,)]
    assert q(home, "select count(*) from raw.chats where id like 'b%'") == [(0,)]
    # Retracting the newest version blocks its bytes again, until other content arrives.
    assert cli_main(["retract", "--home", str(home.root), name]) == 0
    again = outcome(ingest(home), name)
    assert again.status == "skipped" and "retracted on" in again.reason


CHAIN_DEPTH = 10_000
LOOP_LENGTH = 1_000


def test_category_tree_resolves_a_very_deep_chain_and_a_long_loop(tmp_path: Path) -> None:
    """A 10,000-deep chain under a disabled root and a 1,000-category loop (with a tail below it) resolve:
    exact depth and flags at the bottom, a bounded path, `cycle` on and below the loop; the whole tree
    equals the independent reference. (The former walks grew with depth^2 and loop^3 in time and size.)"""
    home = new_home(tmp_path)
    # Explicit flags almost everywhere: staging fails a snapshot with 10 or more empty ones.
    chain = [f"n{i},n{i - 1},false" for i in range(1, CHAIN_DEPTH)]
    loop_flags = {997: "", 998: "", 999: "", 0: "", 1: "true", 700: "true"}
    loop = [f"l{i},l{(i + 1) % LOOP_LENGTH},{loop_flags.get(i, 'false')}" for i in range(LOOP_LENGTH)]
    tail = ["t0,l3,false", *[f"t{i},t{i - 1},{'' if i >= 48 else 'false'}" for i in range(1, 50)]]
    land(home, "categories_2000-01-01.csv", ["n0,,true", *chain, "ok-root,,false", *loop, *tail])
    land(
        home, "chats_2000-01-01.csv", day_chats("c", date(2000, 1, 1), 4, [f"n{CHAIN_DEPTH - 1}", "ok-root"])
    )
    assert ingest(home).ok
    assert build(home) == 1  # the loop: an error-severity test; the tree itself is built
    tree = {
        row[0]: row[1:]
        for row in q(
            home,
            "select category_id, tree_status, root_category_id, depth, path, is_disabled_inherited, "
            "is_disabled_effective from intermediate.int_category_tree",
        )
    }
    bottom = tree[f"n{CHAIN_DEPTH - 1}"]
    assert bottom[:3] == ("ok", "n0", CHAIN_DEPTH - 1) and bottom[4:] == (False, True)
    last_ids = [f"n{i}" for i in range(CHAIN_DEPTH - reference.PATH_MAX_IDS, CHAIN_DEPTH)]
    assert bottom[3] == "n0/…/" + "/".join(last_ids)
    assert tree["n63"][3] == "/".join(f"n{i}" for i in range(64))  # 64 ids: shown in full
    assert tree["n64"][3] == "n0/…/" + "/".join(f"n{i}" for i in range(1, 65))
    assert all(tree[f"n{i}"][2] == i and tree[f"n{i}"][5] for i in range(CHAIN_DEPTH))
    # Around the loop: l998's nearest flag is l1's (past the empty l999, l0); l700 disables the loop.
    assert tree["l998"] == ("cycle", None, None, None, True, True)
    assert tree["l500"] == ("cycle", None, None, None, False, True)
    assert tree["t49"] == ("cycle", None, None, None, False, True)  # t47's false is nearest; the loop above
    # Everything off the chain equals the independent reference (its walk is quadratic on the chain).
    off_chain = [r for r in reference.load_raw(home.warehouse).categories if not r["id"].startswith("n")]
    expected = {
        k: (v["tree_status"], v["root_category_id"], v["depth"], v["path"], v["is_disabled_inherited"],
            v["is_disabled_effective"])
        for k, v in reference.category_tree(off_chain).items()
    }  # fmt: skip
    assert {k: v for k, v in tree.items() if not k.startswith("n")} == expected


def test_retracting_a_file_that_only_failed_says_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = new_home(tmp_path)
    args = ["--home", str(home.root)]
    land(home, "categories_2000-01-01.csv", CATEGORIES)
    land(home, "chats_2000-01-01.csv", day_chats("c", date(2000, 1, 1), 4, CATS))
    broken = home.landing_chats / "chats_2000-01-02.csv"
    broken.write_text("id,created_at\nx,2000-01-02 10:00:00\n", encoding="utf-8")  # a required column missing
    assert cli_main(["run", *args]) == 1
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli_main(["retract", *args, "chats_2000-01-02.csv"]) == 2
    message = caplog.text
    assert "never loaded" in message and "a failed file never counts" in message, message
    assert "landing/chats/" in message and "remove it" in message and "corrected content" in message
    # As it says: once the file is removed, the next run is green.
    broken.unlink()
    assert cli_main(["run", *args]) == 0
