"""Plain dbt, the way dbt users run it: no environment variable set, from the dbt folder (`dbt run`,
`dbt test`) and from the repository root (`dbt build --project-dir dbt`), on the default home.

The project is copied with its links (the root's `profiles.yml` -> `dbt/profiles.yml`, `dbt/data` ->
`../data`) into a temporary repository layout whose `data/` holds a small ingested sample, so the
default home of the copy is that sample and the repository's own `data/` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from chat_analytics.cli import main as cli_main
from chat_analytics.paths import DBT_PROJECT_DIR, PROJECT_ROOT

DBT = Path(sys.executable).with_name("dbt")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain-dbt") / "repo"
    shutil.copytree(
        DBT_PROJECT_DIR, root / "dbt", symlinks=True, ignore=shutil.ignore_patterns("target", "logs")
    )
    shutil.copy(PROJECT_ROOT / "profiles.yml", root / "profiles.yml", follow_symlinks=False)
    home = ["--home", str(root / "data")]
    assert cli_main(["generate", *home, "--chats", "1500", "--end", "2000-01-20"]) == 0
    assert cli_main(["ingest", *home]) == 0
    return root


def _dbt(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The venv's dbt with a scrubbed environment: no CHAT_ANALYTICS_*, no DBT_*, a HOME without ~/.dbt."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd.parent / "no-home")}
    return subprocess.run(
        [str(DBT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )


def _chats(repo: Path) -> int:
    warehouse = repo / "data" / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute("select count(*) from analytics.fct_chats").fetchone()[0]


def test_the_repository_links_the_profile_and_the_default_home() -> None:
    assert (PROJECT_ROOT / "profiles.yml").resolve() == DBT_PROJECT_DIR / "profiles.yml"
    assert os.readlink(DBT_PROJECT_DIR / "data") == "../data"


def test_dbt_build_from_the_repository_root(repo: Path) -> None:
    done = _dbt(repo, "build", "--project-dir", "dbt")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert _chats(repo) > 1000


def test_dbt_run_and_test_from_the_dbt_folder(repo: Path) -> None:
    for command in ("run", "test"):
        done = _dbt(repo / "dbt", command)
        assert done.returncode == 0, f"dbt {command}: " + done.stdout[-3000:] + done.stderr[-2000:]
    assert _chats(repo) > 1000
