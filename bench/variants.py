"""Extract variants for the benchmark: the generator's chats, written the ways real extracts are written.

Every variant is made from the output of `chat-analytics generate --home SOURCE --chats N` (daily files
`landing/chats/chats_YYYY-MM-DD.csv` and `landing/categories/`) into the landing folders of another home,
by one in-process DuckDB query (a few seconds per million chats). The categories snapshots are hard-linked
unchanged; only the chats files differ. Every form written is one docs/data-contract.md accepts (the
timestamp pattern of dbt/macros/parsing.sql and tests/reference.py, the boolean words t/f/1/0/yes/no in
any case, `null`/`NULL` for missing values).

- `clean`: the generator's files, hard-linked unchanged: `YYYY-MM-DD HH:MM:SS` (space, no fraction, no
  zone), `true`/`false`, empty for missing.
- `iso-z-millis`: the independent generator's style, `YYYY-MM-DDTHH:MM:SS.fffZ`, booleans `TRUE`/`FALSE`.
  Each chat's two timestamps get the same millisecond fraction (`FRACTION_SQL`, from a hash of the chat
  id): the instants move by less than a second and never across a second, so every duration, date, hour
  and rank is the clean file's, and fct_chats' timestamps are the clean ones plus that known fraction.
- `offsets-micros`: wall-clock times in an explicit UTC offset chosen per value from `OFFSETS`
  (`+10:00`, `+1100`, `-05`, `+05:30`, `-0330`, `+00:00`, `-08:00`, `+0545`, `-12`, `+14:00`), shifted so
  the instant is the clean one plus the chat's fraction; `T` or a space between date and time (per
  value); a fraction of 1 to 6 digits: the chat's fraction has d significant digits (d from 1 to 6 per
  chat) and each value writes it with d to 6 digits (trailing zeros). Booleans `t`/`f`/`1`/`0`/`yes`/`no`
  and `T`/`F`/`YES`/`NO`/`Yes`/`No`; an unresolved `resolved_at` and a missing category are empty,
  `null` or `NULL`. Every choice is a hash of the value's own text and its chat id, so rows that were
  exact duplicates stay exact duplicates and two rows of one chat in one file never arise.
- `one-file`: the whole history in one file named after the newest day (`chats_<last day>.csv`), clean
  spelling: one row per chat, its latest version (the newest daily file holding it), sorted by
  `created_at`, `id`. A file cannot hold two versions of a chat (that is a conflicting duplicate), so this
  is what a full export looks like; its marts equal the daily files'.
- `heavy-versions`: the daily files plus (a) `REPEAT_SHARE` (20 %) of the rows, picked by hash, repeated
  exactly in a later daily file (1 to 7 days later, the newest file at the latest; never into a file that
  already holds a row of that chat; rows of the newest file are not repeated), and (b) a newer version
  of `NEW_VERSION_SHARE` (10 %) of the chats, picked by hash: the chat's latest row with a later
  `resolved_at` (a second of the day 1 to 5 days after the file of that latest row), in that day's file
  (chats whose day would fall after the newest file get none). Clean spelling. The marts differ from
  clean's (on purpose); the realised shares are returned in `Made.extras`.

`FRACTION_SQL` gives, per variant, the microseconds added to both timestamps of a chat (SQL over a chat
id), so that a check can compare a variant's marts with the clean run's exactly (bench/marts_guard.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from chat_analytics.sql import literal

log = logging.getLogger("bench.variants")

REPEAT_SHARE = 0.20
NEW_VERSION_SHARE = 0.10
#: (minutes east of UTC, spelling) of the offsets that `offsets-micros` writes, one picked per value.
OFFSETS: tuple[tuple[int, str], ...] = (
    (600, "+10:00"), (660, "+1100"), (-300, "-05"), (330, "+05:30"), (-210, "-0330"),
    (0, "+00:00"), (-480, "-08:00"), (345, "+0545"), (-720, "-12"), (840, "+14:00"),
)  # fmt: skip
TRUE_WORDS = ("t", "1", "yes", "T", "YES", "Yes")
FALSE_WORDS = ("f", "0", "no", "F", "NO", "No")
MISSING_WORDS = ("", "null", "NULL")  # "" is written as an empty field
COLUMNS = ("id", "chat_category_id", "created_at", "is_customer_initiated", "resolved_at")


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    #: only the spelling (or the file layout) differs from `clean`: its marts must equal clean's
    same_marts_as_clean: bool
    #: the type the floor reads the timestamps as (TIMESTAMPTZ where values carry a zone)
    floor_timestamp: str = "TIMESTAMP"
    #: exact repeats of earlier rows in later files: a correct floor collapses exact duplicates first
    stale_repeats: bool = False


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("clean", "generator's daily files: `YYYY-MM-DD HH:MM:SS`, true/false", True),
        Variant(
            "iso-z-millis",
            "`YYYY-MM-DDTHH:MM:SS.fffZ`, TRUE/FALSE (ms fraction per chat)",
            True,
            "TIMESTAMPTZ",
        ),
        Variant(
            "offsets-micros",
            "wall clock with per-value offsets (+10:00, +1100, -05, ...), 1-6 digit fractions, "
            "t/f/1/0/yes/no, empty/null/NULL",
            True,
            "TIMESTAMPTZ",
        ),
        Variant("one-file", "whole history (latest version per chat) in one file, clean spelling", True),
        Variant(
            "heavy-versions",
            f"daily files + {REPEAT_SHARE:.0%} of rows repeated in a later file + newer versions of "
            f"{NEW_VERSION_SHARE:.0%} of chats",
            False,
            stale_repeats=True,
        ),
    )
}

#: Significant digits (1..6) of the fraction of the chat with id `{id}` in `offsets-micros`.
DIGITS_SQL = "(1 + ((hash({id}) >> 32) % 6)::BIGINT)"
#: Microseconds added to both timestamps of the chat with id `{id}` (0 where the instants are clean's).
FRACTION_SQL: dict[str, str] = {
    "iso-z-millis": "((hash({id}) % 1000) * 1000)::BIGINT",
    # u (0..999999) cut to its first d of 6 digits: u - u % 10^(6 - d)
    "offsets-micros": "((hash({id}) % 1000000)::BIGINT "
    f"- (hash({{id}}) % 1000000)::BIGINT % [100000, 10000, 1000, 100, 10, 1][{DIGITS_SQL}])",
}


def fraction_sql(variant: str, id_expr: str) -> str:
    """SQL for the microseconds variant `variant` adds to both timestamps of chat `id_expr`."""
    return FRACTION_SQL.get(variant, "0::BIGINT").replace("{id}", id_expr)


@dataclass(frozen=True)
class Made:
    """What `make` wrote."""

    variant: str
    files: int
    rows: int
    bytes: int
    seconds: float
    extras: dict[str, float] = field(default_factory=dict)


def make(variant: str, source: Path, target: Path, *, threads: int | None = None) -> Made:
    """Write variant `variant` of the chats in home `source` into the landing folders of home `target`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    started = time.perf_counter()
    src_chats, src_categories = source / "landing" / "chats", source / "landing" / "categories"
    chats, categories = target / "landing" / "chats", target / "landing" / "categories"
    for folder in (chats, categories):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for snapshot in sorted(src_categories.iterdir()):
        _link(snapshot, categories / snapshot.name)
    extras: dict[str, float] = {}
    if variant == "clean":
        for daily in sorted(src_chats.glob("*.csv")):
            _link(daily, chats / daily.name)
    else:
        with duckdb.connect() as con:
            con.execute(f"set temp_directory = {literal(target / 'variant-spill')}")
            if threads:
                con.execute(f"set threads = {int(threads)}")
            con.execute("set preserve_insertion_order = false")
            con.execute(f"create temp view src as {_read_sql(src_chats)}")
            if variant == "one-file":
                last = max(p.name for p in src_chats.glob("*.csv"))
                con.execute(f"copy ({_ONE_FILE_SQL}) to {literal(chats / last)} (format csv, header true)")
            elif variant == "heavy-versions":
                extras = _heavy(con, chats, target)
            else:
                select = _ISO_SQL if variant == "iso-z-millis" else _offsets_sql()
                _write_daily(con, select.replace("{fraction}", fraction_sql(variant, "id")), chats, target)
        shutil.rmtree(target / "variant-spill", ignore_errors=True)
    files = sorted(chats.glob("*.csv"))
    rows = _count_rows(files)
    made = Made(
        variant, len(files), rows, sum(p.stat().st_size for p in files), time.perf_counter() - started, extras
    )
    log.info(
        "variant %s: %d files, %s rows, %.2f GB in %.1f s%s", variant, made.files, f"{rows:,}",
        made.bytes / 1e9, made.seconds, f" {extras}" if extras else "",
    )  # fmt: skip
    return made


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def _count_rows(files: list[Path]) -> int:
    """Data rows: lines after each header (the variants never write a line break inside a value)."""
    rows = 0
    for path in files:
        with path.open("rb") as data:
            while chunk := data.read(1 << 24):
                rows += chunk.count(b"\n")
        rows -= 1
    return rows


def _read_sql(chats: Path) -> str:
    """Every row of the generator's daily files as text, with its file name and its file's day."""
    columns = ", ".join(f"'{c}': 'VARCHAR'" for c in COLUMNS)
    return (
        "select parse_filename(filename) as file, "
        "strptime(parse_filename(filename)[7:16], '%Y-%m-%d')::date as day, "
        f"{', '.join(COLUMNS)} "
        f"from read_csv({literal(chats / '*.csv')}, header = true, auto_detect = false, "
        f"filename = true, columns = {{{columns}}})"
    )


def _list(words: tuple[str, ...]) -> str:
    return "[" + ", ".join("NULL" if w == "" else literal(w) for w in words) + "]"


def _pick(words: tuple[str, ...], key: str) -> str:
    """One of `words`, chosen by the SQL integer `key`."""
    return f"{_list(words)}[1 + ({key}) % {len(words)}]"


_ISO_SQL = """
select file, id, chat_category_id,
    strftime(created_at::timestamp + to_microseconds(fraction), '%Y-%m-%dT%H:%M:%S.%gZ') as created_at,
    upper(is_customer_initiated) as is_customer_initiated,
    strftime(resolved_at::timestamp + to_microseconds(fraction), '%Y-%m-%dT%H:%M:%S.%gZ') as resolved_at
from (select *, {fraction} as fraction from src)
"""

_ONE_FILE_SQL = """
select id, version.*
from (
    select id, arg_max(struct_pack(chat_category_id, created_at, is_customer_initiated, resolved_at), file)
        as version
    from src group by id
)
order by version.created_at, id
"""


def _offsets_sql() -> str:
    """Per chat: its fraction (`{fraction}`) and digit count; per value: one hash picks the offset, the
    separator, how many digits are written and the boolean or missing-value spelling."""
    minutes = "[" + ", ".join(str(m) for m, _ in OFFSETS) + "]"
    spelled = _list(tuple(s for _, s in OFFSETS))

    def stamp(column: str, key: str) -> str:
        pick = f"1 + ({key} % {len(OFFSETS)})::BIGINT"
        wall = f"{column}::timestamp + to_microseconds(fraction) + to_minutes({minutes}[{pick}])"
        text = (
            f"case when ({key} >> 8) % 2 = 0 then strftime({wall}, '%Y-%m-%dT%H:%M:%S') "
            f"else strftime({wall}, '%Y-%m-%d %H:%M:%S') end"
        )
        zeros = f"['', '0', '00', '000', '0000', '00000'][1 + ({key} >> 16) % (7 - digits)]"
        return f"{text} || '.' || fraction_text || {zeros} || {spelled}[{pick}]"

    return f"""
with keyed as (
    select *, {{fraction}} as fraction, {DIGITS_SQL.replace("{id}", "id")} as digits,
        (hash(id, created_at) >> 1)::BIGINT as created_key,
        (hash(id, resolved_at) >> 1)::BIGINT as resolved_key
    from src
),
shaped as (select *, left(lpad(fraction::VARCHAR, 6, '0'), digits) as fraction_text from keyed)
select file, id,
    coalesce(chat_category_id, {_pick(MISSING_WORDS, "created_key >> 24")}) as chat_category_id,
    {stamp("created_at", "created_key")} as created_at,
    case lower(is_customer_initiated) when 'true' then {_pick(TRUE_WORDS, "created_key >> 32")}
        else {_pick(FALSE_WORDS, "created_key >> 32")} end as is_customer_initiated,
    case when resolved_at is null then {_pick(MISSING_WORDS, "created_key >> 40")}
        else {stamp("resolved_at", "resolved_key")} end as resolved_at
from shaped
"""


def _write_daily(con: duckdb.DuckDBPyConnection, select: str, chats: Path, target: Path) -> None:
    """Rows of `select` (a `file` column, then the five chats columns) into one CSV per `file`."""
    staging = target / "variant-staging"
    shutil.rmtree(staging, ignore_errors=True)
    con.execute(f"copy ({select}) to {literal(staging)} (format csv, header true, partition_by (file))")
    for part in sorted(staging.iterdir()):
        if not part.name.startswith("file="):
            raise RuntimeError(f"unexpected partitioned output: {part}")
        pieces = sorted(part.glob("*.csv"))
        target_file = chats / part.name.removeprefix("file=")
        pieces[0].rename(target_file)
        if len(pieces) > 1:  # DuckDB may write a partition in several files: one header, then the rows
            with target_file.open("ab") as out:
                for piece in pieces[1:]:
                    with piece.open("rb") as rows:
                        rows.readline()
                        shutil.copyfileobj(rows, out, 1 << 20)
    shutil.rmtree(staging)


def _heavy(con: duckdb.DuckDBPyConnection, chats: Path, target: Path) -> dict[str, float]:
    """The daily files plus exact repeats of earlier rows and newer versions of earlier chats."""
    repeat_per_mille = round(REPEAT_SHARE * 1000)
    new_per_mille = round(NEW_VERSION_SHARE * 1000)
    con.execute("create temp table base as select * from src")
    con.execute(
        f"""
        create temp table newer as
        with latest as (
            select id, max(day) as day, arg_max_null(chat_category_id, day) as chat_category_id,
                arg_max_null(created_at, day) as created_at,
                arg_max_null(is_customer_initiated, day) as is_customer_initiated
            from base group by id
        ),
        picked as (
            select *, day + (1 + hash(id, 'gap') % 5)::INTEGER as new_day
            from latest where hash(id, 'newer') % 1000 < {new_per_mille}
        )
        select id, chat_category_id, created_at, is_customer_initiated,
            strftime(new_day::timestamp + to_seconds((hash(id, 'second') % 86400)::BIGINT),
                '%Y-%m-%d %H:%M:%S') as resolved_at,
            new_day as day
        from picked where new_day <= (select max(day) from base)
        """
    )
    con.execute(
        f"""
        create temp table repeats as
        with candidates as (
            select id, chat_category_id, created_at, is_customer_initiated, resolved_at,
                least(day + (1 + hash(id, file, 'later') % 7)::INTEGER, (select max(day) from base)) as day
            from base
            where day < (select max(day) from base)
                and hash(id, file, created_at, resolved_at, 'repeat') % 1000 < {repeat_per_mille}
        ),
        taken as (select id, day from base union all select id, day from newer)
        select * from candidates anti join taken using (id, day)
        qualify row_number() over (partition by id, day order by resolved_at nulls first) = 1
        """
    )
    base_rows, chats_total, newer, repeats = con.execute(
        "select (select count(*) from base), (select count(distinct id) from base), "
        "(select count(*) from newer), (select count(*) from repeats)"
    ).fetchone()  # type: ignore[misc]
    _write_daily(
        con,
        """
        select 'chats_' || strftime(day, '%Y-%m-%d') || '.csv' as file,
            id, chat_category_id, created_at, is_customer_initiated, resolved_at
        from (
            select *, 0 as part from base
            union all by name select *, 1 as part from newer
            union all by name select *, 2 as part from repeats
        )
        """,
        chats,
        target,
    )
    return {
        "base_rows": base_rows,
        "repeated_rows": repeats,
        "repeated_share_of_base_rows": round(repeats / base_rows, 4),
        "newer_versions": newer,
        "newer_versions_share_of_chats": round(newer / chats_total, 4),
    }
