"""Warn-severity findings made visible in the Airflow UI: a note on the task instance and on the DAG run.

Airflow 3 tasks cannot write Airflow's database (the Task SDK blocks the ORM, and its execution API has no
call to set a note), so the notes go through Airflow's public REST API v2, as a user would set them:
`PATCH /api/v2/dags/{dag}/dagRuns/{run}` and `PATCH .../taskInstances/{task}?update_mask=note`, with a
token from `/auth/token` for the login `$CHAT_ANALYTICS_AIRFLOW_USER` / `$CHAT_ANALYTICS_AIRFLOW_PASSWORD`
(`make airflow` and `make up` set both in every Airflow process). The API is reached at
`$CHAT_ANALYTICS_AIRFLOW_API_URL`, else Airflow's `[api] base_url`.

The task's note lists its findings; the run's note counts every finding of the run so far and links the
task log and the report. Never raises: a note that cannot be set is one log line, the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

API_URL_ENV = "CHAT_ANALYTICS_AIRFLOW_API_URL"
USER_ENV = (
    "CHAT_ANALYTICS_AIRFLOW_USER"  # as chat_analytics.orchestration.airflow_setup (no Airflow import here)
)
PASSWORD_ENV = "CHAT_ANALYTICS_AIRFLOW_PASSWORD"
#: Airflow refuses notes longer than this.
MAX_NOTE_CHARS = 1000
API_TIMEOUT_SECONDS = 10.0

#: Findings noted so far in this process, per (dag_id, run_id), then per task: name -> message.
_FINDINGS: dict[tuple[str, str], dict[str, dict[str, str]]] = {}


def api_url() -> str:
    """The REST API's base URL, no trailing slash."""
    url = os.environ.get(API_URL_ENV, "").strip()
    if not url:
        from airflow.configuration import conf

        url = str(conf.get("api", "base_url", fallback="") or "http://localhost:8080")
    return url.rstrip("/")


def _call(method: str, url: str, body: Mapping[str, Any], token: str = "") -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=API_TIMEOUT_SECONDS) as response:  # the Airflow API only
        return json.load(response)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_NOTE_CHARS else text[: MAX_NOTE_CHARS - 1] + "…"


def run_note(findings: Mapping[str, Mapping[str, str]], log_url: str, report: Path | None) -> str:
    """The DAG run's note: how many warn-severity findings, which, where to read them."""
    count = sum(len(f) for f in findings.values())
    names = [name for by_task in findings.values() for name in by_task]
    plural = "s" if count != 1 else ""
    lines = [
        f"**{count} warn-severity finding{plural}** (the run goes on): {', '.join(names)}.",
        f"Details: [the log of {', '.join(findings)}]({log_url}).",
    ]
    if report is not None:
        lines.append(f"Report: [{report}]({report.as_uri()}) (written by the `report` task).")
    return _clip("\n\n".join(lines))


def task_note(findings: Mapping[str, str]) -> str:
    """The task instance's note: one line per finding."""
    lines = [f"{len(findings)} warn-severity finding{'s' if len(findings) != 1 else ''}:"]
    lines += [f"- {name}: {message}" for name, message in findings.items()]
    return _clip("\n".join(lines))


def note_warnings(
    context: Mapping[str, Any], names: Sequence[str], messages: Sequence[str], *, report: Path | None
) -> bool:
    """Set the task instance's and the DAG run's notes for these findings; True when both were set.

    Findings add up per run within the process (the build task's freshness and its `dbt build`).
    """
    ti = context.get("task_instance") or context.get("ti")
    dag_id, run_id, task_id = (getattr(ti, k, None) for k in ("dag_id", "run_id", "task_id"))
    if not (dag_id and run_id and task_id and names):
        return False
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    if not (user and password):
        log.info(
            "no Airflow notes for the warnings: set %s and %s to let tasks set them", USER_ENV, PASSWORD_ENV
        )
        return False
    by_task = _FINDINGS.setdefault((str(dag_id), str(run_id)), {})
    mine = by_task.setdefault(str(task_id), {})
    mine.update(zip(names, messages, strict=False))
    try:
        base = api_url()
        token = _call("POST", f"{base}/auth/token", {"username": user, "password": password})["access_token"]
        run = f"{base}/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}"
        log_url = str(getattr(ti, "log_url", "") or run)
        _call(
            "PATCH", f"{run}/taskInstances/{_q(task_id)}?update_mask=note", {"note": task_note(mine)}, token
        )
        _call("PATCH", f"{run}?update_mask=note", {"note": run_note(by_task, log_url, report)}, token)
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        detail = exc.read().decode(errors="replace")[:300] if isinstance(exc, urllib.error.HTTPError) else ""
        log.warning(
            "could not set the Airflow notes for the warnings (%s %s): they are in this log", exc, detail
        )
        return False
    log.info("noted %d warn-severity finding(s) on task %s and on run %s", len(mine), task_id, run_id)
    return True


def _q(part: object) -> str:
    return urllib.parse.quote(str(part), safe="")
