"""The sample feed: drop the next day's synthetic chats extract into landing, like a daily source system.

Used by the `chat_analytics_sample_feed` DAG so a new user can watch a daily cycle. The next day is the
day after the newest `landing/chats/chats_YYYY-MM-DD.csv[.gz]` (or `chat-analytics generate`'s default
start day when landing has none). The extract is made by `chat_analytics.devtools.generate.generate` and fits
the home's existing sample data (from `landing/ground_truth.json`, written by `generate`):

- about as many chats as an average day of that data;
- the same category tree: chats point at the categories of the existing snapshot (generated with the
  data's seed). The day gets its own seed so its chats are new (a seed always draws the same chat ids),
  and its category ids are mapped, by tree position, onto the existing tree's;
- written beside landing and moved in with one rename, so an ingest running at the same moment sees
  the whole file or none of it.

When landing has no categories snapshot yet, the generated one is dropped too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from chat_analytics.devtools.generate import generate
from chat_analytics.devtools.generator.categories import CATEGORY_NAMESPACE
from chat_analytics.devtools.generator.knobs import DEPTH_COUNTS
from chat_analytics.paths import Home
from chat_analytics.pipeline.landing import FILE_NAME, GROUND_TRUTH_NAME

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
DEFAULT_START = date(2000, 1, 1)  # `chat-analytics generate --start` default
DEFAULT_CHATS_PER_DAY = 400
SEED_STRIDE = 1_000_003
WORK_DIR = ".sample_feed"


@dataclass(frozen=True)
class FeedResult:
    day: date
    chats_file: Path
    categories_file: Path | None
    chats: int


def newest_extract_date(home: Home, entity: str = "chats") -> date | None:
    """The latest extract date among the entity's landing files (names that follow the contract)."""
    folder = home.landing_chats if entity == "chats" else home.landing_categories
    days = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = FILE_NAME.match(path.name)
            if match and match["entity"] == entity:
                try:
                    days.append(date.fromisoformat(match["date"]))
                except ValueError:
                    continue
    return max(days, default=None)


def _settings(home: Home) -> dict[str, object]:
    try:
        document = json.loads((home.landing / GROUND_TRUTH_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    settings = document.get("settings") if isinstance(document, dict) else None
    return settings if isinstance(settings, dict) else {}


def _chats_per_day(settings: dict[str, object]) -> int:
    try:
        chats = int(settings["chats"])  # type: ignore[call-overload]
        start, end = date.fromisoformat(str(settings["start"])), date.fromisoformat(str(settings["end"]))
        days = (end - start).days + 1
    except (KeyError, TypeError, ValueError):
        return DEFAULT_CHATS_PER_DAY
    return max(1, round(chats / max(days, 1)))


def _category_ids(seed: int) -> list[str]:
    return [str(uuid.uuid5(CATEGORY_NAMESPACE, f"{seed}/{index}")) for index in range(sum(DEPTH_COUNTS))]


def _remap_categories(text: str, mapping: dict[str, str]) -> str:
    """The chats CSV with every chat_category_id replaced through `mapping` (unknown values kept)."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    column = rows[0].index("chat_category_id")
    for row in rows[1:]:
        if len(row) > column:
            row[column] = mapping.get(row[column], row[column])
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def drop_next_extract(home: Home, *, chats: int | None = None) -> FeedResult:
    """Generate the next day's chats extract and move it into landing; returns what landed."""
    home.ensure_landing()
    newest = newest_extract_date(home)
    day = newest + timedelta(days=1) if newest else DEFAULT_START
    settings = _settings(home)
    base_seed = int(settings.get("seed", DEFAULT_SEED))  # type: ignore[call-overload]
    day_seed = base_seed * SEED_STRIDE + day.toordinal()
    count = chats or _chats_per_day(settings)

    work = home.root / WORK_DIR / day.isoformat()
    shutil.rmtree(work, ignore_errors=True)
    try:
        summary = generate(Home(work), chats=count, start=day, end=day, seed=day_seed, dirty=False)
        generated_categories, generated_chats = summary.files[0], summary.files[1]
        mapping = dict(zip(_category_ids(day_seed), _category_ids(base_seed), strict=True))
        staged = generated_chats.with_name(f".{generated_chats.name}.staged")
        staged.write_text(_remap_categories(generated_chats.read_text(encoding="ascii"), mapping))
        target = home.landing_chats / generated_chats.name
        categories_target: Path | None = None
        if newest_extract_date(home, "categories") is None:
            # a first snapshot: the tree of the base seed, which the mapped chats point at
            base = generate(Home(work / "base"), chats=1, start=day, end=day, seed=base_seed, dirty=False)
            categories_target = home.landing_categories / generated_categories.name
            base.files[0].replace(categories_target)
        staged.replace(target)
    finally:
        shutil.rmtree(home.root / WORK_DIR, ignore_errors=True)
    log.info("dropped %s (%d chats created %s UTC) into %s", target.name, count, day, home.landing_chats)
    return FeedResult(day=day, chats_file=target, categories_file=categories_target, chats=count)
