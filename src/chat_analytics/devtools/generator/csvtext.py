"""Vectorised CSV text for chats: numpy byte matrices, no per-row Python.

Each row is laid out in a fixed-width byte matrix (`ROW_WIDTH` columns); the optional parts (category,
the fifth letter of `false`, resolved_at) are dropped with a boolean mask, which yields the exact bytes of
`id,chat_category_id,created_at,is_customer_initiated,resolved_at\\n` rows. The scalar helpers at the end
produce the same text for single values (used for the few hand-made dirty rows).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

CHATS_HEADER = "id,chat_category_id,created_at,is_customer_initiated,resolved_at"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
UUID_WIDTH = 36
TIMESTAMP_WIDTH = 19

# Column layout of one row in the fixed-width matrix.
_ID = slice(0, 36)
_CATEGORY = slice(37, 73)
_CREATED = slice(74, 93)
_FLAG = slice(94, 99)
_FALSE_LAST_LETTER = 98
_RESOLVED = slice(100, 119)
_COMMAS = (36, 73, 93, 99)
ROW_WIDTH = 120
#: Length of a row with no category, `true` and no resolved_at (including the newline).
_MIN_ROW_BYTES = 64

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_FLAGS = np.frombuffer(b"falsetrue\n", dtype=np.uint8).reshape(2, 5)  # row 1 = "true" + a dropped byte
_UUID_GROUPS = ((0, 8), (9, 13), (14, 18), (19, 23), (24, 36))  # text columns of the 5 hex groups
_VERSION_MASK = np.uint64(0xFFFFFFFFFFFF0FFF)
_VERSION_BITS = np.uint64(0x5000)  # "uuid5-like": version nibble 5
_VARIANT_MASK = np.uint64(0x3FFFFFFFFFFFFFFF)
_VARIANT_BITS = np.uint64(0x8000000000000000)  # RFC 4122 variant


def random_uuid_halves(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` random uuid5-like ids as (high, low) uint64 halves; numeric order equals text order."""
    halves = rng.integers(0, np.iinfo(np.uint64).max, size=(n, 2), dtype=np.uint64, endpoint=True)
    high = (halves[:, 0] & _VERSION_MASK) | _VERSION_BITS
    low = (halves[:, 1] & _VARIANT_MASK) | _VARIANT_BITS
    return high, low


def uuid_matrix(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """(n, 36) uint8 lower-case UUID text."""
    raw = np.stack([high, low], axis=1).astype(">u8").view(np.uint8).reshape(len(high), 16)
    hexed = np.empty((len(high), 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 15]
    out = np.full((len(high), UUID_WIDTH), ord("-"), dtype=np.uint8)
    start = 0
    for begin, end in _UUID_GROUPS:
        out[:, begin:end] = hexed[:, start : start + end - begin]
        start += end - begin
    return out


def text_matrix(values: list[str] | tuple[str, ...], width: int) -> np.ndarray:
    """(n, width) uint8 from equal-length ASCII strings."""
    return np.frombuffer("".join(values).encode("ascii"), dtype=np.uint8).reshape(len(values), width)


def timestamp_matrix(seconds: np.ndarray) -> np.ndarray:
    """(n, 19) uint8 `YYYY-MM-DD HH:MM:SS` for int64 Unix seconds (UTC)."""
    days = seconds // 86_400
    of_day = seconds - days * 86_400
    date = days.astype("datetime64[D]")
    months = date.astype("datetime64[M]")
    month_number = months.astype(np.int64)
    fields = (
        (month_number // 12 + 1970, 0, 4),
        (month_number % 12 + 1, 5, 2),
        ((date - months).astype(np.int64) + 1, 8, 2),
        (of_day // 3_600, 11, 2),
        (of_day // 60 % 60, 14, 2),
        (of_day % 60, 17, 2),
    )
    out = np.empty((len(seconds), TIMESTAMP_WIDTH), dtype=np.uint8)
    out[:, [4, 7]] = ord("-")
    out[:, 10] = ord(" ")
    out[:, [13, 16]] = ord(":")
    for value, column, width in fields:
        for digit in range(width):
            out[:, column + digit] = 48 + (value // 10 ** (width - 1 - digit)) % 10
    return out


def chat_rows(
    id_text: np.ndarray,
    category_text: np.ndarray,
    has_category: np.ndarray,
    created: np.ndarray,
    customer: np.ndarray,
    resolved: np.ndarray,
    show_resolved: np.ndarray,
) -> tuple[bytes, np.ndarray]:
    """CSV bytes of the rows (each ending in `\\n`) and each row's length in bytes."""
    n = len(id_text)
    matrix = np.empty((n, ROW_WIDTH), dtype=np.uint8)
    matrix[:, _ID] = id_text
    matrix[:, _CATEGORY] = category_text
    matrix[:, _CREATED] = timestamp_matrix(created)
    matrix[:, _FLAG] = _FLAGS[customer.astype(np.intp)]
    matrix[:, _RESOLVED] = timestamp_matrix(np.where(show_resolved, resolved, 0))
    matrix[:, list(_COMMAS)] = ord(",")
    matrix[:, -1] = ord("\n")
    keep = np.ones((n, ROW_WIDTH), dtype=bool)
    keep[:, _CATEGORY] = has_category[:, None]
    keep[:, _FALSE_LAST_LETTER] = ~customer
    keep[:, _RESOLVED] = show_resolved[:, None]
    lengths = (
        _MIN_ROW_BYTES
        + UUID_WIDTH * has_category.astype(np.int64)
        + (~customer).astype(np.int64)
        + TIMESTAMP_WIDTH * show_resolved.astype(np.int64)
    )
    return matrix[keep].tobytes(), lengths


def uuid_text(high: int, low: int) -> str:
    """Scalar twin of `uuid_matrix`."""
    text = f"{high:016x}{low:016x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def timestamp_text(seconds: int) -> str:
    """Scalar twin of `timestamp_matrix`."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime(TIMESTAMP_FORMAT)
