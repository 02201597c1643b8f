"""`make docs`: the dbt documentation site as ONE offline HTML file, `<home>/serving/docs/index.html`.

`dbt docs generate --static` inlines the manifest (every model, test, source, column description and the
lineage graph) and the catalog into a single page that needs no web server and fetches nothing from the
internet. The catalog (column types of the built relations) is read from the PUBLISHED database, so
generating docs never touches, and never blocks, the pipeline's working file: its marts (in the file's
default schema) are copied without rows into a throw-away file under the names dbt's relations carry
(`warehouse.analytics.<mart>`); the marts get their real types, the upstream layers show their
documented ones. Without a published database the site is still complete, with an empty catalog.

dbt runs as a subprocess on a throw-away profile and target folder: the project's own `dbt/target`
(whose manifest Airflow renders the DAG from) is left alone.

    python -m chat_analytics.serving.dbt_docs [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from chat_analytics import duck
from chat_analytics.paths import DBT_PROJECT_DIR, HOME_ENV, SERVING_SCHEMA, WAREHOUSE_SCHEMA, Home, UserError
from chat_analytics.sql import ident

log = logging.getLogger(__name__)

PROFILE = "chat_analytics"
CATALOG_NAME = "warehouse"  # the working file's stem: the name dbt's relations carry


def _profile(catalog: Path | None) -> dict[str, object]:
    output: dict[str, object] = {"type": "duckdb", "path": ":memory:", "schema": "main", "threads": 1}
    if catalog is not None:
        output["database"] = CATALOG_NAME
        output["attach"] = [{"path": str(catalog), "alias": CATALOG_NAME, "read_only": True}]
    return {PROFILE: {"target": "docs", "outputs": {"docs": output}}}


def _catalog_source(published: Path, work: Path) -> Path:
    """The published marts, without rows, as `analytics.<mart>` in a file of `work`: the relation names
    dbt's manifest carries (the published file keeps them in its default schema)."""
    stand_in = work / f"{CATALOG_NAME}.duckdb"
    with duck.connect(stand_in) as con:
        duck.attach(con, published, "published")
        con.execute(f"create schema {ident(WAREHOUSE_SCHEMA)}")
        names = con.execute(
            "select table_name from duckdb_tables() where database_name = 'published' and schema_name = ? "
            "and not starts_with(table_name, '_')",
            [SERVING_SCHEMA],
        ).fetchall()
        for (name,) in names:
            con.execute(
                f"create table {ident(WAREHOUSE_SCHEMA)}.{ident(name)} as "
                f"from published.{ident(SERVING_SCHEMA)}.{ident(name)} limit 0"
            )
    return stand_in


def generate_docs(home: Home) -> Path:
    """Write `serving/docs/index.html` (dbt docs, static, offline); returns its path."""
    published = home.serving_database
    source = published if published.is_file() else None
    if source is None:
        log.warning("no published database at %s: the docs get an empty catalog (no column types)", published)
    dbt = Path(sys.executable).with_name("dbt")
    if not dbt.is_file():
        raise UserError(f"dbt not found next to {sys.executable}: run `make setup`")
    target = home.docs
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chat-analytics-docs-") as tmp:
        work = Path(tmp)
        catalog = _catalog_source(source, work) if source is not None else None
        # YAML is a superset of JSON: the profile needs no YAML writer.
        (work / "profiles.yml").write_text(json.dumps(_profile(catalog), indent=1), encoding="utf-8")
        command = [
            str(dbt), "docs", "generate", "--static",
            "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(work),
            "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
        ]  # fmt: skip
        if source is None:
            command.append("--empty-catalog")
        env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
        log.info("dbt docs generate --static (catalog from %s)", source or "nothing: empty catalog")
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        page = work / "target" / "static_index.html"
        if done.returncode != 0 or not page.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise UserError(f"dbt docs generate failed ({done.returncode}): {' | '.join(tail)}")
        tmp_page = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(page, tmp_page)
        os.replace(tmp_page, target)
    log.info("dbt docs site written to %s (open it in a browser; it works offline)", target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    from chat_analytics.cli import configure_logging

    parser = argparse.ArgumentParser(
        prog="python -m chat_analytics.serving.dbt_docs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--home", metavar="DIR", help=f"home folder (default: ${HOME_ENV}, else ./data)")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        generate_docs(Home.resolve(args.home))
    except UserError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
