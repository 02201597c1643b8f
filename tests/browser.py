"""Open a local HTML file in headless Chromium the way a person would, and report what happened.

Test and development tooling (the report's tests and `make assets`, the README screenshot), not part of
the product package. Playwright drives the system Chromium (Debian's `chromium`, or
`$CHAT_ANALYTICS_CHROMIUM`) through `executable_path`: no browser is downloaded. `check_page` loads the
file, waits for the load event and a quiet moment, and returns the console errors, uncaught exceptions,
failed loads and every network request other than the file itself, plus a full-page PNG screenshot when
asked.

    .venv/bin/python tests/browser.py data/serving/report.html --screenshot assets/report.png
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Error, Request, sync_playwright

log = logging.getLogger(__name__)

CHROMIUM_ENV = "CHAT_ANALYTICS_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Nothing that phones home: without the background-networking flags Chromium tries to reach Google
# services at start-up.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
)
LOAD_TIMEOUT_MS = 30_000
QUIET_MS = 500


class BrowserMissing(RuntimeError):
    """No Chromium to drive: the message says how to get one."""


@dataclass
class PageCheck:
    """What loading one page did."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every request except the page itself
    screenshot: Path | None = None
    width: int = 0
    height: int = 0

    @property
    def clean(self) -> bool:
        return not self.console_errors and not self.requests

    @property
    def external_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but file: and data: URLs)."""
        return [url for url in self.requests if not url.startswith(("file:", "data:"))]


def find_chromium() -> str:
    """The Chromium binary: `$CHAT_ANALYTICS_CHROMIUM`, else the first of the usual names on PATH."""
    chosen = os.environ.get(CHROMIUM_ENV)
    if chosen:
        return chosen
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissing(
        f"no Chromium found (tried {', '.join(CHROMIUM_NAMES)}): install Debian's `chromium` package "
        f"(`make browser` does, as root) or set {CHROMIUM_ENV}"
    )


def check_page(
    html: Path,
    *,
    screenshot: Path | None = None,
    width: int = 1280,
    height: int = 900,
    fragment: str = "",
) -> PageCheck:
    """Load `html` (a local file, optionally at `#fragment`) in headless Chromium; return its problems and
    optionally save a full-page screenshot."""
    html = html.resolve()
    if not html.is_file():
        raise FileNotFoundError(f"no page at {html}")
    file_url = html.as_uri()
    result = PageCheck(url=f"{file_url}#{fragment}" if fragment else file_url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in {"error", "assert"}:
            result.console_errors.append(f"console.{message.type}: {message.text}")

    def on_request(request: Request) -> None:
        if request.url.split("#", 1)[0] != file_url:
            result.requests.append(request.url)

    def on_failed(request: Request) -> None:
        if request.resource_type == "document":
            result.console_errors.append(f"page failed to load: {request.failure or ''}")

    def on_error(error: Error) -> None:
        result.console_errors.append(f"uncaught exception: {error.message}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=find_chromium(), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", on_console)
            page.on("request", on_request)
            page.on("requestfailed", on_failed)
            page.on("pageerror", on_error)
            page.goto(result.url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
            page.wait_for_timeout(QUIET_MS)
            size = page.evaluate(
                "() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            result.width, result.height = int(size[0]), int(size[1])
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                result.screenshot = screenshot
        finally:
            browser.close()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tests/browser.py",
        description="Open a local HTML file in headless Chromium: console errors, requests, screenshot.",
    )
    parser.add_argument("html", type=Path, help="the page to open")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="save a full-page screenshot here")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (%(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        result = check_page(args.html, screenshot=args.screenshot, width=args.width)
    except (BrowserMissing, FileNotFoundError, Error) as exc:
        log.error("%s", str(exc).strip().splitlines()[0])
        return 2
    for error in result.console_errors:
        log.error("console: %s", error)
    for url in result.requests:
        log.error("network request: %s", url)
    log.info(
        "%s: %d x %d px, %d console errors, %d network requests%s",
        result.url,
        result.width,
        result.height,
        len(result.console_errors),
        len(result.requests),
        f", screenshot {result.screenshot}" if result.screenshot else "",
    )
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
