"""`chat-analytics retract FILE_NAME`: withdraw a loaded landing file without a replacement.

The file's batch leaves the manifest status `loaded` for `retracted`: its rows stop counting everywhere
(the raw.<entity> views show loaded batches only, so staging, quarantine, books and marts follow at the
next build) and stay in raw storage for audit. raw.file_actions records when, by whom and why. Left in
landing unchanged, the file is not loaded again; a changed file under that name loads as a new version.
"""

from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.lock import pipeline_lock
from chat_analytics.pipeline.warehouse import FAILED, LOADED, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retracted:
    file_name: str
    entity: str
    batch_id: int
    version: int
    rows: int


def acting_user() -> str:
    """The login name for the audit trail (the numeric uid when the system has no name for it)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return f"uid {os.getuid()}"


def retract(home: Home, file_name: str, reason: str | None = None) -> Retracted:
    """Mark the loaded version of `file_name` as retracted; UserError (one line) when there is none."""
    name = Path(file_name).name  # a landing path is accepted too
    if not name or not home.warehouse.is_file():
        raise UserError(f"cannot retract {file_name!r}: nothing has been loaded in {home.root} yet")
    with pipeline_lock(home):
        con = connect(home)
        try:
            result = _retract(con, name, reason)
        finally:
            con.close()
    log.info(
        "retracted %s (%s, version %d, batch %d, %s rows): its rows no longer count; they stay in raw "
        "storage for audit. Run `chat-analytics run` (or build) to rebuild the marts without them",
        result.file_name, result.entity, result.version, result.batch_id, f"{result.rows:,}",
    )  # fmt: skip
    landed = home.landing / result.entity / result.file_name
    if landed.exists():
        log.warning(
            "%s is still in %s: it will not be loaded again unless its content changes; remove it or "
            "re-deliver corrected content under this name",
            result.file_name, landed.parent,
        )  # fmt: skip
    return result


def _failed_only(name: str, versions: list[tuple]) -> str:
    """Why a file whose latest delivery failed cannot be retracted, and what to do instead."""
    entity = versions[-1][1]
    folder = f"landing/{entity}/" if entity else "landing"
    what = (
        "its latest delivery failed to load"
        if any(v[2] != FAILED for v in versions)
        else "it never loaded (every attempt failed)"
    )
    return (
        f"cannot retract {name!r}: {what}, and a failed file never counts, so there is nothing to "
        f"withdraw; while it stays in {folder} every `run` reports it and fails: replace it there with "
        "corrected content under the same name, or remove it"
    )


def _retract(con: duckdb.DuckDBPyConnection, name: str, reason: str | None) -> Retracted:
    con.execute("begin transaction")
    try:
        versions = con.execute(
            "select batch_id, entity, status, version, rows_loaded from raw.ingested_files "
            "where file_name = ? order by batch_id",
            [name],
        ).fetchall()
        if not versions:
            raise UserError(
                f"cannot retract {name!r}: no file of that name was ever ingested "
                "(file names have no folder, e.g. chats_2000-01-31.csv)"
            )
        loaded = [v for v in versions if v[2] == LOADED]
        if not loaded and versions[-1][2] == FAILED:
            raise UserError(_failed_only(name, versions))
        if not loaded:
            raise UserError(
                f"cannot retract {name!r}: it is not currently loaded (its latest version is "
                f"{versions[-1][2]}); nothing to withdraw"
            )
        batch_id, entity, _, version, rows = loaded[-1]
        con.execute("update raw.ingested_files set status = 'retracted' where batch_id = ?", [batch_id])
        con.execute(
            "insert into raw.file_actions values (?, ?, ?, 'retracted', null, ?, ?, ?)",
            [batch_id, entity, name, datetime.now(UTC), acting_user(), reason],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return Retracted(name, entity, batch_id, version or 1, rows or 0)
