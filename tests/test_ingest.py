"""Ingest on real DuckDB files: idempotency, atomicity, reconciliation, header drift, encodings, errors."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.ingest import ingest

try:
    from warehouse_checks import q, write
except ImportError:  # tests/ imported as a package
    from tests.warehouse_checks import q, write

HEADER = "id,chat_category_id,created_at,is_customer_initiated,resolved_at"
ROWS = [
    "c1,k1,2000-01-01 00:00:00,true,",
    "c2,k2,2000-01-01 01:00:00,false,2000-01-01 02:00:00",
    "c3,,2000-01-01 03:00:00,true,",
]


def manifest(home: Home) -> dict[str, tuple]:
    rows = q(
        home,
        "select file_name, status, rows_loaded, rows_rejected, data_lines, blank_lines, version, reason "
        "from raw.ingested_files order by batch_id",
    )
    return {r[0]: r[1:] for r in rows}


def test_clean_file_loads_with_lineage_and_is_idempotent(home: Home) -> None:
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\n" + "\n".join(ROWS) + "\n")
    write(home.landing_categories, "categories_2000-01-01.csv", "id,parent_id,disabled\nk1,,false\nk2,k1,")
    first = ingest(home)
    assert first.ok and first.count("loaded") == 2
    rows = q(
        home, "select id, _line_number, _source_file, _batch_id, _extract_date from raw.chats order by 2"
    )
    assert [(r[0], r[1]) for r in rows] == [("c1", 2), ("c2", 3), ("c3", 4)]
    assert {r[2] for r in rows} == {"chats_2000-01-01.csv"}
    assert str(rows[0][4]) == "2000-01-01"
    # Every value is text, source names kept; a missing category stays missing.
    types = dict(
        q(home, "select column_name, data_type from information_schema.columns where table_name='chats'")
    )
    assert all(types[c] == "VARCHAR" for c in HEADER.split(","))
    assert q(home, "select chat_category_id from raw.chats where id = 'c3'") == [(None,)]
    sha = q(home, "select distinct _source_sha256 from raw.chats")[0][0]
    import hashlib

    assert sha == hashlib.sha256((home.landing_chats / "chats_2000-01-01.csv").read_bytes()).hexdigest()

    second = ingest(home)
    assert second.ok and second.count("skipped") == 2 and second.count("loaded") == 0
    assert q(home, "select count(*) from raw.chats") == [(3,)]
    assert q(home, "select count(*) from raw.ingested_files") == [(2,)]


def test_changed_file_under_same_name_loads_as_new_version(home: Home, caplog) -> None:
    path = write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\n" + ROWS[0] + "\n")
    ingest(home)
    path.write_text(HEADER + "\n" + ROWS[0] + "\n" + ROWS[1] + "\n")
    report = ingest(home)
    assert report.ok and report.outcomes[0].version == 2
    assert "version 2" in caplog.text
    # version 2 replaces version 1 (issue 11): only its rows count; version 1's stay stored for audit
    assert q(home, "select _batch_id, count(*) from raw.chats group by 1 order by 1") == [(2, 2)]
    assert q(home, "select count(*) from raw.chats_data") == [(3,)]


def test_rejected_rows_blank_lines_and_exact_line_numbers(home: Home) -> None:
    text = "\n".join(
        [
            HEADER,
            ROWS[0],  # 2
            "",  # 3 blank
            "short,row",  # 4 too few fields
            ROWS[1],  # 5
            "long,row,a,b,c,d",  # 6 too many fields
            "",  # 7 blank
            "",  # 8 blank
            'c9,"k,9",2000-01-01 00:00:00,NULL,null',  # 9 quoted comma
            "c10,k\xff,x,y,z",  # 10 bad encoding (written as latin-1 bytes below)
            ROWS[2],  # 11, no newline at the end
        ]
    )
    write(home.landing_chats, "chats_2000-01-02.csv", text.encode("latin-1"))
    report = ingest(home)
    assert report.ok
    got = q(home, "select id, chat_category_id, _line_number from raw.chats order by _line_number")
    assert got == [("c1", "k1", 2), ("c2", "k2", 5), ("c9", "k,9", 9), ("c3", None, 11)]
    rejected = q(home, "select line_number, raw_line, error_type from raw.rejected_rows order by 1")
    assert [(r[0], r[2]) for r in rejected] == [
        (4, "MISSING COLUMNS"),
        (6, "TOO MANY COLUMNS"),
        (10, "INVALID ENCODING"),
    ]
    assert rejected[0][1] == "short,row" and rejected[1][1] == "long,row,a,b,c,d"
    status, loaded, n_rejected, data_lines, blank, *_ = manifest(home)["chats_2000-01-02.csv"]
    assert (status, loaded, n_rejected, data_lines, blank) == ("loaded", 4, 3, 7, 3)
    assert data_lines == loaded + n_rejected


def test_broken_quotes_and_multiline_values_reconcile(home: Home) -> None:
    text = "\n".join(
        [
            HEADER,
            'x1,"a\nb",2000-01-01 00:00:00,true,',  # 2-3: a valid value spanning two lines
            'x2,"unterminated,2000-01-01 00:00:00,true,',  # 4.. broken quote swallows lines
            "x3,k,2000-01-01 00:00:00,true,",
            'x4,"closes",2000-01-01 00:00:00,true,',
            "x5,k,2000-01-01 00:00:00,true,",
        ]
    )
    write(home.landing_chats, "chats_2000-01-03.csv", text + "\n")
    report = ingest(home)
    assert report.ok, report.failed
    status, loaded, n_rejected, data_lines, *_ = manifest(home)["chats_2000-01-03.csv"]
    assert status == "loaded" and data_lines == loaded + n_rejected
    lines = dict(q(home, "select id, _line_number from raw.chats"))
    assert lines["x1"] == 2 and lines["x5"] == 7
    assert all(r[0] >= 4 for r in q(home, "select line_number from raw.rejected_rows"))


def test_bom_crlf_and_gzip(home: Home) -> None:
    body = HEADER + "\r\n" + "\r\n".join(ROWS) + "\r\n"
    write(home.landing_chats, "chats_2000-01-04.csv", b"\xef\xbb\xbf" + body.encode())
    write(home.landing_chats, "chats_2000-01-05.csv.gz", HEADER + "\n" + "\n".join(ROWS) + "\n")
    report = ingest(home)
    assert report.ok
    rows = q(home, "select _source_file, id, resolved_at, _line_number from raw.chats order by 1, 4")
    assert len(rows) == 6
    # No carriage return and no BOM leaks into values or column names.
    assert all("\r" not in (r[1] + (r[2] or "")) for r in rows)
    assert ("chats_2000-01-04.csv", "c2", "2000-01-01 02:00:00", 3) in rows
    assert ("chats_2000-01-05.csv.gz", "c3", None, 4) in rows


def test_header_in_any_order_and_extra_column_is_kept(home: Home, caplog) -> None:
    write(
        home.landing_chats,
        "chats_2000-01-06.csv",
        "resolved_at,Agent_Note,id,created_at,is_customer_initiated,chat_category_id\n"
        ",hello,c1,2000-01-01 00:00:00,true,k1\n",
    )
    report = ingest(home)
    assert report.ok
    assert "unexpected column(s) ['agent_note']" in caplog.text
    assert q(home, "select id, chat_category_id, _extra['agent_note'] from raw.chats") == [
        ("c1", "k1", "hello")
    ]
    assert q(home, "select extra_columns from raw.ingested_files") == [(["agent_note"],)]


def test_missing_column_rejects_file_but_others_load(home: Home) -> None:
    write(
        home.landing_chats,
        "chats_2000-01-07.csv",
        "id,created_at,is_customer_initiated,resolved_at\nc1,x,y,z\n",
    )
    write(home.landing_chats, "chats_2000-01-08.csv", HEADER + "\n" + ROWS[0] + "\n")
    report = ingest(home)
    assert not report.ok
    assert [o.file_name for o in report.failed] == ["chats_2000-01-07.csv"]
    assert "missing required column(s) chat_category_id" in report.failed[0].reason
    m = manifest(home)
    assert m["chats_2000-01-07.csv"][0] == "failed" and "chat_category_id" in m["chats_2000-01-07.csv"][-1]
    assert m["chats_2000-01-08.csv"][:2] == ("loaded", 1)
    assert q(home, "select count(*) from raw.chats") == [(1,)]


def test_header_only_is_valid_and_empty_file_is_not(home: Home) -> None:
    write(home.landing_chats, "chats_2000-01-09.csv", HEADER + "\n")
    write(home.landing_chats, "chats_2000-01-10.csv", "")
    report = ingest(home)
    m = manifest(home)
    assert m["chats_2000-01-09.csv"][:3] == ("loaded", 0, 0)
    assert m["chats_2000-01-10.csv"][0] == "failed" and "zero bytes" in m["chats_2000-01-10.csv"][-1]
    assert [o.file_name for o in report.failed] == ["chats_2000-01-10.csv"]


def test_bad_names_binary_and_unreadable_files_are_recorded(home: Home) -> None:
    write(home.landing_chats, "chats_2000-13-01.csv", HEADER + "\n")
    write(home.landing_chats, "notes.txt", "hello")
    write(home.landing_chats, "categories_2000-01-01.csv", "id,parent_id,disabled\n")
    write(home.landing_chats, "chats_2000-01-11.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (home.landing_chats / "chats_2000-01-12.csv.gz").write_bytes(b"not gzip at all")
    unreadable = write(home.landing_chats, "chats_2000-01-13.csv", HEADER + "\n")
    unreadable.chmod(0)
    write(home.landing_chats, "chats_2000-01-14.csv", HEADER + "\n" + ROWS[0] + "\n")
    report = ingest(home)
    reasons = {o.file_name: o.reason for o in report.failed}
    assert "not a real date" in reasons["chats_2000-13-01.csv"]
    assert "unexpected file name" in reasons["notes.txt"]
    assert "categories file in the chats landing folder" in reasons["categories_2000-01-01.csv"]
    assert "not a CSV" in reasons["chats_2000-01-11.csv"]
    assert "gzip" in reasons["chats_2000-01-12.csv.gz"]
    if os.geteuid() != 0:  # root reads anything
        assert "cannot read" in reasons["chats_2000-01-13.csv"]
    assert manifest(home)["chats_2000-01-14.csv"][:2] == ("loaded", 1)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chat_analytics.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = run_cli("ingest", "--home", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "h").mkdir()
    no_landing = run_cli("ingest", "--home", str(tmp_path / "h"))
    assert no_landing.returncode == 2 and "landing folder" in no_landing.stderr
    home = Home(tmp_path / "h")
    home.ensure_landing()
    write(home.landing_chats, "chats_2000-01-01.csv", "id,created_at\n1,2\n")
    bad = run_cli("ingest", "--home", str(home.root))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "bad file:" in bad.stderr and "chats_2000-01-01.csv" in bad.stderr
    assert "chat_category_id" in bad.stderr


def test_cli_uses_home_from_environment(tmp_path: Path) -> None:
    home = Home(tmp_path / "env-home")
    home.ensure_landing()
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\n" + ROWS[0] + "\n")
    done = run_cli("ingest", env={"CHAT_ANALYTICS_HOME": str(home.root)})
    assert done.returncode == 0, done.stderr
    assert home.warehouse.exists()


def test_killed_mid_load_leaves_nothing_and_next_run_loads_all(home: Home) -> None:
    write(home.landing_chats, "chats_2000-01-01.csv", HEADER + "\n" + ROWS[0] + "\n")
    assert ingest(home).ok
    rows = "\n".join(f"k{i},cat,2000-01-02 00:00:00,true," for i in range(50_000))
    write(home.landing_chats, "chats_2000-01-02.csv", HEADER + "\n" + rows + "\n")
    write(home.landing_chats, "chats_2000-01-03.csv", HEADER + "\n" + "\n".join(ROWS) + "\n\n")
    killed = run_cli(
        "ingest", "--home", str(home.root), env={"CHAT_ANALYTICS_FAULT": "before-commit:chats_2000-01-02.csv"}
    )
    assert killed.returncode == -9, killed.stderr  # really killed by SIGKILL mid-load
    assert "killing the process" in killed.stderr
    # What was committed before stays; nothing of the interrupted load remains, anywhere.
    assert q(
        home,
        "select file_name, count(*) from raw.chats_data join raw.ingested_files "
        "on batch_id = _batch_id group by 1",
    ) == [("chats_2000-01-01.csv", 1)]
    assert q(home, "select count(*) from raw.chats_data") == [(1,)]
    assert [r[0] for r in q(home, "select file_name from raw.ingested_files")] == ["chats_2000-01-01.csv"]
    assert q(home, "select count(*) from raw.line_gaps") == [(0,)]
    again = run_cli("ingest", "--home", str(home.root))
    assert again.returncode == 0, again.stderr
    got = q(
        home,
        "select _source_file, count(*), min(_line_number), max(_line_number) from raw.chats "
        "group by 1 order by 1",
    )
    assert got == [
        ("chats_2000-01-01.csv", 1, 2, 2),
        ("chats_2000-01-02.csv", 50_000, 2, 50_001),
        ("chats_2000-01-03.csv", 3, 2, 4),
    ]
    assert manifest(home)["chats_2000-01-02.csv"][:3] == ("loaded", 50_000, 0)


def test_missing_home_raises_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        ingest(Home(tmp_path / "absent"))


def test_dirty_sample_reconciles_exactly_with_ground_truth(tmp_path: Path) -> None:
    """Every injected defect class is accounted for, file by file, with the right reason."""
    import json
    from datetime import date

    from chat_analytics.devtools.generate import generate

    home = Home(tmp_path / "dirty")
    generate(home, chats=5_000, start=date(2000, 1, 1), end=date(2000, 2, 15), seed=7, dirty=True)
    truth = json.loads((home.landing / "ground_truth.json").read_text())
    report = ingest(home)
    assert report.ok, [o.reason for o in report.failed]

    got = {
        r[0]: r[1:]
        for r in q(
            home,
            "select file_name, data_lines, rows_loaded, rows_rejected, blank_lines from raw.ingested_files",
        )
    }
    for name, exp in truth["expected"]["ingest"]["files"].items():
        assert got[name] == (
            exp["data_lines"],
            exp["rows_loaded"],
            exp["rows_rejected"],
            exp["blank_lines"],
        ), name
        assert exp["data_lines"] == exp["rows_loaded"] + exp["rows_rejected"]
    totals = truth["expected"]["ingest"]["chats"]
    assert q(home, "select count(*) from raw.chats") == [(totals["rows_loaded"],)]

    # Short rows are rejected for missing columns, long rows for too many, each on its own line.
    rejected = q(home, "select error_type, raw_line, file_name, line_number from raw.rejected_rows")
    injected = truth["injected"]
    by_type = {t: [r for r in rejected if r[0] == t] for t in ("MISSING COLUMNS", "TOO MANY COLUMNS")}
    assert len(by_type["MISSING COLUMNS"]) == injected["short_row"]["lines"]
    assert len(by_type["TOO MANY COLUMNS"]) == injected["long_row"]["lines"]
    assert len(rejected) == injected["short_row"]["lines"] + injected["long_row"]["lines"]
    for ids, rows in (
        (injected["short_row"]["ids"], by_type["MISSING COLUMNS"]),
        (injected["long_row"]["ids"], by_type["TOO MANY COLUMNS"]),
    ):
        assert sorted(i for i in ids) == sorted(r[1].split(",")[0] for r in rows)
    # The rejected raw line is exactly the line at that number in the file.
    for _, raw_line, file_name, line_number in rejected:
        lines = (home.landing_chats / file_name).read_bytes().decode("utf-8-sig").splitlines()
        assert lines[line_number - 1] == raw_line
    # Lineage points at the right line for every loaded row of the BOM and CRLF files.
    for key in ("utf8_bom", "crlf_line_ends"):
        (name,) = injected[key]["files"]
        lines = (home.landing_chats / name).read_bytes().decode("utf-8-sig").splitlines()
        for row_id, line_number in q(
            home, "select id, _line_number from raw.chats where _source_file = ?", [name]
        ):
            assert lines[line_number - 1].split(",")[0] == (row_id or ""), (name, line_number)


def test_one_run_with_duplicates_bad_encoding_and_bad_gzip_in_one_group(home: Home) -> None:
    """Files sharing a header load together; the odd ones are split off without harming the rest."""
    clean = HEADER + "\n" + "\n".join(ROWS) + "\n"
    write(home.landing_chats, "chats_2000-02-01.csv", clean)
    write(home.landing_chats, "chats_2000-02-02.csv", clean)  # same bytes under another name
    bad_utf8 = (HEADER + "\nu1,k,2000-01-01 00:00:00,true,\nu2,k\xe9,2000-01-01 00:00:00,true,\n").encode(
        "latin-1"
    )
    write(home.landing_chats, "chats_2000-02-03.csv", bad_utf8)
    (home.landing_chats / "chats_2000-02-04.csv.gz").write_bytes(gzip.compress(clean.encode())[:-12])
    write(home.landing_chats, "chats_2000-02-05.csv", HEADER + "\nz1,k,2000-01-01 00:00:00,true,\n")
    report = ingest(home)
    status = {o.file_name: (o.status, o.rows_loaded, o.rows_rejected) for o in report.outcomes}
    assert status["chats_2000-02-01.csv"] == ("loaded", 3, 0)
    assert status["chats_2000-02-02.csv"][0] == "skipped"
    assert "same content as chats_2000-02-01.csv" in next(
        o.reason for o in report.outcomes if o.file_name == "chats_2000-02-02.csv"
    )
    assert status["chats_2000-02-03.csv"] == ("loaded", 1, 1)
    assert q(home, "select line_number, error_type from raw.rejected_rows") == [(3, "INVALID ENCODING")]
    assert status["chats_2000-02-04.csv.gz"][0] == "failed"
    assert status["chats_2000-02-05.csv"] == ("loaded", 1, 0)
    assert q(home, "select count(*) from raw.chats") == [(5,)]
    lines = q(home, "select _source_file, id, _line_number from raw.chats order by 1, 3")
    assert ("chats_2000-02-03.csv", "u1", 2) in lines and ("chats_2000-02-05.csv", "z1", 2) in lines
