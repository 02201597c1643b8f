"""`chat-analytics ingest`: load new landing files into the warehouse's raw schema, loss-free.

Each landing file lands entirely or not at all, parsed by DuckDB's CSV reader with every value kept as
text. New files that share a header are loaded together by one multi-file `read_csv` in one
transaction, so DuckDB parses and compresses them in parallel (per-file transactions would force a
checkpoint per daily file and be 2-3x slower); a crash rolls the whole group back, and the next run
loads every file of it again. Records the reader cannot split go to `raw.rejected_rows`; blank lines
are counted; for every loaded file, data lines = rows loaded + rows rejected, or nothing is loaded.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from stat import S_ISREG

import duckdb

from chat_analytics import duck, sql
from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline import csvscan, landing, redelivery
from chat_analytics.pipeline.faults import fault_point
from chat_analytics.pipeline.landing import SOURCE_COLUMNS
from chat_analytics.pipeline.lines import Reconciled, ReconciliationError, reconcile
from chat_analytics.pipeline.orphans import remove_orphans
from chat_analytics.pipeline.retract import acting_user
from chat_analytics.pipeline.warehouse import EXTRA_COLUMN, LOADED, check_placement, connect, data_table

log = logging.getLogger(__name__)

COPY_PREFIX = "ingest-copy-"  # folders under warehouse/ holding normalised copies during a run
REJECTS_TABLE = "ingest_reject_errors"
REJECTS_SCAN = "ingest_reject_scans"
BIG_LOAD_BYTES = 100 << 20
SCAN_THREADS = 2


@dataclass
class FileOutcome:
    path: Path
    entity: str
    status: str = "pending"  # loaded | skipped | failed | ignored (hidden files, sub-folders)
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
    cr_only: bool = False  # lines end with a lone CR (old Mac): loaded from a normalised copy
    workdir: Path | None = None  # where the normalised copy goes (see csvscan.normalise)
    copy: Path | None = None  # the normalised copy, once written

    @property
    def path(self) -> Path:
        """The file DuckDB reads: the landed file, or its normalised copy (same name, other folder).

        Lineage (name, SHA-256, size, modification time) always describes the landed file
        (`outcome.path`, `stat`, `scan`)."""
        return self.copy or self.outcome.path

    @property
    def entity(self) -> str:
        return self.outcome.entity

    @property
    def extra(self) -> list[str]:
        return [c for c in self.columns if c not in SOURCE_COLUMNS[self.entity]]


def ingest(home: Home) -> IngestReport:
    """Load every new landing file; report skipped and failed ones. Never raises for a bad file."""
    home.require_landing()
    files = landing.discover(home)
    report = IngestReport()
    if not files:
        log.warning("no files in %s: nothing to ingest", home.landing)
        return report
    con = connect(home)
    try:
        remove_orphans(con)
        _remove_copies(home)
        candidates: list[_Candidate] = []
        loaded = redelivery.loaded_files(con)
        for path, entity in files:
            outcome = FileOutcome(path=path, entity=entity)
            report.outcomes.append(outcome)
            candidate = _precheck(con, outcome, loaded, home)
            if candidate:
                candidates.append(candidate)
        for group in _groups(candidates):
            _load_group_or_fail(con, group)
    finally:
        _remove_copies(home)
        t0 = time.perf_counter()
        con.close()
        log.debug("closed the warehouse (checkpoint) in %.2f s", time.perf_counter() - t0)
    for outcome in report.outcomes:
        _log_outcome(outcome)
    _log_summary(report)
    return report


def _remove_copies(home: Home) -> None:
    """Delete the normalised copies of this run (and any left by a killed run): see csvscan.normalise."""
    for folder in home.warehouse_dir.glob(f"{COPY_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _now() -> datetime:
    return datetime.now(UTC)


def _precheck(
    con: duckdb.DuckDBPyConnection,
    outcome: FileOutcome,
    loaded: dict[tuple[str, str, int, int], str],
    home: Home,
) -> _Candidate | None:
    """Kind, name, size, unchanged-since-loaded and header checks (pipeline.landing): no full read
    of the file. Hidden files and sub-folders are ignored (reported, not recorded); a file that fails a
    check gets a `failed` manifest row. Only regular files are ever opened: a FIFO or a device would
    block or never end, so its type is checked first (lstat/stat)."""
    started = _now()
    t0 = time.perf_counter()
    path, entity = outcome.path, outcome.entity
    try:
        stat = landing.landing_stat(path, home)
    except OSError as exc:
        stat = landing.Rejected(f"cannot read the file: {exc.strerror or exc}")
    if isinstance(stat, landing.Ignored):
        outcome.status, outcome.reason = "ignored", stat.reason
        return None
    if isinstance(stat, landing.Rejected):
        return _reject(con, outcome, stat, None, b"", started, t0, read=False)
    extract_date = landing.extract_date(path, entity)
    if isinstance(extract_date, landing.Rejected):
        return _reject(con, outcome, extract_date, None, b"", started, t0)
    if stat.st_size == 0:
        empty = landing.Rejected("the file is empty (zero bytes): a valid extract has at least a header line")
        return _reject(con, outcome, empty, extract_date, b"", started, t0)
    skip = loaded.get((entity, path.name, stat.st_size, stat.st_mtime_ns))
    if skip:
        outcome.status, outcome.reason = "skipped", skip
        return None
    try:
        header = landing.read_header(path, entity)
    except OSError as exc:
        header = landing.Rejected(f"cannot read the file: {exc.strerror or exc}")
    if isinstance(header, landing.Rejected):
        return _reject(con, outcome, header, extract_date, header.header, started, t0)
    return _Candidate(
        outcome, extract_date, stat, header.columns, started, cr_only=header.head.cr_only,
        workdir=home.warehouse_dir,
    )  # fmt: skip


def _reject(
    con: duckdb.DuckDBPyConnection,
    outcome: FileOutcome,
    rejected: landing.Rejected,
    extract_date: date | None,
    header: bytes,
    started: datetime,
    t0: float,
    *,
    read: bool = True,
) -> None:
    outcome.reason = rejected.reason
    outcome.seconds = time.perf_counter() - t0
    _fail(con, outcome, extract_date, header, started, read=read)


def _scan(candidates: list[_Candidate]) -> _Retry | _Unusable | None:
    """Hash and scan the candidates (two threads; runs while DuckDB parses the same files). None when
    every file can load with the group as read; else what to do instead (see _load_group)."""

    def one(candidate: _Candidate) -> None:
        t0 = time.perf_counter()
        try:
            scan = csvscan.scan(candidate.outcome.path, cr_only=candidate.cr_only)
            if scan.mixed_line:
                candidate.outcome.reason = (
                    f"line {scan.mixed_line:,} {scan.mixed_what} (mixed line ends, which the CSV reader "
                    "cannot split reliably): re-export the file with one line-end style, LF or CR-LF"
                )
            else:
                candidate.scan = scan
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            candidate.outcome.reason = f"not a valid gzip file ({exc}): re-export or re-compress it"
        except OSError as exc:
            candidate.outcome.reason = f"cannot read the file: {exc.strerror or exc}"
        candidate.outcome.seconds += time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SCAN_THREADS, thread_name_prefix="scan") as pool:
        list(pool.map(one, [c for c in candidates if c.scan is None]))
    log.debug("hashed and scanned %d file(s) in %.2f s", len(candidates), time.perf_counter() - t0)
    unusable = [c for c in candidates if c.scan is None]
    if unusable:  # this reason wins over the reader's error on the same file (see _load_group)
        return _Unusable(unusable[0].outcome.reason)
    recopy = [c for c in candidates if c.scan and c.scan.needs_copy and c.copy is None and _copy(c)]
    if recopy:  # DuckDB read the landed file meanwhile: load these again, alone, from their copies
        return _Retry([], recopy)
    return None


def _copy(c: _Candidate) -> bool:
    """Write the normalised copy DuckDB loads instead of the landed file (csvscan.normalise)."""
    assert c.scan is not None
    what = "CR-only line ends" if c.scan.cr_only else f"{c.scan.blank_lines:,} blank lines"
    try:
        folder = Path(tempfile.mkdtemp(prefix=COPY_PREFIX, dir=c.workdir))
        c.copy = csvscan.normalise(c.outcome.path, folder / c.outcome.path.name, c.scan)
    except OSError as exc:
        c.scan, c.outcome.reason = None, f"cannot write a normalised copy ({what}): {exc.strerror or exc}"
        return False
    log.info("%s has %s: loading it from a normalised copy (same line numbers)", c.outcome.file_name, what)
    return True


def _groups(candidates: list[_Candidate]) -> list[list[_Candidate]]:
    """Files of one entity with the same header load together: categories first, then chats."""
    groups: dict[tuple[str, tuple[str, ...]], list[_Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.entity, tuple(c.columns)), []).append(c)
    return sorted(groups.values(), key=lambda g: (0 if g[0].entity == "categories" else 1, g[0].extract_date))


@dataclass(frozen=True)
class _Retry:
    """After scanning, some files of a group must not load with it: already-loaded content (`skipped`)
    or invalid UTF-8 and normalised copies (`alone`: DuckDB validates encodings reliably only in a
    single-file scan). The attempt is rolled back; the rest loads again without them."""

    skipped: list[_Candidate]
    alone: list[_Candidate]


@dataclass(frozen=True)
class _Unusable:
    """The group cannot load as it is (one file's reason); each file is tried alone, then failed."""

    reason: str


def _load_group_or_fail(con: duckdb.DuckDBPyConnection, group: list[_Candidate]) -> None:
    try:
        verdict = _load_group(con, group)
    except (ReconciliationError, RuntimeError, duckdb.Error, OSError) as exc:
        message = duck.first_line(exc)
        if isinstance(exc, duckdb.Error):
            message = f"the CSV reader could not use the file: {message}"
        verdict = _Unusable(message)
    if isinstance(verdict, _Retry):
        rest = [c for c in group if c not in verdict.skipped and c not in verdict.alone]
        for part in ([rest] if rest else []) + [[c] for c in verdict.alone]:
            _load_group_or_fail(con, part)
    elif isinstance(verdict, _Unusable):
        message = verdict.reason
        if len(group) > 1:
            log.warning("loading %d files together failed (%s): loading them one by one", len(group), message)
            for candidate in group:
                _load_group_or_fail(con, [candidate])
            return
        for c in group:
            c.outcome.reason = message
            _fail(con, c.outcome, c.extract_date, c.scan.header if c.scan else b"", c.started)


def _load_group(con: duckdb.DuckDBPyConnection, group: list[_Candidate]) -> _Retry | _Unusable | None:
    """One transaction: insert every file's rows in file order, reconcile each file, write the manifest.

    None when the group loaded; a _Retry or _Unusable (nothing of this attempt kept) when the scans
    found files that must not load with it."""
    entity = group[0].entity
    t0 = time.perf_counter()
    size = sum(c.stat.st_size for c in group)
    if size > BIG_LOAD_BYTES:
        log.info("loading %d %s file(s), %.1f MB, in one transaction...", len(group), entity, size / 1e6)
    con.execute("begin transaction")
    try:
        batch_ids = _batch_ids(con, len(group))
        row_base = con.execute(f"select coalesce(max(rowid) + 1, 0) from {data_table(entity)}").fetchone()[0]  # type: ignore[index]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scans") as background:
            scanned = background.submit(_scan, group)
            try:
                _insert(con, group, batch_ids[0])
            except duckdb.Error:
                if scanned.result() is None:  # else the scan's reason wins over the reader's error
                    raise
            verdict = scanned.result() or _check_scans(con, group)
        if verdict is not None:
            con.execute("rollback")
            return verdict
        log.debug("inserted %d %s file(s) in %.2f s", len(group), entity, time.perf_counter() - t0)
        placed = _placement(con, entity, batch_ids, row_base)
        rejects = _reject_rows(con)
        results: list[tuple[_Candidate, int, Reconciled]] = []
        for index, (c, batch_id) in enumerate(zip(group, batch_ids, strict=True)):
            assert c.scan is not None
            rows, first_rowid = placed.get(batch_id, (0, None))
            done = reconcile(con, entity, c.path, c.scan, batch_id, rows, rejects.get(index, []))
            if c.extra:
                log.warning(
                    "%s has unexpected column(s) %s: kept as text in raw.%s (column %s)",
                    c.path.name, c.extra, entity, EXTRA_COLUMN,
                )  # fmt: skip
            _write_batch(con, c, batch_id, first_rowid, done)
            results.append((c, batch_id, done))
        for c in group:
            fault_point(f"before-commit:{c.path.name}")
        log.debug("reconciled %d file(s) at %.2f s", len(group), time.perf_counter() - t0)
        for c in group:
            fault_point(f"during-commit:{c.path.name}")  # `:<ms>`: a kill inside the commit
        con.execute("commit")
        log.debug("committed at %.2f s", time.perf_counter() - t0)
    except BaseException:
        con.execute("rollback")
        raise
    check_placement(con, entity, {b: p[1] for b, p in placed.items()})
    share = (time.perf_counter() - t0) / max(size, 1)
    for c, _, done in results:
        c.outcome.status = "loaded"
        c.outcome.rows_loaded, c.outcome.rows_rejected = done.rows_loaded, len(done.rejected)
        c.outcome.seconds += share * c.stat.st_size
        c.outcome.version = done.version
    return None


def _check_scans(con: duckdb.DuckDBPyConnection, group: list[_Candidate]) -> _Retry | _Unusable | None:
    """Fail unreadable files; split off already-loaded content and invalid UTF-8 (see _Retry)."""
    unreadable = [c for c in group if c.scan is None]
    if unreadable:
        return _Unusable(unreadable[0].outcome.reason)
    skipped: list[_Candidate] = []
    seen: dict[str, list[redelivery.KnownContent]] = {}
    notes: list[tuple[str, str, str]] = []
    for c in group:
        assert c.scan is not None
        sha = c.scan.sha256
        known = redelivery.known_content(con, c.entity, sha) + seen.get(sha, [])
        landed = redelivery.Landed(c.path.name, c.entity, c.extract_date, sha)
        newest = redelivery.newest_version(con, c.entity, c.path.name)
        reason = redelivery.same_content_skip(landed, known, newest=newest)
        if reason:
            c.outcome.status, c.outcome.reason = "skipped", f"{reason} (sha256 {sha[:12]})"
            skipped.append(c)
            continue
        others = sorted({k.file_name for k in known if k.status == LOADED})
        if others:
            notes.append((c.path.name, ", ".join(others), c.entity))
        seen.setdefault(sha, []).append(
            redelivery.KnownContent(c.path.name, c.extract_date, LOADED, None, None)
        )
    alone = (
        [c for c in group if c.scan and not c.scan.valid_utf8 and c not in skipped] if len(group) > 1 else []
    )
    if skipped or alone:
        return _Retry(skipped, alone)
    for name, others_text, entity in notes:
        log.info(
            "%s has the same content as %s: loaded as its own %s, so its extract date counts",
            name, others_text, "snapshot" if entity == "categories" else "extract",
        )  # fmt: skip
    return None


def _batch_ids(con: duckdb.DuckDBPyConnection, n: int) -> list[int]:
    ids = [r[0] for r in con.execute("select nextval('raw.batch_id_seq') from range(?)", [n]).fetchall()]
    ids.sort()
    if ids != list(range(ids[0], ids[0] + n)):
        raise RuntimeError(f"batch ids are not consecutive: {ids[:5]}...")
    return ids


def _insert(con: duckdb.DuckDBPyConnection, group: list[_Candidate], first_batch: int) -> None:
    """Parse every file of the group with one multi-file read_csv into raw.<entity>_data, in file order.

    Column names come from the file's header: each one goes through `sql.literal` (the reader's column
    spec) or `sql.ident` (the select list), never into the SQL text as is. The contract's columns are
    stored under their names; every other column of the row goes into one `_extra` map (name -> text),
    so an unexpected header never changes the table's shape.

    Residual race: read_csv opens the paths itself, so a landed file swapped for a FIFO after the kind
    check and after csvscan (which opens with O_NONBLOCK and checks the open descriptor) but before
    DuckDB opens it could still block the reader. The scan runs in parallel with this read; such a
    swap aimed at DuckDB alone is out of scope.
    """
    entity, columns = group[0].entity, group[0].columns
    con.execute(f"drop table if exists {sql.ident(REJECTS_TABLE)}")
    con.execute(f"drop table if exists {sql.ident(REJECTS_SCAN)}")
    spec = ", ".join(f"{sql.literal(c)}: 'VARCHAR'" for c in columns)
    gz = {csvscan.is_gzip(c.path) for c in group}
    options = [
        "header = true", "auto_detect = false", "delim = ','", "quote = '\"'", "escape = '\"'",
        f"columns = {{{spec}}}", "store_rejects = true", f"rejects_table = {sql.literal(REJECTS_TABLE)}",
        f"rejects_scan = {sql.literal(REJECTS_SCAN)}", "strict_mode = true", "max_line_size = 1048576",
    ]  # fmt: skip
    if len(gz) == 1:
        options.append(f"compression = {sql.literal('gzip' if gz.pop() else 'none')}")
    selected = [sql.ident(c) for c in columns if c in SOURCE_COLUMNS[entity]]
    extra = group[0].extra
    if extra:
        keys = ", ".join(sql.literal(c) for c in extra)
        values = ", ".join(sql.ident(c) for c in extra)
        # Only the non-empty values (a missing key reads as null, like an empty value). Zipping two
        # lists is ~4x faster than map() or a struct cast for thousands of columns.
        selected.append(
            f"map_from_entries(list_filter(list_zip([{keys}], [{values}]), lambda e: e[2] is not null)) "
            f"as {sql.ident(EXTRA_COLUMN)}"
        )
    con.execute(
        f"""
        insert into {data_table(entity)} by name
        select {", ".join(selected)}, $first + file_index::bigint as _batch_id
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
        f"select _batch_id, count(*), min(rowid), max(rowid) from {data_table(entity)} "
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


def _reject_rows(con: duckdb.DuckDBPyConnection) -> dict[int, list[tuple[int, str, str, str]]]:
    """The reader's rejects by file index: (byte position, csv_line, messages, error types) per record."""
    rows = con.execute(
        f"""
        select file_id, line_byte_position, any_value(csv_line),
            string_agg(distinct error_message, '; ' order by error_message),
            string_agg(distinct error_type::varchar, ',' order by error_type::varchar)
        from {sql.ident(REJECTS_TABLE)}
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
    # A re-delivered file (same name, new content) replaces its earlier version: those rows stop counting
    # (the raw views show loaded batches only) and stay stored for audit; raw.file_actions records it.
    earlier = con.execute(
        "select batch_id, status from raw.ingested_files where entity = ? and file_name = ? "
        "and status in ('loaded', 'replaced', 'retracted')",
        [c.entity, c.path.name],
    ).fetchall()
    done.version = 1 + len(earlier)
    replaced = [b for b, status in earlier if status == LOADED]
    if replaced:
        con.execute(
            "update raw.ingested_files set status = 'replaced' where batch_id in (select unnest(?))",
            [replaced],
        )
        con.executemany(
            "insert into raw.file_actions values (?, ?, ?, 'replaced', ?, ?, ?, ?)",
            [
                (b, c.entity, c.path.name, batch_id, _now(), acting_user(),
                 f"re-delivered with new content (sha256 {c.scan.sha256[:12]}, version {done.version})")
                for b in replaced
            ],
        )  # fmt: skip
    con.execute(
        "insert into raw.ingested_files values "
        "(?, ?, ?, ?, ?, ?, ?, ?, 'loaded', null, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch_id, c.entity, c.path.name, c.extract_date, c.scan.sha256, c.scan.file_bytes,
            c.stat.st_mtime_ns, done.version, c.scan.header.decode("utf-8"), c.extra, done.data_lines,
            done.rows_loaded, len(done.rejected), done.blank_lines, first_rowid, c.started, _now(),
        ],
    )  # fmt: skip


def _fail(
    con: duckdb.DuckDBPyConnection,
    outcome: FileOutcome,
    extract_date: date | None,
    header: bytes,
    started: datetime,
    *,
    read: bool = True,
) -> None:
    """A manifest row for a file that could not be used, so the failure is on record, not only in a log.

    The file is hashed only when `read` and it is a regular file: a FIFO or a device never ends."""
    outcome.status = "failed"
    size = mtime = sha = None
    try:
        stat = outcome.path.stat()
        if S_ISREG(stat.st_mode):
            size, mtime = stat.st_size, stat.st_mtime_ns
            sha = csvscan.sha256(outcome.path) if read else None
    except OSError:
        pass
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
            log.warning(
                "%s was re-delivered with new content: loaded as version %d, which replaces the earlier "
                "version (its rows no longer count; they stay in raw storage for audit)",
                o.file_name, o.version,
            )  # fmt: skip
    elif o.status == "skipped":
        log.info("skipped %-28s %s", o.file_name, o.reason)
    elif o.status == "ignored":
        log.warning("ignored %-28s %s", _shown(o.file_name), o.reason)
    else:
        log.error("FAILED  %-28s %s", _shown(o.file_name), o.reason)


def _shown(name: str) -> str:
    """A file name for a log line: quoted when it holds a line break or another control character."""
    return name if name.isprintable() else repr(name)


def _log_summary(report: IngestReport) -> None:
    loaded = [o for o in report.outcomes if o.status == "loaded"]
    log.info(
        "ingest summary: %d loaded (%s rows, %s rejected), %d skipped (already loaded, retracted or same "
        "content), %d failed%s",
        len(loaded),
        f"{sum(o.rows_loaded for o in loaded):,}",
        f"{sum(o.rows_rejected for o in loaded):,}",
        report.count("skipped"),
        len(report.failed),
        f", {report.count('ignored')} ignored (hidden files, sub-folders)" if report.count("ignored") else "",
    )
    for o in report.failed:
        log.error("bad file: %s: %s", o.path.parent / _shown(o.file_name), o.reason)


__all__ = ["FileOutcome", "IngestReport", "UserError", "ingest"]
