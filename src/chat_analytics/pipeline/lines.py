"""Account for every physical line of a loaded file, and map stored rows back to their line numbers.

A file's lines are: the header, blank lines (skipped by the reader), rejected records (which may span
several lines when quoting is broken), loaded rows (which may span several lines when a quoted value
holds a line break) and nothing else. Loaded rows are stored contiguously in file order, so the row
with ordinal k (0-based) sits on line k + 2 + lines_before(k); raw.line_gaps keeps the breakpoints of
that step function for the (few) files that have any skipped line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from chat_analytics import sql
from chat_analytics.pipeline import csvscan
from chat_analytics.pipeline.landing import SOURCE_COLUMNS
from chat_analytics.pipeline.warehouse import EXTRA_COLUMN


class ReconciliationError(Exception):
    """The lines of a file do not add up: nothing of it may be loaded."""


@dataclass
class Reconciled:
    rows_loaded: int
    rejected: list[tuple[int, str, str, str]]  # line_number, raw_line, reason, error_type
    gaps: list[tuple[int, int]]  # ordinal_from, lines_before
    data_lines: int
    version: int = 0
    blank_lines: int = 0  # blank lines outside records (an empty line inside a quoted value is not one)


def reconcile(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    path: Path,
    scan: csvscan.ScanResult,
    batch_id: int,
    inserted: int,
    rejects: list[tuple[int, str, str, str]],
) -> Reconciled:
    """Every physical line after the header must be a loaded row's first line, a line of a rejected
    record, a blank line or a further line of a quoted multi-line value; else the load is refused.

    `path` is the file DuckDB read: the landed file, or its normalised copy when `scan.needs_copy`
    (`csvscan.normalise`). The copy leaves out `scan.dropped` (runs of blank lines outside quotes), so
    the accounting works on the copy's lines (a handful of Python sets, bounded by its content) and the
    results are mapped back to the landed file's line numbers at the end.
    """
    copy = _CopyLines(scan)
    lines = scan.lines - copy.dropped.lines
    blank = copy.kept_blank()
    rejected, spans = _rejected_records(path, rejects, blank)
    skipped = blank | spans
    continuation: set[int] = set()
    if inserted != lines - 1 - len(skipped):
        # An empty line inside a quoted value was counted as blank by the scan: the walk over the loaded
        # rows claims it as a continuation line, and the union counts it once.
        continuation = set(_continuation_lines(con, entity, batch_id, sorted(skipped), lines))
        skipped |= continuation
    starts = lines - 1 - len(skipped)  # first lines of loaded rows, as the line structure says
    if starts != inserted:
        records = starts + len(rejected)
        raise ReconciliationError(
            f"{path.name}: reconciliation failed: {records} data records but {inserted} loaded + "
            f"{len(rejected)} rejected; nothing was loaded (report this with the file)"
        )
    return Reconciled(
        rows_loaded=inserted,
        rejected=[(copy.original(n), *rejected[n]) for n in sorted(rejected)],
        gaps=gaps(*copy.original_runs(skipped), scan.lines),
        data_lines=inserted + len(rejected),
        blank_lines=len(blank - spans - continuation) + copy.dropped.lines,
    )


class _CopyLines:
    """Line numbers of the loaded copy (without the dropped runs) and of the landed file."""

    def __init__(self, scan: csvscan.ScanResult) -> None:
        self.scan = scan
        self.dropped = scan.dropped
        counts = self.dropped.length
        self._before = np.cumsum(counts) - counts  # dropped lines before each dropped run
        self._at = self.dropped.start - self._before  # the copy line each dropped run stood before
        self._total = np.cumsum(counts)

    def kept_blank(self) -> set[int]:
        """Blank lines (copy numbers) that the copy still holds."""
        blank = self.scan.blank
        keep = ~np.isin(blank.start, self.dropped.start)
        shift = self._dropped_before(blank.start[keep])
        out: set[int] = set()
        for start, length in zip(
            (blank.start[keep] - shift).tolist(), blank.length[keep].tolist(), strict=True
        ):
            out.update(range(start, start + length))
        return out

    def _dropped_before(self, original: np.ndarray) -> np.ndarray:
        """Dropped lines before each given landed-file line."""
        if not len(self.dropped):
            return np.zeros(len(original), dtype=np.int64)
        index = np.searchsorted(self.dropped.start, original, side="right")
        return np.where(index > 0, self._total[np.maximum(index - 1, 0)], 0)

    def originals(self, copy_lines: np.ndarray) -> np.ndarray:
        if not len(self.dropped):
            return copy_lines
        index = np.searchsorted(self._at, copy_lines, side="right")
        return copy_lines + np.where(index > 0, self._total[np.maximum(index - 1, 0)], 0)

    def original(self, copy_line: int) -> int:
        return int(self.originals(np.array([copy_line], dtype=np.int64))[0])

    def original_runs(self, skipped: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """The skipped copy lines and the dropped runs, as runs (start, length) of landed-file lines."""
        lines = self.originals(np.array(sorted(skipped), dtype=np.int64))
        start, length = runs(lines)
        start = np.concatenate((start, self.dropped.start))
        length = np.concatenate((length, self.dropped.length))
        order = np.argsort(start, kind="stable")
        return start[order], length[order]


def runs(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, distinct line numbers as runs of consecutive lines: (first line, length) per run."""
    if not len(lines):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    first = np.concatenate(([0], np.flatnonzero(np.diff(lines) != 1) + 1))
    last = np.concatenate((first[1:] - 1, [len(lines) - 1]))
    return lines[first].astype(np.int64), (last - first + 1).astype(np.int64)


def _rejected_records(
    path: Path, rejects: list[tuple[int, str, str, str]], blank: set[int]
) -> tuple[dict[int, tuple[str, str, str]], set[int]]:
    """Rejected records by physical start line, and every physical line they span.

    The reader's byte position may point at blank lines before the record: step over them.
    """
    if not rejects:
        return {}, set()
    starts = csvscan.line_starts(path)
    first_lines = np.searchsorted(starts, np.array([r[0] for r in rejects], dtype=np.int64), side="right")
    spans: set[int] = set()
    lengths: dict[int, int] = {}
    found: dict[int, tuple[str, str]] = {}
    for (_, csv_line, message, error_type), at in zip(rejects, first_lines.tolist(), strict=True):
        line = int(at)
        while line in blank:
            line += 1
        lengths[line] = 1 + (csv_line or "").strip("\r\n").count("\n")
        spans.update(range(line, line + lengths[line]))
        found[line] = (message, error_type)
    texts = csvscan.read_lines(path, sorted(spans))
    records = {
        n: ("\n".join(texts.get(k, "") for k in range(n, n + lengths[n])), message, error_type)
        for n, (message, error_type) in found.items()
    }
    return records, spans


def _continuation_lines(
    con: duckdb.DuckDBPyConnection, entity: str, batch_id: int, skipped: list[int], lines: int
) -> list[int]:
    """Physical lines inside quoted multi-line values of loaded rows (rare): walk the records in order."""
    # The contract's columns and the `_extra` map (every other column of the file) hold all the values.
    counts = [
        f"coalesce(length({c}) - length(replace({c}, chr(10), '')), 0)"
        for c in map(sql.ident, SOURCE_COLUMNS[entity])
    ]
    counts.append(
        f"coalesce(list_sum(list_transform(map_values({sql.ident(EXTRA_COLUMN)}), "
        "lambda v: coalesce(length(v) - length(replace(v, chr(10), '')), 0))), 0)"
    )
    table = sql.qualified("raw", f"{entity}_data")
    # Inside the transaction the new rows have transaction-local row ids: count from the batch's first.
    multi = dict(
        con.execute(
            f"""
            select rowid - (select min(rowid) from {table} where _batch_id = $b), {" + ".join(counts)} as n
            from {table} where _batch_id = $b and n > 0
            """,
            {"b": batch_id},
        ).fetchall()
    )
    skip = set(skipped)
    out: list[int] = []
    ordinal, line = 0, 2
    while line <= lines:
        if line in skip:
            line += 1
            continue
        extra = int(multi.get(ordinal, 0))
        out.extend(range(line + 1, line + 1 + extra))
        line += 1 + extra
        ordinal += 1
    return out


def gaps(start: np.ndarray, length: np.ndarray, lines: int) -> list[tuple[int, int]]:
    """Breakpoints (ordinal_from, lines_before) of the step function from row ordinal to line number.

    The skipped lines come as sorted, non-overlapping runs (first line, length): one breakpoint per run
    (adjacent runs are joined), so a run of ten million blank lines costs one row in raw.line_gaps.
    """
    if not len(start):
        return []
    start, length = np.asarray(start, dtype=np.int64), np.asarray(length, dtype=np.int64)
    new = np.ones(len(start), dtype=np.bool_)
    new[1:] = start[1:] != start[:-1] + length[:-1]
    heads = np.flatnonzero(new)
    start, length = start[heads], np.add.reduceat(length, heads)
    before = np.cumsum(length)
    after = start + length  # the first line after the run: a loaded row's first line
    is_data = after <= lines
    ordinal_from = after[is_data] - 2 - before[is_data]
    return list(zip(ordinal_from.tolist(), before[is_data].tolist(), strict=True))
