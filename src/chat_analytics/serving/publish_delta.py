"""What changed since the previous release: the plan of an incremental `publish`.

A release records, in `publish_state.json` beside its database, what it was made from: a checksum of
the warehouse's `analytics.fct_chats` per local creation day (row count and the sum of a hash of every
row, computed in one scan), a fingerprint of every mart's schema and documentation, the DuckDB and
storage versions, and the size and modification time of its database file and of each Parquet file
`fct_chats/created_month=YYYY-MM/YYYY-MM-DD.parquet` (one per local creation day, in hive partitions by
month). The next publish computes the same checksums from the warehouse and compares: only the days
whose checksum changed (or that appeared or disappeared) are updated in a copy of the previous
database (publish._replace_changed_rows: only their rows that differ) and written anew in Parquet; the
other days' files are hard-linked from the previous release.

Nothing here relies on dbt's bookkeeping (incremental state, run results): the checksums describe the
table itself, so several builds, a full refresh, re-delivered or retracted files or a new category
snapshot between two publishes are all seen for what they did to `fct_chats`. Whenever the previous
release cannot be trusted or reused, the plan is a full publish and says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from chat_analytics.sql import ident

log = logging.getLogger(__name__)

STATE_NAME = "publish_state.json"
#: Bump when the release layout or the meaning of the state changes: the next publish is then full.
STATE_FORMAT = 1
LAYOUT = (
    "marts in schema main; "
    "fct_chats/created_month=YYYY-MM/YYYY-MM-DD.parquet, checksums by created_date_local"
)
PARTITIONED = "fct_chats"
DAY_COLUMN = "created_date_local"
PARTITION_COLUMN = "created_month"
_DAY_SQL = f"strftime({ident(DAY_COLUMN)}, '%Y-%m-%d')"
#: A copied database whose free blocks exceed this share of its blocks is rewritten in full (compacted).
MAX_FREE_SHARE = 0.5

Checksums = dict[str, tuple[int, int]]  # day 'YYYY-MM-DD' -> (rows, sum of row hashes)


@dataclass(frozen=True)
class FileStamp:
    """A file of a release: path relative to the release folder, size and modification time."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, release: Path, path: Path) -> FileStamp:
        info = path.stat()
        return cls(str(path.relative_to(release)), info.st_size, info.st_mtime_ns)

    def matches(self, release: Path) -> bool:
        try:
            info = (release / self.path).stat()
        except OSError:
            return False
        return (info.st_size, info.st_mtime_ns) == (self.size, self.mtime_ns)


@dataclass(frozen=True)
class ReleaseState:
    """What one release was made from (`publish_state.json`)."""

    duckdb_version: str
    storage_version: str
    schema: str  # fingerprint of every mart's columns, types and comments
    database: FileStamp
    days: Checksums
    files: dict[str, list[FileStamp]]  # day 'YYYY-MM-DD' -> its Parquet file(s)

    def to_json(self) -> str:
        document = {
            "format": STATE_FORMAT,
            "layout": LAYOUT,
            "duckdb_version": self.duckdb_version,
            "storage_version": self.storage_version,
            "schema": self.schema,
            "database": _stamp_json(self.database),
            "days": {day: [rows, str(total)] for day, (rows, total) in sorted(self.days.items())},
            "files": {day: [_stamp_json(s) for s in stamps] for day, stamps in sorted(self.files.items())},
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def load(cls, release: Path) -> ReleaseState:
        """Raises ValueError (or OSError) naming what is wrong with the release's state."""
        document = json.loads((release / STATE_NAME).read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if document.get("format") != STATE_FORMAT or document.get("layout") != LAYOUT:
            raise ValueError(f"state format {document.get('format')!r} of another layout")
        try:
            return cls(
                duckdb_version=str(document["duckdb_version"]),
                storage_version=str(document["storage_version"]),
                schema=str(document["schema"]),
                database=_stamp(document["database"]),
                days={str(day): (int(rows), int(total)) for day, (rows, total) in document["days"].items()},
                files={str(day): [_stamp(s) for s in stamps] for day, stamps in document["files"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed state: {type(exc).__name__}: {exc}") from None


def _stamp_json(stamp: FileStamp) -> dict[str, Any]:
    return {"path": stamp.path, "size": stamp.size, "mtime_ns": stamp.mtime_ns}


def _stamp(value: Any) -> FileStamp:
    path = str(value["path"])
    if os.path.isabs(path) or ".." in Path(path).parts:
        raise ValueError(f"path {path!r} outside its release")
    return FileStamp(path, int(value["size"]), int(value["mtime_ns"]))


@dataclass(frozen=True)
class Plan:
    """How to publish: in full (`full_reason` says why) or from `previous`, rewriting only what changed."""

    full_reason: str | None
    previous: Path | None = None
    previous_state: ReleaseState | None = None
    changed_days: tuple[str, ...] = ()  # deleted from the copy and inserted again from the warehouse
    written_days: tuple[str, ...] = ()  # days whose Parquet file is written anew
    reused: dict[str, list[FileStamp]] = field(default_factory=dict)  # day -> previous files to link

    @property
    def incremental(self) -> bool:
        return self.full_reason is None


def month_folder(day: str) -> str:
    """The hive partition folder of a day's Parquet file: `created_month=YYYY-MM`."""
    return f"{PARTITION_COLUMN}={day[:7]}"


def checksums(
    con: duckdb.DuckDBPyConnection, table: str, *, where: str = "true", params: list[Any] | None = None
) -> Checksums:
    """Rows and the sum of row hashes of `table` (a qualified, quoted name) per creation day, one scan.

    Any change of any column of any row changes its day's sum (up to a 64-bit hash collision that also
    keeps the sum); a row moving to another day changes both days.
    """
    rows = con.execute(
        f"select {_DAY_SQL} as day, count(*), sum(hash(t))::varchar from {table} as t "
        f"where {where} group by all",
        params or [],
    ).fetchall()
    return {day: (int(count), int(total)) for day, count, total in rows}


def schema_fingerprint(con: duckdb.DuckDBPyConnection, database: str, schema: str, marts: list[str]) -> str:
    """A digest of the marts' names, kinds, comments and columns (name, type, comment, order)."""
    tables = con.execute(
        "select table_name, 'table', comment from duckdb_tables() "
        "where database_name = ? and schema_name = ? "
        "union all "
        "select view_name, 'view', comment from duckdb_views() where database_name = ? and schema_name = ? "
        "order by 1",
        [database, schema, database, schema],
    ).fetchall()
    columns = con.execute(
        "select table_name, column_index, column_name, data_type, comment from duckdb_columns() "
        "where database_name = ? and schema_name = ? order by table_name, column_index",
        [database, schema],
    ).fetchall()
    wanted = set(marts)
    text = json.dumps(
        [
            [list(row) for row in tables if row[0] in wanted],
            [list(row) for row in columns if row[0] in wanted],
        ],
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def plan(
    previous: Path | None,
    *,
    days: Checksums,
    schema: str,
    storage_version: str,
    database_name: str,
) -> Plan:
    """Compare the warehouse now (`days`, `schema`) with the release readers see (`previous`)."""
    if previous is None:
        return Plan("no previous release")
    try:
        state = ReleaseState.load(previous)
    except FileNotFoundError:
        return Plan(f"the previous release {previous.name} has no {STATE_NAME} (an older layout)")
    except (OSError, ValueError) as exc:
        return Plan(f"the previous release's {STATE_NAME} is unreadable: {exc}")
    if (state.duckdb_version, state.storage_version) != (duckdb.__version__, storage_version):
        return Plan(
            f"the previous release was written by DuckDB {state.duckdb_version} (storage "
            f"{state.storage_version}), this is {duckdb.__version__} ({storage_version})"
        )
    if state.schema != schema:
        return Plan("a mart's columns, types or documentation changed")
    if state.database.path != database_name or not state.database.matches(previous):
        return Plan(
            f"the previous release's {database_name} changed after its publish (a read-write session?)"
        )
    changed = sorted(day for day in days.keys() | state.days.keys() if days.get(day) != state.days.get(day))
    reused: dict[str, list[FileStamp]] = {}
    written: list[str] = []
    for day in sorted(days):
        stamps = state.files.get(day)
        if day in changed or not stamps:
            written.append(day)
        elif not all(stamp.matches(previous) for stamp in stamps):
            log.info("rewriting the Parquet file of %s: it changed after its publish in %s", day, previous)
            written.append(day)
        else:
            reused[day] = stamps
    return Plan(
        None,
        previous=previous,
        previous_state=state,
        changed_days=tuple(changed),
        written_days=tuple(written),
        reused=reused,
    )


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no bytes copied; the file is read-only in both releases), else a copy."""
    try:
        os.link(source, target)
    except OSError as exc:  # another filesystem, links not allowed, an immutable file: copy it
        log.debug("copying %s (no hard link: %s)", source, exc.strerror)
        shutil.copy2(source, target)
