"""The local Airflow's settings and the dbt manifest check (no Airflow process started here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from chat_analytics.orchestration import airflow_setup
from chat_analytics.orchestration.airflow_setup import Standalone, stale_dbt_inputs


def test_standalone_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(airflow_setup.AIRFLOW_HOME_ENV, str(tmp_path / "af"))
    monkeypatch.setenv(airflow_setup.USER_ENV, "support")
    monkeypatch.setenv(airflow_setup.PASSWORD_ENV, "s3cret")
    monkeypatch.setenv(airflow_setup.PORT_ENV, "8181")
    monkeypatch.setenv("CHAT_ANALYTICS_HOME", str(tmp_path / "home"))
    sa = Standalone.from_env()
    env = sa.env({"PATH": "/usr/bin", "AIRFLOW__CORE__PARALLELISM": "8", "AIRFLOW__CORE__DAGS_FOLDER": "/x"})

    assert sa.url == "http://localhost:8181"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "af")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'af' / 'airflow.db'}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(airflow_setup.DAGS_FOLDER)  # always this project's
    assert env["AIRFLOW__CORE__PARALLELISM"] == "8"  # tuning: the caller's value wins
    assert sa.env({})["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "support:admin"
    assert env["AIRFLOW__API__PORT"] == "8181"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:8181/execution/"
    assert env["AIRFLOW__COSMOS__ENABLE_TELEMETRY"] == "False"
    assert env["CHAT_ANALYTICS_HOME"] == str(tmp_path / "home")

    sa.write_passwords()
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {"support": "s3cret"}
    assert passwords.stat().st_mode & 0o077 == 0


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (airflow_setup.AIRFLOW_HOME_ENV, airflow_setup.USER_ENV, airflow_setup.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(airflow_setup.PORT_ENV, raising=False)
    monkeypatch.delenv("CHAT_ANALYTICS_HOME", raising=False)
    sa = Standalone.from_env()
    assert (sa.user, sa.password, sa.port, sa.parallelism) == ("admin", "admin", 8080, 4)
    assert sa.airflow_home == airflow_setup.PROJECT_ROOT / "data" / "airflow"
    assert sa.pipeline_home == airflow_setup.PROJECT_ROOT / "data"


def test_not_running_without_a_live_pid(tmp_path: Path) -> None:
    sa = Standalone(airflow_home=tmp_path)
    assert sa.pid() is None
    sa.pid_file.write_text("999999999\n")
    assert sa.pid() is None
    sa.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not an Airflow process
    assert sa.pid() is None
    assert sa.stop() is False and not sa.pid_file.exists()


def test_manifest_staleness(tmp_path: Path) -> None:
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: x\n")
    (project / "models" / "a.sql").write_text("select 1\n")
    manifest = project / "target" / "manifest.json"
    assert len(stale_dbt_inputs(manifest, project)) == 2  # no manifest: everything is stale
    manifest.parent.mkdir()
    manifest.write_text("{}")
    assert stale_dbt_inputs(manifest, project) == []
    later = time.time() + 10
    os.utime(project / "models" / "a.sql", (later, later))
    assert stale_dbt_inputs(manifest, project) == [project / "models" / "a.sql"]


def test_env_command_prints_exports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv(airflow_setup.AIRFLOW_HOME_ENV, str(tmp_path))
    assert airflow_setup.main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"export AIRFLOW_HOME={tmp_path}\n" in out
    assert "export AIRFLOW__CORE__DAGS_FOLDER=" in out


def test_the_ui_and_airflow_use_the_pipelines_time_zone(tmp_path: Path) -> None:
    sa = Standalone(airflow_home=tmp_path)
    assert sa.env({})["AIRFLOW__CORE__DEFAULT_TIMEZONE"] == "Australia/Melbourne"
    assert airflow_setup.PIPELINE_TIMEZONE == "Australia/Melbourne"
    assert sa.env({"AIRFLOW__CORE__DEFAULT_TIMEZONE": "UTC"})["AIRFLOW__CORE__DEFAULT_TIMEZONE"] == "UTC"
    compose = (airflow_setup.PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "AIRFLOW__CORE__DEFAULT_TIMEZONE: Australia/Melbourne" in compose


def test_start_keeps_the_previous_logs(tmp_path: Path) -> None:
    """`make airflow` rotates standalone.log (bounded), never truncates it."""
    log = tmp_path / airflow_setup.LOG_FILE
    for start in range(airflow_setup.LOG_KEEP + 3):
        airflow_setup.rotate_log(log)
        assert not log.exists()
        log.write_text(f"start {start}\n")
    kept = sorted(tmp_path.glob(f"{airflow_setup.LOG_FILE}.*"))
    assert len(kept) == airflow_setup.LOG_KEEP
    latest = airflow_setup.LOG_KEEP + 2
    assert log.read_text() == f"start {latest}\n"
    for n in range(1, airflow_setup.LOG_KEEP + 1):
        assert (tmp_path / f"{airflow_setup.LOG_FILE}.{n}").read_text() == f"start {latest - n}\n"
