"""Known defects for `--dirty`: every injected line carries exactly one defect and a fresh id.

Each defect class gets a known number of lines (see `class_counts`); each line records its expected fate
(`Outcome`) following docs/data-contract.md, so the ground truth is computed from what was generated,
never by re-reading the files. File-level quirks (a UTF-8 BOM, CRLF line ends) go to two different files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np

from chat_analytics.dbt_vars import quarantine_reasons
from chat_analytics.devtools.generator import knobs
from chat_analytics.devtools.generator.categories import CategoryTree
from chat_analytics.devtools.generator.chats import ChatArrays, FilePlan, Window
from chat_analytics.devtools.generator.csvtext import (
    TIMESTAMP_FORMAT,
    random_uuid_halves,
    timestamp_text,
    uuid_text,
)

# Defect classes, in generation order (the order also sets each class's small count offset).
EXACT_DUPLICATE = "exact_duplicate"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
RESOLVED_BEFORE_CREATED = "resolved_before_created"
UNKNOWN_CATEGORY = "unknown_category"
INVALID_CREATED_AT = "invalid_created_at"
INVALID_RESOLVED_AT = "invalid_resolved_at"
ISO8601_TIMESTAMP = "iso8601_timestamp"
NULL_CATEGORY = "null_category"
NULL_RESOLVED_AT = "null_resolved_at"
INVALID_IS_CUSTOMER_INITIATED = "invalid_is_customer_initiated"
MISSING_ID = "missing_id"
SHORT_ROW = "short_row"
LONG_ROW = "long_row"
BLANK_LINE = "blank_line"
QUOTED_COMMA_CATEGORY = "quoted_comma_category"
ALTERNATIVE_BOOLEAN = "alternative_boolean"
LINE_CLASSES = (
    EXACT_DUPLICATE,
    CONFLICTING_DUPLICATE,
    RESOLVED_BEFORE_CREATED,
    UNKNOWN_CATEGORY,
    INVALID_CREATED_AT,
    INVALID_RESOLVED_AT,
    ISO8601_TIMESTAMP,
    NULL_CATEGORY,
    NULL_RESOLVED_AT,
    INVALID_IS_CUSTOMER_INITIATED,
    MISSING_ID,
    SHORT_ROW,
    LONG_ROW,
    BLANK_LINE,
    QUOTED_COMMA_CATEGORY,
    ALTERNATIVE_BOOLEAN,
)
FILE_CLASSES = ("utf8_bom", "crlf_line_ends")

# Quarantine reason codes of the dbt layer, in their order of precedence (dbt var `quarantine_reasons`).
REASONS = quarantine_reasons()
STATUSES = ("ok", "none", "unknown", "disabled")

GARBAGE_TIMESTAMPS = (
    "not-a-date",
    "2000-02-30 10:00:00",
    "31/01/2000 10:00:00",
    "2000-01-05 10:61:00",
    "0000-00-00 00:00:00",
)
INVALID_FLAGS = ("maybe", "2", "unknown", "N/A", "customer")
NULL_TEXTS = ("null", "NULL")
_ID_BATCH = 2_048
_PLUS_TEN = timezone(timedelta(hours=10))
#: Valid alternative spellings, by truth value.
ALTERNATIVE_FLAGS = {True: ("t", "1", "yes", "TRUE", "Yes", "T"), False: ("f", "0", "no", "FALSE", "No", "F")}


@dataclass(frozen=True)
class Outcome:
    """Expected fate of one injected physical line."""

    blank: bool = False  # a blank line: not a data line
    rejected: bool = False  # rejected by the CSV reader at ingest
    collapsed: bool = False  # an exact duplicate of an earlier row
    reason: str | None = None  # quarantine reason (first that applies)
    status: str | None = None  # category_status of the valid chat this line yields


@dataclass(frozen=True)
class DirtyLine:
    """One injected line, inserted before clean row `position` of day `day`'s file."""

    defect: str
    day: int
    position: int
    text: str  # without line end; "" for a blank line
    chat_id: str  # "" when the line has no id
    outcome: Outcome


@dataclass(frozen=True)
class DirtyPlan:
    """Everything `--dirty` injects."""

    lines: tuple[DirtyLine, ...] = ()
    #: Per class: rows (duplicated rows and pairs for the two duplicate classes) or files; all 0 when clean.
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*LINE_CLASSES, *FILE_CLASSES), 0))
    bom_day: int | None = None
    crlf_day: int | None = None


@dataclass
class _Row:
    """Field texts of one dirty row before its defect is applied."""

    id: str
    category: str
    created: str
    flag: str
    resolved: str
    customer: bool
    created_second: int

    def line(self) -> str:
        return ",".join((self.id, self.category, self.created, self.flag, self.resolved))


class _Injector:
    """Draws fresh rows and turns them into defect lines."""

    def __init__(
        self, rng: np.random.Generator, tree: CategoryTree, chats: ChatArrays, plan: FilePlan, window: Window
    ) -> None:
        self.rng = rng
        self.tree = tree
        self.plan = plan
        self.window = window
        self.ok_categories = np.flatnonzero(~tree.effectively_disabled)
        self.known_ids = set(tree.ids)
        self.chat_highs = chats.id_high
        self.used: set[str] = set()
        self.pool: list[str] = []

    def fresh_id(self) -> str:
        """A uuid5-like id used by no chat, category or earlier dirty row."""
        while True:
            if not self.pool:
                self._refill_pool()
            text = self.pool.pop()
            if text not in self.used and text not in self.known_ids:
                self.used.add(text)
                return text

    def _refill_pool(self) -> None:
        """Draw a batch of candidate ids; one vectorised check against all chat ids (by high half)."""
        high, low = random_uuid_halves(self.rng, _ID_BATCH)
        fresh = ~_found_in(high, self.chat_highs)
        texts = [uuid_text(h, lo) for h, lo in zip(high[fresh].tolist(), low[fresh].tolist(), strict=True)]
        self.pool = texts[::-1]  # pop() from the end keeps draw order

    def pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def day(self) -> int:
        return int(self.rng.integers(self.window.n_days))

    def position(self, day: int) -> int:
        return int(self.rng.integers(self.plan.day_count(day) + 1))

    def row(self, day: int) -> _Row:
        """A valid row created on `day`, in an ok category, resolved the same day or open."""
        start = (self.window.first_day + day) * knobs.SECONDS_PER_DAY
        created = start + int(self.rng.integers(knobs.SECONDS_PER_DAY))
        room = start + knobs.SECONDS_PER_DAY - 1 - created
        resolved = ""
        if self.rng.random() < 1.0 - knobs.UNRESOLVED_SHARE and room > knobs.MIN_RESOLUTION_SECONDS:
            resolved = timestamp_text(
                created + int(self.rng.integers(knobs.MIN_RESOLUTION_SECONDS, room + 1))
            )
        customer = bool(self.rng.random() < knobs.CUSTOMER_INITIATED_SHARE)
        category = self.tree.ids[int(self.rng.choice(self.ok_categories))]
        return _Row(
            id=self.fresh_id(),
            category=category,
            created=timestamp_text(created),
            flag="true" if customer else "false",
            resolved=resolved,
            customer=customer,
            created_second=created,
        )

    def unknown_category(self) -> str:
        while True:
            high, low = random_uuid_halves(self.rng, 1)
            text = uuid_text(int(high[0]), int(low[0]))
            if text not in self.known_ids:
                return text

    def line(self, defect: str, day: int, row: _Row, outcome: Outcome, text: str | None = None) -> DirtyLine:
        return DirtyLine(
            defect=defect,
            day=day,
            position=self.position(day),
            text=row.line() if text is None else text,
            chat_id=row.id,
            outcome=outcome,
        )


_OK = Outcome(status="ok")


def _found_in(candidates: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """`np.isin(candidates, universe)` for a few candidates and a huge universe, in one binary search pass."""
    ordered = np.sort(candidates)
    slot = np.minimum(np.searchsorted(ordered, universe), len(ordered) - 1)
    return np.isin(candidates, universe[ordered[slot] == universe])


def _exact_duplicate(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    return [
        inj.line(EXACT_DUPLICATE, day, row, _OK),
        inj.line(EXACT_DUPLICATE, day, row, Outcome(collapsed=True)),
    ]


def _conflicting_duplicate(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    other = replace(row, flag="false" if row.customer else "true")
    quarantined = Outcome(reason="conflicting_duplicate")
    return [
        inj.line(CONFLICTING_DUPLICATE, day, row, quarantined),
        inj.line(CONFLICTING_DUPLICATE, day, other, quarantined),
    ]


def _resolved_before_created(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.resolved = timestamp_text(row.created_second - int(inj.rng.integers(60, 7_200)))
    return [inj.line(RESOLVED_BEFORE_CREATED, day, row, Outcome(reason="resolved_before_created"))]


def _unknown_category(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.category = inj.unknown_category()
    return [inj.line(UNKNOWN_CATEGORY, day, row, Outcome(status="unknown"))]


def _invalid_created_at(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.created, row.resolved = inj.pick(GARBAGE_TIMESTAMPS), ""
    return [inj.line(INVALID_CREATED_AT, day, row, Outcome(reason="invalid_created_at"))]


def _invalid_resolved_at(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.resolved = inj.pick(GARBAGE_TIMESTAMPS)
    return [inj.line(INVALID_RESOLVED_AT, day, row, Outcome(reason="invalid_resolved_at"))]


def _iso_form(text: str, form: int) -> str:
    """`YYYY-MM-DD HH:MM:SS` (UTC) as valid ISO 8601: `T` and `Z`, with a fraction, or at +10:00."""
    if not text:
        return text
    if form == 0:
        return text.replace(" ", "T") + "Z"
    if form == 1:
        return text.replace(" ", "T") + ".250Z"
    moment = datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return moment.astimezone(_PLUS_TEN).isoformat()


def _iso8601_timestamp(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    form = int(inj.rng.integers(3))
    row.created, row.resolved = _iso_form(row.created, form), _iso_form(row.resolved, form)
    return [inj.line(ISO8601_TIMESTAMP, day, row, _OK)]


def _null_category(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.category = inj.pick(NULL_TEXTS)
    return [inj.line(NULL_CATEGORY, day, row, Outcome(status="none"))]


def _null_resolved_at(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.resolved = inj.pick(NULL_TEXTS)
    return [inj.line(NULL_RESOLVED_AT, day, row, _OK)]


def _invalid_flag(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.flag = inj.pick(INVALID_FLAGS)
    return [
        inj.line(INVALID_IS_CUSTOMER_INITIATED, day, row, Outcome(reason="invalid_is_customer_initiated"))
    ]


def _missing_id(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    text = "," + row.line().split(",", 1)[1]
    line = inj.line(MISSING_ID, day, row, Outcome(reason="missing_id"), text=text)
    return [replace(line, chat_id="")]


def _short_row(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    keep = 4 - int(inj.rng.integers(2))  # 4 or 3 of the 5 fields
    text = ",".join(row.line().split(",")[:keep])
    return [inj.line(SHORT_ROW, day, row, Outcome(rejected=True), text=text)]


def _long_row(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    text = row.line() + "," + inj.pick(("extra", "42", "n/a"))
    return [inj.line(LONG_ROW, day, row, Outcome(rejected=True), text=text)]


def _blank_line(inj: _Injector, day: int) -> list[DirtyLine]:
    return [DirtyLine(BLANK_LINE, day, inj.position(day), "", "", Outcome(blank=True))]


def _quoted_comma_category(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    first, second = (inj.tree.ids[int(i)] for i in inj.rng.choice(inj.ok_categories, size=2, replace=False))
    row.category = f'"{first},{second}"'  # one quoted field, not two: an unknown category
    return [inj.line(QUOTED_COMMA_CATEGORY, day, row, Outcome(status="unknown"))]


def _alternative_boolean(inj: _Injector, day: int) -> list[DirtyLine]:
    row = inj.row(day)
    row.flag = inj.pick(ALTERNATIVE_FLAGS[row.customer])
    return [inj.line(ALTERNATIVE_BOOLEAN, day, row, _OK)]


_MAKERS: dict[str, Callable[[_Injector, int], list[DirtyLine]]] = {
    EXACT_DUPLICATE: _exact_duplicate,
    CONFLICTING_DUPLICATE: _conflicting_duplicate,
    RESOLVED_BEFORE_CREATED: _resolved_before_created,
    UNKNOWN_CATEGORY: _unknown_category,
    INVALID_CREATED_AT: _invalid_created_at,
    INVALID_RESOLVED_AT: _invalid_resolved_at,
    ISO8601_TIMESTAMP: _iso8601_timestamp,
    NULL_CATEGORY: _null_category,
    NULL_RESOLVED_AT: _null_resolved_at,
    INVALID_IS_CUSTOMER_INITIATED: _invalid_flag,
    MISSING_ID: _missing_id,
    SHORT_ROW: _short_row,
    LONG_ROW: _long_row,
    BLANK_LINE: _blank_line,
    QUOTED_COMMA_CATEGORY: _quoted_comma_category,
    ALTERNATIVE_BOOLEAN: _alternative_boolean,
}


def class_counts(chats: int) -> dict[str, int]:
    """Injections per line class: chats * DIRTY_RATE within DIRTY_BOUNDS, plus a per-class offset 0-3.

    The offsets make the counts differ between classes so a mix-up cannot pass by accident. For
    `exact_duplicate` and `conflicting_duplicate` the count is of duplicated rows and of pairs.
    """
    low, high = knobs.DIRTY_BOUNDS
    base = min(max(round(chats * knobs.DIRTY_RATE), low), high)
    return {name: base + index % 4 for index, name in enumerate(LINE_CLASSES)}


def plan_dirty(
    rng: np.random.Generator, tree: CategoryTree, chats: ChatArrays, plan: FilePlan, window: Window
) -> DirtyPlan:
    """Draw every defect line and pick the BOM and CRLF files (two different days)."""
    inj = _Injector(rng, tree, chats, plan, window)
    counts = class_counts(len(chats))
    lines: list[DirtyLine] = []
    for name in LINE_CLASSES:
        for _ in range(counts[name]):
            lines.extend(_MAKERS[name](inj, inj.day()))
    bom_day, crlf_day = (int(day) for day in rng.choice(window.n_days, size=2, replace=False))
    return DirtyPlan(
        lines=tuple(lines),
        counts={**counts, "utf8_bom": 1, "crlf_line_ends": 1},
        bom_day=bom_day,
        crlf_day=crlf_day,
    )
