"""chat_analytics.devtools.compare: what makes two published files differ, and what does not."""

from __future__ import annotations

from pathlib import Path

import duckdb

from chat_analytics.devtools.compare import compare


def _file(path: Path, statements: list[str]) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute(
            "create table fct_chats (chat_id varchar, hours double, day date, _resolved_seq bigint);"
            "insert into fct_chats values ('a', 1.0, '2000-01-01', 1), ('b', null, '2000-01-02', 1),"
            " ('c', 1e9 / 3, null, 1);"
            "create table dim (id varchar, parent varchar); insert into dim values ('x', null), ('y', 'x');"
        )
        for statement in statements:
            con.execute(statement)
    return path


def test_equal_data_with_last_bit_and_build_number_differences_compare_equal(tmp_path: Path) -> None:
    left = _file(tmp_path / "l.duckdb", [])
    right = _file(
        tmp_path / "r.duckdb",
        ["update fct_chats set hours = hours * (1 + 1e-15), _resolved_seq = 7"],
    )
    assert compare(left, right) == []


def test_a_changed_value_a_missing_row_or_column_is_found(tmp_path: Path) -> None:
    left = _file(tmp_path / "l.duckdb", [])
    cases = {
        "value": ["update fct_chats set hours = 1.000001 where chat_id = 'a'"],
        "null": ["update fct_chats set hours = 0 where chat_id = 'b'"],
        "row": ["delete from dim where id = 'y'"],
        "duplicate": ["insert into dim values ('y', 'x')"],
        "column": ["alter table dim add column extra integer"],
        "table": ["drop table dim"],
        "exact": ["update fct_chats set day = '2000-01-03' where chat_id = 'a'"],
    }
    for name, statements in cases.items():
        right = _file(tmp_path / f"{name}.duckdb", statements)
        assert compare(left, right), name
