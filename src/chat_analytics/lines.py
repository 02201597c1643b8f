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

from chat_analytics import csvscan
from chat_analytics.warehouse import RESERVED_PREFIX, table_columns


class ReconciliationError(Exception):
    """The lines of a file do not add up: nothing of it may be loaded."""


@dataclass
class Reconciled:
    rows_loaded: int
    rejected: list[tuple[int, str, str, str]]  # line_number, raw_line, reason, error_type
    gaps: list[tuple[int, int]]  # ordinal_from, lines_before
    data_lines: int
    version: int = 0


def reconcile(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    path: Path,
    scan: csvscan.ScanResult,
    batch_id: int,
    inserted: int,
    rejects: list[tuple[int, str, str, str]],
) -> Reconciled:
    """Loaded rows + rejected records must equal the file's data records, or the load is refused."""
    blank = set(scan.blank_lines)
    rejected, spans = _rejected_records(path, rejects, blank)
    skipped = sorted(blank | spans)
    continuation: list[int] = []
    if inserted != scan.lines - 1 - len(skipped):
        continuation = _continuation_lines(con, entity, batch_id, skipped, scan.lines)
        skipped = sorted(set(skipped) | set(continuation))
    records = scan.data_lines - len(continuation) - sum(1 for n in spans if n not in rejected)
    if records != inserted + len(rejected):
        raise ReconciliationError(
            f"{path.name}: reconciliation failed: {records} data records but {inserted} loaded + "
            f"{len(rejected)} rejected; nothing was loaded (report this with the file)"
        )
    return Reconciled(
        rows_loaded=inserted,
        rejected=[(n, *rejected[n]) for n in sorted(rejected)],
        gaps=gaps(skipped, scan.lines),
        data_lines=records,
    )


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
    cols = [c for c in table_columns(con, entity) if not c.startswith(RESERVED_PREFIX)]
    newlines = " + ".join(f'coalesce(length("{c}") - length(replace("{c}", chr(10), \'\')), 0)' for c in cols)
    # Inside the transaction the new rows have transaction-local row ids: count from the batch's first.
    multi = dict(
        con.execute(
            f"""
            select rowid - (select min(rowid) from raw.{entity}_data where _batch_id = $b), {newlines} as n
            from raw.{entity}_data where _batch_id = $b and n > 0
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


def gaps(skipped: list[int], lines: int) -> list[tuple[int, int]]:
    """Breakpoints (ordinal_from, lines_before) of the step function from row ordinal to line number."""
    if not skipped:
        return []
    s = np.asarray(skipped, dtype=np.int64)
    j = np.arange(1, len(s) + 1, dtype=np.int64)
    after = s + 1
    is_data = ~np.isin(after, s) & (after <= lines)
    ordinal_from = after[is_data] - 2 - j[is_data]
    return list(zip(ordinal_from.tolist(), j[is_data].tolist(), strict=True))
