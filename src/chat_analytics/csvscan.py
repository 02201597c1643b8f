"""One pass over a landing file's bytes: SHA-256, header, line structure.

DuckDB's CSV reader parses the records; this scan adds what the reader does not report: the file's
hash, its header line, how many physical lines it has and which of them are blank (the reader skips
blank lines silently). It reads the file once in large chunks with NumPy, so it costs well under a
second per gigabyte.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

CHUNK = 1 << 24
BOM = b"\xef\xbb\xbf"
NL, CR = 10, 13


@dataclass
class ScanResult:
    sha256: str
    file_bytes: int
    header: bytes
    lines: int
    blank_lines: list[int] = field(default_factory=list)
    valid_utf8: bool = True

    @property
    def data_lines(self) -> int:
        """Non-blank physical lines after the header."""
        return max(self.lines - 1 - len(self.blank_lines), 0)


def is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz")


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if is_gzip(path) else path.open("rb")  # type: ignore[return-value]


def _chunks(path: Path, digest: hashlib._Hash) -> Iterator[bytes]:
    """Yield the (decompressed) content; hash the bytes as landed."""
    if is_gzip(path):
        with path.open("rb") as raw:
            data = raw.read()
        digest.update(data)
        stream = gzip.GzipFile(fileobj=_BytesReader(data))
        while chunk := stream.read(CHUNK):
            yield chunk
        return
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            yield chunk


class _BytesReader:
    """Minimal file object over bytes for gzip (avoids a second read of the file)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else min(self._pos + size, len(self._view))
        out = self._view[self._pos : end].tobytes()
        self._pos = end
        return out


def scan(path: Path) -> ScanResult:
    """Hash the file and find its header, physical line count and blank lines (1-based numbers)."""
    digest = hashlib.sha256()
    lines_done = 0  # newline-terminated lines seen so far
    tail_len = 0  # length of the current, not yet terminated line
    last_byte = -1  # the byte before the current chunk
    blank: list[int] = []
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid_utf8 = True
    pending_utf8 = False  # a multi-byte sequence is cut at the chunk end
    for chunk in _chunks(path, digest):
        arr = np.frombuffer(chunk, dtype=np.uint8)
        if valid_utf8 and (pending_utf8 or bool((arr >= 0x80).any())):
            # Pure ASCII needs no decoding; otherwise validate (a sequence may span chunks).
            try:
                pending_utf8 = bool(decoder.decode(chunk) is not None) and decoder.getstate()[0] != b""
            except UnicodeDecodeError:
                valid_utf8 = False
        nl = np.flatnonzero(arr == NL)
        if len(nl):
            starts = np.empty(len(nl), dtype=np.int64)
            starts[0] = -tail_len
            starts[1:] = nl[:-1] + 1
            lengths = nl - starts
            is_blank = lengths == 0
            ones = np.flatnonzero(lengths == 1)
            if len(ones):
                before = nl[ones] - 1  # the single byte of a one-byte line
                values = np.where(before >= 0, arr[np.maximum(before, 0)], last_byte)
                is_blank[ones] = values == CR
            if is_blank.any():
                blank.extend((np.flatnonzero(is_blank) + lines_done + 1).tolist())
            lines_done += len(nl)
            tail_len = len(chunk) - int(nl[-1]) - 1
        else:
            tail_len += len(chunk)
        if len(chunk):
            last_byte = int(arr[-1])
    lines = lines_done
    if tail_len > 0:  # a last line without a newline
        lines += 1
        if tail_len == 1 and last_byte == CR:
            blank.append(lines)
    # The header line is never a data line (a blank first line means a missing header).
    return ScanResult(
        sha256=digest.hexdigest(),
        file_bytes=path.stat().st_size,
        header=read_header(path),
        lines=lines,
        blank_lines=[n for n in blank if n != 1],
        valid_utf8=valid_utf8 and _decoder_done(decoder),
    )


def _decoder_done(decoder: codecs.IncrementalDecoder) -> bool:
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _read_head(path: Path, limit: int = 1 << 20) -> bytes:
    with _open(path) as fh:
        return fh.read(limit).split(b"\n", 1)[0]


def read_header(path: Path) -> bytes:
    """The first line without BOM and line end (reads at most 1 MiB)."""
    return _read_head(path).removeprefix(BOM).rstrip(b"\r")


def sha256(path: Path) -> str:
    """SHA-256 of the file's bytes as landed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def line_starts(path: Path) -> np.ndarray:
    """Byte offsets (in the decompressed content) where each physical line starts; index 0 = line 1."""
    parts = [np.zeros(1, dtype=np.int64)]
    offset = 0
    with _open(path) as fh:
        while chunk := fh.read(CHUNK):
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == NL).astype(np.int64)
            parts.append(nl + offset + 1)
            offset += len(chunk)
    starts = np.concatenate(parts)
    return starts[starts < offset] if len(starts) > 1 else starts


def read_lines(path: Path, numbers: list[int]) -> dict[int, str]:
    """The text of the given physical lines (1-based), decoded leniently, without line ends."""
    wanted = set(numbers)
    out: dict[int, str] = {}
    if not wanted:
        return out
    last = max(wanted)
    with _open(path) as fh:
        for number, raw in enumerate(fh, start=1):
            if number in wanted:
                out[number] = raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
            if number >= last:
                break
    return out
