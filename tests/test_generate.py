"""`chat-analytics generate`: determinism, realism, category quirks and dirty-mode ground truth.

Everything is checked on the real files, parsed independently with Python's csv module; the dirty
ground truth is compared with a small pure-Python reading of docs/data-contract.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from chat_analytics.dbt_vars import local_timezone, quarantine_reasons
from chat_analytics.devtools.generate import GenerateSummary, generate
from chat_analytics.devtools.generator import csvtext
from chat_analytics.paths import Home, UserError

CHATS_HEADER = ["id", "chat_category_id", "created_at", "is_customer_initiated", "resolved_at"]
START, END = date(2000, 1, 1), date(2000, 4, 30)
MELBOURNE = ZoneInfo(local_timezone())
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CLEAN_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
TRUE_WORDS = {"true", "t", "1", "yes"}
FALSE_WORDS = {"false", "f", "0", "no"}
NULLS = {"", "null", "NULL"}
REASONS = quarantine_reasons()


# --- helpers: an independent reading of the files ------------------------------------------------


def run(
    root: Path,
    *,
    chats: int = 50_000,
    start: date = START,
    end: date = END,
    seed: int = 42,
    dirty: bool = False,
):
    home = Home(root)
    return home, generate(home, chats=chats, start=start, end=end, seed=seed, dirty=dirty)


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")


def chat_rows(path: Path) -> list[list[str]]:
    """Data records of a chats file (blank lines come back as [])."""
    rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    assert rows[0] == CHATS_HEADER
    return rows[1:]


def parse_ts(text: str) -> datetime | None:
    """The contract's timestamp forms, as aware UTC datetimes; None when unparseable."""
    if not CLEAN_TS_RE.match(text) and "T" not in text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def load_categories(home: Home) -> tuple[dict[str, tuple[str, str]], list[str]]:
    (path,) = home.landing_categories.glob("categories_*.csv")
    text = read_text(path)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["id", "parent_id", "disabled"]
    return {r[0]: (r[1], r[2]) for r in rows[1:]}, [r[0] for r in rows[1:]]


def effectively_disabled(cats: dict[str, tuple[str, str]]) -> dict[str, bool]:
    def walk(cid: str) -> bool:
        parent, disabled = cats[cid]
        if disabled == "true":
            return True
        return parent not in ("", "null") and walk(parent)

    return {cid: walk(cid) for cid in cats}


def depth_of(cats: dict[str, tuple[str, str]], cid: str) -> int:
    parent = cats[cid][0]
    return 0 if parent in ("", "null") else 1 + depth_of(cats, parent)


def first_versions(home: Home) -> list[list[str]]:
    """Each chat once, as first written (clean runs)."""
    seen: set[str] = set()
    out = []
    for path in sorted(home.landing_chats.glob("chats_*.csv")):
        for row in chat_rows(path):
            if row[0] not in seen:
                seen.add(row[0])
                out.append(row)
    return out


def last_versions(home: Home) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(home.landing_chats.glob("chats_*.csv")):
        for row in chat_rows(path):
            out[row[0]] = row
    return out


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, GenerateSummary]:
    return run(tmp_path_factory.mktemp("clean"), seed=7)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Home, GenerateSummary]:
    return run(tmp_path_factory.mktemp("dirty"), seed=11, dirty=True)


@pytest.fixture(scope="module")
def truth(dirty: tuple[Home, GenerateSummary]) -> dict:
    return json.loads(dirty[1].ground_truth.read_text(encoding="utf-8"))


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    settings = {"chats": 5_000, "start": date(2000, 3, 20), "end": date(2000, 4, 2), "dirty": True}
    run(tmp_path / "a", seed=5, **settings)
    run(tmp_path / "b", seed=5, **settings)
    run(tmp_path / "c", seed=6, **settings)
    first, second, other = (digests(tmp_path / name) for name in "abc")
    assert len(first) == 14 + 1 + 1  # chats files, categories, ground truth
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_dirty_leaves_the_clean_rows_alone(tmp_path: Path, clean: tuple[Home, GenerateSummary]) -> None:
    home, _ = run(tmp_path, seed=7, dirty=True)
    for path in sorted(clean[0].landing_chats.glob("*.csv")):
        clean_lines = path.read_bytes().decode().splitlines()
        dirty_lines = set(read_text(home.landing_chats / path.name).splitlines())
        assert set(clean_lines) <= dirty_lines


# --- shape of a clean run ------------------------------------------------------------------------


def test_files_one_per_day_with_headers(clean: tuple[Home, GenerateSummary]) -> None:
    home, summary = clean
    names = sorted(p.name for p in home.landing_chats.iterdir())
    days = [START + timedelta(days=i) for i in range((END - START).days + 1)]
    assert names == [f"chats_{d.isoformat()}.csv" for d in days]
    assert [p.name for p in home.landing_categories.iterdir()] == ["categories_2000-01-01.csv"]
    assert summary.ground_truth == home.landing / "ground_truth.json"
    assert len(summary.files) == len(days) + 1
    for path in home.landing_chats.iterdir():
        raw = path.read_bytes()
        assert raw.startswith(b"id,chat_category_id,created_at,is_customer_initiated,resolved_at\n")
        assert raw.endswith(b"\n") and b"\r" not in raw


def test_every_value_is_clean(clean: tuple[Home, GenerateSummary]) -> None:
    home, summary = clean
    cats, _ = load_categories(home)
    rows = 0
    for path in sorted(home.landing_chats.glob("*.csv")):
        day = path.stem.removeprefix("chats_")
        previous: tuple[str, str] | None = None
        for chat_id, category, created, flag, resolved in chat_rows(path):
            rows += 1
            assert UUID_RE.match(chat_id) and uuid.UUID(chat_id).version == 5
            assert category == "" or category in cats
            assert CLEAN_TS_RE.match(created) and flag in ("true", "false")
            assert resolved == "" or (CLEAN_TS_RE.match(resolved) and resolved >= created)
            assert created[:10] == day or resolved[:10] == day  # created that day, or resolved that day
            assert resolved == "" or resolved[:10] == day
            assert previous is None or previous <= (created, chat_id)  # sorted by created_at, then id
            previous = (created, chat_id)
    assert rows == summary.chat_rows


def test_versions_repeat_the_chat_once_resolved(clean: tuple[Home, GenerateSummary]) -> None:
    home, summary = clean
    versions: dict[str, list[list[str]]] = defaultdict(list)
    for path in sorted(home.landing_chats.glob("*.csv")):
        for row in chat_rows(path):
            versions[row[0]].append(row)
    assert len(versions) == summary.chats == 50_000
    repeated = [v for v in versions.values() if len(v) > 1]
    assert all(len(v) == 2 for v in repeated)
    assert all(a[:4] == b[:4] and a[4] == "" and b[4] > a[2] for a, b in repeated)
    assert len(repeated) > 1_000  # plenty of chats resolved on a later day


def test_realistic_shares(clean: tuple[Home, GenerateSummary]) -> None:
    home, _ = clean
    cats, _ = load_categories(home)
    disabled = effectively_disabled(cats)
    chats = list(last_versions(home).values())
    n = len(chats)
    assert 0.78 < sum(r[3] == "true" for r in chats) / n < 0.82
    assert 0.10 <= sum(r[4] == "" for r in chats) / n <= 0.15
    by_category = Counter(r[1] for r in chats if r[1])
    assert 0.20 <= by_category.most_common(1)[0][1] / n <= 0.30
    assert len(by_category) > 150  # heavy tail: most categories get some chats
    assert 0.01 < sum(r[1] == "" for r in chats) / n < 0.06
    assert 0.01 < sum(disabled[r[1]] for r in chats if r[1]) / n < 0.08


def test_resolution_varies_by_category(clean: tuple[Home, GenerateSummary]) -> None:
    home, _ = clean
    seconds: dict[str, list[float]] = defaultdict(list)
    for _, category, created, _, resolved in last_versions(home).values():
        if resolved and category:
            delta = parse_ts(resolved) - parse_ts(created)
            seconds[category].append(delta.total_seconds())
    medians = [float(np.median(v)) for v in seconds.values() if len(v) >= 200]
    assert len(medians) >= 5
    assert max(medians) > 3 * min(medians)


def test_arrivals_follow_melbourne_local_time(clean: tuple[Home, GenerateSummary]) -> None:
    home, _ = clean
    local = [parse_ts(r[2]).astimezone(MELBOURNE) for r in first_versions(home)]
    hours = Counter(t.hour for t in local)
    assert hours[10] > 8 * hours[3]
    assert hours[20] > hours[17]  # the evening peak rises again after the afternoon
    assert hours[20] > 10 * hours[4]
    per_date = Counter(t.date() for t in local if START < t.date() < END)
    weekday = np.mean([c for d, c in per_date.items() if d.weekday() < 5])
    weekend = np.mean([c for d, c in per_date.items() if d.weekday() >= 5])
    assert weekday > 1.5 * weekend


def test_local_hour_pattern_is_continuous_across_dst_end(clean: tuple[Home, GenerateSummary]) -> None:
    """DST ended on 26 March 2000 (UTC+11 -> UTC+10): the local pattern must not shift by an hour."""
    home, _ = clean

    def profile(first: date, last: date) -> np.ndarray:
        counts = np.zeros(24)
        for row in first_versions(home):
            t = parse_ts(row[2]).astimezone(MELBOURNE)
            if first <= t.date() <= last:
                counts[t.hour] += 1
        return counts / counts.sum()

    before = profile(date(2000, 2, 27), date(2000, 3, 25))
    after = profile(date(2000, 3, 27), date(2000, 4, 23))
    same = np.abs(before - after).sum()
    shifted = min(np.abs(before - np.roll(after, k)).sum() for k in (-1, 1))
    assert same < 0.5 * shifted
    assert int(np.argmax(before)) in (9, 10) and int(np.argmax(after)) in (9, 10)


# --- categories ----------------------------------------------------------------------------------


def test_categories_quirks(clean: tuple[Home, GenerateSummary]) -> None:
    home, _ = clean
    (path,) = home.landing_categories.glob("*.csv")
    assert not path.read_bytes().endswith(b"\n")  # like the real extract
    cats, order = load_categories(home)
    assert 400 <= len(cats) <= 500 and len(order) == len(cats)
    assert all(UUID_RE.match(cid) for cid in cats)
    parents = [p for p, _ in cats.values()]
    assert parents.count("null") == 1
    assert all(p in ("", "null") or p in cats for p in parents)
    values = Counter(d for _, d in cats.values())
    assert values[""] == 1 and set(values) == {"true", "false", ""}
    assert 0.35 <= values["true"] / len(cats) <= 0.45
    depths = Counter(depth_of(cats, cid) for cid in cats)
    assert max(depths) >= 3 and depths[0] > 50
    disabled = effectively_disabled(cats)
    under = [cid for cid, (p, d) in cats.items() if d == "false" and p not in ("", "null") and disabled[p]]
    assert len(under) >= 10
    (null_root,) = [cid for cid, (p, _) in cats.items() if p == "null"]
    assert any(p == null_root for p in parents)  # the `null` root has children
    position = {cid: i for i, cid in enumerate(order)}
    assert sum(position[p] > position[c] for c, (p, _) in cats.items() if p in cats) > 50  # shuffled


# --- dirty mode ----------------------------------------------------------------------------------


def classify(row: list[str], cats: dict[str, tuple[str, str]]) -> str | None:
    """The defect class of one record, from its text alone (None for a clean row)."""
    if not row:
        return "blank_line"
    if len(row) < 5:
        return "short_row"
    if len(row) > 5:
        return "long_row"
    chat_id, category, created, flag, resolved = row
    if chat_id == "":
        return "missing_id"
    if "," in category:
        return "quoted_comma_category"
    if category in ("null", "NULL"):
        return "null_category"
    if category and category not in cats:
        return "unknown_category"
    if resolved in ("null", "NULL"):
        return "null_resolved_at"
    if parse_ts(created) is None:
        return "invalid_created_at"
    if resolved and parse_ts(resolved) is None:
        return "invalid_resolved_at"
    if "T" in created:
        return "iso8601_timestamp"
    if resolved and parse_ts(resolved) < parse_ts(created):
        return "resolved_before_created"
    if flag.lower() not in TRUE_WORDS | FALSE_WORDS:
        return "invalid_is_customer_initiated"
    if flag not in ("true", "false"):
        return "alternative_boolean"
    return None


def test_every_defect_class_present_with_its_count(dirty: tuple[Home, GenerateSummary], truth: dict) -> None:
    home, _ = dirty
    cats, _ = load_categories(home)
    found: Counter[str] = Counter()
    for path in sorted(home.landing_chats.glob("*.csv")):
        rows = chat_rows(path)
        for row in rows:
            defect = classify(row, cats)
            if defect:
                found[defect] += 1
        lines = Counter(tuple(r) for r in rows if len(r) == 5)
        found["exact_duplicate"] += sum(c - 1 for c in lines.values())
        contents = defaultdict(set)
        for row in lines:
            if row[0]:
                contents[row[0]].add(row)
        found["conflicting_duplicate"] += sum(len(v) == 2 for v in contents.values())
    injected = truth["injected"]
    expected = {
        name: entry["count"] for name, entry in injected.items() if name not in ("utf8_bom", "crlf_line_ends")
    }
    assert found == expected
    assert all(count >= 5 for count in expected.values()) and len(expected) == 16
    assert len(set(expected.values())) > 1  # counts differ per class


def test_one_file_with_bom_another_with_crlf(dirty: tuple[Home, GenerateSummary], truth: dict) -> None:
    home, _ = dirty
    raws = {p.name: p.read_bytes() for p in home.landing_chats.glob("*.csv")}
    bom = [name for name, raw in raws.items() if raw.startswith(b"\xef\xbb\xbf")]
    crlf = [name for name, raw in raws.items() if b"\r\n" in raw]
    assert len(bom) == 1 and len(crlf) == 1 and bom != crlf
    assert truth["injected"]["utf8_bom"]["files"] == bom
    assert truth["injected"]["crlf_line_ends"]["files"] == crlf
    assert raws[crlf[0]].count(b"\n") == raws[crlf[0]].count(b"\r\n")
    files = truth["expected"]["ingest"]["files"]
    assert [n for n, f in files.items() if f["utf8_bom"]] == bom
    assert [n for n, f in files.items() if f["crlf_line_ends"]] == crlf


def test_injected_ids_are_fresh(dirty: tuple[Home, GenerateSummary], truth: dict) -> None:
    home, _ = dirty
    all_ids = Counter()
    for path in home.landing_chats.glob("*.csv"):
        all_ids.update(r[0] for r in chat_rows(path) if r)
    for name, entry in truth["injected"].items():
        for chat_id in entry["ids"]:
            expected = 2 if name in ("exact_duplicate", "conflicting_duplicate") else 1
            assert all_ids[chat_id] == expected, (name, chat_id)
    ids = [i for e in truth["injected"].values() for i in e["ids"]]
    assert len(ids) == len(set(ids))


def contract_outcomes(home: Home) -> tuple[dict[str, dict[str, int]], dict]:
    """docs/data-contract.md in plain Python: the manifest figures per file and the dbt books."""
    cats, _ = load_categories(home)
    disabled = effectively_disabled(cats)
    files: dict[str, dict[str, int]] = {}
    raw: list[tuple[tuple[str, int, int], tuple[str, ...], str]] = []  # (version key, columns, file)
    for batch, path in enumerate(sorted(home.landing_chats.glob("*.csv"))):
        records = chat_rows(path)
        blank = sum(1 for r in records if not r)
        rejected = sum(1 for r in records if r and len(r) != 5)
        files[path.name] = {
            "data_lines": len(records) - blank,
            "rows_loaded": len(records) - blank - rejected,
            "rows_rejected": rejected,
            "blank_lines": blank,
        }
        for line, r in enumerate(records, start=2):
            if len(r) == 5:
                raw.append(((path.name, batch, line), tuple(r), path.name))
    raw.sort(key=lambda item: item[0])
    seen: set[tuple[str, ...]] = set()
    kept = []
    for key, cols, name in raw:
        if cols not in seen:
            seen.add(cols)
            kept.append((key, cols, name))
    collapsed = len(raw) - len(kept)
    per_file_id = Counter((name, cols[0]) for _, cols, name in kept)
    quarantined: Counter[str] = Counter()
    valid: dict[str, tuple[str, ...]] = {}
    valid_rows = 0
    for _, cols, name in kept:
        chat_id, _, created, flag, resolved = cols
        created_at = parse_ts(created)
        resolved_at = None if resolved in NULLS else parse_ts(resolved)
        reasons = [
            reason
            for reason, applies in (
                ("missing_id", chat_id == ""),
                ("invalid_created_at", created_at is None),
                ("invalid_resolved_at", resolved not in NULLS and resolved_at is None),
                ("resolved_before_created", bool(created_at and resolved_at and resolved_at < created_at)),
                ("invalid_is_customer_initiated", flag.lower() not in TRUE_WORDS | FALSE_WORDS),
                ("conflicting_duplicate", per_file_id[(name, chat_id)] > 1),
            )
            if applies
        ]
        if reasons:
            quarantined[reasons[0]] += 1
        else:
            valid_rows += 1
            valid[chat_id] = cols  # version order: the last one wins

    def status(category: str) -> str:
        if category in NULLS:
            return "none"
        if category not in cats:
            return "unknown"
        return "disabled" if disabled[category] else "ok"

    books = {
        "raw_rows": len(raw),
        "collapsed_exact_duplicates": collapsed,
        "quarantined": {reason: quarantined[reason] for reason in REASONS},
        "superseded_versions": valid_rows - len(valid),
        "valid_chats": len(valid),
        "category_status": dict(Counter(status(c[1]) for c in valid.values())),
    }
    return files, books


def test_ground_truth_matches_the_contract(dirty: tuple[Home, GenerateSummary], truth: dict) -> None:
    home, summary = dirty
    files, books = contract_outcomes(home)
    expected = truth["expected"]
    keys = ("data_lines", "rows_loaded", "rows_rejected", "blank_lines")
    ingest_files = expected["ingest"]["files"]
    assert {name: {k: ingest_files[name][k] for k in keys} for name in files} == files
    chats_total = expected["ingest"]["chats"]
    assert chats_total["files"] == len(files)
    assert all(chats_total[k] == sum(f[k] for f in files.values()) for k in keys)
    assert (
        chats_total["rows_rejected"]
        == truth["injected"]["short_row"]["count"] + truth["injected"]["long_row"]["count"]
    )
    assert chats_total["data_lines"] == summary.chat_rows
    dbt = expected["dbt"]
    assert {k: dbt[k] for k in books if k != "category_status"} == {
        k: v for k, v in books.items() if k != "category_status"
    }
    assert {k: v for k, v in dbt["category_status"].items() if v} == books["category_status"]
    assert all(dbt["quarantined"][reason] > 0 for reason in REASONS)
    assert (
        dbt["quarantined"]["conflicting_duplicate"] == 2 * truth["injected"]["conflicting_duplicate"]["count"]
    )
    assert dbt["raw_rows"] == (
        dbt["valid_chats"]
        + dbt["quarantined_rows"]
        + dbt["collapsed_exact_duplicates"]
        + dbt["superseded_versions"]
    )
    assert expected["ingest"]["categories"]["rows_loaded"] == truth["categories"]["rows"]


def test_clean_run_ground_truth(clean: tuple[Home, GenerateSummary]) -> None:
    home, summary = clean
    truth = json.loads(summary.ground_truth.read_text(encoding="utf-8"))
    assert len(truth["injected"]) == 18
    assert all(
        entry == {"count": 0, "lines": 0, "files": [], "ids": []} for entry in truth["injected"].values()
    )
    files, books = contract_outcomes(home)
    dbt = truth["expected"]["dbt"]
    assert dbt["valid_chats"] == books["valid_chats"] == 50_000
    assert dbt["superseded_versions"] == books["superseded_versions"]
    assert sum(dbt["quarantined"].values()) == dbt["collapsed_exact_duplicates"] == 0
    assert {k: v for k, v in dbt["category_status"].items() if v} == books["category_status"]
    assert all(f["rows_rejected"] == f["blank_lines"] == 0 for f in files.values())


# --- formatting and input checks -----------------------------------------------------------------


def test_vectorised_text_matches_python() -> None:
    rng = np.random.default_rng(0)
    seconds = np.concatenate(
        [rng.integers(-2_000_000_000, 4_000_000_000, 2_000), [0, 951_782_400, 951_868_799, -1]]
    ).astype(np.int64)
    matrix = csvtext.timestamp_matrix(seconds)
    texts = [bytes(row).decode() for row in matrix]
    assert texts == [datetime.fromtimestamp(int(s), tz=UTC).strftime("%Y-%m-%d %H:%M:%S") for s in seconds]
    high, low = csvtext.random_uuid_halves(rng, 500)
    ids = [bytes(row).decode() for row in csvtext.uuid_matrix(high, low)]
    expected = [str(uuid.UUID(int=(int(h) << 64) | int(lo))) for h, lo in zip(high, low, strict=True)]
    assert ids == expected
    assert all(uuid.UUID(i).version == 5 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert [csvtext.uuid_text(int(h), int(lo)) for h, lo in zip(high, low, strict=True)] == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chats": 0}, "--chats"),
        ({"start": date(2000, 2, 1), "end": date(2000, 1, 31)}, "before"),
        ({"seed": -1}, "--seed"),
        ({"start": date(2000, 1, 1), "end": date(2000, 1, 1), "dirty": True}, "two days"),
    ],
)
def test_bad_input_is_a_user_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        run(tmp_path, **{"chats": 10, **kwargs})
    assert not (tmp_path / "landing").exists()


def test_tiny_run_writes_every_day(tmp_path: Path) -> None:
    home, summary = run(tmp_path, chats=1, start=date(2000, 3, 25), end=date(2000, 3, 28))
    assert summary.chats == 1 and len(summary.files) == 5
    rows = [r for p in sorted(home.landing_chats.glob("*.csv")) for r in chat_rows(p)]
    assert 1 <= len(rows) <= 2
