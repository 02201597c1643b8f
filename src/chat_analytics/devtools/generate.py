"""`chat-analytics generate`: realistic, seeded sample extracts written into landing.

Writes a categories snapshot `categories_<start>.csv`, one chats extract per UTC day `chats_<day>.csv`
(see docs/data-contract.md) and `landing/ground_truth.json` with the expected outcomes of ingest and the
dbt layer. Same seed, same bytes. With `dirty`, known numbers of defects of every class are injected and
recorded in the ground truth. Everything is vectorised with numpy (10 million chats in well under a
minute); the stages live in `chat_analytics.devtools.generator`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from chat_analytics.devtools.generator import csvtext
from chat_analytics.devtools.generator.categories import CategoryTree, build_categories
from chat_analytics.devtools.generator.chats import ChatArrays, FilePlan, Window, plan_files, sample_chats
from chat_analytics.devtools.generator.dirty import DirtyLine, DirtyPlan, plan_dirty
from chat_analytics.devtools.generator.truth import Names, ground_truth
from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.landing import GROUND_TRUTH_NAME

log = logging.getLogger(__name__)

UTF8_BOM = b"\xef\xbb\xbf"
#: Independent random streams per stage: changing one stage (or `dirty`) leaves the others' draws alone.
STREAM_CATEGORIES, STREAM_CHATS, STREAM_DIRTY = 1, 2, 3
#: Files are formatted and written by this many threads (numpy releases the GIL for the heavy parts).
WRITER_THREADS = 2
#: Runs with at least this many rows log writing progress at INFO (about every 10 % of the days).
PROGRESS_ROWS = 1_000_000


@dataclass(frozen=True)
class GenerateSummary:
    """What `generate` wrote."""

    landing: Path
    files: tuple[Path, ...]  # the categories snapshot first, then the chats extracts by day
    chats: int  # distinct clean chats generated
    chat_rows: int  # data lines over all chats files (including injected ones)
    category_rows: int
    injected_lines: int  # physical lines injected by `dirty` (0 when clean)
    ground_truth: Path
    seconds: float


@dataclass(frozen=True)
class _Dataset:
    """Everything generated, ready to be written."""

    window: Window
    tree: CategoryTree
    chats: ChatArrays
    plan: FilePlan
    dirty: DirtyPlan
    names: Names


def generate(home: Home, *, chats: int, start: date, end: date, seed: int, dirty: bool) -> GenerateSummary:
    """Write sample extracts for `chats` chats created from `start` to `end` (UTC days, inclusive)."""
    _validate(chats=chats, start=start, end=end, seed=seed, dirty=dirty)
    began = time.perf_counter()
    home.ensure_landing()
    data = _build(chats=chats, window=Window(start, end), seed=seed, dirty=dirty)
    _warn_about_other_files(home, data.names)
    files = _write_files(home, data)
    truth_path, truth = _write_ground_truth(home, data, seed=seed, dirty=dirty)
    seconds = time.perf_counter() - began
    summary = GenerateSummary(
        landing=home.landing,
        files=files,
        chats=len(data.chats),
        chat_rows=int(truth["expected"]["ingest"]["chats"]["data_lines"]),
        category_rows=len(data.tree),
        injected_lines=len(data.dirty.lines),
        ground_truth=truth_path,
        seconds=seconds,
    )
    log.info(
        "generated %s chats in %d chats files (%s rows), %d categories%s into %s in %.1f s; ground truth: %s",
        f"{summary.chats:,}",
        len(files) - 1,
        f"{summary.chat_rows:,}",
        summary.category_rows,
        f", {summary.injected_lines} injected defect lines" if dirty else "",
        home.landing,
        seconds,
        truth_path,
    )
    return summary


def _validate(*, chats: int, start: date, end: date, seed: int, dirty: bool) -> None:
    if chats < 1:
        raise UserError(f"--chats must be at least 1 (got {chats})")
    if end < start:
        raise UserError(f"--end {end} is before --start {start}")
    if end == date.max:
        raise UserError(f"--end {end} is too late: the last day must be before {date.max}")
    if seed < 0:
        raise UserError(f"--seed must be zero or positive (got {seed})")
    if dirty and end == start:
        raise UserError("--dirty needs at least two days (a BOM and CRLF line ends go to different files)")


def _build(*, chats: int, window: Window, seed: int, dirty: bool) -> _Dataset:
    """Run the generation stages, logging each with its duration."""
    with _stage("categories"):
        tree = build_categories(seed, np.random.default_rng([seed, STREAM_CATEGORIES]))
    with _stage(f"sampling {chats:,} chats over {window.n_days} days"):
        chat_arrays = sample_chats(chats, window, tree, np.random.default_rng([seed, STREAM_CHATS]))
    with _stage("planning daily files"):
        plan = plan_files(chat_arrays, window)
    dirty_plan = DirtyPlan()
    if dirty:
        with _stage("injecting defects"):
            rng = np.random.default_rng([seed, STREAM_DIRTY])
            dirty_plan = plan_dirty(rng, tree, chat_arrays, plan, window)
    names = Names(
        categories=f"categories_{window.start.isoformat()}.csv",
        chats=tuple(f"chats_{window.day(day).isoformat()}.csv" for day in range(window.n_days)),
    )
    return _Dataset(window=window, tree=tree, chats=chat_arrays, plan=plan, dirty=dirty_plan, names=names)


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Log a stage's end with the seconds it took."""
    began = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", name, time.perf_counter() - began)


def _warn_about_other_files(home: Home, names: Names) -> None:
    """Landing files from earlier runs that this run does not overwrite would be ingested too."""
    ours = {names.categories, *names.chats}
    others = sorted(
        path.name
        for folder in (home.landing_chats, home.landing_categories)
        for path in folder.iterdir()
        if path.name not in ours
    )
    if others:
        log.warning(
            "landing already holds %d other file(s) that ingest will also read (e.g. %s); "
            "the ground truth covers only this run's files",
            len(others),
            others[0],
        )


def _write_files(home: Home, data: _Dataset) -> tuple[Path, ...]:
    """Write the categories snapshot and every daily chats file; returns their paths."""
    began = time.perf_counter()
    categories_path = home.landing_categories / data.names.categories
    categories_path.write_bytes(data.tree.csv_bytes())
    category_text = np.vstack(
        [csvtext.text_matrix(data.tree.ids, csvtext.UUID_WIDTH), np.zeros((1, csvtext.UUID_WIDTH), np.uint8)]
    )
    by_day: dict[int, list[DirtyLine]] = {}
    for line in data.dirty.lines:
        by_day.setdefault(line.day, []).append(line)
    n_days = data.window.n_days
    verbose = len(data.plan.rows) >= PROGRESS_ROWS
    step = max(1, n_days // 10)

    def write_day(day: int) -> Path:
        path = home.landing_chats / data.names.chats[day]
        lines = sorted(by_day.get(day, []), key=lambda line: line.position)
        path.write_bytes(_day_bytes(day, data, category_text, lines))
        return path

    paths: list[Path] = []
    with ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool:
        for done, path in enumerate(pool.map(write_day, range(n_days)), start=1):
            paths.append(path)
            if done % step == 0 or done == n_days:
                log.log(
                    logging.INFO if verbose else logging.DEBUG,
                    "writing chats files: %d/%d (%d %%) after %.1f s",
                    done,
                    n_days,
                    100 * done // n_days,
                    time.perf_counter() - began,
                )
    log.info("writing %d chats files: done in %.1f s", n_days, time.perf_counter() - began)
    return (categories_path, *paths)


def _day_bytes(day: int, data: _Dataset, category_text: np.ndarray, injected: list[DirtyLine]) -> bytes:
    """The bytes of day `day`'s chats file, with its injected lines and file quirks."""
    rows, show = data.plan.day_rows(day)
    chats = data.chats
    category = chats.category[rows]
    body, lengths = csvtext.chat_rows(
        id_text=csvtext.uuid_matrix(chats.id_high[rows], chats.id_low[rows]),
        category_text=category_text[category],
        has_category=category < len(data.tree),
        created=chats.created[rows],
        customer=chats.customer[rows],
        resolved=chats.resolved[rows],
        show_resolved=show,
    )
    content = (csvtext.CHATS_HEADER + "\n").encode("ascii") + _insert_lines(body, lengths, injected)
    if day == data.dirty.crlf_day:
        content = content.replace(b"\n", b"\r\n")
    if day == data.dirty.bom_day:
        content = UTF8_BOM + content
    return content


def _insert_lines(body: bytes, lengths: np.ndarray, injected: list[DirtyLine]) -> bytes:
    """Insert each injected line before clean row `line.position` (lines sorted by position)."""
    if not injected:
        return body
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    pieces: list[bytes] = []
    cursor = 0
    for line in injected:
        cut = offsets[line.position]
        pieces.append(body[cursor:cut])
        pieces.append((line.text + "\n").encode("ascii"))
        cursor = cut
    pieces.append(body[cursor:])
    return b"".join(pieces)


def _write_ground_truth(home: Home, data: _Dataset, *, seed: int, dirty: bool) -> tuple[Path, dict[str, Any]]:
    """Write `landing/ground_truth.json` (beside the landing folders, so ingest ignores it)."""
    settings = {
        "chats": len(data.chats),
        "start": data.window.start.isoformat(),
        "end": data.window.end.isoformat(),
        "seed": seed,
        "dirty": dirty,
    }
    with _stage("ground truth"):
        document = ground_truth(
            settings=settings,
            tree=data.tree,
            chats=data.chats,
            plan=data.plan,
            dirty=data.dirty,
            window=data.window,
            names=data.names,
        )
    path = home.landing / GROUND_TRUTH_NAME
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path, document
