"""Hostile landing folders: special files, symbolic links, odd line ends, blank-line floods, odd names.

Contract (issue 11, items 10-15): bad input gets one clear log line naming the file and what to do, the
file is recorded as failed in raw.ingested_files, every other file still loads; never a hang, never a
traceback. Runs that could hang (FIFOs, devices) or whose memory is measured run the real CLI in a
subprocess with a timeout.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chat_analytics.paths import Home, UserError
from chat_analytics.pipeline.ingest import ingest
from chat_analytics.pipeline.landing import ALLOW_SYMLINKS_ENV

try:
    from warehouse_checks import q
except ImportError:  # tests/ imported as a package
    from tests.warehouse_checks import q

HEADER = "id,chat_category_id,created_at,is_customer_initiated,resolved_at"
GOOD = "chats_2000-01-01.csv"


def row(chat_id: str, category: str = "k1") -> str:
    return f"{chat_id},{category},2000-01-01 00:00:00,true,"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = Home(tmp_path / "home")
    h.ensure_landing()
    (h.landing_chats / GOOD).write_text(HEADER + "\n" + row("good") + "\n")
    return h


def manifest(home: Home) -> dict[str, tuple]:
    rows = q(home, "select file_name, status, reason, sha256 from raw.ingested_files order by batch_id")
    return {r[0]: r[1:] for r in rows}


def lines_of(home: Home, file_name: str) -> list[tuple[str, int]]:
    return q(
        home,
        "select id, _line_number from raw.chats where _source_file = ? order by _line_number",
        [file_name],
    )


def cli(home: Home | Path, *, env: dict[str, str] | None = None, timeout: float = 120):
    root = home.root if isinstance(home, Home) else home
    return subprocess.run(
        [sys.executable, "-m", "chat_analytics.cli", "ingest", "--home", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,  # a hang fails the test instead of hanging the suite
    )


def error_lines(stderr: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if "FAILED" in line and name in line]


# --- 10: FIFOs, devices, symbolic links ---------------------------------------------------------


def test_fifo_in_landing_fails_without_hanging_and_others_load(home: Home) -> None:
    os.mkfifo(home.landing_chats / "chats_2000-01-02.csv")
    done = cli(home, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = error_lines(done.stderr, "chats_2000-01-02.csv")
    assert "FIFO" in line and "only regular files are read" in line
    m = manifest(home)
    assert m["chats_2000-01-02.csv"][0] == "failed" and m["chats_2000-01-02.csv"][2] is None  # never read
    assert m[GOOD][0] == "loaded"


def test_symlink_to_a_device_is_refused_even_when_links_out_are_allowed(home: Home) -> None:
    (home.landing_chats / "chats_2000-01-02.csv").symlink_to("/dev/zero")
    (home.landing_chats / "chats_2000-01-03.csv.gz").symlink_to("/dev/urandom")
    refused = cli(home, timeout=60)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = error_lines(refused.stderr, "chats_2000-01-02.csv")
    assert "symbolic link to /dev/zero" in line and ALLOW_SYMLINKS_ENV in line
    assert manifest(home)[GOOD][0] == "loaded"

    allowed = cli(home, env={ALLOW_SYMLINKS_ENV: "1"}, timeout=60)
    assert allowed.returncode == 1 and "Traceback" not in allowed.stderr
    (line,) = error_lines(allowed.stderr, "chats_2000-01-03.csv.gz")
    assert "character device" in line


def test_symlink_out_of_landing_is_refused_unless_allowed(home: Home, tmp_path: Path, monkeypatch) -> None:
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(HEADER + "\n" + row("outside") + "\n")
    (home.landing_chats / "chats_2000-01-02.csv").symlink_to(outside)
    # A link inside landing to a regular file inside landing is fine.
    (home.landing / "archive").mkdir()
    inside = home.landing / "archive" / "real.csv"
    inside.write_text(HEADER + "\n" + row("inside") + "\n")
    (home.landing_chats / "chats_2000-01-03.csv").symlink_to(Path("..") / "archive" / "real.csv")
    (home.landing_chats / "chats_2000-01-04.csv").symlink_to(tmp_path / "missing.csv")

    report = ingest(home)
    reasons = {o.file_name: o.reason for o in report.failed}
    assert set(reasons) == {"chats_2000-01-02.csv", "chats_2000-01-04.csv"}
    assert f"symbolic link to {outside}" in reasons["chats_2000-01-02.csv"]
    assert ALLOW_SYMLINKS_ENV in reasons["chats_2000-01-02.csv"]
    assert q(home, "select id from raw.chats order by id") == [("good",), ("inside",)]

    monkeypatch.setenv(ALLOW_SYMLINKS_ENV, "1")
    (tmp_path / "missing.csv").write_text(HEADER + "\n")
    again = ingest(home)
    assert again.ok, [(o.file_name, o.reason) for o in again.failed]
    assert ("outside",) in q(home, "select id from raw.chats")


# --- 11: line ends and monstrous headers --------------------------------------------------------


def test_cr_only_line_ends_load_with_exact_line_numbers(home: Home) -> None:
    body = "\r".join(
        [HEADER, row("m1"), "", row("m2"), 'm3,"two\rlines",2000-01-01 00:00:00,true,', row("m4")]
    )
    (home.landing_chats / "chats_2000-01-02.csv").write_bytes(body.encode() + b"\r")
    (home.landing_chats / "chats_2000-01-03.csv.gz").write_bytes(gzip.compress(body.encode()))
    report = ingest(home)
    assert report.ok, [(o.file_name, o.reason) for o in report.failed]
    for name in ("chats_2000-01-02.csv", "chats_2000-01-03.csv.gz"):
        # A CR inside a quoted value is data, not a line end (see also the test below).
        assert lines_of(home, name) == [("m1", 2), ("m2", 4), ("m3", 5), ("m4", 6)]
    assert q(home, "select distinct chat_category_id from raw.chats where id = 'm3'") == [("two\rlines",)]
    data_lines, blank = q(
        home,
        "select data_lines, blank_lines from raw.ingested_files where file_name = 'chats_2000-01-02.csv'",
    )[0]
    assert (data_lines, blank) == (4, 1)
    # The manifest describes the landed file, not the normalised copy, and the copy is gone.
    import hashlib

    landed = (home.landing_chats / "chats_2000-01-02.csv").read_bytes()
    assert manifest(home)["chats_2000-01-02.csv"][2] == hashlib.sha256(landed).hexdigest()
    assert not list(home.warehouse_dir.glob("ingest-copy-*"))


def test_lone_cr_in_header_and_huge_header_field_fail_cleanly(home: Home) -> None:
    (home.landing_chats / "chats_2000-01-02.csv").write_bytes(
        b"id,chat_category_id,created\r_at,is_customer_initiated,resolved_at\n" + row("x").encode() + b"\n"
    )
    (home.landing_chats / "chats_2000-01-03.csv").write_text(
        HEADER + "," + "h" * 200_000 + "\n" + row("y") + ",z\n"
    )
    quoted = ",".join(["q" * 900] * 5)  # one quoted name of 4,504 characters, no piece over 1,000
    (home.landing_chats / "chats_2000-01-04.csv").write_text(HEADER + ',"' + quoted + '"\n')
    (home.landing_chats / "chats_2000-01-05.csv").write_text("x" * (2 << 20))  # no line end at all
    done = cli(home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "carriage return (CR)" in error_lines(done.stderr, "chats_2000-01-02.csv")[0]
    assert "column name of at least 200,000 characters" in error_lines(done.stderr, "chats_2000-01-03.csv")[0]
    assert "column name of 4,504 characters" in error_lines(done.stderr, "chats_2000-01-04.csv")[0]
    assert "no line end within the first 1 MiB" in error_lines(done.stderr, "chats_2000-01-05.csv")[0]
    m = manifest(home)
    assert [m[f"chats_2000-01-0{d}.csv"][0] for d in range(2, 6)] == ["failed"] * 4
    assert m[GOOD][0] == "loaded"


def test_mixed_line_ends_fail_with_the_line_and_others_load(home: Home) -> None:
    """DuckDB's reader fails on (or splits differently) a CR that is not part of the file's line-end style."""
    stray = row("f", "k\r1")
    files = {
        "chats_2000-01-02.csv": f"{HEADER}\n{row('a')}\n\r\n{row('b')}\n",  # CRLF blank line, LF file
        "chats_2000-01-03.csv": f"{HEADER}\n{row('c')}\r{row('d')}\n",  # lone CR between records
        "chats_2000-01-04.csv": f"{HEADER}\r\n{row('e')}\r\n{stray}\r\n",  # lone CR in a field
    }
    for name, text in files.items():
        (home.landing_chats / name).write_bytes(text.encode())
    # A CR inside a quoted value is data, not a line end; CRLF throughout is fine.
    (home.landing_chats / "chats_2000-01-05.csv").write_bytes(
        f'{HEADER}\r\nq1,"x\ry",2000-01-01 00:00:00,true,\r\n{row("q2")}\r\n'.encode()
    )
    done = cli(home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "line 3 ends with CR-LF" in error_lines(done.stderr, "chats_2000-01-02.csv")[0]
    for name, number in (("chats_2000-01-03.csv", 2), ("chats_2000-01-04.csv", 3)):
        (line,) = error_lines(done.stderr, name)
        assert f"line {number} holds a carriage return (CR)" in line and "one line-end style" in line
    assert lines_of(home, "chats_2000-01-05.csv") == [("q1", 2), ("q2", 3)]
    assert q(home, "select chat_category_id from raw.chats where id = 'q1'") == [("x\ry",)]
    assert manifest(home)[GOOD][0] == "loaded"


# --- 12: millions of blank lines ----------------------------------------------------------------


def test_millions_of_blank_lines_load_exactly_in_bounded_memory(home: Home) -> None:
    blank = 3_000_000
    content = (
        f"{HEADER}\n{row('b1')}\n".encode()
        + b"\n" * blank  # lines 3 .. blank + 2
        + f"{row('b2')}\nshort,row\n".encode()  # lines blank + 3, blank + 4 (rejected)
        + b"\n" * 200_000
        + f'b3,"multi\n\nline",2000-01-01 00:00:00,true,\n{row("b4")}\n'.encode()
    )
    (home.landing_chats / "chats_2000-01-02.csv.gz").write_bytes(gzip.compress(content))
    # Measure only the ingest process: a wrapper whose one child is the CLI.
    wrapper = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], timeout=300)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, done.returncode)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            wrapper,
            sys.executable,
            "-m",
            "chat_analytics.cli",
            "ingest",
            "--home",
            str(home.root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    peak_kib, returncode = (int(v) for v in done.stdout.split())
    assert returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert peak_kib < 600 * 1024, f"peak memory {peak_kib / 1024:.0f} MiB"
    after = blank + 4 + 200_000
    assert lines_of(home, "chats_2000-01-02.csv.gz") == [
        ("b1", 2),
        ("b2", blank + 3),
        ("b3", after + 1),
        ("b4", after + 4),
    ]
    assert q(home, "select chat_category_id from raw.chats where id = 'b3'") == [("multi\n\nline",)]
    assert q(home, "select line_number, raw_line from raw.rejected_rows") == [(blank + 4, "short,row")]
    assert q(
        home,
        "select data_lines, rows_loaded, rows_rejected, blank_lines from raw.ingested_files "
        "where file_name = 'chats_2000-01-02.csv.gz'",
    ) == [(5, 4, 1, blank + 200_000)]
    # One line_gaps breakpoint per run of skipped lines, not one per blank line.
    assert q(home, "select count(*) from raw.line_gaps") == [(3,)]


# --- 13: an empty line inside a quoted value ----------------------------------------------------


def test_empty_line_inside_quoted_value_is_kept_and_later_lines_are_exact(home: Home) -> None:
    text = "\n".join(
        [
            HEADER,
            'e1,"a\n\nb",2000-01-01 00:00:00,true,',  # 2-4, line 3 is empty but inside quotes
            "",  # 5: a real blank line
            row("e2"),  # 6
            "bad,row",  # 7: rejected
            'e3,"\n\n\n",2000-01-01 00:00:00,true,',  # 8-11
            row("e4"),  # 12
        ]
    )
    (home.landing_chats / "chats_2000-01-02.csv").write_text(text + "\n")
    report = ingest(home)
    assert report.ok, [(o.file_name, o.reason) for o in report.failed]
    assert lines_of(home, "chats_2000-01-02.csv") == [("e1", 2), ("e2", 6), ("e3", 8), ("e4", 12)]
    assert q(home, "select chat_category_id from raw.chats where id = 'e1'") == [("a\n\nb",)]
    assert q(home, "select chat_category_id from raw.chats where id = 'e3'") == [("\n\n\n",)]
    assert q(home, "select line_number from raw.rejected_rows") == [(7,)]
    assert q(
        home,
        "select data_lines, rows_loaded, rows_rejected, blank_lines from raw.ingested_files "
        "where file_name = 'chats_2000-01-02.csv'",
    ) == [(5, 4, 1, 1)]


# --- 14: the landing folder itself --------------------------------------------------------------


def test_landing_that_is_a_file_or_unreadable_is_one_clear_line(tmp_path: Path) -> None:
    root = tmp_path / "h"
    root.mkdir()
    (root / "landing").write_text("not a folder")
    done = cli(root)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is not a folder" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="is not a folder"):
        ingest(Home(root))

    (root / "landing").unlink()
    Home(root).ensure_landing()
    (root / "landing" / "chats").rmdir()
    (root / "landing" / "chats").write_text("")
    with pytest.raises(UserError, match="chats is not a folder"):
        ingest(Home(root))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_unreadable_landing_folder_is_one_clear_line(home: Home) -> None:
    home.landing_chats.chmod(0)
    try:
        done = cli(home)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "cannot read the folder" in done.stderr and str(home.landing_chats) in done.stderr
        home.landing_chats.chmod(0o700)
        home.landing.chmod(0)
        done = cli(home)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert str(home.landing) in done.stderr
    finally:
        home.landing.chmod(0o755)
        home.landing_chats.chmod(0o755)


# --- 15: names ----------------------------------------------------------------------------------


def test_every_name_is_loaded_or_reported(home: Home, caplog) -> None:
    (home.landing_chats / "chats_2000-01-02.csv\n").write_text(HEADER + "\n" + row("newline") + "\n")
    (home.landing_chats / ".DS_Store").write_bytes(b"\0\0\x01Bud1")
    (home.landing_chats / ".~lock.chats_2000-01-01.csv#").write_text("me")
    (home.landing_chats / "old").mkdir()
    (home.landing_chats / "old" / "chats_2000-01-03.csv").write_text(HEADER + "\n" + row("nested") + "\n")
    (home.landing / "chats_2000-01-04.csv").write_text(HEADER + "\n" + row("misplaced") + "\n")
    report = ingest(home)
    status = {o.file_name: (o.status, o.reason) for o in report.outcomes}
    assert set(status) == {
        GOOD,
        "chats_2000-01-02.csv\n",
        ".DS_Store",
        ".~lock.chats_2000-01-01.csv#",
        "old",
        "chats_2000-01-04.csv",
    }
    assert status[GOOD][0] == "loaded"
    assert status["chats_2000-01-02.csv\n"][0] == "failed"
    assert "unexpected file name 'chats_2000-01-02.csv\\n'" in status["chats_2000-01-02.csv\n"][1]
    assert status[".DS_Store"][0] == status[".~lock.chats_2000-01-01.csv#"][0] == "ignored"
    assert "hidden file" in status[".DS_Store"][1]
    assert status["old"][0] == "ignored" and "sub-folders are not read" in status["old"][1]
    assert (
        status["chats_2000-01-04.csv"][0] == "ignored"
        and "not in chats/" in status["chats_2000-01-04.csv"][1]
    )
    assert not report.ok  # the bad name fails the run; ignored names alone would not
    # Ignored names have a warning line each, no manifest row; the bad name has both, on one line each.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum(".DS_Store" in w for w in warnings) == 1 and sum("ignored old" in w for w in warnings) == 1
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert set(manifest(home)) == {GOOD, "chats_2000-01-02.csv\n"}
    assert q(home, "select id from raw.chats") == [("good",)]


def test_only_ignored_names_do_not_fail_the_run(home: Home) -> None:
    (home.landing_chats / ".DS_Store").write_bytes(b"junk")
    (home.landing_categories / "drafts").mkdir()
    report = ingest(home)
    assert report.ok and report.count("ignored") == 2 and report.count("loaded") == 1


# --- review fixes: quote state as the reader parses it, header line breaks, swapped files ------


def test_stray_quote_in_unquoted_field_does_not_keep_later_blank_runs(home: Home) -> None:
    """A literal `"` in an unquoted field must not flip the quote state for the rest of the file."""
    blank = 2_000_000
    content = (
        f'{HEADER}\ns1,5" screen,2000-01-01 00:00:00,true,\n'.encode()  # line 2, a literal quote
        + b"\n" * blank  # lines 3 .. blank + 2
        + f"{row('s2')}\n{row('s3')}\n".encode()
    )
    (home.landing_chats / "chats_2000-01-02.csv.gz").write_bytes(gzip.compress(content))
    # A CRLF file: a CR inside a quoted value after a stray quote is data, not a mixed line end.
    (home.landing_chats / "chats_2000-01-03.csv").write_bytes(
        f'{HEADER}\r\nt1,5" screen,2000-01-01 00:00:00,true,\r\n'.encode()
        + b't2,"x\ry",2000-01-01 00:00:00,true,\r\n'
    )
    report = ingest(home)
    assert report.ok, [(o.file_name, o.reason) for o in report.failed]
    assert lines_of(home, "chats_2000-01-02.csv.gz") == [("s1", 2), ("s2", blank + 3), ("s3", blank + 4)]
    assert q(home, "select chat_category_id from raw.chats where id = 's1'") == [('5" screen',)]
    assert lines_of(home, "chats_2000-01-03.csv") == [("t1", 2), ("t2", 3)]
    assert q(home, "select chat_category_id from raw.chats where id = 't2'") == [("x\ry",)]


def test_line_break_inside_quoted_header_name_fails_cleanly(home: Home) -> None:
    (home.landing_chats / "chats_2000-01-02.csv").write_text(HEADER + ',"multi\nline"\n' + row("x") + ",1\n")
    report = ingest(home)
    (failed,) = report.failed
    assert failed.file_name == "chats_2000-01-02.csv"
    assert "header names cannot contain line breaks" in failed.reason and "\n" not in failed.reason
    assert manifest(home)[GOOD][0] == "loaded"


def test_cr_only_file_keeps_cr_inside_quoted_value(home: Home) -> None:
    body = "\r".join([HEADER, 'c1,"x\ry",2000-01-01 00:00:00,true,', row("c2")]) + "\r"
    (home.landing_chats / "chats_2000-01-02.csv").write_bytes(body.encode())
    report = ingest(home)
    assert report.ok, [(o.file_name, o.reason) for o in report.failed]
    assert q(home, "select chat_category_id from raw.chats where id = 'c1'") == [("x\ry",)]
    # In a CR-only file a CR inside a quoted value is data, not a line end: c2 is on line 3.
    assert lines_of(home, "chats_2000-01-02.csv") == [("c1", 2), ("c2", 3)]


def test_landing_file_swapped_for_a_fifo_is_refused_on_open(tmp_path: Path) -> None:
    """The kind check runs on the path first; what is opened is checked again on the descriptor."""
    fifo = tmp_path / "chats_2000-01-02.csv"
    os.mkfifo(fifo)
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from chat_analytics.pipeline import csvscan\n"
        "for f in (csvscan.read_head, csvscan.scan, csvscan.sha256):\n"
        "    try:\n"
        "        f(Path(sys.argv[1]))\n"
        "    except csvscan.NotRegularFile as exc:\n"
        "        print(exc.strerror)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("not a regular file") == 3
