"""Fault injection for the crash tests: `CHAT_ANALYTICS_FAULT=<point>` kills the process there.

The pipeline calls `fault_point(<name>)` at the moments a crash matters (`build:after-start`,
`publish:before-switch`, `before-commit:<file name>`, ...). Nothing happens unless the environment
variable names that point:

* `CHAT_ANALYTICS_FAULT=<point>`: the process kills itself (SIGKILL) right there;
* `CHAT_ANALYTICS_FAULT=<point>:<milliseconds>`: a timer thread kills it that many milliseconds after
  the point was passed, i.e. in the middle of whatever follows (`during-commit:<file>:25` lands inside
  the ingest commit, or just after it); a process that ends sooner waits at exit for that kill.

SIGKILL, not an exception: no `finally`, no `atexit`, no flush runs, exactly like `kill -9` or a power
cut.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

FAULT_ENV = "CHAT_ANALYTICS_FAULT"


def fault_point(point: str) -> None:
    """Kill the process (SIGKILL) here, or after a delay, when `$CHAT_ANALYTICS_FAULT` names `point`."""
    value = os.environ.get(FAULT_ENV, "")
    if not value.startswith(point):
        return
    if value == point:
        log.warning("fault injection: killing the process at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)
        return
    rest = value[len(point) :]
    if not rest.startswith(":"):
        return  # another point whose name starts like this one
    try:
        seconds = float(rest[1:]) / 1000
    except ValueError:
        return  # `<point>:<more name>`: another point, not a delay
    log.warning("fault injection: killing the process %.3f s after %s", seconds, point)
    timer = threading.Timer(seconds, os.kill, [os.getpid(), signal.SIGKILL])
    timer.daemon = True
    timer.start()
    # Should the process finish its work first, it waits at exit for the kill: the fault always fires.
    atexit.register(timer.join)
