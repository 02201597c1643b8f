"""Open a local HTML file in headless Chromium the way a person would, and report what happened.

Used by the report's tests and by `make assets` (the README screenshot): Chromium (Debian's `chromium`
package, or `$CHAT_ANALYTICS_CHROMIUM`) starts with a fresh profile and every background service off,
and is driven over the Chrome DevTools Protocol (a websocket, `websockets` is already installed with
Airflow). `check_page` loads the file, waits for the load event and a quiet moment, and returns the
console errors, uncaught exceptions, failed loads and every network request other than the file itself,
plus a full-page PNG screenshot when asked.

    python -m chat_analytics.browser data/serving/report.html --screenshot assets/report.png
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from chat_analytics.paths import UserError

log = logging.getLogger(__name__)

CHROMIUM_ENV = "CHAT_ANALYTICS_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless, and nothing that phones home: without the background-networking flags Chromium tries to
# reach Google services at start-up.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
START_TIMEOUT_SECONDS = 30.0
LOAD_TIMEOUT_SECONDS = 30.0
QUIET_SECONDS = 0.5


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
    raise UserError(
        f"no Chromium found (tried {', '.join(CHROMIUM_NAMES)}): install Debian's `chromium` package "
        f"(`make browser` does, as root) or set {CHROMIUM_ENV}"
    )


@contextmanager
def _chromium(width: int, height: int) -> Iterator[str]:
    """Start headless Chromium on a fresh profile; yield the DevTools HTTP endpoint."""
    profile = Path(tempfile.mkdtemp(prefix="chat-analytics-chromium-"))
    command = [
        find_chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    log.debug("starting %s", " ".join(command))
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not (port_file.is_file() and port_file.read_text().strip()):
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise UserError(f"Chromium exited at start-up ({process.returncode}): {err.strip()[-500:]}")
            if time.monotonic() > deadline:
                raise UserError(f"Chromium did not open its DevTools port within {START_TIMEOUT_SECONDS} s")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


class _DevTools:
    """A minimal synchronous CDP client on one page target: commands, and the events seen meanwhile."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + LOAD_TIMEOUT_SECONDS
        while True:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                raise UserError(f"Chromium did not answer {method} within {LOAD_TIMEOUT_SECONDS} s")
            if message.get("id") == call_id:
                if "error" in message:
                    raise UserError(f"Chromium refused {method}: {message['error'].get('message')}")
                return message.get("result", {})

    def wait_for(self, event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if self._receive(deadline - time.monotonic()) is None:
                raise UserError(f"the page did not fire {event} within {timeout} s")

    def drain(self, quiet: float) -> None:
        """Collect events until none arrives for `quiet` seconds."""
        while self._receive(quiet) is not None:
            pass

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        if timeout <= 0:
            return None
        try:
            raw = self._ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        message: dict[str, Any] = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message


def _page_ws_url(endpoint: str) -> str:
    with urllib.request.urlopen(f"{endpoint}/json/list", timeout=10) as response:  # local DevTools only
        targets = json.load(response)
    for target in targets:
        if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
            return str(target["webSocketDebuggerUrl"])
    raise UserError("Chromium has no page to drive")


def _problems(events: list[dict[str, Any]], page_url: str) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    requests: list[str] = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exception = details.get("exception", {}).get("description") or details.get("text", "")
            errors.append(f"uncaught exception: {exception}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if url.split("#", 1)[0] != page_url:
                requests.append(url)
        elif method == "Network.loadingFailed" and params.get("type") == "Document":
            errors.append(f"page failed to load: {params.get('errorText', '')}")
    return errors, requests


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
        raise UserError(f"no page at {html}")
    file_url = html.as_uri()
    page_url = f"{file_url}#{fragment}" if fragment else file_url
    with (
        _chromium(width, height) as endpoint,
        connect(_page_ws_url(endpoint), max_size=None, open_timeout=START_TIMEOUT_SECONDS) as ws,
    ):
        devtools = _DevTools(ws)
        for domain in ("Page", "Runtime", "Log", "Network"):
            devtools.call(f"{domain}.enable")
        devtools.call("Page.navigate", {"url": page_url})
        devtools.wait_for("Page.loadEventFired", LOAD_TIMEOUT_SECONDS)
        devtools.drain(QUIET_SECONDS)
        result = PageCheck(url=page_url)
        result.console_errors, result.requests = _problems(devtools.events, file_url)
        size = devtools.call("Page.getLayoutMetrics")["cssContentSize"]
        result.width, result.height = int(size["width"]), int(size["height"])
        if screenshot is not None:
            _screenshot(devtools, screenshot, width, result.height)
            result.screenshot = screenshot
    return result


def _screenshot(devtools: _DevTools, target: Path, width: int, height: int) -> None:
    """A full-page PNG: the viewport is resized to the whole page first, so nothing is cut off."""
    devtools.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    devtools.drain(0.2)
    shot = devtools.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(shot["data"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chat_analytics.browser",
        description="Open a local HTML file in headless Chromium: console errors, requests, screenshot.",
    )
    parser.add_argument("html", type=Path, help="the page to open")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="save a full-page screenshot here")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (%(default)s)")
    args = parser.parse_args(argv)
    from chat_analytics.cli import configure_logging

    configure_logging()
    try:
        result = check_page(args.html, screenshot=args.screenshot, width=args.width)
    except UserError as exc:
        log.error("%s", exc)
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
