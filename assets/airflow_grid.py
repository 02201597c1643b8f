"""Redraw assets/airflow-grid.png: the Airflow grid of one real run of `chat_analytics`, logged in.

Usage: .venv/bin/python assets/airflow_grid.py --home <chat-analytics home> [--out assets/airflow-grid.png]

`make assets` runs it on its sample home. Airflow starts as `make airflow` starts it (bench/airflow_run.py:
a private AIRFLOW_HOME on free ports, stopped at the end); one triggered run goes to its end; then the
run's page opens in headless Chromium through the browser helper of the report screenshot
(chat_analytics.browser: its Chromium and DevTools client), logged in (the UI's `_token` cookie holds the
API token of the run's login), every task group expanded and the clock on the pipeline's time zone, and
the page is saved as a PNG. Exit status 0 when the run succeeded and the picture was taken.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from websockets.sync.client import connect

from chat_analytics import browser
from chat_analytics.airflow_setup import PIPELINE_TIMEZONE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # bench/ is not a package

from airflow_run import DAG_ID, Api, RunError, run

log = logging.getLogger("assets.airflow_grid")

WIDTH, HEIGHT = 1600, 1560
RENDER_TIMEOUT_SECONDS = 90.0


def shoot_grid(api: Api, base_url: str, run_id: str, target: Path) -> None:
    """The run's page (grid on the left), every task group open, in the pipeline's time zone."""
    task_ids = [t["task_id"] for t in api.call("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]]
    groups = sorted({".".join(t.split(".")[:n]) for t in task_ids for n in range(1, t.count(".") + 1)})
    settings = {f"{DAG_ID}/open-groups": groups, "timezone": PIPELINE_TIMEZONE}
    with (
        browser._chromium(WIDTH, HEIGHT) as endpoint,
        connect(
            browser._page_ws_url(endpoint), max_size=None, open_timeout=browser.START_TIMEOUT_SECONDS
        ) as ws,
    ):
        devtools = browser._DevTools(ws)
        devtools.call("Page.enable")
        devtools.call("Network.setCookie", {"name": "_token", "value": api.token, "url": f"{base_url}/"})
        devtools.call("Emulation.setTimezoneOverride", {"timezoneId": PIPELINE_TIMEZONE})
        for page in ("/", f"/dags/{DAG_ID}/runs/{run_id}"):
            devtools.events.clear()
            devtools.call("Page.navigate", {"url": base_url + page})
            devtools.wait_for("Page.loadEventFired", browser.LOAD_TIMEOUT_SECONDS)
            script = "".join(
                f"localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});"
                for k, v in settings.items()
            )
            devtools.call("Runtime.evaluate", {"expression": script})
        deadline = time.monotonic() + RENDER_TIMEOUT_SECONDS
        shown = "document.body.innerText.includes('fct_chats') && document.body.innerText.includes('report')"
        while not devtools.call("Runtime.evaluate", {"expression": shown})["result"].get("value"):
            if time.monotonic() > deadline:
                raise RunError(f"the grid of run {run_id} did not render in {RENDER_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.5)
        devtools.drain(3.0)  # the grid's bars and icons settle
        browser._screenshot(devtools, target, WIDTH, HEIGHT)
    log.info("saved %s (%d x %d px): run %s", target, WIDTH, HEIGHT, run_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="a chat-analytics home with landing data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "airflow-grid.png")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up on the run after this (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    out: Path = args.out.resolve()
    try:
        figures, ok = run(
            args.home.expanduser().resolve(),
            args.timeout,
            then=lambda api, base, run_id: shoot_grid(api, base, run_id, out),
        )
    except (RunError, browser.UserError) as exc:
        log.error("%s", exc)
        return 2
    log.info("run: %s", json.dumps(figures))
    return 0 if ok and out.is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
