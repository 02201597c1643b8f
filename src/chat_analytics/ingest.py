"""`chat-analytics ingest`: load new landing files into the warehouse's raw schema, loss-free.

Each landing file lands entirely or not at all, parsed by DuckDB's CSV reader with every value kept as
text. New files that share a header are loaded together by one multi-file `read_csv` in one
transaction, so DuckDB parses and compresses them in parallel (per-file transactions would force a
checkpoint per daily file and be 2-3x slower); a crash rolls the whole group back, and the next run
loads every file of it again. Records the reader cannot split go to `raw.rejected_rows`; blank lines
are counted; for every loaded file, data lines = rows loaded + rows rejected, or nothing is loaded.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from chat_analytics import csvscan
from chat_analytics.lines import Reconciled, ReconciliationError, reconcile
from chat_analytics.paths import Home, UserError
from chat_analytics.warehouse import RESERVED_PREFIX, SOURCE_COLUMNS, connect, table_columns, view_sql

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"^(?P<entity>chats|categories)_(?P<date>\d{4}-\d{2}-\d{2})\.csv(?:\.gz)?$")
REJECTS_TABLE = "ingest_reject_errors"
REJECTS_SCAN = "ingest_reject_scans"
BIG_LOAD_BYTES = 100 << 20
FAULT_ENV = "CHAT_ANALYTICS_FAULT"
SCAN_THREADS = 2


class FileRejected(Exception):
    """The whole file cannot be used; the message says why and what to do."""


@dataclass
class FileOutcome:
    path: Path
    entity: str
    status: str = "pending"  # loaded | skipped | failed
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
class _Candidate:
    """A landing file that passed the cheap checks and will be loaded unless its hash is known."""

    outcome: FileOutcome
    extract_date: date
    stat: os.stat_result
    columns: list[str]
    started: datetime
    scan: csvscan.ScanResult | None = None

    @property
    def path(self) -> Path:
        return self.outcome.path

    @property
    def entity(self) -> str:
        return self.outcome.entity

    @property
    def extra(self) -> list[str]:
        return [c for c in self.columns if c not in SOURCE_COLUMNS[self.entity]]


def discover(home: Home) -> list[tuple[Path, str]]:
    """Every visible file in the landing folders: categories first, then by extract date (bad names last)."""
    found: list[tuple[Path, str]] = []
    for entity, folder in (("categories", home.landing_categories), ("chats", home.landing_chats)):
        found += [(p, entity) for p in folder.iterdir() if not p.name.startswith(".") and not p.is_dir()]

    def key(item: tuple[Path, str]) -> tuple[int, int, str, str]:
        match = FILE_NAME.match(item[0].name)
        day = match["date"] if match else "9999-99-99"
        return (0 if match else 1, 0 if item[1] == "categories" else 1, day, item[0].name)

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
        candidates: list[_Candidate] = []
        loaded = _loaded_files(con)
        for path, entity in files:
            outcome = FileOutcome(path=path, entity=entity)
            report.outcomes.append(outcome)
            candidate = _precheck(con, outcome, loaded)
            if candidate:
                candidates.append(candidate)
        for group in _groups(candidates):
            _load_group_or_fail(con, group)
    finally:
        t0 = time.perf_counter()
        con.close()
        log.debug("closed the warehouse (checkpoint) in %.2f s", time.perf_counter() - t0)
    for outcome in report.outcomes:
        _log_outcome(outcome)
    _log_summary(report)
    return report


def _now() -> datetime:
    return datetime.now(UTC)


def _loaded_files(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str, int, int]]:
    """(entity, file name, size, mtime) of every loaded file: one query for the whole landing folder."""
    return set(
        con.execute(
            "select entity, file_name, file_bytes, file_mtime_ns from raw.ingested_files "
            "where status = 'loaded'"
        ).fetchall()
    )


def _precheck(
    con: duckdb.DuckDBPyConnection, outcome: FileOutcome, loaded: set[tuple[str, str, int, int]]
) -> _Candidate | None:
    """Name, size, unchanged-since-loaded and header checks: no full read of the file."""
    started = _now()
    t0 = time.perf_counter()
    path, entity = outcome.path, outcome.entity
    header = b""
    extract_date: date | None = None
    try:
        extract_date = _check_name(path, entity)
        stat = path.stat()
        if stat.st_size == 0:
            raise FileRejected("the file is empty (zero bytes): a valid extract has at least a header line")
        if (entity, path.name, stat.st_size, stat.st_mtime_ns) in loaded:
            outcome.status, outcome.reason = "skipped", "already loaded (unchanged since)"
            return None
        header = _read_header(path)
        columns = _check_header(entity, header)
        return _Candidate(outcome, extract_date, stat, columns, started)
    except FileRejected as exc:
        outcome.reason = str(exc)
    except OSError as exc:
        outcome.reason = f"cannot read the file: {exc.strerror or exc}"
    outcome.seconds = time.perf_counter() - t0
    _fail(con, outcome, extract_date, header, started)
    return None


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


def _scan(candidates: list[_Candidate]) -> None:
    """Hash and scan the candidates (two threads; runs while DuckDB parses the same files)."""

    def one(candidate: _Candidate) -> None:
        t0 = time.perf_counter()
        try:
            candidate.scan = csvscan.scan(candidate.path)
        except (EOFError, gzip.BadGzipFile) as exc:
            candidate.outcome.reason = f"not a valid gzip file ({exc}): re-export or re-compress it"
        except OSError as exc:
            candidate.outcome.reason = f"cannot read the file: {exc.strerror or exc}"
        candidate.outcome.seconds += time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SCAN_THREADS, thread_name_prefix="scan") as pool:
        list(pool.map(one, [c for c in candidates if c.scan is None]))
    log.debug("hashed and scanned %d file(s) in %.2f s", len(candidates), time.perf_counter() - t0)


def _loaded_name(con: duckdb.DuckDBPyConnection, entity: str, sha256: str) -> str | None:
    row = con.execute(
        "select file_name from raw.ingested_files where entity = ? and sha256 = ? and status = 'loaded' "
        "order by batch_id limit 1",
        [entity, sha256],
    ).fetchone()
    return row[0] if row else None


def _groups(candidates: list[_Candidate]) -> list[list[_Candidate]]:
    """Files of one entity with the same header load together: categories first, then chats."""
    groups: dict[tuple[str, tuple[str, ...]], list[_Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.entity, tuple(c.columns)), []).append(c)
    return sorted(groups.values(), key=lambda g: (0 if g[0].entity == "categories" else 1, g[0].extract_date))


class _Regroup(Exception):
    """After scanning, some files of a group must not load with it: already-loaded content (skip) or
    invalid UTF-8 (load alone: DuckDB validates encodings reliably only in a single-file scan)."""

    def __init__(self, skipped: list[_Candidate], alone: list[_Candidate]) -> None:
        super().__init__("regroup")
        self.skipped = skipped
        self.alone = alone


def _load_group_or_fail(con: duckdb.DuckDBPyConnection, group: list[_Candidate]) -> None:
    try:
        _load_group(con, group)
    except _Regroup as regroup:
        rest = [c for c in group if c not in regroup.skipped and c not in regroup.alone]
        for part in ([rest] if rest else []) + [[c] for c in regroup.alone]:
            _load_group_or_fail(con, part)
    except (FileRejected, ReconciliationError, RuntimeError, duckdb.Error, OSError) as exc:
        message = str(exc).splitlines()[0]
        if isinstance(exc, duckdb.Error):
            message = f"the CSV reader could not use the file: {message}"
        if len(group) > 1:
            log.warning("loading %d files together failed (%s): loading them one by one", len(group), message)
            for candidate in group:
                _load_group_or_fail(con, [candidate])
            return
        for c in group:
            c.outcome.reason = message
            _fail(con, c.outcome, c.extract_date, c.scan.header if c.scan else b"", c.started)


def _load_group(con: duckdb.DuckDBPyConnection, group: list[_Candidate]) -> None:
    """One transaction: insert every file's rows in file order, reconcile each file, write the manifest."""
    entity, extra = group[0].entity, group[0].extra
    t0 = time.perf_counter()
    size = sum(c.stat.st_size for c in group)
    if size > BIG_LOAD_BYTES:
        log.info("loading %d %s file(s), %.1f MB, in one transaction...", len(group), entity, size / 1e6)
    con.execute("begin transaction")
    try:
        if extra:
            have = set(table_columns(con, entity))
            for name in extra:
                if name not in have:
                    con.execute(f'alter table raw.{entity}_data add column "{name}" varchar')
            con.execute(view_sql(entity))
        batch_ids = _batch_ids(con, len(group))
        row_base = con.execute(f"select coalesce(max(rowid) + 1, 0) from raw.{entity}_data").fetchone()[0]  # type: ignore[index]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scans") as background:
            scanned = background.submit(_scan, group)
            try:
                _insert(con, group, batch_ids[0])
            finally:
                scanned.result()
        log.debug("inserted %d %s file(s) in %.2f s", len(group), entity, time.perf_counter() - t0)
        _check_scans(con, group)
        placed = _placement(con, entity, batch_ids, row_base)
        rejects = _reject_rows(con)
        results: list[tuple[_Candidate, int, Reconciled]] = []
        for index, (c, batch_id) in enumerate(zip(group, batch_ids, strict=True)):
            assert c.scan is not None
            rows, first_rowid = placed.get(batch_id, (0, None))
            done = reconcile(con, entity, c.path, c.scan, batch_id, rows, rejects.get(index, []))
            if c.extra:
                log.warning(
                    "%s has unexpected column(s) %s: kept as text in raw.%s", c.path.name, c.extra, entity
                )
            _write_batch(con, c, batch_id, first_rowid, done)
            results.append((c, batch_id, done))
        for c in group:
            _fault_point("before-commit", c.path)
        log.debug("reconciled %d file(s) at %.2f s", len(group), time.perf_counter() - t0)
        con.execute("commit")
        log.debug("committed at %.2f s", time.perf_counter() - t0)
    except BaseException:
        con.execute("rollback")
        raise
    _check_placement(con, entity, {b: p[1] for b, p in placed.items()})
    share = (time.perf_counter() - t0) / max(size, 1)
    for c, _, done in results:
        c.outcome.status = "loaded"
        c.outcome.rows_loaded, c.outcome.rows_rejected = done.rows_loaded, len(done.rejected)
        c.outcome.seconds += share * c.stat.st_size
        c.outcome.version = done.version


def _check_scans(con: duckdb.DuckDBPyConnection, group: list[_Candidate]) -> None:
    """Fail unreadable files; split off already-loaded content and invalid UTF-8 (see _Regroup)."""
    unreadable = [c for c in group if c.scan is None]
    if unreadable:
        raise FileRejected(unreadable[0].outcome.reason)
    skipped: list[_Candidate] = []
    seen: dict[str, str] = {}
    for c in group:
        assert c.scan is not None
        previous = seen.get(c.scan.sha256) or _loaded_name(con, c.entity, c.scan.sha256)
        if previous:
            same = "already loaded" if previous == c.path.name else f"same content as {previous}"
            c.outcome.status, c.outcome.reason = "skipped", f"{same} (sha256 {c.scan.sha256[:12]})"
            skipped.append(c)
        else:
            seen[c.scan.sha256] = c.path.name
    alone = (
        [c for c in group if c.scan and not c.scan.valid_utf8 and c not in skipped] if len(group) > 1 else []
    )
    if skipped or alone:
        raise _Regroup(skipped, alone)


def _batch_ids(con: duckdb.DuckDBPyConnection, n: int) -> list[int]:
    ids = [r[0] for r in con.execute("select nextval('raw.batch_id_seq') from range(?)", [n]).fetchall()]
    ids.sort()
    if ids != list(range(ids[0], ids[0] + n)):
        raise RuntimeError(f"batch ids are not consecutive: {ids[:5]}...")
    return ids


def _insert(con: duckdb.DuckDBPyConnection, group: list[_Candidate], first_batch: int) -> None:
    """Parse every file of the group with one multi-file read_csv into raw.<entity>_data, in file order."""
    entity, columns = group[0].entity, group[0].columns
    con.execute(f"drop table if exists {REJECTS_TABLE}; drop table if exists {REJECTS_SCAN}")
    spec = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    gz = {csvscan.is_gzip(c.path) for c in group}
    options = [
        "header = true", "auto_detect = false", "delim = ','", "quote = '\"'", "escape = '\"'",
        f"columns = {{{spec}}}", "store_rejects = true", f"rejects_table = '{REJECTS_TABLE}'",
        f"rejects_scan = '{REJECTS_SCAN}'", "strict_mode = true", "max_line_size = 1048576",
    ]  # fmt: skip
    if len(gz) == 1:
        options.append(f"compression = '{'gzip' if gz.pop() else 'none'}'")
    quoted = ", ".join(f'"{c}"' for c in columns)
    con.execute(
        f"""
        insert into raw.{entity}_data by name
        select {quoted}, $first + file_index::bigint as _batch_id
        from read_csv($paths, {", ".join(options)})
        """,
        {"first": first_batch, "paths": [str(c.path) for c in group]},
    )


def _placement(
    con: duckdb.DuckDBPyConnection, entity: str, batch_ids: list[int], row_base: int
) -> dict[int, tuple[int, int]]:
    """Rows per batch and the row id each batch will start at once committed.

    Until commit the new rows carry transaction-local row ids in one contiguous run, in file order;
    committing appends that run after the table's last row.
    """
    stats = con.execute(
        f"select _batch_id, count(*), min(rowid), max(rowid) from raw.{entity}_data "
        "where _batch_id between ? and ? group by 1 order by 1",
        [batch_ids[0], batch_ids[-1]],
    ).fetchall()
    if not stats:
        return {}
    local_base = min(s[2] for s in stats)
    expected = local_base
    placed: dict[int, tuple[int, int]] = {}
    for batch_id, rows, lo, hi in stats:
        if lo != expected or hi - lo + 1 != rows:
            raise RuntimeError(f"batch {batch_id} is not stored contiguously in file order")
        placed[batch_id] = (rows, row_base + lo - local_base)
        expected = hi + 1
    return placed


def _check_placement(con: duckdb.DuckDBPyConnection, entity: str, first_rowids: dict[int, int]) -> None:
    """After commit, prove each batch starts where the manifest says; re-anchor if it ever does not."""
    if not first_rowids:
        return
    actual = dict(
        con.execute(
            f"select _batch_id, min(rowid) from raw.{entity}_data where _batch_id between ? and ? group by 1",
            [min(first_rowids), max(first_rowids)],
        ).fetchall()
    )
    for batch_id, first in first_rowids.items():
        if actual.get(batch_id) != first:
            log.warning(
                "batch %d starts at row %s, not %s: re-anchoring", batch_id, actual.get(batch_id), first
            )
            con.execute(
                "update raw.ingested_files set first_rowid = ? where batch_id = ?",
                [actual[batch_id], batch_id],
            )


def _reject_rows(con: duckdb.DuckDBPyConnection) -> dict[int, list[tuple[int, str, str, str]]]:
    """The reader's rejects by file index: (byte position, csv_line, messages, error types) per record."""
    rows = con.execute(
        f"""
        select file_id, line_byte_position, any_value(csv_line),
            string_agg(distinct error_message, '; ' order by error_message),
            string_agg(distinct error_type::varchar, ',' order by error_type::varchar)
        from {REJECTS_TABLE}
        group by file_id, line_byte_position
        order by file_id, line_byte_position
        """
    ).fetchall()
    out: dict[int, list[tuple[int, str, str, str]]] = {}
    for file_id, *rest in rows:
        out.setdefault(int(file_id), []).append(tuple(rest))  # type: ignore[arg-type]
    return out


def _write_batch(
    con: duckdb.DuckDBPyConnection, c: _Candidate, batch_id: int, first_rowid: int | None, done: Reconciled
) -> None:
    assert c.scan is not None
    if done.rejected:
        con.executemany(
            "insert into raw.rejected_rows values (?, ?, ?, ?, ?, ?, ?)",
            [(batch_id, c.entity, c.path.name, *r) for r in done.rejected],
        )
    if done.gaps:
        con.executemany("insert into raw.line_gaps values (?, ?, ?)", [(batch_id, *g) for g in done.gaps])
    done.version = (
        1
        + con.execute(
            "select count(*) from raw.ingested_files where file_name = ? and status = 'loaded'", [c.path.name]
        ).fetchone()[0]
    )  # type: ignore[index]
    con.execute(
        "insert into raw.ingested_files values "
        "(?, ?, ?, ?, ?, ?, ?, ?, 'loaded', null, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch_id, c.entity, c.path.name, c.extract_date, c.scan.sha256, c.scan.file_bytes,
            c.stat.st_mtime_ns, done.version, c.scan.header.decode("utf-8"), c.extra, done.data_lines,
            done.rows_loaded, len(done.rejected), len(c.scan.blank_lines), first_rowid, c.started, _now(),
        ],
    )  # fmt: skip


def _fault_point(point: str, path: Path) -> None:
    """Test hook: `CHAT_ANALYTICS_FAULT=before-commit:<file name>` kills the process (SIGKILL) mid-load."""
    if os.environ.get(FAULT_ENV) == f"{point}:{path.name}":
        log.warning("fault injection: killing the process at %s of %s", point, path.name)
        os.kill(os.getpid(), signal.SIGKILL)


def _fail(
    con: duckdb.DuckDBPyConnection,
    outcome: FileOutcome,
    extract_date: date | None,
    header: bytes,
    started: datetime,
) -> None:
    """A manifest row for a file that could not be used, so the failure is on record, not only in a log."""
    outcome.status = "failed"
    try:
        stat = outcome.path.stat()
        size, mtime, sha = stat.st_size, stat.st_mtime_ns, csvscan.sha256(outcome.path)
    except OSError:
        size = mtime = sha = None
    con.execute(
        "insert into raw.ingested_files values (nextval('raw.batch_id_seq'), ?, ?, ?, ?, ?, ?, null, "
        "'failed', ?, ?, null, null, 0, 0, null, null, ?, ?)",
        [
            outcome.entity, outcome.file_name, extract_date, sha, size, mtime, outcome.reason,
            header.decode("utf-8", errors="backslashreplace") or None, started, _now(),
        ],
    )  # fmt: skip


def _log_outcome(o: FileOutcome) -> None:
    if o.status == "loaded":
        log.info(
            "loaded  %-28s %10s rows %6s rejected %7.2f s%s",
            o.file_name, f"{o.rows_loaded:,}", f"{o.rows_rejected:,}", o.seconds,
            f"  (version {o.version}: the file changed since it was loaded)" if o.version > 1 else "",
        )  # fmt: skip
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


__all__ = ["FileOutcome", "IngestReport", "UserError", "discover", "ingest"]
