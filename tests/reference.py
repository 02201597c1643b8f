"""Independent Python reference for the chat-analytics warehouse (pandas + zoneinfo).

Computes every analytics mart, the quarantine and the books from the RAW tables alone, following
docs/data-contract.md and the mart definitions documented in dbt/models/*/_*.yml, without
sharing any code with the dbt project. Then compares them with what dbt built.

Reusable entry points:

* `load_raw(warehouse)` -> `RawData`: raw.chats / raw.categories rows as plain Python values.
* `compute_reference(raw, disabled_scope=...)` -> `Reference`: every mart as a DataFrame.
* `load_marts(warehouse)` -> dict of DataFrames as built by dbt.
* `assert_warehouse_matches_reference(warehouse)`: the whole comparison, with readable failures; works
  on any warehouse (pytest fixtures now, generator output later).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

LOCAL_TZ = ZoneInfo("Australia/Melbourne")
SOURCE_COLUMNS = ("id", "chat_category_id", "created_at", "is_customer_initiated", "resolved_at")
REASON_ORDER = (
    "missing_id",
    "invalid_created_at",
    "invalid_resolved_at",
    "resolved_before_created",
    "invalid_is_customer_initiated",
    "conflicting_duplicate",
)
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TRUE_WORDS = {"true", "t", "1", "yes"}
FALSE_WORDS = {"false", "f", "0", "no"}

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"(?:[Zz]|([+-])([0-9]{2})(?::?([0-9]{2}))?)?"
)


# ----------------------------------------------------------------------------------------------------
# value rules


def _strip(value: str) -> str:
    return value.strip(" ")  # blanks around a value are spaces (as SQL trim)


def is_missing(value: Any) -> bool:
    return value is None or _strip(str(value)).lower() in ("", "null")


def clean_text(value: Any) -> str | None:
    return None if is_missing(value) else _strip(str(value))


def parse_bool(value: Any) -> bool | None:
    if value is None:
        return None
    word = _strip(str(value)).lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def parse_utc(value: Any) -> datetime | None:
    """Naive UTC datetime, or None when missing or not one of the accepted forms."""
    if value is None:
        return None
    match = _TIMESTAMP.fullmatch(_strip(str(value)))
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        naive = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    if sign is None:
        return naive
    if int(off_h) > 23 or (off_m is not None and int(off_m) > 59):
        return None
    offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
    return naive - offset if sign == "+" else naive + offset


def to_local(utc: datetime | None) -> datetime | None:
    if utc is None:
        return None
    return utc.replace(tzinfo=UTC).astimezone(LOCAL_TZ).replace(tzinfo=None)


# ----------------------------------------------------------------------------------------------------
# raw data


@dataclass
class RawData:
    chats: list[dict[str, Any]]
    categories: list[dict[str, Any]]


def load_raw(warehouse: str | Path) -> RawData:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return RawData(chats=_rows(con, "raw.chats"), categories=_rows(con, "raw.categories"))


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    cursor = con.execute(f"select * from {table}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# ----------------------------------------------------------------------------------------------------
# the reference computation


@dataclass
class Reference:
    fct_chats: pd.DataFrame
    dim_categories: pd.DataFrame
    daily_resolutions: pd.DataFrame
    resolution_extremes: pd.DataFrame
    customer_resolutions_median: pd.DataFrame
    category_rankings: pd.DataFrame
    top_categories_customer_chats: pd.DataFrame
    lowest_resolution_rate_categories: pd.DataFrame
    fastest_resolution_categories: pd.DataFrame
    hourly_distribution: pd.DataFrame
    quarantined_chats: pd.DataFrame
    chat_books: pd.DataFrame
    dispositions: Counter[str] = field(default_factory=Counter)


def classify_versions(chats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each raw row with `disposition` (chat/superseded/collapsed/quarantined) and `reasons`."""
    rows = [dict(row) for row in chats]
    for row in rows:
        row["chat_id"] = clean_text(row["id"])
        row["created_utc"] = parse_utc(row["created_at"])
        row["resolved_utc"] = parse_utc(row["resolved_at"])
        row["customer"] = parse_bool(row["is_customer_initiated"])
        row["version"] = (row["_extract_date"], row["_batch_id"], row["_line_number"])
    rows.sort(key=lambda r: r["version"])

    # 1. exact duplicates (all five source columns, raw text) collapse to the first in version order
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        key = tuple(row[c] for c in SOURCE_COLUMNS)
        row["collapsed"] = key in seen
        seen.add(key)
    kept = [r for r in rows if not r["collapsed"]]

    # 2. conflicting duplicates: after collapsing, more than one row for one id in one batch
    per_file = Counter((r["chat_id"], r["_batch_id"]) for r in kept if r["chat_id"] is not None)

    # 3. reasons, in order
    for row in kept:
        reasons = []
        if row["chat_id"] is None:
            reasons.append("missing_id")
        if row["created_utc"] is None:
            reasons.append("invalid_created_at")
        if row["resolved_utc"] is None and not is_missing(row["resolved_at"]):
            reasons.append("invalid_resolved_at")
        if (
            row["created_utc"] is not None
            and row["resolved_utc"] is not None
            and row["resolved_utc"] < row["created_utc"]
        ):
            reasons.append("resolved_before_created")
        if row["customer"] is None:
            reasons.append("invalid_is_customer_initiated")
        if row["chat_id"] is not None and per_file[(row["chat_id"], row["_batch_id"])] > 1:
            reasons.append("conflicting_duplicate")
        row["reasons"] = reasons

    # 4. the last valid version of each id is the chat
    last_valid: dict[str, tuple[Any, ...]] = {}
    for row in kept:
        if not row["reasons"]:
            last_valid[row["chat_id"]] = max(last_valid.get(row["chat_id"], row["version"]), row["version"])
    for row in rows:
        if row["collapsed"]:
            row["disposition"], row["reasons"] = "collapsed", []
        elif row["reasons"]:
            row["disposition"] = "quarantined"
        elif last_valid[row["chat_id"]] == row["version"]:
            row["disposition"] = "chat"
        else:
            row["disposition"] = "superseded"
    return rows


PATH_MAX_IDS = 64  # int_category_tree: ids shown in full in `path`


def category_tree(
    categories: list[dict[str, Any]], *, disabled_scope: str = "subtree"
) -> dict[str, dict[str, Any]]:
    """The newest snapshot as a tree, at any depth: {category_id: {...}}."""
    if not categories:
        return {}
    newest = max((r["_extract_date"], r["_batch_id"]) for r in categories)
    current: dict[str, dict[str, Any]] = {}
    for row in sorted(categories, key=lambda r: r["_line_number"]):
        if (row["_extract_date"], row["_batch_id"]) != newest or clean_text(row["id"]) is None:
            continue
        current[clean_text(row["id"])] = {  # a repeated id: the last line wins
            "parent_id": clean_text(row["parent_id"]),
            "disabled_raw": parse_bool(row["disabled"]),
        }

    tree = {}
    for category_id, node in current.items():
        chain = [category_id]  # the category, then its ancestors upward
        on_chain = {category_id}
        status = "ok"
        while True:
            parent = current[chain[-1]]["parent_id"]
            if parent is None:
                break
            if parent in on_chain:
                status = "cycle"
                break
            if parent not in current:
                status = "missing_parent"
                break
            chain.append(parent)
            on_chain.add(parent)
        flags = [current[c]["disabled_raw"] for c in chain]
        inherited = next((f for f in flags if f is not None), False)
        has_root = status in ("ok", "missing_parent")
        ids = list(reversed(chain))  # root first; a very deep path keeps the root and the last PATH_MAX_IDS
        path = "/".join(ids) if len(ids) <= PATH_MAX_IDS else f"{ids[0]}/…/" + "/".join(ids[-PATH_MAX_IDS:])
        tree[category_id] = {
            "category_id": category_id,
            "parent_id": node["parent_id"],
            "root_category_id": chain[-1] if has_root else None,
            "depth": len(chain) - 1 if has_root else None,
            "path": path if has_root else None,
            "disabled_raw": node["disabled_raw"],
            "tree_status": status,
            "is_disabled_inherited": inherited,
            "is_disabled_effective": inherited if disabled_scope == "self" else any(f is True for f in flags),
        }
    return tree


def _rank(values: list[tuple[Any, ...]]) -> list[int]:
    """1-based positions of `values` when sorted (each value a full, tie-free sort key)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    for position, index in enumerate(order, start=1):
        ranks[index] = position
    return ranks


def compute_reference(raw: RawData, *, disabled_scope: str = "subtree") -> Reference:
    versions = classify_versions(raw.chats)
    tree = category_tree(raw.categories, disabled_scope=disabled_scope)

    # fct_chats
    chats = []
    for row in versions:
        if row["disposition"] != "chat":
            continue
        category = clean_text(row["chat_category_id"])
        node = tree.get(category) if category is not None else None
        if category is None:
            status = "none"
        elif node is None:
            status = "unknown"
        elif node["is_disabled_effective"]:
            status = "disabled"
        else:
            status = "ok"
        created, resolved = row["created_utc"], row["resolved_utc"]
        created_local, resolved_local = to_local(created), to_local(resolved)
        chats.append(
            {
                "chat_id": row["chat_id"],
                "category_id": category if status == "ok" else None,
                "root_category_id": node["root_category_id"] if status == "ok" else None,
                "category_status": status,
                "is_customer_initiated": row["customer"],
                "created_at_utc": created,
                "created_at_local": created_local,
                "resolved_at_utc": resolved,
                "resolved_at_local": resolved_local,
                "is_resolved": resolved is not None,
                "resolution_hours": (
                    (resolved - created) / timedelta(microseconds=1) / 3_600_000_000 if resolved else None
                ),
                "created_date_local": created_local.date(),
                "resolved_date_local": resolved_local.date() if resolved_local else None,
            }
        )
    fct = pd.DataFrame(chats, columns=list(FCT_COLUMNS))

    dim = pd.DataFrame(
        [{k: v for k, v in node.items() if k in DIM_COLUMNS} for node in tree.values()],
        columns=list(DIM_COLUMNS),
    )

    # daily_resolutions: every local date from the first to the last resolution
    per_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for chat in chats:
        if chat["is_resolved"]:
            per_day[chat["resolved_date_local"]][0] += 1
            per_day[chat["resolved_date_local"]][1] += int(chat["is_customer_initiated"])
    days = []
    if per_day:
        day, last = min(per_day), max(per_day)
        while day <= last:
            total, customer = per_day.get(day, [0, 0])
            days.append(
                {"resolution_date": day, "chats_resolved": total, "customer_initiated_resolved": customer}
            )
            day += timedelta(days=1)
    daily = pd.DataFrame(days, columns=["resolution_date", "chats_resolved", "customer_initiated_resolved"])

    extremes = []
    if days:
        lowest = min(days, key=lambda d: (d["chats_resolved"], d["resolution_date"]))
        highest = min(days, key=lambda d: (-d["chats_resolved"], d["resolution_date"]))
        for name, d in (("lowest", lowest), ("highest", highest)):
            extremes.append(
                {
                    "extreme": name,
                    "resolution_date": d["resolution_date"],
                    "chats_resolved": d["chats_resolved"],
                }
            )
    extremes_df = pd.DataFrame(extremes, columns=["extreme", "resolution_date", "chats_resolved"])

    customer_per_day = [d["customer_initiated_resolved"] for d in days]
    median = pd.DataFrame(
        [
            {
                "median_per_day": float(statistics.median(customer_per_day)) if customer_per_day else None,
                "days_counted": len(customer_per_day),
            }
        ]
    )

    # category_rankings (ok chats only), per level
    figures: dict[tuple[str, str], dict[str, Any]] = {}
    for chat in chats:
        if chat["category_status"] != "ok":
            continue
        for level, category in (("leaf", chat["category_id"]), ("root", chat["root_category_id"])):
            if category is None:
                continue
            fig = figures.setdefault((level, category), {"customer": 0, "total": 0, "resolved": 0, "us": []})
            fig["total"] += 1
            fig["customer"] += int(chat["is_customer_initiated"])
            if chat["is_resolved"]:
                fig["resolved"] += 1
                fig["us"].append(
                    (chat["resolved_at_utc"] - chat["created_at_utc"]) // timedelta(microseconds=1)
                )
    ranking_rows = []
    for level in ("leaf", "root"):
        keys = sorted(k for k in figures if k[0] == level)
        stats = []
        for _, category in keys:
            fig = figures[(level, category)]
            avg_hours = sum(fig["us"]) / len(fig["us"]) / 3_600_000_000 if fig["us"] else None
            stats.append(
                {
                    "category_level": level,
                    "category_id": category,
                    "customer_initiated_chats": fig["customer"],
                    "total_chats": fig["total"],
                    "resolved_chats": fig["resolved"],
                    "resolution_rate_pct": fig["resolved"] * 100 / fig["total"],
                    "avg_resolution_hours": avg_hours,
                }
            )
        by_customer = _rank([(-s["customer_initiated_chats"], s["category_id"]) for s in stats])
        by_rate = _rank([(s["resolution_rate_pct"], s["category_id"]) for s in stats])
        resolved = [s for s in stats if s["avg_resolution_hours"] is not None]
        by_speed = dict(
            zip(
                (s["category_id"] for s in resolved),
                _rank([(s["avg_resolution_hours"], s["category_id"]) for s in resolved]),
                strict=True,
            )
        )
        for s, rc, rr in zip(stats, by_customer, by_rate, strict=True):
            ranking_rows.append(
                {
                    **s,
                    "rank_customer_chats": rc,
                    "rank_lowest_resolution_rate": rr,
                    "rank_fastest_resolution": by_speed.get(s["category_id"]),
                }
            )
    rankings = pd.DataFrame(ranking_rows, columns=list(RANKING_COLUMNS))

    def top_ten(rank: str) -> pd.DataFrame:
        columns = ["category_level", rank, *[c for c in RANKING_COLUMNS[:7] if c != "category_level"]]
        top = rankings[rankings[rank].notna() & (rankings[rank] <= 10)]
        return top[columns].reset_index(drop=True)

    # hourly_distribution: 7 x 24 local weekday/hour cells
    cells = Counter((c["created_at_local"].isoweekday(), c["created_at_local"].hour) for c in chats)
    weekdays: Counter[int] = Counter()
    if chats:
        day, last = min(c["created_date_local"] for c in chats), max(c["created_date_local"] for c in chats)
        while day <= last:
            weekdays[day.isoweekday()] += 1
            day += timedelta(days=1)
    hourly = pd.DataFrame(
        [
            {
                "day_of_week": dow,
                "day_name": DAY_NAMES[dow - 1],
                "hour_of_day": hour,
                "chats": cells[(dow, hour)],
                "avg_chats_per_week": cells[(dow, hour)] / weekdays[dow] if weekdays[dow] else None,
            }
            for dow in range(1, 8)
            for hour in range(24)
        ]
    )

    quarantined = pd.DataFrame(
        [
            {
                "_batch_id": r["_batch_id"],
                "_line_number": r["_line_number"],
                "chat_id": r["chat_id"],
                "reason": r["reasons"][0],
                "reasons": list(r["reasons"]),
            }
            for r in versions
            if r["disposition"] == "quarantined"
        ],
        columns=["_batch_id", "_line_number", "chat_id", "reason", "reasons"],
    )
    dispositions = Counter(r["disposition"] for r in versions)
    books = pd.DataFrame(
        [
            {
                "raw_rows": len(raw.chats),
                "valid_chats": dispositions["chat"],
                "quarantined_rows": dispositions["quarantined"],
                "collapsed_duplicates": dispositions["collapsed"],
                "superseded_versions": dispositions["superseded"],
                "unaccounted_rows": len(raw.chats) - sum(dispositions.values()),
            }
        ]
    )

    return Reference(
        fct_chats=fct,
        dim_categories=dim,
        daily_resolutions=daily,
        resolution_extremes=extremes_df,
        customer_resolutions_median=median,
        category_rankings=rankings,
        top_categories_customer_chats=top_ten("rank_customer_chats"),
        lowest_resolution_rate_categories=top_ten("rank_lowest_resolution_rate"),
        fastest_resolution_categories=top_ten("rank_fastest_resolution"),
        hourly_distribution=hourly,
        quarantined_chats=quarantined,
        chat_books=books,
        dispositions=dispositions,
    )


FCT_COLUMNS = (
    "chat_id",
    "category_id",
    "root_category_id",
    "category_status",
    "is_customer_initiated",
    "created_at_utc",
    "created_at_local",
    "resolved_at_utc",
    "resolved_at_local",
    "is_resolved",
    "resolution_hours",
    "created_date_local",
    "resolved_date_local",
)
DIM_COLUMNS = (
    "category_id",
    "parent_id",
    "root_category_id",
    "depth",
    "path",
    "disabled_raw",
    "is_disabled_effective",
)
RANKING_COLUMNS = (
    "category_level",
    "category_id",
    "customer_initiated_chats",
    "total_chats",
    "resolved_chats",
    "resolution_rate_pct",
    "avg_resolution_hours",
    "rank_customer_chats",
    "rank_lowest_resolution_rate",
    "rank_fastest_resolution",
)

# mart -> (schema, sort key); every mart is compared in full, sorted on its key
MARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fct_chats": ("analytics", ("chat_id",)),
    "dim_categories": ("analytics", ("category_id",)),
    "daily_resolutions": ("analytics", ("resolution_date",)),
    "resolution_extremes": ("analytics", ("extreme",)),
    "customer_resolutions_median": ("analytics", ()),
    "category_rankings": ("analytics", ("category_level", "category_id")),
    "top_categories_customer_chats": ("analytics", ("category_level", "rank_customer_chats")),
    "lowest_resolution_rate_categories": ("analytics", ("category_level", "rank_lowest_resolution_rate")),
    "fastest_resolution_categories": ("analytics", ("category_level", "rank_fastest_resolution")),
    "hourly_distribution": ("analytics", ("day_of_week", "hour_of_day")),
    "quarantined_chats": ("quality", ("_batch_id", "_line_number")),
    "chat_books": ("quality", ()),
}


# ----------------------------------------------------------------------------------------------------
# comparison


def load_marts(warehouse: str | Path) -> dict[str, pd.DataFrame]:
    marts = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for name, (schema, _) in MARTS.items():
            cursor = con.execute(f"select * from {schema}.{name}")
            names = [d[0] for d in cursor.description]
            marts[name] = pd.DataFrame(
                [dict(zip(names, r, strict=True)) for r in cursor.fetchall()], columns=names
            )
    return marts


def _normalise(frame: pd.DataFrame, columns: list[str], key: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Rows as tuples of plain Python values (None for missing), sorted on the key."""

    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if value is pd.NaT:
            return None
        if isinstance(value, pd.Timestamp):
            return value.to_pydatetime()
        if hasattr(value, "item") and not isinstance(value, (list, tuple, str)):
            return value.item()  # numpy scalars
        if isinstance(value, (list, tuple)):
            return tuple(value)
        return value

    rows = [tuple(plain(v) for v in row) for row in frame[columns].itertuples(index=False, name=None)]
    positions = [columns.index(k) for k in key]
    return sorted(rows, key=lambda r: tuple((r[p] is None, r[p]) for p in positions))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def compare_frames(
    name: str, actual: pd.DataFrame, expected: pd.DataFrame, key: tuple[str, ...]
) -> list[str]:
    """Differences between a built mart and its reference, as readable lines (empty when equal)."""
    problems = []
    columns = list(expected.columns)
    missing = [c for c in columns if c not in actual.columns]
    if missing:
        return [f"{name}: missing columns {missing}"]
    got, want = _normalise(actual, columns, key), _normalise(expected, columns, key)
    if len(got) != len(want):
        problems.append(f"{name}: {len(got)} rows, reference has {len(want)}")
    for g, w in zip(got, want, strict=False):
        if len(g) != len(w) or not all(_same(x, y) for x, y in zip(g, w, strict=True)):
            diffs = {c: (x, y) for c, x, y in zip(columns, g, w, strict=True) if not _same(x, y)}
            problems.append(f"{name}: row {dict(zip(key, g[: len(key)], strict=False)) or g} differs {diffs}")
            if len(problems) > 10:
                problems.append(f"{name}: ... (more differences)")
                break
    return problems


def assert_warehouse_matches_reference(
    warehouse: str | Path, *, disabled_scope: str = "subtree"
) -> Reference:
    """Compare every mart (and the quarantine and books) with the reference; raise on any difference."""
    reference = compute_reference(load_raw(warehouse), disabled_scope=disabled_scope)
    marts = load_marts(warehouse)
    problems = []
    for name, (_, key) in MARTS.items():
        problems += compare_frames(name, marts[name], getattr(reference, name), key)
    assert not problems, "warehouse differs from the Python reference:\n" + "\n".join(problems)
    return reference


# ----------------------------------------------------------------------------------------------------
# ground truth (generator output)


def dbt_figures(warehouse: str | Path) -> dict[str, Any]:
    """The dbt layer's books and status counts, shaped like `expected.dbt` of `landing/ground_truth.json`
    (written by `chat-analytics generate`), so an end-to-end test can compare the two directly."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        books = con.execute(
            "select raw_rows, valid_chats, quarantined_rows, collapsed_duplicates, superseded_versions "
            "from quality.chat_books"
        ).fetchone()
        reasons = dict(
            con.execute("select reason, count(*) from quality.quarantined_chats group by reason").fetchall()
        )
        statuses = dict(
            con.execute(
                "select category_status, count(*) from analytics.fct_chats group by category_status"
            ).fetchall()
        )
    raw_rows, valid, quarantined, collapsed, superseded = books
    return {
        "raw_rows": raw_rows,
        "collapsed_exact_duplicates": collapsed,
        "quarantined": {reason: reasons.get(reason, 0) for reason in REASON_ORDER},
        "quarantined_rows": quarantined,
        "superseded_versions": superseded,
        "valid_chats": valid,
        "category_status": {
            status: statuses.get(status, 0) for status in ("ok", "none", "unknown", "disabled")
        },
    }
