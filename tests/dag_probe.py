"""bench/dag_run.py's whole `dag.test()` run, with probes on what runs dbt and what starts a JVM.

Usage: python tests/dag_probe.py --home <home dir>   (the arguments of bench/dag_run.py)

With `$CHAT_ANALYTICS_PROBE_FILE` set, every dbt invocation (`dbtRunner.invoke`, how both Cosmos and
`chat-analytics build` run dbt) and every JVM pyspark launches for a Spark session appends one JSON line
to that file: `{"event": "dbt" | "jvm", "task": <the Airflow task running it, or null>, "args": [...]}`.
`dag.test()` runs every task in this one process, so the probes tell which task would have started dbt
or a JVM in a process of its own under a real scheduler. tests/test_dag_spark.py runs it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROBE_ENV = "CHAT_ANALYTICS_PROBE_FILE"
BENCH = Path(__file__).resolve().parents[1] / "bench"


def _current_task() -> str | None:
    try:
        from airflow.sdk import get_current_context

        return str(get_current_context()["ti"].task_id)
    except Exception:  # outside a task: no context
        return None


def _record(path: Path, event: str, args: Any) -> None:
    line = {"event": event, "task": _current_task(), "args": [str(a) for a in args or ()]}
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def _probed(
    path: Path, event: str, call: Callable[..., Any], args_of: Callable[..., Any]
) -> Callable[..., Any]:
    @functools.wraps(call)
    def probe(*args: Any, **kwargs: Any) -> Any:
        _record(path, event, args_of(*args, **kwargs))
        return call(*args, **kwargs)

    return probe


def install_probes(path: Path) -> None:
    """Wrap dbt's runner and pyspark's JVM launch (both imported here, before Airflow, as dag_run needs)."""
    import pyspark.core.context as spark_context
    from dbt.cli.main import dbtRunner

    dbtRunner.invoke = _probed(path, "dbt", dbtRunner.invoke, lambda _self, args, **_: args[:2])  # type: ignore[method-assign]
    spark_context.launch_gateway = _probed(path, "jvm", spark_context.launch_gateway, lambda *_, **__: ())


def main(argv: list[str]) -> int:
    probe_file = os.environ.get(PROBE_ENV)
    if probe_file:
        install_probes(Path(probe_file))
    sys.path.insert(0, str(BENCH))
    import dag_run

    return int(dag_run.main(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
