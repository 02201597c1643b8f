"""The one place where SQL text is made from names and values that are not hard-coded.

Values always travel as bound parameters (`con.execute(sql, [value, ...])`). Where DuckDB does not
accept a parameter (identifiers, `attach`/`copy ... to` paths, `set` and `comment on` values), the
text goes through `ident` or `literal` below, and nowhere else: both double the quote character, so a
name or value holding quotes, semicolons or line breaks stays one token and can never end the statement.
"""

from __future__ import annotations

import os


def ident(name: str) -> str:
    """A quoted SQL identifier: `a"b; drop` -> `"a""b; drop"`. NUL cannot be quoted: refused."""
    text = str(name)
    if "\0" in text:
        raise ValueError(f"an SQL identifier cannot contain a NUL character: {text!r}")
    return '"' + text.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """`schema.table` (or `db.schema.table`) with every part quoted."""
    return ".".join(ident(p) for p in parts)


def literal(value: str | os.PathLike[str]) -> str:
    """A quoted SQL string literal: `it's` -> `'it''s'`. NUL cannot be quoted: refused."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if "\0" in text:
        raise ValueError(f"an SQL string cannot contain a NUL character: {text!r}")
    return "'" + text.replace("'", "''") + "'"
