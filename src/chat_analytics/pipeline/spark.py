"""The Spark engine (`--engine spark`): the same dbt project on a Spark session, same published outputs.

The raw layer stays DuckDB's: `chat-analytics ingest` keeps every guarantee it has (one loader, rejects
with reasons, lineage, re-deliveries, retractions), and a Spark build starts by exporting it as a
Parquet *bronze* layer both engines could read (`<home>/bronze/<entity>/batch_<id>_<token>.parquet`,
one file per loaded batch, written once, the token tied to the batch's content and load time; files of
batches that stopped counting are removed; the small ingest manifest is rewritten every time). dbt then
builds every model and runs every data test on Spark
(target `spark` in dbt/profiles.yml: a local session, a Hive catalog in an embedded Derby metastore and
Parquet tables under `<home>/spark`), with the sources registered over bronze by an on-run-start hook
(macro `register_raw_sources`). Last, the models analysts and publish read (schemas analytics, quality
and monitoring) are copied from Spark into the warehouse file under the types their DuckDB contracts
declare, so `publish` and `report` run unchanged and the serving file has the same columns and types
whichever engine built it.

Spark keeps its tables between builds; DuckDB's incremental models do not know what Spark wrote, so a
DuckDB build after a Spark build rebuilds in full (`engine_switched`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from chat_analytics import duck, sql
from chat_analytics.paths import Home, UserError

log = logging.getLogger(__name__)

SPARK_DIR_ENV = "CHAT_ANALYTICS_SPARK_DIR"
BRONZE_DIR_ENV = "CHAT_ANALYTICS_BRONZE_DIR"
SPARK_TARGET = "spark"
MIN_JAVA = 17  # Spark 4
#: The schemas whose models publish, report and analysts read: copied from Spark after a build.
PUBLISHED_SCHEMAS = ("analytics", "quality", "monitoring")
#: What the last build of a home ran on (`warehouse/engine.json`).
ENGINE_FILE = "engine.json"

#: Bronze columns per entity, as exported (DuckDB types; the Spark DDL is in macros/engine/raw_sources.sql).
BRONZE_COLUMNS = {
    "chats": (
        "id",
        "chat_category_id",
        "created_at",
        "is_customer_initiated",
        "resolved_at",
    ),
    "categories": ("id", "parent_id", "disabled"),
}
LINEAGE = (
    "cast(_batch_id as bigint) as _batch_id",
    "_source_file",
    "_source_sha256",
    "_extract_date",
    "cast(_line_number as bigint) as _line_number",
    "_ingested_at",
)
MANIFEST_COLUMNS = (
    "batch_id",
    "entity",
    "file_name",
    "extract_date",
    "sha256",
    "file_bytes",
    "version",
    "status",
    "reason",
    "header",
    "extra_columns",
    "rows_loaded",
    "rows_rejected",
    "blank_lines",
    "started_at",
    "finished_at",
)


def spark_dir(home: Home) -> Path:
    """Spark's metastore and tables: `$CHAT_ANALYTICS_SPARK_DIR`, else `<home>/spark`."""
    chosen = os.environ.get(SPARK_DIR_ENV, "").strip()
    return Path(chosen).expanduser().resolve() if chosen else home.root / "spark"


def bronze_dir(home: Home) -> Path:
    """The Parquet bronze layer: `$CHAT_ANALYTICS_BRONZE_DIR`, else `<home>/bronze`."""
    chosen = os.environ.get(BRONZE_DIR_ENV, "").strip()
    return Path(chosen).expanduser().resolve() if chosen else home.root / "bronze"


def dbt_env(home: Home) -> dict[str, str]:
    """What the `spark` target of dbt/profiles.yml reads."""
    return {SPARK_DIR_ENV: str(spark_dir(home)), BRONZE_DIR_ENV: str(bronze_dir(home))}


# ---- Java ------------------------------------------------------------------------------------------

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def require_java() -> str:
    """The Java Spark will start (`$JAVA_HOME/bin/java`, else `java` on PATH) and its major version;
    one clear line when there is none or it is older than Spark needs."""
    java_home = os.environ.get("JAVA_HOME", "").strip()
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    install = (
        f"install a Java {MIN_JAVA} or newer runtime (Debian/Ubuntu: `apt-get install "
        f"openjdk-{MIN_JAVA}-jre-headless`) and put it on PATH or set JAVA_HOME"
    )
    if not java or not Path(java).is_file():
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no `java` on PATH"
        raise UserError(f"the Spark engine needs Java {MIN_JAVA}+, {where}: {install}")
    try:
        shown = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(
            f"the Spark engine needs Java {MIN_JAVA}+, {java} did not run ({exc}): {install}"
        ) from None
    found = _VERSION.search(shown or "")
    if not found:
        raise UserError(f"the Spark engine needs Java {MIN_JAVA}+, {java} printed no version: {install}")
    major = int(found.group(1))
    if major == 1 and found.group(2):  # 1.8 = Java 8
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise UserError(f"the Spark engine needs Java {MIN_JAVA}+, {java} is Java {major}: {install}")
    return f"{java} (Java {major})"


# ---- bronze ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BronzeSync:
    written: int
    removed: int
    kept: int
    seconds: float


def sync_bronze(home: Home) -> BronzeSync:
    """Export every loaded batch the bronze layer lacks, remove the files of batches no longer loaded and
    rewrite the manifest. Each file appears whole (written under a hidden name, then renamed), so a crash
    leaves either no file or a complete one; a batch's rows never change once loaded, so a file once
    written stays right until its batch stops counting."""
    started = time.monotonic()
    root = bronze_dir(home)
    written = removed = kept = 0
    with duck.connect(home.warehouse, home=home, read_only=True) as con:
        for entity, columns in BRONZE_COLUMNS.items():
            folder = root / entity
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".*"):  # a crash's leftovers
                _remove(stale)
            # A file's name carries its batch and a token of that batch's content and load time, so a
            # file left by another warehouse (rebuilt from scratch, batch ids reused) is never taken.
            loaded = {
                batch: f"batch_{batch:012d}_{_token(sha256, finished_at)}.parquet"
                for batch, sha256, finished_at in con.execute(
                    "select batch_id, sha256, cast(finished_at as varchar) from raw.ingested_files "
                    "where status = 'loaded' and entity = ?",
                    [entity],
                ).fetchall()
            }
            wanted = set(loaded.values())
            for path in folder.glob("batch_*.parquet"):
                if path.name not in wanted:
                    _remove(path)
                    removed += 1
            missing = {batch: name for batch, name in loaded.items() if not (folder / name).is_file()}
            kept += len(loaded) - len(missing)
            if missing:
                written += _export(con, entity, columns, missing, folder)
        manifest = root / "ingested_files"
        manifest.mkdir(parents=True, exist_ok=True)
        hidden = manifest / ".ingested_files.parquet"
        con.execute(
            f"copy (select {', '.join(MANIFEST_COLUMNS)} from raw.ingested_files) "
            f"to {sql.literal(str(hidden))} (format parquet)"
        )
        hidden.replace(manifest / "ingested_files.parquet")
    result = BronzeSync(written, removed, kept, time.monotonic() - started)
    log.info(
        "bronze layer %s: %d batch file(s) written, %d removed, %d kept (%.1f s)",
        root,
        result.written,
        result.removed,
        result.kept,
        result.seconds,
    )
    return result


def _token(sha256: str | None, finished_at: str | None) -> str:
    return hashlib.sha256(f"{sha256}|{finished_at}".encode()).hexdigest()[:12]


def _export(
    con: duckdb.DuckDBPyConnection,
    entity: str,
    columns: tuple[str, ...],
    batches: dict[int, str],
    folder: Path,
) -> int:
    """One partitioned COPY for all the missing batches (id: file name), then each file moved into place.
    A batch without rows (a header-only file) gets no file."""
    scratch = folder / f".export-{os.getpid()}"
    _remove(scratch)
    batch_list = ", ".join(str(int(b)) for b in batches)
    con.execute(
        f"copy (select {', '.join(columns)}, {', '.join(LINEAGE)} "
        f"from {sql.qualified('raw', entity)} where _batch_id in ({batch_list})) "
        f"to {sql.literal(str(scratch))} "
        "(format parquet, compression zstd, partition_by (_batch_id), write_partition_columns true)"
    )
    count = 0
    for part in sorted(scratch.glob("_batch_id=*")):
        name = batches[int(part.name.split("=", 1)[1])]
        files = sorted(part.glob("*.parquet"))
        if len(files) == 1:
            files[0].replace(folder / name)
        else:  # several files for one batch: merged into one
            target = folder / f".{name}"
            con.execute(
                f"copy (select * from read_parquet({sql.literal(str(part))} || '/*.parquet')) "
                f"to {sql.literal(str(target))} (format parquet, compression zstd)"
            )
            target.replace(folder / name)
        count += 1
    _remove(scratch)
    return count


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- engine marker ---------------------------------------------------------------------------------


def last_engine(home: Home) -> str | None:
    try:
        return str(json.loads((home.warehouse_dir / ENGINE_FILE).read_text(encoding="utf-8"))["engine"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_engine(home: Home, engine: str) -> None:
    path = home.warehouse_dir / ENGINE_FILE
    hidden = path.with_name(f".{ENGINE_FILE}")
    hidden.write_text(json.dumps({"engine": engine}) + "\n", encoding="utf-8")
    hidden.replace(path)


def engine_switched(home: Home, engine: str) -> bool:
    """True when the home's last build ran on another engine (its incremental state is not this one's)."""
    previous = last_engine(home)
    return previous is not None and previous != engine


# ---- Spark's models into the warehouse -------------------------------------------------------------


def import_models(home: Home, target_dir: Path) -> int:
    """Copy the models of PUBLISHED_SCHEMAS from Spark's tables (their Parquet files under
    `<home>/spark/warehouse`, no Spark session needed) into the warehouse, cast to their contract types
    and with their descriptions; returns the number of models copied. All or nothing: one transaction."""
    models = _published_models(target_dir / "manifest.json")
    tables = spark_dir(home) / "warehouse"
    started = time.monotonic()
    with duck.connect(home.warehouse, home=home) as con:
        con.execute("set TimeZone = 'UTC'")  # Spark's timestamps are UTC instants; the marts' naive UTC
        con.execute("begin")
        for model in models:
            _load(con, model, tables / f"{model['schema']}.db" / model["name"])
        con.execute("commit")
    log.info(
        "%d Spark models copied into %s (%.1f s)", len(models), home.warehouse, time.monotonic() - started
    )
    return len(models)


def _published_models(manifest_path: Path) -> list[dict[str, Any]]:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    found = []
    for node in manifest["nodes"].values():
        if node.get("resource_type") != "model" or node.get("schema") not in PUBLISHED_SCHEMAS:
            continue
        if not node.get("config", {}).get("enabled", True):
            continue
        found.append(
            {
                "schema": node["schema"],
                "name": node["alias"] or node["name"],
                "description": node.get("description") or "",
                "columns": {
                    name: {"type": column.get("data_type"), "description": column.get("description") or ""}
                    for name, column in node.get("columns", {}).items()
                },
            }
        )
    return sorted(found, key=lambda model: (model["schema"], model["name"]))


def _load(con: duckdb.DuckDBPyConnection, model: dict[str, Any], folder: Path) -> None:
    table = sql.qualified(model["schema"], model["name"])
    declared = {name: column["type"] for name, column in model["columns"].items() if column["type"]}
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not folder.is_dir():
        raise UserError(f"Spark built no table {model['schema']}.{model['name']} (no folder {folder})")
    con.execute(f"create schema if not exists {sql.ident(model['schema'])}")
    is_view = con.execute(
        "select count(*) from duckdb_views() where database_name = current_database() "
        "and schema_name = ? and view_name = ?",
        [model["schema"], model["name"]],
    ).fetchone()
    if is_view and is_view[0]:  # DuckDB builds the top-ten marts as views; Spark's rows are copied
        con.execute(f"drop view {table}")
    if files:
        source = f"read_parquet({sql.literal(str(folder / '*.parquet'))})"
        found = [row[0] for row in con.execute(f"describe select * from {source}").fetchall()]
        selected = ", ".join(
            f"cast({sql.ident(name)} as {declared[name]}) as {sql.ident(name)}"
            if name in declared
            else sql.ident(name)
            for name in found
        )
        con.execute(f"create or replace table {table} as select {selected} from {source}")
    else:  # an empty result: Spark wrote no file; the contract's columns, no rows
        found = list(declared)
        columns = ", ".join(f"{sql.ident(name)} {kind}" for name, kind in declared.items())
        con.execute(f"create or replace table {table} ({columns})")
    if model["description"].strip():
        con.execute(f"comment on table {table} is {sql.literal(model['description'].strip())}")
    for name, column in model["columns"].items():
        if column["description"].strip() and name in found:
            con.execute(
                f"comment on column {table}.{sql.ident(name)} is {sql.literal(column['description'].strip())}"
            )
