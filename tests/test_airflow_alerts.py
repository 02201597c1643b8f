"""Failure alerts and dbt warnings: the log line, the Slack-compatible payload, delivery that never raises."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from chat_analytics.orchestration import alerts
from chat_analytics.orchestration import notes as airflow_notes
from chat_analytics.orchestration.alerts import (
    Alert,
    cosmos_warning_alert,
    dbt_warning_alert,
    send_alert,
    task_failure_alert,
)


def _context(error: BaseException | None = None) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="chat_analytics",
        task_id="dbt.fct_chats.test",
        run_id="scheduled__2026-01-01T19:00:00+00:00",
        try_number=3,
        log_url="http://localhost:8080/dags/chat_analytics/runs/r/tasks/dbt.fct_chats.test?try_number=3",
    )
    return {"task_instance": ti, "dag_run": SimpleNamespace(dag_id="chat_analytics"), "exception": error}


@pytest.fixture
def server() -> Iterator[tuple[str, list[Any], list[int]]]:
    received: list[Any] = []
    statuses: list[int] = []  # status to answer with, in order; 200 when empty

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Content-Type"], json.loads(body)))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", received, statuses
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_alert_from_context_and_slack_payload() -> None:
    alert = Alert.from_context(_context(RuntimeError("dbt test failed: 3 rows")))
    assert alert.line() == (
        "ALERT chat_analytics: task dbt.fct_chats.test failed in run scheduled__2026-01-01T19:00:00+00:00: "
        "RuntimeError: dbt test failed: 3 rows (log: http://localhost:8080/dags/chat_analytics/runs/r/tasks/"
        "dbt.fct_chats.test?try_number=3)"
    )
    payload = alert.payload()
    assert set(payload) == {"text", "attachments"}
    assert "dbt.fct_chats.test" in payload["text"]
    fields = {f["title"]: f["value"] for f in payload["attachments"][0]["fields"]}
    assert fields == {
        "DAG": "chat_analytics",
        "Task": "dbt.fct_chats.test",
        "Try": "3",
        "Run": "scheduled__2026-01-01T19:00:00+00:00",
        "Log": alert.log_url,
        "Error": "RuntimeError: dbt test failed: 3 rows",
    }
    json.dumps(payload)


def test_without_webhook_the_alert_is_a_log_line(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv(alerts.WEBHOOK_ENV, raising=False)
    task_failure_alert(_context(ValueError("boom")))
    assert "ALERT chat_analytics: task dbt.fct_chats.test failed" in caplog.text
    assert "ValueError: boom" in caplog.text


def test_webhook_gets_the_json(server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, received, _ = server
    monkeypatch.setenv(alerts.WEBHOOK_ENV, url)
    task_failure_alert(_context(ValueError("boom")))
    assert len(received) == 1
    content_type, payload = received[0]
    assert content_type.startswith("application/json")
    assert payload == Alert.from_context(_context(ValueError("boom"))).payload()


def test_transient_webhook_errors_are_retried(server, monkeypatch: pytest.MonkeyPatch) -> None:
    url, received, statuses = server
    statuses.append(503)
    monkeypatch.setattr(alerts.time, "sleep", lambda _: None)
    assert send_alert(Alert.from_context(_context()), webhook=url)
    assert len(received) == 2


def test_a_broken_webhook_never_raises(monkeypatch: pytest.MonkeyPatch, caplog, server) -> None:
    url, received, statuses = server
    statuses.append(404)
    assert not send_alert(Alert.from_context(_context()), webhook=url)
    assert len(received) == 1  # a 4xx is not retried
    monkeypatch.setattr(alerts.time, "sleep", lambda _: None)
    monkeypatch.setenv(alerts.WEBHOOK_ENV, "http://127.0.0.1:9/nothing-listens-here")
    task_failure_alert(_context(RuntimeError("x")))  # no exception
    assert "alert webhook unreachable" in caplog.text
    monkeypatch.setenv(alerts.WEBHOOK_ENV, "not a url")
    task_failure_alert({})
    assert "ALERT ?: task ? failed" in caplog.text


def test_dbt_warnings_are_logged_and_nothing_else(caplog) -> None:
    ti = SimpleNamespace(task_id="dbt.stg_raw__categories.test")
    dbt_warning_alert({"task_instance": ti, "test_names": [], "test_results": []})
    assert caplog.text == ""
    dbt_warning_alert(
        {
            "task_instance": ti,
            "test_names": ["empty_disabled"],
            "test_results": ["Got 1 result, warn if >= 1"],
        }
    )
    assert (
        "WARNING dbt.stg_raw__categories.test: empty_disabled: Got 1 result, warn if >= 1 "
        "(warn severity: the run goes on)" in caplog.text
    )
    assert all(r.levelname == "WARNING" for r in caplog.records)


def test_warnings_of_a_dbt_invocation_reach_the_warning_callback(tmp_path, caplog) -> None:
    """The DAG's one `dbt build` task: its warn-severity results (tests, freshness) are logged by name."""
    target = tmp_path / "target"
    target.mkdir()
    results = [
        {
            "unique_id": "test.chat_analytics.empty_disabled.3f2a",
            "status": "warn",
            "message": "Got 2 results",
        },
        {"unique_id": "test.chat_analytics.unique_x.1b2c", "status": "pass", "message": None},
        {"unique_id": "model.chat_analytics.fct_chats", "status": "success", "message": "OK"},
    ]
    (target / "run_results.json").write_text(json.dumps({"results": results}))
    freshness = [{"unique_id": "source.chat_analytics.raw.chats", "status": "warn"}]
    (target / "sources.json").write_text(json.dumps({"results": freshness}))
    ti = SimpleNamespace(task_id="dbt.dbt_producer_watcher")

    cosmos_warning_alert(str(tmp_path), context={"task_instance": ti}, home="/unused")

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "WARNING dbt.dbt_producer_watcher: empty_disabled: Got 2 results (warn severity: the run goes on)",
        "WARNING dbt.dbt_producer_watcher: freshness of raw.chats: warn (warn severity: the run goes on)",
    ]
    caplog.clear()
    cosmos_warning_alert(str(tmp_path / "nothing-here"), context={"task_instance": ti})  # no artefacts
    assert caplog.text == ""


class _AirflowApi(http.server.BaseHTTPRequestHandler):
    """Airflow's REST API as far as the notes use it: a token, then PATCHes (recorded)."""

    patches: list[tuple[str, dict[str, Any]]]

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer({"access_token": "token"})

    def do_PATCH(self) -> None:
        assert self.headers["Authorization"] == "Bearer token"
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.patches.append((self.path, body))
        self._answer({})

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_warnings_become_notes_on_the_task_and_the_run(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    patches: list[tuple[str, dict[str, Any]]] = []
    handler = type("Api", (_AirflowApi,), {"patches": patches})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(airflow_notes.API_URL_ENV, f"http://127.0.0.1:{server.server_address[1]}/")
    monkeypatch.setenv(airflow_notes.USER_ENV, "admin")
    monkeypatch.setenv(airflow_notes.PASSWORD_ENV, "admin")
    ti = SimpleNamespace(
        dag_id="chat_analytics",
        run_id="manual__x+1",
        task_id="dbt.dbt_producer_watcher",
        log_url="http://log",
    )
    try:
        # the build task: its freshness, then its `dbt build`; the run's note counts both
        dbt_warning_alert({"ti": ti, "home": str(tmp_path), "test_names": ["freshness of raw.chats"]})
        dbt_warning_alert({"ti": ti, "home": str(tmp_path), "test_names": ["a", "b"], "test_results": ["2"]})
    finally:
        server.shutdown()
        server.server_close()
    run = "/api/v2/dags/chat_analytics/dagRuns/manual__x%2B1"
    assert [p for p, _ in patches] == [
        f"{run}/taskInstances/dbt.dbt_producer_watcher?update_mask=note",
        f"{run}?update_mask=note",
    ] * 2
    task_note, run_note = patches[-2][1]["note"], patches[-1][1]["note"]
    assert task_note == "3 warn-severity findings:\n- freshness of raw.chats: warn\n- a: 2\n- b: warn"
    assert run_note.startswith(
        "**3 warn-severity findings** (the run goes on): freshness of raw.chats, a, b."
    )
    assert "(http://log)" in run_note
    assert f"({(tmp_path / 'serving' / 'report.html').as_uri()})" in run_note


def test_notes_never_fail_the_task(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    ti = SimpleNamespace(dag_id="chat_analytics", run_id="r", task_id="t")
    context = {"ti": ti, "test_names": ["a"], "test_results": ["x"]}
    monkeypatch.delenv(airflow_notes.USER_ENV, raising=False)
    dbt_warning_alert(context)  # no login: no note, one line
    assert "no Airflow notes for the warnings" in caplog.text
    monkeypatch.setenv(airflow_notes.USER_ENV, "admin")
    monkeypatch.setenv(airflow_notes.PASSWORD_ENV, "admin")
    monkeypatch.setenv(airflow_notes.API_URL_ENV, "http://127.0.0.1:9")  # nothing listens
    dbt_warning_alert(context)
    assert "could not set the Airflow notes for the warnings" in caplog.text
    assert (
        len(airflow_notes.task_note({str(n): "x" * 50 for n in range(100)})) == airflow_notes.MAX_NOTE_CHARS
    )
