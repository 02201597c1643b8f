"""The dbt parsing macros (dbt/macros/parsing.sql) against the independent Python rules of
tests/reference.py, value by value: every accepted timestamp form (the one fast path), the edges just
inside and just outside the contract, and the boolean spellings. The macros are compiled by dbt itself
(`dbt compile --inline`) and run in DuckDB.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import duckdb
import pytest

from chat_analytics.paths import DBT_PROJECT_DIR
from chat_analytics.pipeline.build import WAREHOUSE_ENV, release_warehouse

try:
    import reference
except ImportError:  # tests/ imported as a package
    from tests import reference

DATES = ["2000-03-25", "2000-10-29", "1999-12-31", "2024-02-29", "0001-01-01", "9999-12-31"]
CLOCKS = ["00:00:00", "23:59:59", "02:30:00", "13:05:09"]
FRACTIONS = ["", ".5", ".12", ".123", ".1234", ".12345", ".123456"]
ZONES = ["", "Z", "z", "+10:00", "+1000", "+10", "-05:30", "-0530", "+00:00", "-23:59", "+23"]
SEPARATORS = [" ", "T", "t"]

EDGES = [
    # outside the contract, each just past an accepted form
    "2000-01-01 24:00:00", "2000-01-01 23:60:00", "2000-01-01 23:59:60", "2000-02-30 10:00:00",
    "2001-02-29 10:00:00", "2000-13-01 10:00:00", "2000-00-10 10:00:00", "0000-01-01 10:00:00",
    "2000-01-01 10:00:00.1234567", "2000-01-01 10:00:00.", "2000-01-01T10:00:00.Z", "2000-1-1 10:00:00",
    "2000-01-01", "2000-01-01 10:00", "2000-01-01 10:00:00 UTC", "2000-01-01 10:00:00 +10:00",
    "2000-01-01 10:00:00+24:00", "2000-01-01 10:00:00+10:60", "2000-01-01 10:00:00+10:00:30",
    "02000-01-01 10:00:00", "-2000-01-01 10:00:00", "2000-01-01  10:00:00", "2000-01-01_10:00:00",
    "2000-01-01 10:00:00ZZ", "2000-01-01 10:00:00+1", "2000-01-01 10:00:00+100", "2000-01-01 1:00:00",
    "2000-01-01 10:00:00\t", "\t2000-01-01 10:00:00", "2000-01-01 10:00:00\n",
    "\uff12\uff10\uff10\uff10-01-01 10:00:00",
    "1999-12-31 23:59:59+00:01", "9999-12-31 23:59:59-00:01",
    # inside: blanks around, case
    " 2000-01-01 10:00:00", "2000-01-01 10:00:00  ", "  2000-01-01t10:00:00z ", "2000-01-01T10:00:00.000000Z",
    # missing
    "", "   ", "null", "NULL", " Null ", None,
]  # fmt: skip

BOOLEANS = [
    "true", "false", "t", "f", "1", "0", "yes", "no", "TRUE", "False", "Yes", "NO", " true ", "T", "F",
    "y", "n", "2", "-1", "on", "off", "", "null", "tru", "truee", "yes please", None,
]  # fmt: skip


def timestamp_values() -> list[str | None]:
    forms = [
        f"{day}{sep}{clock}{fraction}{zone}"
        for day, sep, clock, fraction, zone in itertools.product(DATES, SEPARATORS, CLOCKS, FRACTIONS, ZONES)
    ]
    return [*forms, *EDGES]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The macros compiled by dbt into one select over a column `v`."""
    from dbt.cli.main import dbtRunner

    warehouse = tmp_path_factory.mktemp("parsing") / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    previous = os.environ.get(WAREHOUSE_ENV)
    os.environ[WAREHOUSE_ENV] = str(warehouse)
    target = Path(tmp_path_factory.mktemp("target"))
    inline = (
        "select v, {{ parse_utc_timestamp('v') }} as ts, {{ parse_boolean('v') }} as flag, "
        "{{ is_missing('v') }} as missing, {{ clean_text('v') }} as cleaned from values_to_parse"
    )
    try:
        outcome = dbtRunner().invoke(
            ["compile", "--quiet", "--inline", inline, "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target)]
        )  # fmt: skip
    finally:
        release_warehouse()
        if previous is None:
            os.environ.pop(WAREHOUSE_ENV, None)
        else:
            os.environ[WAREHOUSE_ENV] = previous
    assert outcome.success, outcome.exception
    return outcome.result.results[0].node.compiled_code


def run(compiled: str, values: list[str | None]) -> list[tuple]:
    with duckdb.connect() as con:
        con.execute("create table values_to_parse (n integer, v varchar)")
        con.executemany("insert into values_to_parse values (?, ?)", list(enumerate(values)))
        return con.execute(f"select * from ({compiled}) order by v nulls first").fetchall()


def test_timestamps_follow_the_reference_on_every_form_and_edge(compiled: str) -> None:
    values = timestamp_values()
    assert len(values) > 5_000
    wrong = [(v, ts, _reference_utc(v)) for v, ts, *_ in run(compiled, values) if ts != _reference_utc(v)]
    assert not wrong, f"{len(wrong)} values parse differently from the reference, e.g. {wrong[:10]}"
    parsed = [ts for v, ts, *_ in run(compiled, values) if ts is not None]
    assert len(parsed) > 4_000  # the accepted forms are accepted, not all rejected alike


def _reference_utc(value: str | None) -> object:
    try:
        return reference.parse_utc(value)
    except OverflowError:  # an offset that leaves years 1-9999: no instant
        return None


def test_booleans_and_missing_tokens_follow_the_reference(compiled: str) -> None:
    for v, _ts, flag, missing, cleaned in run(compiled, BOOLEANS + EDGES[-6:]):
        assert flag == reference.parse_bool(v), v
        assert missing == reference.is_missing(v), v
        assert cleaned == reference.clean_text(v), v
