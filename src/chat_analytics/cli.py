"""The `chat-analytics` command line."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date

from chat_analytics.engine import ENGINE_ENV, ENGINES
from chat_analytics.paths import HOME_ENV, Home, UserError

log = logging.getLogger("chat_analytics")

DEFAULT_START = date(2000, 1, 1)
DEFAULT_END = date(2000, 4, 30)
DEFAULT_CHATS = 50_000
UNIT_TESTS_HELP = (
    "also run the dbt unit tests (fixed fixtures testing the SQL logic; production builds skip them, "
    "`make test` runs them)"
)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _locked(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a sub-command holding the home's pipeline lock (`--wait SECONDS` to wait for a holder)."""

    @functools.wraps(func)
    def run_locked(args: argparse.Namespace) -> int:
        from chat_analytics.pipeline.lock import pipeline_lock

        with pipeline_lock(Home.resolve(args.home), wait=getattr(args, "wait", 0.0)):
            return func(args)

    return run_locked


def _cmd_generate(args: argparse.Namespace) -> int:
    from chat_analytics.devtools.generate import generate

    if args.end < args.start:
        raise UserError(f"--end {args.end} is before --start {args.start}")
    generate(
        Home.resolve(args.home),
        chats=args.chats,
        start=args.start,
        end=args.end,
        seed=args.seed,
        dirty=args.dirty,
    )
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from chat_analytics.pipeline.ingest import ingest

    return 0 if ingest(Home.resolve(args.home)).ok else 1


def _cmd_build(args: argparse.Namespace) -> int:
    from chat_analytics.pipeline.build import build

    return build(
        Home.resolve(args.home),
        full_refresh=args.full_refresh,
        unit_tests=args.unit_tests,
        engine=args.engine,
    )


def _cmd_publish(args: argparse.Namespace) -> int:
    from chat_analytics.serving.publish import PublishRefused, publish

    try:
        publish(Home.resolve(args.home), run_id=args.run_id, engine=args.engine)
    except PublishRefused as exc:
        log.error("%s", exc)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from chat_analytics.serving.report import report

    report(Home.resolve(args.home))
    return 0


def _cmd_retract(args: argparse.Namespace) -> int:
    from chat_analytics.pipeline.retract import retract

    retract(Home.resolve(args.home), args.file_name, reason=args.reason)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from chat_analytics.engine import resolve_engine
    from chat_analytics.pipeline.build import build, preload_dbt
    from chat_analytics.pipeline.monitoring import SUCCESS, PipelineRun
    from chat_analytics.pipeline.spark import require_java
    from chat_analytics.pipeline.steps import StepFailed, ingest_step, publish_step, report_step
    from chat_analytics.serving.publish import PublishRefused

    home = Home.resolve(args.home)
    engine = resolve_engine(args.engine)
    if engine == "spark":
        require_java()  # before anything runs: one clear line when Spark cannot start
    preload_dbt(engine)  # dbt's import (CPU) overlaps the ingest (mostly DuckDB, outside the GIL)
    run = PipelineRun(home)  # the run's row in monitoring.run_history, and its messages
    try:
        ingest_step(home, run)
    except StepFailed as exc:
        log.error("not building: %s", exc)
        return run.failed("ingest", str(exc))
    with run.step("build"):
        built = build(home, full_refresh=args.full_refresh, unit_tests=args.unit_tests, engine=engine)
    run.record_build()
    if built != 0:
        log.error("build failed: not publishing; %s stays as it was", home.serving)
        run.failed("build", run.build_error())
        return built  # 1, naming the failed dbt nodes
    try:
        publish_step(home, run, engine=engine)
    except PublishRefused as exc:  # like `publish`: a build that is not publishable is exit 1
        log.error("%s", exc)
        return 1
    report_step(home, run)
    run.finish(SUCCESS)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-analytics",
        description="Local-first analytics warehouse for customer-support chats.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    home_help = f"home folder (default: ${HOME_ENV}, else ./data)"
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, *, locked: bool = True
    ) -> argparse.ArgumentParser:
        """A sub-command; unless `locked=False` it holds the pipeline lock and takes `--wait SECONDS`."""
        cmd = sub.add_parser(name, help=help_, description=help_)
        cmd.add_argument("--home", metavar="DIR", help=home_help)
        if locked:
            cmd.add_argument(
                "--wait",
                metavar="SECONDS",
                type=_non_negative_seconds,
                default=0.0,
                help="when another pipeline command holds this home, wait up to SECONDS for it "
                "(default: stop at once)",
            )
        cmd.set_defaults(func=_locked(func) if locked else func)
        return cmd

    gen = add("generate", _cmd_generate, "write realistic sample extracts into landing", locked=False)
    gen.add_argument(
        "--chats", type=_positive_int, default=DEFAULT_CHATS, help="number of chats (%(default)s)"
    )
    gen.add_argument("--start", type=_iso_date, default=DEFAULT_START, help="first UTC day (%(default)s)")
    gen.add_argument(
        "--end", type=_iso_date, default=DEFAULT_END, help="last UTC day, inclusive (%(default)s)"
    )
    gen.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes (%(default)s)")
    gen.add_argument(
        "--dirty", action="store_true", help="inject known defects and write a ground-truth JSON"
    )

    add("ingest", _cmd_ingest, "load new landing files into the warehouse's raw schema")

    build = add(
        "build",
        _cmd_build,
        "run dbt build on the warehouse: models and data tests (--unit-tests adds dbt unit tests)",
    )
    build.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    build.add_argument("--unit-tests", action="store_true", help=UNIT_TESTS_HELP)
    _engine_option(build)

    pub = add("publish", _cmd_publish, "copy the marts of the last green build to serving/ for analysts")
    pub.add_argument("--run-id", metavar="ID", help="run id for _build_info (default: cli-<UTC time>)")
    pub.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"refuse unless the last build ran on this engine (default: ${ENGINE_ENV} if set; otherwise "
        "whatever engine built the warehouse's marts)",
    )

    add("report", _cmd_report, "write serving/report.html from the published marts")

    ret = add(
        "retract",
        _cmd_retract,
        "withdraw a loaded landing file: its rows stop counting (kept for audit); it is not loaded again "
        "unless its content changes",
    )
    ret.add_argument("file_name", metavar="FILE_NAME", help="the file's name, e.g. chats_2000-01-31.csv")
    ret.add_argument("--reason", metavar="TEXT", help="why, for the audit trail (raw.file_actions)")

    run = add("run", _cmd_run, "everything in order: ingest, build, publish, report")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    run.add_argument("--unit-tests", action="store_true", help=UNIT_TESTS_HELP)
    _engine_option(run)
    return parser


def _engine_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--engine",
        choices=ENGINES,
        help=f"where dbt runs: duckdb (embedded, the default) or spark (a local Spark session; needs Java "
        f"17+; README, Scaling out); default ${ENGINE_ENV}, else duckdb",
    )


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return args.func(args)
    except UserError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
