"""The outcome of the last dbt build of a home, kept beside the warehouse in `warehouse/last_build.json`.

`chat-analytics build` writes it after every `dbt build` (every node's status, the dbt version, source
freshness); `publish` reads it and publishes only when no node's latest status is an error. Under
Airflow, where astronomer-cosmos runs dbt (one `dbt build` in the DAG's build task, or one node when a
model's task is re-run by hand), `record_cosmos_results` is the operators' `callback`: it merges each
invocation's `run_results.json` (and `sources.json`) into the same record, node by node, so the latest
status of every model and test is known when publish runs; `record_cosmos_freshness` merges the
freshness check Cosmos runs before the build (its `freshness_callback`).

A build marks itself started (`status: running`, `started_at`, a `build_id`) BEFORE dbt touches any
model, and finished (`status: finished`, `finished_at`) only once every result is in: `chat-analytics
build` at its end; under Airflow the DAG's ingest task starts the record (`start_build`), every dbt task
re-marks it running before it runs (`ensure_running`, the operators' `pre_execute`), and the publish
task finishes it (`finish_cosmos_build`) after checking that every dbt model and data test of the
project reported a result. A build killed half-way therefore leaves `running` behind, and `publish` refuses
until a build finishes green.

The record is small JSON written atomically (new file, then rename); one writer at a time, like the
warehouse itself. Format 2 (this one) added the status, times and build id; a format-1 record (written
before) reads as a finished build.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chat_analytics.paths import Home, UserError

log = logging.getLogger(__name__)

RECORD_NAME = "last_build.json"
FORMAT = 2
READABLE_FORMATS = (1, 2)
RUNNING, FINISHED = "running", "finished"
FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})
TEST_KINDS = ("data test", "unit test")
_KINDS = {"model": "model", "test": "data test", "unit_test": "unit test", "operation": "hook"}
MESSAGE_CHARS = 4000  # of a node's dbt message kept in the record (a unit test's diff, a SQL error)


def record_path(home: Home) -> Path:
    return home.warehouse_dir / RECORD_NAME


def node_kind(unique_id: str) -> str:
    """`model`, `data test`, `unit test`, `hook`, `source`, ... from a dbt unique id."""
    return _KINDS.get(unique_id.split(".", 1)[0], unique_id.split(".", 1)[0])


def node_name(unique_id: str) -> str:
    """`model.p.fct_chats` -> fct_chats; `test.p.unique_x.3f2a` -> unique_x; `unit_test.p.m.t` -> m.t."""
    parts = unique_id.split(".")
    if parts[0] == "test" and len(parts) >= 4:
        return parts[2]
    if parts[0] == "unit_test" and len(parts) >= 4:
        return ".".join(parts[2:])
    return parts[-1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class TestSummary:
    """Latest data and unit test results: passed, warned, errored (fail or error) and their names."""

    passed: int = 0
    warned: int = 0
    errored: int = 0
    warned_tests: list[str] = field(default_factory=list)
    failed_nodes: list[str] = field(default_factory=list)  # any node kind: models, tests, hooks


@dataclass
class BuildSummary:
    """One build's node results by kind and status, and the nodes that failed or warned."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # (status, kind, name, message)

    @property
    def failed(self) -> bool:
        return any(counter[status] for counter in self.counts.values() for status in FAILED_STATUSES)

    @property
    def failures(self) -> list[str]:
        """`<status> <kind> <name>: <dbt's message>` for every node that failed."""
        return [
            f"{status} {kind} {node}" + (f": {message}" if message else "")
            for status, kind, node, message in self.problems
            if status in FAILED_STATUSES
        ]

    def line(self) -> str:
        parts = []
        for kind in ("model", "data test", "unit test", "hook"):
            counter = self.counts.get(kind)
            if counter and (kind != "hook" or set(counter) - {"success"}):
                detail = ", ".join(f"{n} {status}" for status, n in sorted(counter.items()))
                parts.append(f"{sum(counter.values())} {kind}s ({detail})")
        return "; ".join(parts) or "nothing ran"


@dataclass
class BuildRecord:
    """Latest status per dbt node (by unique id), plus freshness and the dbt version."""

    updated_at: str = field(default_factory=_now)
    dbt_version: str = ""
    invocation_id: str = ""
    error: str | None = None  # dbt could not run at all, or its results are incomplete
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    freshness: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = RUNNING  # running (started, not finished: maybe killed) or finished
    build_id: str = ""  # cli-<time>-<pid>, or the Airflow run id
    started_at: str | None = None
    finished_at: str | None = None
    raw_state: str | None = None  # warehouse.raw_state when the build started (None: not known)

    # ---- reading ------------------------------------------------------------------------------------

    @classmethod
    def load(cls, home: Home) -> BuildRecord:
        path = record_path(home)
        if not path.is_file():
            raise UserError(f"no build outcome recorded at {path}: run `chat-analytics build` first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            version = data.pop("format", None)
            if version not in READABLE_FORMATS:
                raise ValueError(f"unknown format {version!r}")
            if version == 1:  # before builds marked their start: a format-1 record is a finished build
                data.update(status=FINISHED, finished_at=data.get("updated_at"))
            _check_fields(data)
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise UserError(
                f"the build outcome {path} is unreadable ({exc}): run `chat-analytics build`"
            ) from None

    @property
    def ok(self) -> bool:
        """True when the build finished, dbt ran and no node's latest status is an error or a failed test."""
        return (
            self.status == FINISHED
            and self.error is None
            and bool(self.nodes)
            and not self.tests().failed_nodes
        )

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    def tests(self) -> TestSummary:
        summary = TestSummary()
        for unique_id, node in sorted(self.nodes.items()):
            status, kind = node.get("status", ""), node_kind(unique_id)
            if status in FAILED_STATUSES:
                summary.failed_nodes.append(node_name(unique_id))
            if kind not in TEST_KINDS:
                continue
            if status == "pass":
                summary.passed += 1
            elif status == "warn":
                summary.warned += 1
                summary.warned_tests.append(node_name(unique_id))
            elif status in FAILED_STATUSES:
                summary.errored += 1
        return summary

    def summary(self) -> BuildSummary:
        """The recorded node results, counted by kind and status, in the order dbt reported them."""
        summary = BuildSummary()
        for unique_id, node in self.nodes.items():
            kind, status = node_kind(unique_id), node.get("status", "")
            summary.counts.setdefault(kind, Counter())[status] += 1
            if status in FAILED_STATUSES or status == "warn":
                summary.problems.append((status, kind, node_name(unique_id), node.get("message", "")))
        return summary

    def freshness_status(self) -> str | None:
        """The worst source freshness status (pass < warn < error), or None when never checked."""
        order = ["pass", "warn", "error", "runtime error"]
        statuses = [f.get("status", "") for f in self.freshness.values()]
        known = [s for s in statuses if s in order]
        return max(known, key=order.index) if known else None

    # ---- writing ------------------------------------------------------------------------------------

    def save(self, home: Home) -> Path:
        path = record_path(home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        text = json.dumps({"format": FORMAT, **asdict(self)}, indent=1, default=str)
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())  # the rename must never expose an empty file after a crash
        os.replace(tmp, path)
        return path

    def finish(self) -> None:
        self.status = FINISHED
        self.finished_at = self.updated_at = _now()

    def set_nodes(self, results: Iterable[Any]) -> None:
        """Record in-process dbt results (`dbtRunnerResult.result.results`)."""
        for result in results:
            node = result.node
            self._set(node.unique_id, str(result.status).lower(), result.message, result.failures)

    def set_freshness(self, results: Iterable[Any]) -> None:
        for result in results:
            node = result.node
            if not str(getattr(node, "unique_id", "")).startswith("source."):
                continue
            loaded = getattr(result, "max_loaded_at", None)
            self.freshness[f"{node.source_name}.{node.name}"] = {
                "status": str(result.status).lower(),
                "max_loaded_at": loaded.isoformat() if loaded is not None else None,
                "checked_at": _now(),
            }

    def merge_artifacts(self, target: Path) -> int:
        """Merge a dbt target folder's run_results.json and sources.json; returns the nodes merged."""
        merged = 0
        run_results = _read_json(target / "run_results.json")
        if run_results:
            meta = run_results.get("metadata", {})
            self.dbt_version = meta.get("dbt_version", self.dbt_version)
            self.invocation_id = meta.get("invocation_id", self.invocation_id)
            for result in run_results.get("results", []):
                unique_id = result.get("unique_id", "")
                if unique_id.startswith("source."):
                    continue
                self._set(unique_id, str(result.get("status", "")).lower(), result.get("message"), None)
                merged += 1
        self.merge_freshness(_read_json(target / "sources.json"))
        self.error = None
        self.updated_at = _now()
        return merged

    def merge_freshness(self, sources: Mapping[str, Any] | None) -> None:
        """Merge the results of `dbt source freshness` (the content of its sources.json)."""
        for result in (sources or {}).get("results", []):
            unique_id = result.get("unique_id", "")
            _, _, source = unique_id.partition(".")  # source.<package>.<source>.<table>
            key = source.partition(".")[2] or unique_id
            self.freshness[key] = {
                "status": str(result.get("status", "")).lower(),
                "max_loaded_at": result.get("max_loaded_at"),
                "checked_at": _now(),
            }

    def _set(self, unique_id: str, status: str, message: object, failures: object) -> None:
        self.nodes[unique_id] = {
            "status": status,
            "message": str(message or "").strip()[:MESSAGE_CHARS],
            "failures": failures if isinstance(failures, int) else None,
            "at": _now(),
        }


_TEXT_FIELDS = ("updated_at", "dbt_version", "invocation_id", "build_id")
_OPTIONAL_TEXT_FIELDS = ("error", "started_at", "finished_at", "raw_state")
_TIME_FIELDS = ("updated_at", "started_at", "finished_at")
_RESULT_FIELDS = ("nodes", "freshness")


def _check_fields(data: dict[str, Any]) -> None:
    """Raise ValueError naming the first field of a loaded record whose type or value is wrong."""
    unknown = sorted(set(data) - {f.name for f in fields(BuildRecord)})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    for name in _TEXT_FIELDS:
        if name in data and not isinstance(data[name], str):
            raise ValueError(f"{name!r} is not a string")
    for name in _OPTIONAL_TEXT_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ValueError(f"{name!r} is neither a string nor null")
    for name in _TIME_FIELDS:
        if data.get(name):
            try:
                datetime.fromisoformat(data[name])
            except ValueError:
                raise ValueError(f"{name!r} is not an ISO time: {data[name]!r}") from None
    if "status" in data and data["status"] not in (RUNNING, FINISHED):
        raise ValueError(f"'status' is {data['status']!r}, not {RUNNING!r} or {FINISHED!r}")
    for name in _RESULT_FIELDS:
        results = data.get(name, {})
        if not isinstance(results, dict):
            raise ValueError(f"{name!r} is not an object of results by id")
        for key, result in results.items():
            if not isinstance(result, dict):
                raise ValueError(f"{name}[{key!r}] is not an object")
            if not isinstance(result.get("status", ""), str):
                raise ValueError(f"{name}[{key!r}].status is not a string")


def _read_json(path: Path) -> Mapping[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        log.warning("ignoring unreadable dbt artefact %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def start_build(home: Home, build_id: str, raw_state: str | None = None) -> BuildRecord:
    """Mark a new build started (nothing finished yet); call it before dbt touches any model.

    `raw_state` (pipeline.warehouse.raw_state) is what raw held when the build started: `publish`
    refuses when raw changed since, so marts are never published as newer than the raw data they show.
    """
    record = BuildRecord(build_id=build_id, started_at=_now(), status=RUNNING, raw_state=raw_state)
    record.save(home)
    log.debug("build %s marked started in %s", build_id, record_path(home))
    return record


def ensure_running(home: Home, build_id: str) -> None:
    """Before one more dbt invocation of build `build_id`: the record says running for that build.

    Keeps the node results already merged for this build (a re-run of one Airflow dbt task adds to
    them). When the record belongs to another build (a `chat-analytics build` ran between two tasks of
    this run, or it is unreadable), this build starts afresh: none of that build's results, error or
    freshness may count for this one, so `finish_cosmos_build` finds the results of the dbt tasks that
    ran before missing, and the build is not green until the run is repeated.
    """
    try:
        record = BuildRecord.load(home)
    except UserError as exc:
        log.warning("%s; starting build %s afresh", exc, build_id)
        start_build(home, build_id)
        return
    if record.build_id != build_id:
        log.warning(
            "the build record %s belongs to build %s, not %s (another build ran in between): starting "
            "build %s afresh, without the results of its earlier dbt tasks",
            record_path(home),
            record.build_id or "unknown",
            build_id,
            build_id,
        )
        start_build(home, build_id)
        return
    if record.status == RUNNING:
        return
    record.status, record.finished_at = RUNNING, None
    record.updated_at = _now()
    record.save(home)


def finish_cosmos_build(home: Home, build_id: str, expected: Iterable[str] = ()) -> BuildRecord:
    """Mark the Airflow build `build_id` finished; an error when results are missing or it is not this one.

    `expected` are the unique ids of the dbt nodes the DAG's dbt tasks run (its models and data tests):
    a build that finished without a result for one of them is not green.
    """
    record = BuildRecord.load(home)
    if record.build_id != build_id:
        raise UserError(
            f"the newest build in {record_path(home)} is {record.build_id or 'unknown'}, not this run's "
            f"{build_id} (another build ran in between?): run the DAG again"
        )
    if record.status == FINISHED:
        return record  # a retried publish task
    missing = sorted(set(expected) - set(record.nodes))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        record.error = (
            f"no dbt result for {len(missing)} node(s): {', '.join(node_name(u) for u in missing[:5])}{more}"
        )
    record.finish()
    record.save(home)
    return record


def record_cosmos_freshness(home: str, sources: Mapping[str, Any] | None) -> None:
    """Merge a `dbt source freshness` result that Cosmos hands over without a `callback` call.

    The watcher build task checks freshness before its `dbt build` and passes the content of
    sources.json only to its `freshness_callback`, which calls this.
    """
    chosen = Home.resolve(home)
    try:
        record = BuildRecord.load(chosen)
    except UserError:
        record = BuildRecord()
    record.merge_freshness(sources)
    record.updated_at = _now()
    record.save(chosen)


def record_cosmos_results(project_dir: str, home: str | None = None, **_: Any) -> None:
    """astronomer-cosmos operator `callback`: merge this dbt invocation's results into the home's record.

    Wire it with `operator_args={"callback": record_cosmos_results, "callback_args": {"home": <dir>}}`;
    Cosmos calls it with the temporary project folder after every dbt command, failed ones included.
    """
    chosen = Home.resolve(home)
    try:
        record = BuildRecord.load(chosen)
    except UserError:
        record = BuildRecord()
    merged = record.merge_artifacts(Path(project_dir) / "target")
    record.save(chosen)
    log.info("build outcome %s: %d node result(s) merged", record_path(chosen), merged)
