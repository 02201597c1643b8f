"""What the warehouse already knows about a landed file: unchanged since loaded, retracted, or the same
bytes under another name. chat_analytics.pipeline.ingest asks before it loads (docs/data-contract.md,
"Re-delivered, retracted and repeated files").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb

from chat_analytics.pipeline.warehouse import LOADED, RETRACTED


def loaded_files(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, int, int], str]:
    """(entity, file name, size, mtime) -> why to skip it, for the newest version of every file name when
    that version is loaded or retracted: one query for the whole landing folder. A retracted file left in
    landing unchanged is not loaded again; an older version's bytes put back are a re-delivery."""
    known: dict[tuple[str, str, int, int], str] = {}
    for entity, name, size, mtime, status, acted_at, acted_by in con.execute(
        """
        with newest as (
            select max(batch_id) as batch_id
            from raw.ingested_files
            where status <> 'failed'
            group by entity, file_name
        )

        select f.entity, f.file_name, f.file_bytes, f.file_mtime_ns, f.status, a.acted_at, a.acted_by
        from raw.ingested_files as f
        inner join newest on f.batch_id = newest.batch_id
        left join raw.file_actions as a on f.batch_id = a.batch_id and a.action = 'retracted'
        where f.status in ('loaded', 'retracted')
        """
    ).fetchall():
        key = (entity, name, size, mtime)
        known[key] = (
            "already loaded (unchanged since)" if status == LOADED else retracted_reason(acted_at, acted_by)
        )
    return known


def retracted_reason(acted_at: datetime | None, acted_by: str | None) -> str:
    when = f"{acted_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if acted_at else "an unknown date"
    return (
        f"retracted on {when} by {acted_by or 'an unknown user'}; re-deliver corrected content under "
        "this name or remove the file"
    )


@dataclass(frozen=True)
class KnownContent:
    """A loaded or retracted file with the same bytes as a candidate."""

    file_name: str
    extract_date: date
    status: str
    acted_at: datetime | None
    acted_by: str | None


def known_content(con: duckdb.DuckDBPyConnection, entity: str, sha256: str) -> list[KnownContent]:
    """The loaded and the retracted files of `entity` whose content has this SHA-256, oldest first."""
    rows = con.execute(
        """
        select f.file_name, f.extract_date, f.status, a.acted_at, a.acted_by
        from raw.ingested_files as f
        left join raw.file_actions as a on f.batch_id = a.batch_id and a.action = 'retracted'
        where f.entity = ? and f.sha256 = ? and f.status in ('loaded', 'retracted')
        order by f.batch_id
        """,
        [entity, sha256],
    ).fetchall()
    return [KnownContent(*row) for row in rows]


def newest_version(con: duckdb.DuckDBPyConnection, entity: str, file_name: str) -> tuple[str, str] | None:
    """(status, sha256) of the newest version of this file name that did not fail, if any."""
    row = con.execute(
        "select status, sha256 from raw.ingested_files "
        "where entity = ? and file_name = ? and status <> 'failed' order by batch_id desc limit 1",
        [entity, file_name],
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


@dataclass(frozen=True)
class Landed:
    """The facts about a landed file that decide whether known content may skip it."""

    file_name: str
    entity: str
    extract_date: date
    sha256: str


def same_content_skip(
    landed: Landed, known: list[KnownContent], *, newest: tuple[str, str] | None
) -> str | None:
    """Why a landed file whose bytes are already known must not load (None: it loads).

    The same name with the same content is the file already loaded, or a retracted file left in landing.
    Under another name, known content is skipped only where loading it provably changes nothing: a
    chats extract whose every row is an exact duplicate of a row of an earlier (or same-dated) loaded
    extract (each collapses to that earlier version, docs/data-contract.md rule 1). A same-content chats
    extract dated EARLIER would take over as the first version of those rows, and a categories snapshot
    is in force by its date, so both load as their own batch. `newest`: (status, sha256) of the newest
    version of this name. When it is loaded with other bytes, the candidate is its re-delivery and must
    load to replace it, whatever other file shares its bytes (skipping it would leave the earlier version
    in force). A retracted version blocks its bytes only while it is the newest version of the name:
    bytes of an older version put back after a retraction or a replacement are a re-delivery.
    """
    loaded = [k for k in known if k.status == LOADED]
    if any(k.file_name == landed.file_name for k in loaded):
        return "already loaded"
    if newest == (RETRACTED, landed.sha256):
        retracted = [k for k in known if k.status == RETRACTED and k.file_name == landed.file_name]
        last = retracted[-1] if retracted else None
        return retracted_reason(last.acted_at if last else None, last.acted_by if last else None)
    replaces = newest is not None and newest[0] == LOADED
    if landed.entity == "chats" and not replaces:
        earlier = [k for k in loaded if k.extract_date <= landed.extract_date]
        if earlier:
            return (
                f"same content as {earlier[0].file_name}, an extract of the same or an earlier date: "
                "every row would collapse as an exact duplicate"
            )
    return None
