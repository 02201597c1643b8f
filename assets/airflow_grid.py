"""Redraw assets/airflow-grid.png: the Airflow grid of one real run of `chat_analytics`, logged in.

Usage: .venv/bin/python assets/airflow_grid.py --home <chat-analytics home> [--out assets/airflow-grid.png]

`make assets` runs it on its sample home. Airflow starts as `make airflow` starts it (bench/airflow_run.py:
a private AIRFLOW_HOME on free ports, stopped at the end); one triggered run goes to its end; then the
run's page opens in headless Chromium through Playwright on the system Chromium (tests/browser.py finds
it, as for the report screenshot), logged in (the UI's `_token` cookie holds the
API token of the run's login), every task group expanded and the clock on the pipeline's time zone, and
the page is saved as a PNG. Exit status 0 when the run succeeded and the picture was taken.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from chat_analytics.orchestration.airflow_setup import PIPELINE_TIMEZONE

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests")]  # bench/ and tests/ are not packages

from airflow_run import DAG_ID, Api, RunError, run  # noqa: E402

from browser import CHROMIUM_ARGS, BrowserMissing, find_chromium  # noqa: E402

log = logging.getLogger("assets.airflow_grid")

WIDTH, HEIGHT = 1600, 1560
RENDER_TIMEOUT_MS = 90_000


def shoot_grid(api: Api, base_url: str, run_id: str, target: Path) -> None:
    """The run's page (grid on the left), every task group open, in the pipeline's time zone."""
    task_ids = [t["task_id"] for t in api.call("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]]
    groups = sorted({".".join(t.split(".")[:n]) for t in task_ids for n in range(1, t.count(".") + 1)})
    settings = {f"{DAG_ID}/open-groups": groups, "timezone": PIPELINE_TIMEZONE}
    script = "".join(
        f"localStorage.setItem({json.dumps(k)}, {json.dumps(json.dumps(v))});" for k, v in settings.items()
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=find_chromium(), args=list(CHROMIUM_ARGS))
        try:
            context = chromium.new_context(
                viewport={"width": WIDTH, "height": HEIGHT}, timezone_id=PIPELINE_TIMEZONE
            )
            context.add_cookies([{"name": "_token", "value": api.token, "url": f"{base_url}/"}])
            context.add_init_script(script)  # the UI's settings before its own scripts read them
            page = context.new_page()
            page.goto(f"{base_url}/dags/{DAG_ID}/runs/{run_id}", wait_until="load")
            shown = (
                "document.body.innerText.includes('fct_chats') && document.body.innerText.includes('report')"
            )
            try:
                page.wait_for_function(shown, timeout=RENDER_TIMEOUT_MS)
            except Exception as exc:  # Playwright's TimeoutError
                raise RunError(f"the grid of run {run_id} did not render: {exc}") from None
            page.wait_for_timeout(3_000)  # the grid's bars and icons settle
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target))
        finally:
            chromium.close()
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
    except (RunError, BrowserMissing) as exc:
        log.error("%s", exc)
        return 2
    log.info("run: %s", json.dumps(figures))
    return 0 if ok and out.is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
