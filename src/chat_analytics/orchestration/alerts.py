"""Alerts for unattended Airflow runs: a clear log line always, a webhook POST when one is configured.

`task_failure_alert` is the Airflow `on_failure_callback` of every chat-analytics task: it runs once a
task has failed for good (after its retries), in the task's own process. It logs one ERROR line that
starts with `ALERT` and, when `$CHAT_ANALYTICS_ALERT_WEBHOOK` is set, POSTs a Slack-compatible JSON
message (incoming-webhook format: `text` plus one attachment whose fields name the DAG, task, run, log
URL and error). Delivery problems are logged, never raised: an alert must not hide the failure itself.

`dbt_warning_alert` is the Cosmos `on_warning_callback`: a warn-severity finding logs a WARNING line
naming the tests, becomes a note on the task instance and on the DAG run in Airflow's UI
(chat_analytics.orchestration.notes), and the run goes on. `cosmos_warning_alert` is a Cosmos operator
`callback` that calls it for the warn-severity results of any dbt invocation (the DAG's one `dbt build`
included, which Cosmos runs without `on_warning_callback`).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_ENV = "CHAT_ANALYTICS_ALERT_WEBHOOK"
WEBHOOK_TIMEOUT_SECONDS = 10.0
WEBHOOK_ATTEMPTS = 3
MAX_ERROR_CHARS = 2_000


@dataclass(frozen=True)
class Alert:
    """What failed, where to look."""

    dag_id: str
    task_id: str
    run_id: str
    log_url: str
    error: str
    try_number: int | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Alert:
        ti = context.get("task_instance") or context.get("ti")
        dag_run = context.get("dag_run")
        error = context.get("exception")
        return cls(
            dag_id=str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "?")),
            task_id=str(getattr(ti, "task_id", "?")),
            run_id=str(getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "?")),
            log_url=_log_url(ti),
            error=_describe(error),
            try_number=getattr(ti, "try_number", None),
        )

    def line(self) -> str:
        return (
            f"ALERT {self.dag_id}: task {self.task_id} failed in run {self.run_id}: {self.error} "
            f"(log: {self.log_url})"
        )

    def payload(self) -> dict[str, Any]:
        """A Slack incoming-webhook message (also accepted by Mattermost, Rocket.Chat, Teams workflows)."""
        fields = [
            {"title": "DAG", "value": self.dag_id, "short": True},
            {"title": "Task", "value": self.task_id, "short": True},
            {"title": "Run", "value": self.run_id, "short": False},
            {"title": "Log", "value": self.log_url, "short": False},
            {"title": "Error", "value": self.error, "short": False},
        ]
        if self.try_number is not None:
            fields.insert(2, {"title": "Try", "value": str(self.try_number), "short": True})
        return {
            "text": f":rotating_light: {self.dag_id}: task `{self.task_id}` failed in run `{self.run_id}`",
            "attachments": [
                {
                    "color": "danger",
                    "fallback": self.line(),
                    "title": "Open the task log",
                    "title_link": self.log_url,
                    "fields": fields,
                }
            ],
        }


def _log_url(ti: Any) -> str:
    try:
        return str(ti.log_url)
    except Exception:  # no task instance, or no [api] base_url: still alert
        return "(no log URL)"


def _describe(error: BaseException | str | None) -> str:
    if error is None:
        return "unknown error (no exception in the task context)"
    text = str(error).strip() if isinstance(error, str) else f"{type(error).__name__}: {error}".strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def post_json(
    url: str,
    payload: Mapping[str, Any],
    *,
    attempts: int = WEBHOOK_ATTEMPTS,
    timeout: float = WEBHOOK_TIMEOUT_SECONDS,
) -> bool:
    """POST `payload` as JSON; True when the server answered 2xx. Retries transient errors, never raises."""
    body = json.dumps(payload).encode("utf-8")
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if 200 <= response.status < 300:
                    return True
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code != 429:
                log.error("alert webhook rejected the alert (%s): not retrying", problem)
                return False
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = str(getattr(exc, "reason", exc))
        log.warning("alert webhook attempt %d/%d failed: %s", attempt, attempts, problem)
        if attempt < attempts:
            time.sleep(2 ** (attempt - 1))
    log.error("alert webhook unreachable after %d attempts: the alert is only in this log", attempts)
    return False


def send_alert(alert: Alert, webhook: str | None = None) -> bool:
    """Log the alert line; POST it to `webhook` (default `$CHAT_ANALYTICS_ALERT_WEBHOOK`) when set."""
    log.error("%s", alert.line())
    url = webhook if webhook is not None else os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        log.info("no alert webhook configured (set %s to post alerts)", WEBHOOK_ENV)
        return False
    delivered = post_json(url, alert.payload())
    if delivered:
        log.info("alert posted to the webhook")
    return delivered


def task_failure_alert(context: Mapping[str, Any]) -> None:
    """Airflow `on_failure_callback`: alert on a task that failed for good."""
    try:
        send_alert(Alert.from_context(context))
    except Exception:  # a broken alert must never mask the task's own failure
        log.exception("could not raise the alert")


def warn_findings(
    results: Iterable[Mapping[str, Any]], *, freshness: bool = False
) -> tuple[list[str], list[str]]:
    """Names and messages of the warn-severity results of a dbt artefact (run_results or sources.json)."""
    names: list[str] = []
    messages: list[str] = []
    for result in results:
        if str(result.get("status", "")).lower() != "warn":
            continue
        unique_id = str(result.get("unique_id", "?"))
        parts = unique_id.split(".")
        # test.<package>.<name>[.<hash>] -> name; source.<package>.<source>.<table> -> source.table
        name = parts[2] if parts[0] == "test" and len(parts) >= 3 else ".".join(parts[2:]) or unique_id
        names.append(f"freshness of {name}" if freshness else name)
        messages.append(str(result.get("message") or "").strip() or "warn")
    return names, messages


def _artefact_results(path: Path) -> list[Mapping[str, Any]]:
    try:
        results = json.loads(path.read_text(encoding="utf-8")).get("results")
    except (OSError, ValueError, AttributeError):
        return []
    return results if isinstance(results, list) else []


def cosmos_warning_alert(
    project_dir: str, context: Mapping[str, Any] | None = None, home: str | None = None, **_: Any
) -> None:
    """astronomer-cosmos operator `callback`: pass the warn-severity findings of a dbt invocation on.

    In the watcher arrangement one task runs `dbt build` for every model and data test and Cosmos does
    not call `on_warning_callback` for it; this callback reads the invocation's artefacts and calls
    `dbt_warning_alert` with the same context variables Cosmos would (`test_names`, `test_results`).
    Never raises: an alert must not fail the build.
    """
    try:
        target = Path(project_dir) / "target"
        names, messages = warn_findings(_artefact_results(target / "run_results.json"))
        more = warn_findings(_artefact_results(target / "sources.json"), freshness=True)
        names, messages = names + more[0], messages + more[1]
        if names:
            extra = {"home": home} if home else {}
            dbt_warning_alert({**(context or {}), **extra, "test_names": names, "test_results": messages})
    except Exception:
        log.exception("could not pass on the dbt warnings")


def dbt_warning_alert(context: Mapping[str, Any]) -> None:
    """Cosmos `on_warning_callback`: log each warn-severity finding and note them in the UI; the run goes on.

    Cosmos calls it after every dbt test and source freshness task, with empty lists when nothing warned.
    In an Airflow task the findings also become notes on the task instance and the DAG run (with their
    count and the report's link, chat_analytics.orchestration.notes); `context["home"]` is the data home
    (default the pipeline's).
    """
    names = [str(n) for n in context.get("test_names") or []]
    results = [str(r).strip() for r in context.get("test_results") or []]
    if not names:
        return
    ti = context.get("task_instance") or context.get("ti")
    task_id = getattr(ti, "task_id", "?")
    results += [""] * (len(names) - len(results))
    for name, result in zip(names, results, strict=False):
        log.warning("WARNING %s: %s: %s (warn severity: the run goes on)", task_id, name, result or "warn")
    if getattr(ti, "run_id", None):  # a real task instance: show the findings in the UI too
        _note(context, names, [r or "warn" for r in results])


def _note(context: Mapping[str, Any], names: list[str], messages: list[str]) -> None:
    from chat_analytics.orchestration.airflow_setup import pipeline_home
    from chat_analytics.orchestration.notes import note_warnings
    from chat_analytics.paths import Home

    try:
        home = Home(Path(str(context.get("home") or pipeline_home())))
        note_warnings(context, names, messages, report=home.serving / "report.html")
    except Exception:  # a note must never fail the build
        log.exception("could not note the dbt warnings in Airflow")
