"""`chat-analytics ingest`: load new landing files into the warehouse's raw schema, loss-free.

Every file is loaded in its own transaction (all of its rows or none), parsed by DuckDB's CSV reader
with every value kept as text. Records the reader cannot split go to `raw.rejected_rows`; blank lines
are counted; for every loaded file, data lines = rows loaded + rows rejected, or the file is not loaded.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np

from chat_analytics import csvscan
from chat_analytics.paths import Home, UserError
from chat_analytics.warehouse import RESERVED_PREFIX, SOURCE_COLUMNS, connect, table_columns, view_sql

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(?P<entity>chats|categories)_(?P<date>\d{4}-\d{2}-\d{2})\.csv(?:\.gz)?$")
REJECTS_TABLE = "ingest_reject_errors"
REJECTS_SCAN = "ingest_reject_scans"
BIG_FILE_BYTES = 100 << 20
FAULT_ENV = "CHAT_ANALYTICS_FAULT"


class FileRejected(Exception):
    """The whole file cannot be used; the message says why and what to do."""


@dataclass
class FileOutcome:
    path: Path
    entity: str
    status: str  # loaded | skipped | failed
    rows_loaded: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    reason: str = ""
    version: int = 0

    @property
    def file_name(self) -> str:
        return self.path.name


@dataclass
class IngestReport:
    outcomes: list[FileOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass
class _Parsed:
    rows_loaded: int
    rejected: list[tuple[int, str, str, str]]  # line_number, raw_line, reason, error_type
    gaps: list[tuple[int, int]]  # ordinal_from, lines_before
    data_lines: int


def discover(home: Home) -> list[tuple[Path, str]]:
    """Every visible file in the landing folders, in extract-date order (bad names last)."""
    found: list[tuple[Path, str]] = []
    for entity, folder in (("categories", home.landing_categories), ("chats", home.landing_chats)):
        found += [(p, entity) for p in folder.iterdir() if not p.name.startswith(".") and not p.is_dir()]

    def key(item: tuple[Path, str]) -> tuple[int, str, int, str]:
        match = FILE_NAME.match(item[0].name)
        day = match["date"] if match else "9999-99-99"
        return (0 if match else 1, day, 0 if item[1] == "categories" else 1, item[0].name)

    return sorted(found, key=key)


def ingest(home: Home) -> IngestReport:
    """Load every new landing file; report skipped and failed ones. Never raises for a bad file."""
    home.require_landing()
    files = discover(home)
    report = IngestReport()
    if not files:
        log.warning("no files in %s: nothing to ingest", home.landing)
        return report
    con = connect(home)
    try:
        for path, entity in files:
            outcome = _ingest_file(con, path, entity)
            report.outcomes.append(outcome)
            _log_outcome(outcome)
    finally:
        con.close()
    _log_summary(report)
    return report


def _fault_point(point: str, path: Path) -> None:
    """Test hook: `CHAT_ANALYTICS_FAULT=before-commit:<file name>` kills the process (SIGKILL) mid-file."""
    if os.environ.get(FAULT_ENV) == f"{point}:{path.name}":
        log.warning("fault injection: killing the process at %s of %s", point, path.name)
        os.kill(os.getpid(), signal.SIGKILL)


def _log_outcome(o: FileOutcome) -> None:
    if o.status == "loaded":
        note = f" (new version {o.version} of a file loaded before)" if o.version > 1 else ""
        log.info(
            "loaded  %-28s %10s rows, %5s rejected  %6.2f s%s",
            o.file_name,
            f"{o.rows_loaded:,}",
            f"{o.rows_rejected:,}",
            o.seconds,
            note,
        )
        if o.version > 1:
            log.warning("%s changed since it was last loaded: loaded as version %d", o.file_name, o.version)
    elif o.status == "skipped":
        log.info("skipped %-28s %s", o.file_name, o.reason)
    else:
        log.error("FAILED  %-28s %s", o.file_name, o.reason)


def _log_summary(report: IngestReport) -> None:
    loaded = [o for o in report.outcomes if o.status == "loaded"]
    log.info(
        "ingest summary: %d loaded (%s rows, %s rejected), %d skipped as already loaded, %d failed",
        len(loaded),
        f"{sum(o.rows_loaded for o in loaded):,}",
        f"{sum(o.rows_rejected for o in loaded):,}",
        report.count("skipped"),
        len(report.failed),
    )
    for o in report.failed:
        log.error("bad file: %s: %s", o.path, o.reason)


def _now() -> datetime:
    return datetime.now(UTC)


def _ingest_file(con: duckdb.DuckDBPyConnection, path: Path, entity: str) -> FileOutcome:
    started = _now()
    t0 = time.perf_counter()
    outcome = FileOutcome(path=path, entity=entity, status="failed")
    scan: csvscan.ScanResult | None = None
    header = b""
    extract_date: date | None = None
    try:
        extract_date = _check_name(path, entity)
        stat = path.stat()
        if stat.st_size == 0:
            raise FileRejected("the file is empty (zero bytes): a valid extract has at least a header line")
        unchanged = con.execute(
            "select version from raw.ingested_files where status = 'loaded' and entity = ? and file_name = ? "
            "and file_bytes = ? and file_mtime_ns = ? order by batch_id desc limit 1",
            [entity, path.name, stat.st_size, stat.st_mtime_ns],
        ).fetchone()
        if unchanged:
            outcome.status = "skipped"
            outcome.reason = "already loaded (unchanged since)"
            return outcome
        if stat.st_size > BIG_FILE_BYTES:
            log.info("loading %s (%.1f MB)...", path.name, stat.st_size / 1e6)
        header = _read_header(path)
        columns = _check_header(entity, header)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as pool:
            pending = pool.submit(_scan, path)
            try:
                scan = _load(con, path, entity, extract_date, pending, columns, started, stat, outcome)
            finally:
                if scan is None and not pending.done():
                    pending.cancel()
    except FileRejected as exc:
        outcome.reason = str(exc)
    except OSError as exc:
        outcome.reason = f"cannot read the file: {exc.strerror or exc}"
    except duckdb.Error as exc:
        outcome.reason = f"the CSV reader could not use the file: {str(exc).splitlines()[0]}"
    outcome.seconds = time.perf_counter() - t0
    if outcome.status == "failed":
        _record_failure(con, path, entity, extract_date, header, outcome.reason, started)
    return outcome


def _check_name(path: Path, entity: str) -> date:
    match = FILE_NAME.match(path.name)
    expected = f"{entity}_YYYY-MM-DD.csv or .csv.gz"
    if not match:
        raise FileRejected(f"unexpected file name: expected {expected}; rename or remove the file")
    if match["entity"] != entity:
        raise FileRejected(f"a {match['entity']} file in the {entity} landing folder: move it")
    try:
        return date.fromisoformat(match["date"])
    except ValueError:
        bad = match["date"]
        raise FileRejected(f"{bad!r} in the file name is not a real date: expected {expected}") from None


def _read_header(path: Path) -> bytes:
    try:
        return csvscan.read_header(path)
    except (EOFError, gzip.BadGzipFile) as exc:
        raise FileRejected(f"not a valid gzip file ({exc}): re-export or re-compress it") from None


def _scan(path: Path) -> csvscan.ScanResult:
    try:
        return csvscan.scan(path)
    except (EOFError, gzip.BadGzipFile) as exc:
        raise FileRejected(f"not a valid gzip file ({exc}): re-export or re-compress it") from None


def _check_header(entity: str, header: bytes) -> list[str]:
    """The header's column names (lower-cased, trimmed), validated against the entity's contract."""
    if b"\0" in header:
        raise FileRejected("binary content (NUL bytes): this is not a CSV text file")
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRejected("the header line is not UTF-8 text: not a CSV text file?") from None
    if not text.strip():
        raise FileRejected("no header line: the first line must name the columns")
    names = [n.strip().lower() for n in next(csv.reader([text]))]
    if any(not n for n in names):
        raise FileRejected(f"the header has an empty column name: {text!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FileRejected(f"the header names column(s) {dupes} more than once")
    reserved = [n for n in names if n.startswith(RESERVED_PREFIX)]
    if reserved:
        raise FileRejected(f"column name(s) {reserved} start with '_', which is reserved for lineage")
    missing = [c for c in SOURCE_COLUMNS[entity] if c not in names]
    if missing:
        raise FileRejected(
            f"missing required column(s) {', '.join(missing)} (header: {text!r}); "
            f"a {entity} file needs {', '.join(SOURCE_COLUMNS[entity])}"
        )
    return names


def _load(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    entity: str,
    extract_date: date,
    pending: Future[csvscan.ScanResult],
    columns: list[str],
    started: datetime,
    stat: os.stat_result,
    outcome: FileOutcome,
) -> csvscan.ScanResult:
    """Load one file in one transaction while its bytes are hashed and scanned in a thread."""
    extra = [c for c in columns if c not in SOURCE_COLUMNS[entity]]
    con.execute("begin transaction")
    try:
        if extra:
            have = set(table_columns(con, entity))
            for name in extra:
                if name not in have:
                    con.execute(f'alter table raw.{entity}_data add column "{name}" varchar')
            con.execute(view_sql(entity))
        batch_id = con.execute("select nextval('raw.batch_id_seq')").fetchone()[0]  # type: ignore[index]
        row_base = con.execute(f"select coalesce(max(rowid) + 1, 0) from raw.{entity}_data").fetchone()[0]  # type: ignore[index]
        inserted = _insert_rows(con, path, entity, columns, batch_id, row_base)
        scan = pending.result()
        previous = con.execute(
            "select file_name from raw.ingested_files where entity = ? and sha256 = ? and status = 'loaded'",
            [entity, scan.sha256],
        ).fetchone()
        if previous:
            con.execute("rollback")
            outcome.status = "skipped"
            same = "already loaded" if previous[0] == path.name else f"same content as {previous[0]}"
            outcome.reason = f"{same} (sha256 {scan.sha256[:12]})"
            return scan
        if extra:
            log.warning("%s has unexpected column(s) %s: kept as text in raw.%s", path.name, extra, entity)
        parsed = _reconcile(con, path, entity, scan, batch_id, inserted)
        version = (
            1
            + con.execute(
                "select count(*) from raw.ingested_files where file_name = ? and status = 'loaded'",
                [path.name],
            ).fetchone()[0]
        )  # type: ignore[index]
        if parsed.rejected:
            con.executemany(
                "insert into raw.rejected_rows values (?, ?, ?, ?, ?, ?, ?)",
                [(batch_id, entity, path.name, *r) for r in parsed.rejected],
            )
        if parsed.gaps:
            con.executemany(
                "insert into raw.line_gaps values (?, ?, ?)", [(batch_id, *g) for g in parsed.gaps]
            )
        _fault_point("before-commit", path)
        con.execute(
            "insert into raw.ingested_files values "
            "(?, ?, ?, ?, ?, ?, ?, ?, 'loaded', null, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                batch_id,
                entity,
                path.name,
                extract_date,
                scan.sha256,
                scan.file_bytes,
                stat.st_mtime_ns,
                int(version),
                scan.header.decode("utf-8"),
                extra,
                parsed.data_lines,
                parsed.rows_loaded,
                len(parsed.rejected),
                len(scan.blank_lines),
                started,
                _now(),
            ],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    _check_positions(con, entity, batch_id, row_base, parsed.rows_loaded)
    outcome.status = "loaded"
    outcome.version = int(version)
    outcome.rows_loaded = parsed.rows_loaded
    outcome.rows_rejected = len(parsed.rejected)
    return scan


def _insert_rows(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    entity: str,
    columns: list[str],
    batch_id: int,
    row_base: int,
) -> int:
    """Parse with DuckDB's CSV reader into raw.<entity>_data, in file order. Returns rows inserted."""
    con.execute(f"drop table if exists {REJECTS_TABLE}; drop table if exists {REJECTS_SCAN}")
    spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    options = [
        "header = true",
        "auto_detect = false",
        "delim = ','",
        "quote = '\"'",
        "escape = '\"'",
        f"columns = {{{spec}}}",
        "store_rejects = true",
        f"rejects_table = '{REJECTS_TABLE}'",
        f"rejects_scan = '{REJECTS_SCAN}'",
        "strict_mode = true",
        "max_line_size = 1048576",
        f"compression = '{'gzip' if csvscan.is_gzip(path) else 'none'}'",
    ]
    quoted = ", ".join(f'"{c}"' for c in columns)
    return int(
        con.execute(
            f"""
            insert into raw.{entity}_data by name
            select {quoted}, $batch as _batch_id, $offset::bigint as _line_offset
            from read_csv($path, {", ".join(options)})
            """,
            {"batch": batch_id, "offset": 2 - row_base, "path": str(path)},
        ).fetchone()[0]  # type: ignore[index]
    )


def _reconcile(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    entity: str,
    scan: csvscan.ScanResult,
    batch_id: int,
    inserted: int,
) -> _Parsed:
    """Account for every line: loaded rows, rejected records, blank lines, continuation lines."""
    rejected, rejected_spans = _rejects(con, path, set(scan.blank_lines))
    skipped = sorted(set(scan.blank_lines) | rejected_spans)
    free_lines = scan.lines - 1 - len(skipped)
    continuation: list[int] = []
    if inserted != free_lines:
        continuation = _continuation_lines(con, entity, batch_id, skipped, scan.lines)
        skipped = sorted(set(skipped) | set(continuation))
    records = scan.data_lines - len(continuation) - sum(1 for n in rejected_spans if n not in rejected)
    if records != inserted + len(rejected):
        raise FileRejected(
            f"reconciliation failed: {records} data records but {inserted} loaded + {len(rejected)} "
            "rejected; the file was not loaded (report this with the file)"
        )
    return _Parsed(
        rows_loaded=inserted,
        rejected=[(n, *rejected[n]) for n in sorted(rejected)],
        gaps=_gaps(skipped, scan.lines),
        data_lines=records,
    )


def _check_positions(
    con: duckdb.DuckDBPyConnection, entity: str, batch_id: int, row_base: int, inserted: int
) -> None:
    """Line numbers derive from row positions: prove the committed batch sits where it was expected.

    Rows get their final row ids at commit. A single writer appending in file order puts them at
    row_base onwards; if that ever did not hold, re-anchor the batch's offset instead of lying.
    """
    if not inserted:
        return
    lo, hi = con.execute(
        f"select min(rowid), max(rowid) from raw.{entity}_data where _batch_id = ?", [batch_id]
    ).fetchone()  # type: ignore[misc]
    if hi - lo + 1 != inserted:
        raise RuntimeError(f"batch {batch_id} is not stored contiguously ({lo}..{hi} for {inserted} rows)")
    if lo != row_base:
        log.warning("batch %d stored at row %d, not %d: re-anchoring line numbers", batch_id, lo, row_base)
        con.execute(
            f"update raw.{entity}_data set _line_offset = _line_offset + ? where _batch_id = ?",
            [row_base - lo, batch_id],
        )


def _rejects(
    con: duckdb.DuckDBPyConnection, path: Path, blank: set[int]
) -> tuple[dict[int, tuple[str, str, str]], set[int]]:
    """Rejected records by physical start line, and every physical line they span.

    The reader's byte position may point at blank lines before the record: step over them.
    """
    rows = con.execute(
        f"""
        select line_byte_position, any_value(csv_line),
            string_agg(distinct error_message, '; ' order by error_message),
            string_agg(distinct error_type::varchar, ',' order by error_type::varchar)
        from {REJECTS_TABLE}
        group by line_byte_position
        order by line_byte_position
        """
    ).fetchall()
    if not rows:
        return {}, set()
    starts = csvscan.line_starts(path)
    first_lines = np.searchsorted(starts, np.array([r[0] for r in rows], dtype=np.int64), side="right")
    spans: set[int] = set()
    lengths: dict[int, int] = {}
    found: dict[int, tuple[str, str]] = {}
    for (_, csv_line, message, error_type), at in zip(rows, first_lines.tolist(), strict=True):
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
    con: duckdb.DuckDBPyConnection,
    entity: str,
    batch_id: int,
    skipped: list[int],
    lines: int,
) -> list[int]:
    """Physical lines inside quoted multi-line values of loaded rows (rare): walk the records in order."""
    cols = [c for c in table_columns(con, entity) if not c.startswith(RESERVED_PREFIX)]
    newlines = " + ".join(f"coalesce(length({c}) - length(replace({c}, chr(10), '')), 0)" for c in cols)
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
    ordinal = 0
    line = 2
    while line <= lines:
        if line in skip:
            line += 1
            continue
        extra = int(multi.get(ordinal, 0))
        out.extend(range(line + 1, line + 1 + extra))
        line += 1 + extra
        ordinal += 1
    return out


def _gaps(skipped: list[int], lines: int) -> list[tuple[int, int]]:
    """Breakpoints (ordinal_from, lines_before) of the step function from row ordinal to line number.

    The data row with ordinal k (0-based) is on line k + 2 + lines_before(k), where lines_before counts
    the skipped lines (blank, rejected, continuation) above it.
    """
    if not skipped:
        return []
    s = np.asarray(skipped, dtype=np.int64)
    j = np.arange(1, len(s) + 1, dtype=np.int64)
    after = s + 1
    is_data = ~np.isin(after, s) & (after <= lines)
    ordinal_from = after[is_data] - 2 - j[is_data]
    return list(zip(ordinal_from.tolist(), j[is_data].tolist(), strict=True))


def _record_failure(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    entity: str,
    extract_date: date | None,
    header: bytes,
    reason: str,
    started: datetime,
) -> None:
    """A manifest row for a file that could not be used, so the failure is on record, not only in a log."""
    try:
        stat = path.stat()
        size, mtime, sha = stat.st_size, stat.st_mtime_ns, csvscan.sha256(path)
    except OSError:
        size = mtime = sha = None
    con.execute(
        "insert into raw.ingested_files values "
        "(nextval('raw.batch_id_seq'), ?, ?, ?, ?, ?, ?, null, 'failed', ?, ?, null, null, 0, 0, null, ?, ?)",
        [
            entity,
            path.name,
            extract_date,
            sha,
            size,
            mtime,
            reason,
            header.decode("utf-8", errors="backslashreplace") or None,
            started,
            _now(),
        ],
    )


__all__ = ["FileOutcome", "IngestReport", "UserError", "discover", "ingest"]
