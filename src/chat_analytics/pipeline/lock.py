"""One pipeline run at a time per home: `<home>/warehouse/.pipeline.lock`.

`ingest`, `build`, `publish`, `report`, `retract` and `run` (the whole sequence, held once from ingest to
report) take this lock; a second command on the same home stops at once with one line naming the holder
(pid, command, since when, host), or waits for it with `--wait SECONDS`. The Airflow DAG's Python tasks
take it too (its dbt tasks cannot: they rely on the one-slot pool).

The lock is `fcntl.flock` on the file, so the kernel releases it when the holder exits, however it
exits (a `kill -9` included): a lock file that stays behind is never stale. After locking, the holder
writes who it is into the file for the next one to read, and clears it again before unlocking; a name
left by a killed holder is recognised by its pid no longer running (on this host), so a message never
names a process that has exited. The lock is re-entrant within one process:
`run` holds it and calls the steps, which take it again for free.

Use it around a command (the CLI's `add(...)` does this for every sub-command unless `locked=False`):

    with pipeline_lock(home, wait=args.wait):
        ...
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from chat_analytics.paths import Home, UserError

log = logging.getLogger(__name__)

LOCK_NAME = ".pipeline.lock"
POLL_SECONDS = 0.2

# lock file (resolved) -> (open handle, depth): the locks this process holds, for re-entry
_held: dict[Path, tuple[int, int]] = {}
_guard = threading.Lock()


class PipelineBusy(UserError):
    """Another process holds the pipeline lock of this home."""


def lock_path(home: Home) -> Path:
    return home.warehouse_dir / LOCK_NAME


def _command() -> str:
    argv = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    return " ".join(argv)


def holder(home: Home) -> dict[str, object] | None:
    """Who holds the lock, as written into the lock file (a killed holder's name stays); None when empty."""
    try:
        text = lock_path(home).read_text(encoding="utf-8").strip()
        data = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(info: dict[str, object] | None) -> str:
    """Who holds the lock, for a message; `info` is `holder()`, read while the lock was seen taken.

    The file may still name an earlier holder (killed before it could clear it) while a new one has
    not written its name yet: a holder named on this host whose pid is not alive is not the holder.
    """
    if not info or (info.get("host") == socket.gethostname() and not _alive(info.get("pid"))):
        return "an unknown holder (a process that has not written its name yet)"
    return (
        f"pid {info.get('pid')} (`{info.get('command')}`) since {info.get('since')} "
        f"on host {info.get('host')}"
    )


@contextmanager
def pipeline_lock(home: Home, *, wait: float = 0.0, command: str | None = None) -> Iterator[None]:
    """Hold the home's pipeline lock for the block; raise PipelineBusy if it is not free within `wait` s.

    A home that does not exist yet is not locked (nothing to protect; the command itself reports it).
    """
    if not home.root.is_dir():
        yield
        return
    path = lock_path(home)
    key = path.resolve()
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            _held[key] = (entry[0], entry[1] + 1)
    if entry is not None:  # already ours (e.g. `run` calling a step)
        try:
            yield
        finally:
            _release(key)
        return
    fd = _open(home, path)
    try:
        _acquire(fd, home, wait)
        _write_holder(fd, command or _command())
    except BaseException:
        os.close(fd)
        raise
    with _guard:
        _held[key] = (fd, 1)
    try:
        yield
    finally:
        _release(key)


def _open(home: Home, path: Path) -> int:
    try:
        path.parent.mkdir(exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(
            f"cannot create the pipeline lock {path}: {exc.strerror or exc}; make {home.root} a writable "
            "folder (and warehouse/ in it a folder)"
        ) from None


def _acquire(fd: int, home: Home, wait: float) -> None:
    deadline = time.monotonic() + max(wait, 0.0)
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:g} s" if wait > 0 else ""
            raise PipelineBusy(
                f"the pipeline of {home.root} is busy{waited}: held by {describe(holder(home))}; "
                "wait for it to finish, or pass --wait SECONDS"
            )
        if not announced:
            log.info("waiting up to %g s for the pipeline lock, held by %s", wait, describe(holder(home)))
            announced = True
        time.sleep(POLL_SECONDS)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _write_holder(fd: int, command: str) -> None:
    info = {
        "pid": os.getpid(),
        "command": command,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    data = (json.dumps(info) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)  # an earlier holder's longer text must not trail the new one
    os.pwrite(fd, data, 0)  # one small write: a reader sees nothing or all of it (or no JSON: unknown)


def _release(key: Path) -> None:
    with _guard:
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        del _held[key]
    try:
        try:  # still locked: the next reader must not take this (finished) process for the holder
            os.ftruncate(fd, 0)
        except OSError as exc:
            log.debug("could not clear the pipeline lock's holder: %s", exc)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
