"""Airflow plumbing for chat-analytics: the warehouse pool, the dbt manifest, a local `airflow standalone`.

    python -m chat_analytics.orchestration.airflow_setup start  # `make airflow` (background, prints login)
    python -m chat_analytics.orchestration.airflow_setup stop   # what `make airflow-stop` runs
    python -m chat_analytics.orchestration.airflow_setup status
    python -m chat_analytics.orchestration.airflow_setup env    # `export ...` lines for the airflow CLI
    python -m chat_analytics.orchestration.airflow_setup init   # metadata DB + pool (Docker's init service)
    python -m chat_analytics.orchestration.airflow_setup manifest  # `dbt parse` if missing or stale

DuckDB takes one writer per file, and an open reader blocks the writer; every task that touches the
warehouse therefore runs in the pool `chat_analytics_warehouse` of one slot, which `init` (and so
`start` and the Docker stack) creates: no manual step in the UI.

`start` keeps the previous starts' `standalone.log` (rotated: `standalone.log.1` ... `.5`) and sets
Airflow's `[core] default_timezone` to the pipeline's zone, Australia/Melbourne (the UI itself shows the
browser's zone in Airflow 3.3: docs/airflow.md).

Settings, all optional (environment): CHAT_ANALYTICS_AIRFLOW_HOME (default <project>/data/airflow),
CHAT_ANALYTICS_AIRFLOW_PORT (8080), CHAT_ANALYTICS_AIRFLOW_USER / CHAT_ANALYTICS_AIRFLOW_PASSWORD
(admin / admin), CHAT_ANALYTICS_AIRFLOW_PARALLELISM (4) and CHAT_ANALYTICS_HOME (<project>/data).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from chat_analytics.dbt_vars import local_timezone
from chat_analytics.paths import DBT_PROJECT_DIR, HOME_ENV, PROJECT_ROOT

log = logging.getLogger(__name__)

POOL = "chat_analytics_warehouse"
POOL_SLOTS = 1
POOL_DESCRIPTION = (
    "chat-analytics DuckDB warehouse: one writer at a time. Every task that reads or writes "
    "warehouse.duckdb runs here, so two tasks never hold the file at once. Keep it at 1 slot."
)

DAGS_FOLDER = PROJECT_ROOT / "dags"
DEFAULT_HOME = PROJECT_ROOT / "data"
MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
#: What `dbt parse` reads: a manifest older than any of these is stale.
DBT_INPUTS = (
    *("dbt_project.yml", "profiles.yml", "packages.yml", "dependencies.yml"),
    *("models", "macros", "tests", "seeds", "snapshots", "analyses"),
)
WAREHOUSE_ENV = "CHAT_ANALYTICS_WAREHOUSE"  # the dbt profile's warehouse path (see build.py)

AIRFLOW_HOME_ENV = "CHAT_ANALYTICS_AIRFLOW_HOME"
PORT_ENV = "CHAT_ANALYTICS_AIRFLOW_PORT"
USER_ENV = "CHAT_ANALYTICS_AIRFLOW_USER"
PASSWORD_ENV = "CHAT_ANALYTICS_AIRFLOW_PASSWORD"
PARALLELISM_ENV = "CHAT_ANALYTICS_AIRFLOW_PARALLELISM"
DEFAULT_PORT = 8080
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "admin"
DEFAULT_PARALLELISM = 4
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 30.0
PID_FILE = "standalone.pid"
LOG_FILE = "standalone.log"
#: Earlier runs' logs kept beside it: standalone.log.1 (the previous start) ... standalone.log.<LOG_KEEP>.
LOG_KEEP = 5
#: The pipeline's time zone (its schedule's): Airflow's `[core] default_timezone` in what `make airflow`
#: and `make up` start.
PIPELINE_TIMEZONE = local_timezone()  # the dbt var `local_timezone`
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
#: Imported once by the scheduler's fork server (Airflow >= 3.3), inherited by every task process.
FORKSERVER_PRELOAD = ",".join(
    (
        "airflow",
        "airflow.executors.local_executor",
        "airflow.sdk.execution_time.task_runner",
        "dbt.cli.main",
        "dbt.adapters.duckdb.impl",
        "cosmos.operators.local",
        "chat_analytics.pipeline.ingest",
    )
)
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def pipeline_home() -> Path:
    """The chat-analytics home the DAGs work on: `$CHAT_ANALYTICS_HOME`, else <project>/data.

    Like the CLI, but never relative to the working directory: Airflow components start anywhere.
    """
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


# ----------------------------------------------------------------------------------------------------
# pool and metadata database (need Airflow configured: AIRFLOW_HOME and friends set before the import)


def ensure_pool() -> None:
    """Create the warehouse pool, or reset it to one slot; idempotent."""
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(POOL, POOL_SLOTS, POOL_DESCRIPTION, include_deferred=False)
    log.info("pool %s ready (%d slot)", POOL, POOL_SLOTS)


def init_airflow() -> None:
    """Create or upgrade the metadata database, then the pool."""
    from airflow.utils import db

    db.initdb()
    ensure_pool()


def write_passwords_file(path: Path, user: str, password: str) -> None:
    """The simple auth manager's passwords file, holding just the known login (owner-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({user: password}) + "\n", encoding="utf-8")
    path.chmod(0o600)


# ----------------------------------------------------------------------------------------------------
# the dbt manifest the DAG renders from


def stale_dbt_inputs(manifest: Path = MANIFEST, project: Path = DBT_PROJECT_DIR) -> list[Path]:
    """dbt project files newer than the manifest (every input when the manifest is missing)."""
    files: list[Path] = []
    for name in DBT_INPUTS:
        path = project / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file()]
    if not manifest.is_file():
        return files
    built = manifest.stat().st_mtime
    return [p for p in files if p.stat().st_mtime > built]


def parse_dbt(project: Path = DBT_PROJECT_DIR) -> None:
    """`dbt parse`: writes target/manifest.json. Needs no warehouse and no network."""
    from dbt.cli.main import dbtRunner

    os.environ.setdefault(WAREHOUSE_ENV, str(pipeline_home() / "warehouse" / "warehouse.duckdb"))
    result = dbtRunner().invoke(["parse", "--project-dir", str(project), "--profiles-dir", str(project)])
    if not result.success:
        raise RuntimeError(f"dbt parse failed: {result.exception or 'see the dbt output above'}")


def ensure_manifest() -> bool:
    """Run `dbt parse` when the manifest is missing or older than a dbt file; True when it parsed."""
    stale = stale_dbt_inputs()
    if not stale:
        log.info("dbt manifest %s is up to date", MANIFEST)
        return False
    log.info("dbt manifest is missing or older than %s: running dbt parse", stale[0])
    parse_dbt()
    return True


# ----------------------------------------------------------------------------------------------------
# local `airflow standalone`


@dataclass(frozen=True)
class Standalone:
    """A local Airflow (SQLite, LocalExecutor) running this project's DAGs."""

    airflow_home: Path
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    parallelism: int = DEFAULT_PARALLELISM
    pipeline_home: Path = DEFAULT_HOME

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Standalone:
        default_home = PROJECT_ROOT / "data" / "airflow"
        return cls(
            airflow_home=Path(environ.get(AIRFLOW_HOME_ENV) or default_home).expanduser().resolve(),
            port=int(environ.get(PORT_ENV) or DEFAULT_PORT),
            user=environ.get(USER_ENV) or DEFAULT_USER,
            password=environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD,
            parallelism=int(environ.get(PARALLELISM_ENV) or DEFAULT_PARALLELISM),
            pipeline_home=pipeline_home(),
        )

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.airflow_home / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.airflow_home / LOG_FILE

    def env(self, base: Mapping[str, str] = os.environ) -> dict[str, str]:
        """The environment of every Airflow process of this instance.

        Where things live (home, database, DAGs, ports, login) is always this instance's; tuning settings
        (parallelism, examples, pausing) are defaults an `AIRFLOW__...` variable in `base` overrides.
        """
        env = dict(base)
        defaults = {
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # naive dates (REST API, CLI) and the components' log times in the pipeline's zone
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": PIPELINE_TIMEZONE,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "60",
            # Task processes fork from a server that imported dbt and Cosmos once: ~1 s less per task.
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": FORKSERVER_PRELOAD,
        }
        for key, value in defaults.items():
            env.setdefault(key, value)
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.airflow_home / 'airflow.db'}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / PASSWORDS_FILE),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"{self.url}/",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
                "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
                "DO_NOT_TRACK": "1",
                "SCARF_ANALYTICS": "false",
                HOME_ENV: str(self.pipeline_home),
                USER_ENV: self.user,
                PASSWORD_ENV: self.password,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
            }
        )
        return env

    def pid(self) -> int | None:
        """The running standalone's process id (it leads its own process group), else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # no /proc (macOS): trust a live pid
            return pid if _alive(pid) else None
        is_standalone = b"standalone" in argv and any(a.endswith(b"airflow") for a in argv)
        return pid if is_standalone else None

    def write_passwords(self) -> None:
        write_passwords_file(self.airflow_home / PASSWORDS_FILE, self.user, self.password)

    def init(self) -> None:
        """Metadata DB and pool, in a child process with this instance's Airflow settings."""
        self.write_passwords()
        with self.log_file.open("ab") as out:
            done = subprocess.run(
                [sys.executable, "-m", "chat_analytics.orchestration.airflow_setup", "init"],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode:
            raise RuntimeError(f"preparing Airflow failed (exit {done.returncode}): see {self.log_file}")

    def start(self, *, timeout: float = START_TIMEOUT_SECONDS) -> int:
        """Start `airflow standalone` in the background in its own process group; wait until it serves."""
        running = self.pid()
        if running:
            log.info("Airflow is already running (pid %d) at %s", running, self.url)
            return running
        if _port_in_use(self.port):
            raise RuntimeError(
                f"port {self.port} is already in use: stop what uses it or pick another with {PORT_ENV}=..."
            )
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        rotate_log(self.log_file)
        log.info("preparing Airflow in %s (metadata database, pool %s)", self.airflow_home, POOL)
        self.init()
        log.info("starting airflow standalone; its log: %s", self.log_file)
        with self.log_file.open("ab") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), "standalone"],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.airflow_home,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise RuntimeError(f"airflow standalone exited ({process.returncode}): see {self.log_file}")
            if self.healthy():
                return process.pid
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"Airflow did not answer on {self.url} in {timeout:.0f} s: see {self.log_file}")

    def healthy(self) -> bool:
        """The API server answers and reports a healthy metadata database and scheduler."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=3) as response:
                health = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return all(
            (health.get(part) or {}).get("status") == "healthy" for part in ("metadatabase", "scheduler")
        )

    def stop(self, *, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
        """Stop Airflow and every process it started (see `stop_group`); True when it was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        stop_group(pid, timeout=timeout)
        self.pid_file.unlink(missing_ok=True)
        return True


def rotate_log(path: Path, keep: int = LOG_KEEP) -> None:
    """Keep the previous logs: `path` becomes `path.1`, `path.1` becomes `path.2`, ... up to `path.<keep>`."""
    names = [path, *(path.with_name(f"{path.name}.{n}") for n in range(1, keep + 1))]
    for newer, older in reversed(list(itertools.pairwise(names))):  # the oldest is overwritten first
        if newer.exists():
            newer.replace(older)


def stop_group(pgid: int, *, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop the process group led by `pgid` and wait until every process of it is gone.

    SIGINT to the leader first: `airflow standalone` then stops its components in order (a few
    seconds). Whatever is left gets SIGTERM, then SIGKILL, as a group.
    """
    steps = (
        (lambda: os.kill(pgid, signal.SIGINT), "SIGINT to the leader", timeout * 2 / 3),
        (lambda: os.killpg(pgid, signal.SIGTERM), "SIGTERM to the group", timeout / 3),
        (lambda: os.killpg(pgid, signal.SIGKILL), "SIGKILL to the group", 5.0),
    )
    for send, what, wait in steps:
        with contextlib.suppress(ProcessLookupError):
            send()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                _reap(pgid)
                return
            time.sleep(0.2)
        log.warning("Airflow (process group %d) still running %.0f s after %s", pgid, wait, what)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies count as gone: a group of only zombies has stopped
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _banner(sa: Standalone, pid: int) -> str:
    return "\n".join(
        [
            "",
            f"  Airflow is running (pid {pid}): {sa.url}",
            f"  login:     {sa.user} / {sa.password}   (change with {USER_ENV} / {PASSWORD_ENV})",
            f"  DAGs:      chat_analytics, chat_analytics_sample_feed (from {DAGS_FOLDER})",
            f"  data home: {sa.pipeline_home}",
            f"  log:       tail -f {sa.log_file}",
            "  stop:      make airflow-stop",
            "",
        ]
    )


def _cmd_start(sa: Standalone) -> int:
    pid = sa.start()
    sys.stdout.write(_banner(sa, pid) + "\n")
    return 0


def _cmd_stop(sa: Standalone) -> int:
    if sa.stop():
        log.info("Airflow stopped")
    else:
        log.info("Airflow was not running (no live process in %s)", sa.pid_file)
    return 0


def _cmd_status(sa: Standalone) -> int:
    pid = sa.pid()
    if pid is None:
        log.info("Airflow is not running")
        return 1
    log.info("Airflow is running (pid %d) at %s: %s", pid, sa.url, "healthy" if sa.healthy() else "starting")
    return 0


def _cmd_env(sa: Standalone) -> int:
    keys = [
        "AIRFLOW_HOME",
        *sorted(k for k in sa.env() if k.startswith("AIRFLOW__")),
        HOME_ENV,
        "DO_NOT_TRACK",
    ]
    env = sa.env()
    sys.stdout.write("".join(f"export {k}={_shell_quote(env[k])}\n" for k in keys))
    return 0


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _cmd_init(sa: Standalone) -> int:
    """Metadata DB and pool; plus the login's passwords file when Airflow is configured to read one."""
    passwords = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    if passwords:
        write_passwords_file(Path(passwords), sa.user, sa.password)
    init_airflow()
    return 0


def _cmd_manifest(_: Standalone) -> int:
    ensure_manifest()
    return 0


COMMANDS = {
    "start": _cmd_start,
    "stop": _cmd_stop,
    "status": _cmd_status,
    "env": _cmd_env,
    "init": _cmd_init,
    "manifest": _cmd_manifest,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chat_analytics.orchestration.airflow_setup",
        description="Run this project's Airflow locally, and prepare any Airflow for its DAGs.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return COMMANDS[args.command](Standalone.from_env())
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
