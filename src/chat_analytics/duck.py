"""The one way the package opens DuckDB: `connect` (a file or in memory) and `attach` (a second file).

Every connection gets the progress bar off; with a home it also gets the pipeline's memory cap and
spill folder (chat_analytics.resources chooses them). A file another process holds (DuckDB: "Could not
set lock on file") is reported here, once, as one clear UserError line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from chat_analytics import resources, sql
from chat_analytics.paths import Home, UserError

_LOCKED = "could not set lock"


def connect(
    path: Path | None = None, *, home: Home | None = None, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open `path` (None: an in-memory database); with `home`, capped and spilling under that home."""
    try:
        con = duckdb.connect(":memory:" if path is None else str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise open_error(path, exc) from None
    try:
        con.execute("set enable_progress_bar = false")
        if home is not None:
            _cap(con, home)
    except BaseException:
        con.close()
        raise
    return con


def attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str, *, read_only: bool = True) -> None:
    """Attach the database file `path` as `alias` (read-only unless asked)."""
    mode = " (read_only)" if read_only else ""
    try:
        con.execute(f"attach {sql.literal(path)} as {sql.ident(alias)}{mode}")
    except duckdb.IOException as exc:
        raise open_error(path, exc) from None


class Locked(UserError):
    """The database file is held by another process (DuckDB allows one writer, and a reader blocks it)."""


def open_error(path: Path | None, exc: BaseException) -> UserError:
    """The one message for a DuckDB file that cannot be opened, a locked one in particular (`Locked`)."""
    if _LOCKED in str(exc).lower():
        return Locked(
            f"{path} is in use by another process (a build or ingest running?): wait for it to finish "
            "(analysts read serving/, never the pipeline's working warehouse)"
        )
    return UserError(f"cannot open {path or 'an in-memory database'}: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (DuckDB's messages can run over many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cap(con: duckdb.DuckDBPyConnection, home: Home) -> None:
    """Cap the connection's memory and point its spill folder under the home."""
    folder = resources.spill_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    limit = resources.memory_limit()
    try:
        con.execute(f"set memory_limit = {sql.literal(limit)}")
    except (duckdb.Error, ValueError) as exc:
        raise UserError(
            f"{resources.MEMORY_LIMIT_ENV}={limit!r} is not a memory size DuckDB accepts "
            f"({first_line(exc)}): use a size such as 4GB or 800MB"
        ) from None
    con.execute(f"set temp_directory = {sql.literal(folder)}")
