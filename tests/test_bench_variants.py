"""The benchmark's extract variants (bench/variants.py) are extracts the real pipeline accepts.

Each variant of a small generated history is run through `chat-analytics run` in its own home: no variant
quarantines, rejects or fails more than the generator's own files, the variants that only change the
spelling or the file layout publish exactly clean's marts (bench/marts_guard.py, with the known
sub-second fraction taken out), and `heavy-versions` really adds versions that win. The benchmark's floor
reads every spelling to the same figures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402
import marts_guard  # noqa: E402
import variants  # noqa: E402

CHATS = 3_000
CLI = str(Path(sys.executable).parent / "chat-analytics")
SPELLING_VARIANTS = [n for n, v in variants.VARIANTS.items() if v.same_marts_as_clean and n != "clean"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every variant made from one generated history and run by the real pipeline."""
    root = tmp_path_factory.mktemp("variants")
    base = root / "base"
    subprocess.run([CLI, "generate", "--home", str(base), "--chats", str(CHATS)], check=True)
    out: dict[str, dict[str, Any]] = {}
    for name in variants.VARIANTS:
        home = root / name
        made = variants.make(name, base, home)
        done = subprocess.run([CLI, "run", "--home", str(home)], capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: run failed\n{done.stderr[-3000:]}"
        out[name] = {
            "home": home,
            "made": made,
            "signature": marts_guard.signature(home, variants.fraction_sql(name, "chat_id")),
            "plain_signature": marts_guard.signature(home),
            "health": marts_guard.health(home),
        }
    return out


def test_clean_is_the_generators_files(runs: dict[str, dict[str, Any]]) -> None:
    health = runs["clean"]["health"]
    assert health["quarantined_rows"] == 0
    assert health["rejected_rows"] == 0
    assert health["failed_files"] == 0
    assert runs["clean"]["made"].files > 100  # daily files


@pytest.mark.parametrize("name", [n for n in variants.VARIANTS if n != "clean"])
def test_variant_is_accepted_like_clean(runs: dict[str, dict[str, Any]], name: str) -> None:
    health = runs[name]["health"]
    assert marts_guard.worse_health(runs["clean"]["health"], health) == []
    assert health["quarantined_rows"] == 0
    assert health["rejected_rows"] == 0
    assert health["failed_files"] == 0
    assert health["raw_rows"] == runs[name]["made"].rows


@pytest.mark.parametrize("name", SPELLING_VARIANTS)
def test_spelling_variant_publishes_clean_marts(runs: dict[str, dict[str, Any]], name: str) -> None:
    assert marts_guard.differences(runs["clean"]["signature"], runs[name]["signature"]) == []


@pytest.mark.parametrize("name", ["iso-z-millis", "offsets-micros"])
def test_fraction_is_really_there(runs: dict[str, dict[str, Any]], name: str) -> None:
    """Without taking the fraction out, the timestamps differ: the guard is not comparing nothing."""
    found = marts_guard.differences(runs["clean"]["plain_signature"], runs[name]["plain_signature"])
    assert len(found) == 1 and found[0].startswith("fct_chats:")
    assert "created_at_utc" in found[0] and "resolution_hours" not in found[0]


def test_guard_sees_a_wrong_fraction(runs: dict[str, dict[str, Any]]) -> None:
    """Reading `offsets-micros` with the millisecond fraction of `iso-z-millis` must not pass."""
    wrong = marts_guard.signature(
        runs["offsets-micros"]["home"], variants.fraction_sql("iso-z-millis", "chat_id")
    )
    assert marts_guard.differences(runs["clean"]["signature"], wrong) != []


def test_offsets_variant_writes_every_form(runs: dict[str, dict[str, Any]]) -> None:
    text = "".join(
        p.read_text() for p in (runs["offsets-micros"]["home"] / "landing" / "chats").glob("*.csv")
    )
    for _, spelled in variants.OFFSETS:
        assert f"{spelled}," in text or f"{spelled}\n" in text, spelled
    with duckdb.connect() as con:
        rows = con.execute(
            "select created_at, is_customer_initiated, resolved_at from read_csv(?, header = true, "
            "all_varchar = true, nullstr = '\\N')",
            [str(runs["offsets-micros"]["home"] / "landing" / "chats" / "*.csv")],
        ).fetchall()
    stamps = [c for c, _, _ in rows] + [r for _, _, r in rows if r not in ("", "null", "NULL")]
    fractions = [re.search(r"\.([0-9]+)", value) for value in stamps]
    assert all(fractions)  # every timestamp has a fraction, of every length from 1 to 6 digits
    assert {len(f.group(1)) for f in fractions if f} == {1, 2, 3, 4, 5, 6}
    assert {b for _, b, _ in rows} == set(variants.TRUE_WORDS) | set(variants.FALSE_WORDS)
    assert {r for _, _, r in rows if r in ("", "null", "NULL")} == {"", "null", "NULL"}
    assert any("T" in c for c, _, _ in rows) and any(c[10] == " " for c, _, _ in rows)


def test_one_file_holds_the_latest_version_of_every_chat(runs: dict[str, dict[str, Any]]) -> None:
    made = runs["one-file"]["made"]
    assert made.files == 1 and made.rows == CHATS
    newest = max(p.name for p in (runs["clean"]["home"] / "landing" / "chats").glob("*.csv"))
    assert [p.name for p in (runs["one-file"]["home"] / "landing" / "chats").iterdir()] == [newest]


def test_heavy_versions_repeats_rows_and_adds_winning_versions(runs: dict[str, dict[str, Any]]) -> None:
    heavy = runs["heavy-versions"]
    extras = heavy["made"].extras
    assert 0.15 <= extras["repeated_share_of_base_rows"] <= 0.21
    assert 0.07 <= extras["newer_versions_share_of_chats"] <= 0.11
    assert heavy["made"].rows == extras["base_rows"] + extras["repeated_rows"] + extras["newer_versions"]
    # every chat is still there once; newer versions won: more resolved, later resolution times
    clean_fct, heavy_fct = (runs[n]["signature"]["fct_chats"] for n in ("clean", "heavy-versions"))
    assert heavy_fct["rows"] == clean_fct["rows"]
    assert heavy_fct["columns"]["resolved_at_utc"] != clean_fct["columns"]["resolved_at_utc"]
    with (
        duckdb.connect(str(marts_guard.serving_file(runs["clean"]["home"])), read_only=True) as clean,
        duckdb.connect(str(marts_guard.serving_file(heavy["home"])), read_only=True) as later,
    ):
        resolved = [
            con.execute(
                f"select count(resolved_at_utc), sum(epoch(resolved_at_utc)) from {db}.fct_chats"
            ).fetchone()
            for con, db in ((clean, "analytics"), (later, "analytics"))
        ]
    assert resolved[1][0] >= resolved[0][0] and resolved[1][1] > resolved[0][1]


def test_floor_reads_every_spelling_alike(runs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    figures = {}
    for name in ("clean", *SPELLING_VARIANTS):
        sql = bench.floor_sql(runs[name]["home"], tmp_path / "spill", variants.VARIANTS[name])
        with duckdb.connect() as con:
            con.execute(sql.replace("{settings}", ""))
            figures[name] = {
                table: con.execute(f"select * from {table} order by all").fetchall()
                for table in ("daily", "extremes", "median", "hourly", "top_customer", "lowest_rate")
            }
            figures[name]["chats"] = con.execute(
                "select count(*), count(resolved_at), count(*) filter (where customer), "
                "count(category_id) from chats"
            ).fetchall()
    assert figures["clean"]["chats"][0][0] == CHATS
    for name in SPELLING_VARIANTS:
        assert figures[name] == figures["clean"], name


def test_floor_in_a_database_file_under_a_memory_limit_gives_the_same_figures(
    runs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The floor's 100 M mode (a database file with `memory_limit`, forced here) finishes and reads the
    same figures as in memory (that it spills is shown by the bench at scale, not by a tiny test)."""
    home = runs["heavy-versions"]["home"]
    sql = bench.floor_sql(home, tmp_path / "spill", variants.VARIANTS["heavy-versions"])
    modes: list[str] = []
    bench.floor_run(sql, tmp_path, modes, bench.FloorOptions(memory_limit="300MB", file_from=0), size=CHATS)
    bench.floor_run(
        sql, tmp_path, modes, bench.FloorOptions(memory_limit="300MB", file_from=CHATS + 1), size=CHATS
    )
    assert modes[0].startswith("database file, memory_limit 300MB") and modes[1] == "in memory"
    assert not (tmp_path / "floor.duckdb").exists() and not (tmp_path / "floor-spill").exists()
    figures = []
    for settings in ("set memory_limit = '300MB';", ""):
        with duckdb.connect(str(tmp_path / "check.duckdb") if settings else ":memory:") as con:
            con.execute(sql.replace("{settings}", settings))
            figures.append(con.execute("select * from daily order by all").fetchall())
    assert figures[0] == figures[1] and len(figures[0]) > 100
