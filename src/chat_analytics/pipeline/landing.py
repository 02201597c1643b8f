"""The landing contract: which names in landing/ are extracts, and what their first line must say.

docs/data-contract.md in code: file names (`<entity>_YYYY-MM-DD.csv[.gz]` in the entity's folder), the
columns each entity requires, and the checks a file passes before the loader (chat_analytics.pipeline.ingest)
reads it in full: kind (only regular files; a FIFO or a device would block), name, and header. Nothing
here touches the warehouse. Each check returns its result, or a `Rejected` with the one-line reason
the user sees, or (for names that are never loaded) an `Ignored`.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from stat import S_ISBLK, S_ISCHR, S_ISDIR, S_ISFIFO, S_ISLNK, S_ISREG, S_ISSOCK

from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline import csvscan

# The columns each entity's file must have (any order, any case); others are kept in raw's `_extra`.
SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "chats": ("id", "chat_category_id", "created_at", "is_customer_initiated", "resolved_at"),
    "categories": ("id", "parent_id", "disabled"),
}
RESERVED_PREFIX = "_"  # column names starting with it are lineage: a landed header may not use them
# \A...\Z, not ^...$: `$` also matches before a final newline, so "chats_2000-01-01.csv\n" would pass.
FILE_NAME = re.compile(r"\A(?P<entity>chats|categories)_(?P<date>\d{4}-\d{2}-\d{2})\.csv(?:\.gz)?\Z")
GROUND_TRUTH_NAME = "ground_truth.json"  # `generate` writes it into landing/; never an extract
# Symbolic links in landing that lead outside it are refused unless this is set to 1.
ALLOW_SYMLINKS_ENV = "CHAT_ANALYTICS_ALLOW_SYMLINKS_OUTSIDE_LANDING"
MAX_COLUMN_NAME = 1000  # characters; a longer "column name" means the first line is not a header


@dataclass(frozen=True)
class Rejected:
    """The whole file cannot be used; the reason says why and what to do."""

    reason: str
    header: bytes = b""  # the first line, when it was read (kept in the failed file's manifest row)


@dataclass(frozen=True)
class Ignored:
    """A name in landing that is never loaded (hidden file, sub-folder, file outside the entity folders)."""

    reason: str


@dataclass(frozen=True)
class Header:
    """A file's first line, checked: its column names (lower-cased, trimmed) and how its lines end."""

    head: csvscan.Head
    columns: list[str]


def discover(home: Home) -> list[tuple[Path, str]]:
    """Every name in the landing folders, hidden files and sub-folders included (they are reported as
    ignored), and anything next to the two entity folders in landing/ itself (ignored too): categories
    first, then by extract date (bad names last). Nothing is opened here."""
    found: list[tuple[Path, str]] = []
    folders = (("categories", home.landing_categories), ("chats", home.landing_chats), ("", home.landing))
    known = {home.landing_categories.name, home.landing_chats.name, GROUND_TRUTH_NAME}
    for entity, folder in folders:
        try:
            with os.scandir(folder) as entries:
                found += [(folder / e.name, entity) for e in entries if entity or e.name not in known]
        except OSError as exc:
            raise UserError(
                f"cannot read the landing folder {folder}: {exc.strerror or exc}; "
                "make it a folder this user may list and read"
            ) from None

    def key(item: tuple[Path, str]) -> tuple[int, int, str, str]:
        match = FILE_NAME.fullmatch(item[0].name)
        day = match["date"] if match else "9999-99-99"
        return (0 if match else 1, 0 if item[1] == "categories" else 1, day, item[0].name)

    return sorted(found, key=key)


def landing_stat(path: Path, home: Home) -> os.stat_result | Ignored | Rejected:
    """The stat of a regular file to load, why the name is ignored, or why it may not be read: a symbolic
    link out of landing (unless allowed), a FIFO, a device, a socket. OSError when it cannot be reached."""
    if path.name.startswith("."):
        return Ignored(
            "hidden file (the name starts with '.'): never loaded; "
            "rename it without the leading dot to load it"
        )
    if path.parent == home.landing:
        return Ignored(
            f"not in {home.landing_chats.name}/ or {home.landing_categories.name}/: never loaded; "
            "move an extract into the folder of its kind to load it"
        )
    stat = os.lstat(path)
    if S_ISLNK(stat.st_mode):
        target = Path(os.path.realpath(path))
        landing = Path(os.path.realpath(home.landing))
        allowed = os.environ.get(ALLOW_SYMLINKS_ENV, "").strip().lower() in ("1", "true", "yes")
        if not target.is_relative_to(landing) and not allowed:
            return Rejected(
                f"a symbolic link to {target}, outside the landing folder {landing}: copy the file into "
                f"the landing folder, or set {ALLOW_SYMLINKS_ENV}=1 to allow links that lead out of it"
            )
        if not target.exists():
            return Rejected(f"a broken symbolic link (to {target}): remove it or restore its target")
        stat = os.stat(path)
    if S_ISDIR(stat.st_mode):
        return Ignored(f"a folder: sub-folders are not read; move its files into {path.parent} to load them")
    if not S_ISREG(stat.st_mode):
        return Rejected(
            f"not a regular file but {_kind(stat.st_mode)}: only regular files are read; "
            "remove it from the landing folder"
        )
    return stat


def _kind(mode: int) -> str:
    if S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if S_ISCHR(mode):
        return "a character device"
    if S_ISBLK(mode):
        return "a block device"
    if S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def extract_date(path: Path, entity: str) -> date | Rejected:
    """The extract date in a file's name, or why the name is not one of `entity`'s."""
    match = FILE_NAME.fullmatch(path.name)
    expected = f"{entity}_YYYY-MM-DD.csv or .csv.gz"
    if not match:
        return Rejected(f"unexpected file name {path.name!r}: expected {expected}; rename or remove the file")
    if match["entity"] != entity:
        return Rejected(f"a {match['entity']} file in the {entity} landing folder: move it")
    try:  # the calendar's rules, from the standard library
        return date.fromisoformat(match["date"])
    except ValueError:
        return Rejected(f"{match['date']!r} in the file name is not a real date: expected {expected}")


def read_header(path: Path, entity: str) -> Header | Rejected:
    """Read and check a file's first line against the entity's contract (OSError when unreadable)."""
    try:
        head = csvscan.read_head(path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        return Rejected(f"not a valid gzip file ({exc}): re-export or re-compress it")
    problem = _line_end_problem(head)
    if problem:
        return Rejected(problem, head.header)
    columns = header_columns(entity, head.header)
    if isinstance(columns, Rejected):
        return Rejected(columns.reason, head.header)
    return Header(head, columns)


def _line_end_problem(head: csvscan.Head) -> str | None:
    """CR-only line ends load (from a normalised copy); a lone CR inside the header does not."""
    if head.lone_cr:
        return (
            "the header line holds a carriage return (CR) that does not end the line: "
            f"{head.header[:200]!r}; remove it (or re-export the file with LF or CRLF line ends)"
        )
    if not head.complete:
        limit = csvscan.HEAD_LIMIT >> 20
        return f"no line end within the first {limit} MiB: the first line must be a header naming the columns"
    return None


def header_columns(entity: str, header: bytes) -> list[str] | Rejected:
    """The header's column names (lower-cased, trimmed), validated against the entity's contract."""
    if b"\0" in header:
        return Rejected("binary content (NUL bytes): this is not a CSV text file")
    text = header.decode("utf-8", errors="replace")
    if text.encode("utf-8") != header:
        return Rejected("the header line is not UTF-8 text: not a CSV text file?")
    if not text.strip():
        return Rejected("no header line: the first line must name the columns")
    longest = max(len(part) for part in text.split(","))  # no name is shorter than its longest piece
    if longest > MAX_COLUMN_NAME:
        return Rejected(
            f"the header holds a column name of at least {longest:,} characters (at most "
            f"{MAX_COLUMN_NAME:,}): {text[:80]!r}...; the first line must be a header naming the columns"
        )
    if csvscan.ends_inside_quotes(header):  # csv.reader below would see only the first physical line
        return Rejected(
            f"the header line ends inside a quoted column name ({text[:200]!r}): header names cannot "
            "contain line breaks; rename the column (or close its quote) in the first line"
        )
    names = _csv_names(text)
    if isinstance(names, Rejected):
        return names
    problem = _names_problem(entity, names, text)
    return Rejected(problem) if problem else names


def _csv_names(text: str) -> list[str] | Rejected:
    try:  # the csv module reports a malformed line only by raising
        return [n.strip().lower() for n in next(csv.reader([text]))]
    except csv.Error as exc:
        return Rejected(
            f"the header line is not valid CSV ({exc}): {text[:200]!r}; the first line must name the columns"
        )


def _names_problem(entity: str, names: list[str], text: str) -> str | None:
    long = [n for n in names if len(n) > MAX_COLUMN_NAME]
    if long:
        return (
            f"a column name of {len(long[0]):,} characters (at most {MAX_COLUMN_NAME:,}): "
            f"{long[0][:60]!r}...; the first line must be a header naming the columns"
        )
    if any(not n for n in names):
        return f"the header has an empty column name: {text!r}"
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"the header names column(s) {dupes} more than once"
    reserved = [n for n in names if n.startswith(RESERVED_PREFIX)]
    if reserved:
        return f"column name(s) {reserved} start with '_', which is reserved for lineage"
    missing = [c for c in SOURCE_COLUMNS[entity] if c not in names]
    if missing:
        return (
            f"missing required column(s) {', '.join(missing)} (header: {text!r}); "
            f"a {entity} file needs {', '.join(SOURCE_COLUMNS[entity])}"
        )
    return None
