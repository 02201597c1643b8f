"""Vectorised chat sampling and the plan of which chat versions go into which daily file.

Arrivals: every UTC hour of the window gets an intensity from the Melbourne-local hour of day and weekday
it falls on (plus day-to-day noise); the number of chats per UTC hour is one multinomial draw, and the
second within the hour is uniform. Working on UTC hours and asking zoneinfo for each hour's local time
handles DST exactly: the repeated local hour at the end of DST gets two UTC hours (twice the chats, as
in reality) and the skipped local hour at its start gets none, so no local time is ever ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from chat_analytics.devtools.generator import knobs
from chat_analytics.devtools.generator.categories import CategoryTree
from chat_analytics.devtools.generator.csvtext import random_uuid_halves

#: resolved_at of a chat that is never resolved.
NEVER = np.iinfo(np.int64).max
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Window:
    """The UTC days covered by the extracts, `start` to `end` inclusive."""

    start: date
    end: date

    @property
    def first_day(self) -> int:
        """Days since 1970-01-01 of `start`."""
        return (self.start - _EPOCH).days

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def start_second(self) -> int:
        return self.first_day * knobs.SECONDS_PER_DAY

    @property
    def end_second(self) -> int:
        """First second after the window."""
        return (self.first_day + self.n_days) * knobs.SECONDS_PER_DAY

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)


@dataclass(frozen=True)
class ChatArrays:
    """One entry per chat, sorted by (created, id); category index `len(tree)` means no category."""

    id_high: np.ndarray  # uint64
    id_low: np.ndarray  # uint64
    category: np.ndarray  # int64
    created: np.ndarray  # int64 Unix seconds
    customer: np.ndarray  # bool
    resolved: np.ndarray  # int64 Unix seconds, NEVER when never resolved

    def __len__(self) -> int:
        return len(self.created)


@dataclass(frozen=True)
class FilePlan:
    """Rows of every daily file: `rows[bounds[d]:bounds[d + 1]]` are chat indices of day `d`, in order."""

    rows: np.ndarray  # int64 chat index per file row
    show_resolved: np.ndarray  # bool per file row
    bounds: np.ndarray  # int64, n_days + 1
    resolved_versions: int  # rows that re-emit an earlier chat once resolved

    def day_rows(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        part = slice(int(self.bounds[day]), int(self.bounds[day + 1]))
        return self.rows[part], self.show_resolved[part]

    def day_count(self, day: int) -> int:
        return int(self.bounds[day + 1] - self.bounds[day])


def hourly_intensity(window: Window, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Start second and relative chat intensity of every UTC hour in the window."""
    zone = ZoneInfo(knobs.LOCAL_TZ)
    hour_starts = np.arange(window.start_second, window.end_second, knobs.SECONDS_PER_HOUR, dtype=np.int64)
    local_hour = np.empty(len(hour_starts), dtype=np.int64)
    local_weekday = np.empty(len(hour_starts), dtype=np.int64)
    local_date = np.empty(len(hour_starts), dtype=np.int64)
    for i, second in enumerate(hour_starts.tolist()):  # one zoneinfo call per hour, not per chat
        local = datetime.fromtimestamp(second, tz=UTC).astimezone(zone)
        local_hour[i] = local.hour
        local_weekday[i] = local.weekday()
        local_date[i] = local.toordinal()
    dates, date_index = np.unique(local_date, return_inverse=True)
    day_noise = np.exp(rng.normal(0.0, knobs.DAY_NOISE_SIGMA, size=len(dates)))
    weights = (
        np.asarray(knobs.HOUR_PROFILE)[local_hour]
        * np.asarray(knobs.WEEKDAY_PROFILE)[local_weekday]
        * day_noise[date_index]
    )
    return hour_starts, weights


def category_weights(tree: CategoryTree, rng: np.random.Generator) -> np.ndarray:
    """Chat share per category index, plus a last slot for "no category"; sums to 1."""
    disabled = tree.effectively_disabled
    enabled = np.flatnonzero(~disabled)
    weights = np.zeros(len(tree) + 1)
    weights[-1] = knobs.NO_CATEGORY_SHARE
    weights[np.flatnonzero(disabled)] = _zipf_shares(rng, int(disabled.sum()), knobs.DISABLED_CATEGORY_SHARE)
    ranked = enabled[rng.permutation(len(enabled))]
    rest = 1.0 - knobs.NO_CATEGORY_SHARE - knobs.DISABLED_CATEGORY_SHARE - knobs.BUSIEST_CATEGORY_SHARE
    weights[ranked[0]] = knobs.BUSIEST_CATEGORY_SHARE
    weights[ranked[1:]] = _zipf_shares(rng, len(ranked) - 1, rest)
    return weights / weights.sum()


def _zipf_shares(rng: np.random.Generator, n: int, total: float) -> np.ndarray:
    """`n` heavy-tailed shares in random order, summing to `total`."""
    if n == 0:
        return np.zeros(0)
    shares = 1.0 / np.arange(1, n + 1) ** knobs.POPULARITY_ZIPF
    return (shares / shares.sum() * total)[rng.permutation(n)]


def resolution_parameters(weights: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-category resolution rate (chat-weighted mean fixed) and median resolution seconds."""
    low, high = knobs.RESOLUTION_RATE_BOUNDS
    target = 1.0 - knobs.UNRESOLVED_SHARE
    rates = rng.normal(target, knobs.RESOLUTION_RATE_SPREAD, size=len(weights))
    for _ in range(20):  # shift to the target chat-weighted mean, respecting the bounds
        rates = np.clip(rates + target - float(weights @ rates), low, high)
    low_median, high_median = knobs.RESOLUTION_MEDIAN_BOUNDS
    medians = np.exp(rng.uniform(np.log(low_median), np.log(high_median), size=len(weights)))
    return rates, medians


def sample_chats(n: int, window: Window, tree: CategoryTree, rng: np.random.Generator) -> ChatArrays:
    """Draw `n` chats, sorted by (created, id)."""
    hour_starts, intensity = hourly_intensity(window, rng)
    per_hour = rng.multinomial(n, intensity / intensity.sum())
    created = np.repeat(hour_starts, per_hour) + rng.integers(0, knobs.SECONDS_PER_HOUR, size=n)
    id_high, id_low = random_uuid_halves(rng, n)
    weights = category_weights(tree, rng)
    category = rng.choice(len(weights), size=n, p=weights).astype(np.int64)
    customer = rng.random(n) < knobs.CUSTOMER_INITIATED_SHARE
    rates, medians = resolution_parameters(weights, rng)
    is_resolved = rng.random(n) < rates[category]
    delay = medians[category] * np.exp(knobs.RESOLUTION_SIGMA * rng.standard_normal(n))
    delay = np.maximum(np.rint(delay), knobs.MIN_RESOLUTION_SECONDS).astype(np.int64)
    resolved = np.where(is_resolved, created + delay, NEVER)
    order = _created_then_id_order(created, id_high, id_low)
    return ChatArrays(
        id_high=id_high[order],
        id_low=id_low[order],
        category=category[order],
        created=created[order],
        customer=customer[order],
        resolved=resolved[order],
    )


def _created_then_id_order(created: np.ndarray, id_high: np.ndarray, id_low: np.ndarray) -> np.ndarray:
    """Permutation sorting by (created, id); a single-key sort, much faster than `np.lexsort` here."""
    n = len(created)
    by_high = np.argsort(id_high)
    span = int(created.max() - created.min()) + 1 if n else 1
    if n < 2 or bool((np.diff(id_high[by_high]) == 0).any()) or span > np.iinfo(np.int64).max // max(n, 1):
        return np.lexsort((id_low, id_high, created))  # high halves tie (practically never) or key overflow
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[by_high] = np.arange(n, dtype=np.int64)
    return np.argsort((created - created.min()) * n + id_rank)  # keys are unique: the order is total


def plan_files(chats: ChatArrays, window: Window) -> FilePlan:
    """Which chat versions each daily file holds, in (created, id) order.

    Day D holds every chat created on D (resolved_at shown only when resolved on D too) and, before
    them (they were created earlier), a resolved version of every earlier chat resolved on D.
    Chats resolved after the window stay open.
    """
    created_day = chats.created // knobs.SECONDS_PER_DAY - window.first_day
    resolved_day = np.where(
        chats.resolved == NEVER, window.n_days, chats.resolved // knobs.SECONDS_PER_DAY - window.first_day
    )
    later = np.flatnonzero((resolved_day > created_day) & (resolved_day < window.n_days))
    file_day = np.concatenate([resolved_day[later], created_day])
    rows = np.concatenate([later, np.arange(len(chats), dtype=np.int64)])
    show = np.concatenate([np.ones(len(later), dtype=bool), resolved_day == created_day])
    order = np.argsort(file_day, kind="stable")
    counts = np.bincount(file_day, minlength=window.n_days)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return FilePlan(rows=rows[order], show_resolved=show[order], bounds=bounds, resolved_versions=len(later))
