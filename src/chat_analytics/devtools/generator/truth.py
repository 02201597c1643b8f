"""The ground truth: what was generated and what ingest and the dbt layer must conclude from it.

Computed from the generated arrays and the dirty plan (never by re-reading the files), following
docs/data-contract.md: data lines are non-blank lines after the header, short and long rows are rejected
by the CSV reader, exact duplicates collapse, conflicting pairs quarantine both rows, every other injected
invalid row is quarantined with its one reason, and earlier versions of a chat are superseded.

Layout of `landing/ground_truth.json` (written by every run; a clean run injects nothing):

- `settings`, `window`: how it was generated; `clean_chats`: chats drawn before any injection.
- `categories`: facts about the snapshot (depth counts, `disabled` values, the `null`-parent root, ...).
- `injected.<class>`: `count` (rows; duplicated rows or pairs for the duplicate classes; files for
  `utf8_bom` / `crlf_line_ends`), `lines` (physical lines written), `files` and `ids` involved.
- `expected.ingest.files.<file name>`: `data_lines`, `rows_loaded`, `rows_rejected`, `blank_lines`, ...;
  `expected.ingest.chats` / `.categories`: the same summed over files.
- `expected.dbt`: `raw_rows`, `collapsed_exact_duplicates`, `quarantined.<reason>` (primary reason),
  `quarantined_rows`, `superseded_versions`, `valid_chats`, `category_status.<ok|none|unknown|disabled>`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from chat_analytics.devtools.generator.categories import CategoryTree
from chat_analytics.devtools.generator.chats import ChatArrays, FilePlan, Window
from chat_analytics.devtools.generator.dirty import REASONS, STATUSES, DirtyLine, DirtyPlan

GROUND_TRUTH_VERSION = 1
BOOKS = "raw_rows = valid_chats + quarantined_rows + collapsed_exact_duplicates + superseded_versions"


@dataclass(frozen=True)
class Names:
    """File names of one generated landing."""

    categories: str
    chats: tuple[str, ...]  # by day index


def file_outcomes(plan: FilePlan, dirty: DirtyPlan, names: Names) -> dict[str, dict[str, Any]]:
    """Expected manifest figures per chats file."""
    by_day: dict[int, list[DirtyLine]] = {}
    for line in dirty.lines:
        by_day.setdefault(line.day, []).append(line)
    out: dict[str, dict[str, Any]] = {}
    for day, name in enumerate(names.chats):
        injected = by_day.get(day, [])
        blank = sum(line.outcome.blank for line in injected)
        rejected = sum(line.outcome.rejected for line in injected)
        data_lines = plan.day_count(day) + len(injected) - blank
        out[name] = {
            "entity": "chats",
            "data_lines": data_lines,
            "rows_loaded": data_lines - rejected,
            "rows_rejected": rejected,
            "blank_lines": blank,
            "injected_lines": len(injected),
            "utf8_bom": day == dirty.bom_day,
            "crlf_line_ends": day == dirty.crlf_day,
        }
    return out


def _status_codes(tree: CategoryTree) -> np.ndarray:
    """category_status per category index (+ the no-category slot) as an index into STATUSES."""
    codes = np.where(tree.effectively_disabled, STATUSES.index("disabled"), STATUSES.index("ok"))
    return np.append(codes, STATUSES.index("none"))


def dbt_outcomes(
    tree: CategoryTree, chats: ChatArrays, plan: FilePlan, dirty: DirtyPlan, raw_rows: int
) -> dict[str, Any]:
    """Expected books of the dbt layer for the chats source."""
    loaded = [line for line in dirty.lines if not (line.outcome.blank or line.outcome.rejected)]
    reasons = Counter(line.outcome.reason for line in loaded if line.outcome.reason)
    statuses = Counter(line.outcome.status for line in loaded if line.outcome.status)
    clean = np.bincount(_status_codes(tree)[chats.category], minlength=len(STATUSES))
    category_status = {status: int(clean[i]) + statuses[status] for i, status in enumerate(STATUSES)}
    collapsed = sum(line.outcome.collapsed for line in loaded)
    quarantined = {reason: reasons[reason] for reason in REASONS}
    valid_chats = len(chats) + sum(statuses.values())
    superseded = plan.resolved_versions
    books = valid_chats + sum(quarantined.values()) + collapsed + superseded
    if books != raw_rows:  # an internal consistency check of the generator itself
        raise AssertionError(f"ground truth does not balance: {books} != {raw_rows}")
    return {
        "raw_rows": raw_rows,
        "collapsed_exact_duplicates": collapsed,
        "quarantined": quarantined,
        "quarantined_rows": sum(quarantined.values()),
        "superseded_versions": superseded,
        "valid_chats": valid_chats,
        "category_status": category_status,
        "books": BOOKS,
    }


def injected_detail(dirty: DirtyPlan, names: Names) -> dict[str, dict[str, Any]]:
    """Per defect class: count, physical lines, files and the chat ids involved."""
    detail: dict[str, dict[str, Any]] = {}
    for name, count in dirty.counts.items():
        lines = [line for line in dirty.lines if line.defect == name]
        detail[name] = {
            "count": count,
            "lines": len(lines),
            "files": sorted({names.chats[line.day] for line in lines}),
            "ids": sorted({line.chat_id for line in lines if line.chat_id}),
        }
    if dirty.bom_day is not None:
        detail["utf8_bom"]["files"] = [names.chats[dirty.bom_day]]
    if dirty.crlf_day is not None:
        detail["crlf_line_ends"]["files"] = [names.chats[dirty.crlf_day]]
    return detail


def ground_truth(
    *,
    settings: dict[str, Any],
    tree: CategoryTree,
    chats: ChatArrays,
    plan: FilePlan,
    dirty: DirtyPlan,
    window: Window,
    names: Names,
) -> dict[str, Any]:
    """The whole ground-truth document (deterministic: no clocks, sorted where order is free)."""
    files = file_outcomes(plan, dirty, names)
    totals = {
        key: sum(entry[key] for entry in files.values())
        for key in ("data_lines", "rows_loaded", "rows_rejected", "blank_lines")
    }
    category_file = {
        "entity": "categories",
        "data_lines": len(tree),
        "rows_loaded": len(tree),
        "rows_rejected": 0,
        "blank_lines": 0,
        "injected_lines": 0,
        "utf8_bom": False,
        "crlf_line_ends": False,
    }
    return {
        "version": GROUND_TRUTH_VERSION,
        "settings": settings,
        "window": {"start": window.start.isoformat(), "end": window.end.isoformat(), "days": window.n_days},
        "categories": tree.summary(),
        "clean_chats": len(chats),
        "injected": injected_detail(dirty, names),
        "expected": {
            "ingest": {
                "files": {names.categories: category_file, **files},
                "chats": {"files": len(files), **totals},
                "categories": {"files": 1, **{k: category_file[k] for k in totals}},
            },
            "dbt": dbt_outcomes(tree, chats, plan, dirty, totals["rows_loaded"]),
        },
    }
