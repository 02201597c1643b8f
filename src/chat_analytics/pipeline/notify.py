"""Run notifications: a Slack-compatible message on run start, success and failure (issue 14).

`chat-analytics run` and the Airflow DAG call `notify` through chat_analytics.pipeline.monitoring. The message
goes to `$CHAT_ANALYTICS_ALERT_WEBHOOK` (the webhook of the failure alerts, orchestration.alerts) as
JSON with a `text` (what notifications and clients without blocks show) and Block Kit `blocks`;
Mattermost and Rocket.Chat read the `text`.

`$CHAT_ANALYTICS_NOTIFY` chooses what is sent: `all` (the default when a webhook is set: start, success
and failure) or `failures` (failures only). Delivery is bounded (`$CHAT_ANALYTICS_NOTIFY_TIMEOUT`
seconds per attempt, default 5; `NOTIFY_ATTEMPTS` attempts) and never raises: an unreachable webhook is
a logged warning and never changes the pipeline's result.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from chat_analytics.orchestration.alerts import WEBHOOK_ENV, post_json

log = logging.getLogger(__name__)

NOTIFY_ENV = "CHAT_ANALYTICS_NOTIFY"
TIMEOUT_ENV = "CHAT_ANALYTICS_NOTIFY_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 5.0
NOTIFY_ATTEMPTS = 2
START, SUCCESS, FAILURE = "start", "success", "failure"
_ICONS = {START: ":arrow_forward:", SUCCESS: ":white_check_mark:", FAILURE: ":rotating_light:"}
_FIELDS_PER_BLOCK = 10  # Slack's limit for the fields of one section block
_MAX_FIELD_CHARS = 1_900


def wanted(event: str) -> bool:
    """Whether `event` is sent under `$CHAT_ANALYTICS_NOTIFY` (`all` or `failures`; unknown: all)."""
    mode = os.environ.get(NOTIFY_ENV, "all").strip().lower() or "all"
    if mode not in ("all", "failures"):
        log.warning("%s=%r is neither 'all' nor 'failures': sending every notification", NOTIFY_ENV, mode)
        mode = "all"
    return mode == "all" or event == FAILURE


def payload(event: str, headline: str, fields: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` plus a header section and the fields in sections."""
    text = f"{_ICONS.get(event, '')} {headline}".strip()
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    items = [
        {"type": "mrkdwn", "text": f"*{name}*\n{_clip(value)}"}
        for name, value in fields
        if value not in ("", None)
    ]
    for start in range(0, len(items), _FIELDS_PER_BLOCK):
        blocks.append({"type": "section", "fields": items[start : start + _FIELDS_PER_BLOCK]})
    summary = "; ".join(f"{name}: {value}" for name, value in fields if value not in ("", None))
    return {"text": f"{text}\n{summary}" if summary else text, "blocks": blocks}


def notify(event: str, headline: str, fields: Sequence[tuple[str, str]] = ()) -> bool:
    """Post one run notification when a webhook is set and `event` is wanted; True when delivered."""
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url or not wanted(event):
        return False
    try:
        delivered = post_json(
            url, payload(event, headline, fields), attempts=NOTIFY_ATTEMPTS, timeout=_timeout()
        )
    except Exception as exc:  # a notification must never change the pipeline's result
        log.warning("run notification (%s) not sent: %s", event, exc)
        return False
    if not delivered:
        log.warning("run notification (%s) not delivered to the webhook: the run goes on", event)
    return delivered


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        value = DEFAULT_TIMEOUT_SECONDS
    return value if value > 0 else DEFAULT_TIMEOUT_SECONDS


def _clip(value: str) -> str:
    return value if len(value) <= _MAX_FIELD_CHARS else value[: _MAX_FIELD_CHARS - 1] + "…"
