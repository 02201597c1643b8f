"""One pass over a landing file's bytes: SHA-256, header, line structure.

DuckDB's CSV reader parses the records; this scan adds what the reader does not report: the file's
hash, its header line, how many physical lines it has and where its blank lines are (the reader skips
blank lines silently). It reads the file once in chunks with NumPy, so it costs well under a second
per gigabyte, and its memory is bounded by the chunk size and the number of *runs* of blank lines
(a run of ten million blank lines is one run), never by the count of blank lines.

Two kinds of file are loaded from a normalised temporary copy (`normalise`) instead of as landed:
files with CR-only (old Mac) line ends, whose CRs outside quoted values become LFs (a CR inside a
quoted value is data and stays), and files with more than
`MAX_BLANK_LINES` blank lines, whose runs of blank lines outside quoted values are left out (DuckDB's
reader counts a run of blank lines into the length of the next record and rejects it as over-long after
about a million). The scan's line numbers always describe the landed file; `ScanResult.dropped` says
which runs the copy leaves out, so line numbers map back exactly.

"Inside a quoted value" means what DuckDB's reader parses as one (RFC 4180, see `_Quotes`), not an odd
count of quote characters: a literal quote in an unquoted field (`5" screen`) must not turn the rest
of the file "quoted".

Landing files are opened with `open_regular`, which refuses anything but a regular file on the open
descriptor itself, so a file swapped for a FIFO after ingest's kind check cannot hang the scan.
"""

from __future__ import annotations

import codecs
import errno
import gzip
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

import numpy as np

CHUNK = 1 << 20  # per-chunk NumPy arrays stay small even when a chunk is all line ends
HEAD_LIMIT = 1 << 20
BOM = b"\xef\xbb\xbf"
NL, CR, QUOTE, COMMA, SPACE = 10, 13, 34, 44, 32
SEPARATOR = np.zeros(256, dtype=np.bool_)  # bytes after which a field starts
SEPARATOR[[COMMA, NL, CR]] = True
# Above this many blank lines a file is loaded from a copy without its (unquoted) runs of blank lines.
MAX_BLANK_LINES = 100_000


def _empty(dtype: type = np.int64) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass(eq=False)  # holds NumPy arrays: compare by identity
class BlankRuns:
    """Runs of consecutive blank lines after the header, in file order (one entry per run)."""

    start: np.ndarray = field(default_factory=_empty)  # first line number (1-based) of the run
    length: np.ndarray = field(default_factory=_empty)  # lines in the run
    byte_start: np.ndarray = field(default_factory=_empty)  # offset of the run's first byte (content)
    byte_end: np.ndarray = field(default_factory=_empty)  # offset just after the run's last line end
    quoted: np.ndarray = field(default_factory=lambda: _empty(np.bool_))  # inside a quoted value (_Quotes)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def lines(self) -> int:
        return int(self.length.sum())

    def take(self, mask: np.ndarray) -> BlankRuns:
        return BlankRuns(
            self.start[mask], self.length[mask], self.byte_start[mask], self.byte_end[mask], self.quoted[mask]
        )


@dataclass(eq=False)  # holds NumPy arrays: compare by identity
class ScanResult:
    sha256: str
    file_bytes: int
    header: bytes
    lines: int
    blank: BlankRuns = field(default_factory=BlankRuns)
    valid_utf8: bool = True
    cr_only: bool = False
    # The first line whose line end differs from the header's (CRLF vs LF) or that holds a CR that ends
    # nothing (outside quoted values); 0 if none. DuckDB's reader splits such files unreliably.
    mixed_line: int = 0
    mixed_what: str = ""

    @property
    def blank_lines(self) -> int:
        """How many physical lines after the header are blank (a blank line inside a quoted value too)."""
        return self.blank.lines

    @property
    def data_lines(self) -> int:
        """Non-blank physical lines after the header."""
        return max(self.lines - 1 - self.blank_lines, 0)

    @property
    def dropped(self) -> BlankRuns:
        """The runs of blank lines the normalised copy leaves out (only runs outside quoted values)."""
        if self.blank_lines <= MAX_BLANK_LINES:
            return BlankRuns()
        return self.blank.take(~self.blank.quoted)

    @property
    def needs_copy(self) -> bool:
        """Load from a normalised copy (`normalise`), not from the landed file."""
        return self.cr_only or len(self.dropped) > 0


@dataclass
class Head:
    """The start of a file: its header line and how its lines end."""

    header: bytes  # the first line, without BOM and line end
    cr_only: bool = False  # lines end with a lone CR (old Mac): there is no LF in the first MiB
    lone_cr: bool = False  # the header holds a CR that is not part of a line end
    complete: bool = True  # the header line ends within the first MiB (or the file does)


def is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz")


class NotRegularFile(OSError):
    """What was opened is not a regular file (a FIFO or a device swapped in after the kind check)."""


def open_regular(path: Path) -> BinaryIO:
    """Open a landing file for reading; refuse (NotRegularFile) anything but a regular file.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a writer, and fstat on the
    open descriptor tells what was really opened, whatever the path pointed to at an earlier check.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(
                errno.EINVAL,
                "not a regular file any more (replaced after it was checked?): only regular files are read",
                str(path),
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    """The (decompressed) content of a landing file or copy, opened with `open_regular`."""
    with open_regular(path) as raw:
        if not is_gzip(path):
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream  # type: ignore[misc]


def _create(path: Path) -> BinaryIO:
    if is_gzip(path):
        return gzip.open(path, "wb", compresslevel=1)  # type: ignore[return-value]
    return path.open("wb")


def _chunks(path: Path, digest: hashlib._Hash) -> Iterator[bytes]:
    """Yield the (decompressed) content; hash the bytes as landed."""
    if is_gzip(path):
        with open_regular(path) as raw:
            data = raw.read()
        digest.update(data)
        stream = gzip.GzipFile(fileobj=_BytesReader(data))
        while chunk := stream.read(CHUNK):
            yield chunk
        return
    with open_regular(path) as fh:
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


def _after_run(inside: bool, at_field_start: bool, length: int) -> bool:
    """The quote state after a run of `length` adjacent quotes (see _Quotes)."""
    if not inside and not at_field_start:
        return False
    return inside != bool(length & 1)


class _Quotes:
    """Which bytes lie inside quoted values, chunk by chunk, as DuckDB's reader parses them (RFC 4180).

    A quote opens a quoted value only at the start of a field: after a comma, a line end (LF or CR) or
    the start of the file, or after exactly one space there (DuckDB's reader accepts that one space).
    Inside a quoted value `""` is an escaped quote and a lone `"` closes it. Any other quote is a
    literal character (the reader loads `5" screen` as text) and changes nothing.

    Only the quote characters are looked at, in runs of adjacent quotes. A run of n quotes either
    toggles the state (n odd, from inside; or n odd at a field start, from outside), keeps it (n even),
    or, when it starts outside and not at a field start with n odd, leaves it outside whatever the state
    before ("reset"). Toggles and resets compose with a cumulative sum and a running maximum, so a
    chunk costs a few NumPy passes over its quote positions, never a Python loop per quote. A run at
    the end of a chunk may go on in the next one, so it is held back and joined to it.
    """

    def __init__(self) -> None:
        self.inside = False  # the state after every run applied so far
        self._held = 0  # quotes that end the previous chunk (their run may continue)
        self._held_start = False  # that run began at a field start
        self._last1 = self._last2 = NL  # the two bytes before the chunk; the file start acts as a line end
        self._bom = True  # the next chunk is the file's first (a BOM there is not content)
        self._runs = _empty()  # start of each run applied in the current chunk
        self._after = _empty(np.bool_)  # the state after each of them
        self._before = False  # the state at the start of the current chunk

    def feed(self, arr: np.ndarray, quote_at: np.ndarray) -> None:
        """Take the next chunk: its bytes and the positions of its quote characters."""
        state, held, held_start = self.inside, self._held, self._held_start
        self._held = 0
        if held and not (len(quote_at) and quote_at[0] == 0):
            state, held = _after_run(state, held_start, held), 0
        starts, lengths, at_field = _empty(), _empty(), _empty(np.bool_)
        if len(quote_at):
            apart = np.diff(quote_at) != 1
            if apart.all():  # no two quotes side by side (the common case): every run is one quote
                starts, lengths = quote_at, np.ones(len(quote_at), dtype=np.int64)
            else:
                heads = np.concatenate(([0], np.flatnonzero(apart) + 1))
                starts = quote_at[heads]
                lengths = np.diff(np.append(heads, len(quote_at)))
            at_field = self._at_field_start(arr, starts)
            if held:
                lengths[0] += held
                at_field[0] = held_start
            if quote_at[-1] == len(arr) - 1:
                self._held, self._held_start = int(lengths[-1]), bool(at_field[-1])
                starts, lengths, at_field = starts[:-1], lengths[:-1], at_field[:-1]
        odd = (lengths & 1) == 1
        toggles = np.cumsum(at_field & odd)
        reset = odd & ~at_field
        if reset.any():
            last_reset = np.maximum.accumulate(np.where(reset, np.arange(len(starts)), -1))
            base = np.where(last_reset >= 0, toggles[np.maximum(last_reset, 0)], -int(state))
            after = ((toggles - base) & 1) == 1
        else:
            after = ((toggles + int(state)) & 1) == 1
        self._runs, self._after, self._before = starts, after, state
        self.inside = bool(self._after[-1]) if len(starts) else state
        if len(arr) >= 2:
            self._last2, self._last1 = int(arr[-2]), int(arr[-1])
        elif len(arr):
            self._last2, self._last1 = self._last1, int(arr[0])
        self._bom = self._bom and not len(arr)

    def _at_field_start(self, arr: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Is each run start (a position in arr) at the start of a field?"""
        before = arr[starts - 1]  # starts[0] - 1 may be -1: fixed below
        if starts[0] == 0:
            before[0] = self._last1
        if self._bom and starts[0] <= 3 and arr[:3].tobytes() == BOM:
            before[starts == 3] = NL
        out = SEPARATOR[before]
        space = np.flatnonzero(before == SPACE)
        if len(space):  # a field start too if the space follows a separator
            at = starts[space] - 2
            two = np.where(at == -1, self._last1, np.where(at < -1, self._last2, arr[np.maximum(at, 0)]))
            out[space] = SEPARATOR[two]
        return out

    def inside_at(self, positions: np.ndarray) -> np.ndarray:
        """For positions (not of quotes) in the current chunk: inside a quoted value?"""
        if not len(self._runs):
            return np.full(len(positions), self._before, dtype=np.bool_)
        index = np.searchsorted(self._runs, positions, side="right") - 1
        return np.where(index >= 0, self._after[np.maximum(index, 0)], self._before)

    def at_end(self) -> bool:
        """After the last chunk: does the content end inside a quoted value?"""
        return _after_run(self.inside, self._held_start, self._held) if self._held else self.inside


def ends_inside_quotes(text: bytes) -> bool:
    """Does this text (a header line) end inside a quoted value, i.e. the value holds a line break?"""
    quotes = _Quotes()
    arr = np.frombuffer(text, dtype=np.uint8)
    quotes.feed(arr, np.flatnonzero(arr == QUOTE))
    return quotes.at_end()


def _cr_to_lf(chunk: bytes, arr: np.ndarray, quotes: _Quotes) -> tuple[bytes, np.ndarray]:
    """A CR-only file's chunk with its line ends as LF: CRs outside quoted values (after quotes.feed)."""
    cr = np.flatnonzero(arr == CR)
    if not len(cr):
        return chunk, arr
    out = arr.copy()
    out[cr[~quotes.inside_at(cr)]] = NL
    return out.tobytes(), out


class _RunCollector:
    """Blank-line runs found chunk by chunk; runs that continue across a chunk border are joined."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, lines: np.ndarray, b0: np.ndarray, b1: np.ndarray, quoted: np.ndarray) -> None:
        """Blank lines (sorted line numbers) with each line's byte range and quote parity."""
        if not len(lines):
            return
        first = np.concatenate(([0], np.flatnonzero(np.diff(lines) != 1) + 1))
        last = np.concatenate((first[1:] - 1, [len(lines) - 1]))
        self.parts.append(
            (lines[first], last - first + 1, b0[first], b1[last], quoted[first].astype(np.bool_))
        )

    def runs(self) -> BlankRuns:
        if not self.parts:
            return BlankRuns()
        start, length, b0, b1, quoted = (np.concatenate(p) for p in zip(*self.parts, strict=True))
        new = np.ones(len(start), dtype=np.bool_)
        new[1:] = start[1:] != start[:-1] + length[:-1]
        heads = np.flatnonzero(new)
        tails = np.concatenate((heads[1:] - 1, [len(start) - 1]))
        return BlankRuns(start[heads], np.add.reduceat(length, heads), b0[heads], b1[tails], quoted[heads])


class _LineEnds:
    """Finds the first line that mixes line-end styles (see ScanResult.mixed_line), chunk by chunk."""

    def __init__(self) -> None:
        self.header_crlf: bool | None = None  # how line 1 ends, once seen
        self.line = 0
        self.what = ""
        # A CR at the end of the last chunk (line, outside quotes); at the end of the file it ends a line.
        self._pending: tuple[int, bool] | None = None

    def check(self, arr: np.ndarray, nl: np.ndarray, quotes: _Quotes, lines_done: int, last: int) -> None:
        if self._pending is not None:
            line, outside = self._pending
            self._pending = None
            self._seen(line, outside, crlf=len(arr) > 0 and arr[0] == NL)
            if self.line:
                return
        if self.header_crlf is None and len(nl):
            self.header_crlf = bool((nl[0] > 0 and arr[nl[0] - 1] == CR) or (nl[0] == 0 and last == CR))
        cr = np.flatnonzero(arr == CR)
        if not len(cr):
            return
        outside = ~quotes.inside_at(cr)
        nxt = np.full(len(cr), -1, dtype=np.int64)
        inside_chunk = cr + 1 < len(arr)
        nxt[inside_chunk] = arr[cr[inside_chunk] + 1]
        crlf = nxt == NL
        if not inside_chunk[-1]:  # decided by the next chunk's first byte
            self._pending = (lines_done + 1 + int(np.searchsorted(nl, cr[-1])), bool(outside[-1]))
            cr, outside, crlf = cr[:-1], outside[:-1], crlf[:-1]
        lone = outside & ~crlf
        odd = outside & crlf & (self.header_crlf is False)  # a CRLF line end in an LF file
        bad = np.flatnonzero(lone | odd)
        if len(bad):
            first = bad[0]
            self._seen(lines_done + 1 + int(np.searchsorted(nl, cr[first])), True, crlf=bool(crlf[first]))

    def _seen(self, line: int, outside: bool, *, crlf: bool) -> None:
        if not outside:
            return
        if not crlf:
            self.line, self.what = line, "holds a carriage return (CR) that is not part of a CR-LF line end"
        elif self.header_crlf is False:
            self.line, self.what = line, "ends with CR-LF while the header line ends with LF alone"


def scan(path: Path, *, cr_only: bool = False) -> ScanResult:
    """Hash the file and find its header, physical line count and runs of blank lines.

    With `cr_only` a lone CR outside a quoted value ends a line (the content is read as if each such CR
    were an LF, which is what the normalised copy holds); a CR inside a quoted value is data.
    """
    digest = hashlib.sha256()
    lines_done = 0  # newline-terminated lines seen so far
    tail_len = 0  # length of the current, not yet terminated line
    last_byte = -1  # the byte before the current chunk
    offset = 0  # content offset of the current chunk
    quotes = _Quotes()
    collector = _RunCollector()
    mixed = _LineEnds()
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid_utf8 = True
    pending_utf8 = False  # a multi-byte sequence is cut at the chunk end
    for raw in _chunks(path, digest):
        arr = np.frombuffer(raw, dtype=np.uint8)
        quotes.feed(arr, np.flatnonzero(arr == QUOTE))
        chunk = raw
        if cr_only:
            chunk, arr = _cr_to_lf(raw, arr, quotes)
        if valid_utf8 and (pending_utf8 or bool((arr >= 0x80).any())):
            # Pure ASCII needs no decoding; otherwise validate (a sequence may span chunks).
            try:
                pending_utf8 = bool(decoder.decode(chunk) is not None) and decoder.getstate()[0] != b""
            except UnicodeDecodeError:
                valid_utf8 = False
        nl = np.flatnonzero(arr == NL)
        if not cr_only and not mixed.line:
            mixed.check(arr, nl, quotes, lines_done, last_byte)
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
            blank = np.flatnonzero(is_blank)
            if len(blank):
                # A blank line holds no quote: the state at its line end is the state at its start.
                collector.add(
                    blank + lines_done + 1,
                    starts[blank] + offset,
                    nl[blank] + offset + 1,
                    quotes.inside_at(nl[blank]),
                )
            lines_done += len(nl)
            tail_len = len(chunk) - int(nl[-1]) - 1
        else:
            tail_len += len(chunk)
        offset += len(chunk)
        if len(chunk):
            last_byte = int(arr[-1])
    lines = lines_done
    if tail_len > 0:  # a last line without a newline
        lines += 1
        if tail_len == 1 and last_byte == CR:
            one = np.array([lines], dtype=np.int64)
            collector.add(one, one * 0 + offset - 1, one * 0 + offset, np.array([quotes.inside]))
    head = read_head(path)
    return ScanResult(
        sha256=digest.hexdigest(),
        file_bytes=path.stat().st_size,
        header=head.header,
        lines=lines,
        blank=_without_header(collector.runs(), path, cr_only),
        valid_utf8=valid_utf8 and _decoder_done(decoder),
        cr_only=cr_only,
        mixed_line=mixed.line,
        mixed_what=mixed.what,
    )


def _without_header(runs: BlankRuns, path: Path, cr_only: bool) -> BlankRuns:
    """The header line is never a data line (a blank first line means a missing header)."""
    if not len(runs) or runs.start[0] != 1:
        return runs
    if runs.length[0] == 1:
        return runs.take(np.arange(len(runs)) > 0)
    with _open(path) as fh:
        first = fh.read(2)
    runs.start[0] += 1
    runs.length[0] -= 1
    runs.byte_start[0] += 2 if first == b"\r\n" and not cr_only else 1
    return runs


def _decoder_done(decoder: codecs.IncrementalDecoder) -> bool:
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def read_head(path: Path, limit: int = HEAD_LIMIT) -> Head:
    """The header line and the line-end style, from at most the first MiB (decompressed)."""
    with _open(path) as fh:
        data = fh.read(limit + 1)
    at_eof = len(data) <= limit
    data = data[:limit]
    first, found_nl, _ = data.partition(b"\n")
    first = first.removeprefix(BOM)
    if found_nl:
        first = first.removesuffix(b"\r")
    if b"\r" not in first:
        return Head(first, complete=bool(found_nl) or at_eof)
    if not found_nl:  # no LF at all: the lines end with a lone CR
        header, found_cr, _ = first.partition(b"\r")
        return Head(header, cr_only=True, complete=bool(found_cr) or at_eof)
    return Head(first, lone_cr=True)


def read_header(path: Path) -> bytes:
    """The first line without BOM and line end (reads at most 1 MiB)."""
    return read_head(path).header


def normalise(path: Path, dest: Path, result: ScanResult) -> Path:
    """Write the copy DuckDB loads instead of `path`: CR-only line ends made LF (CRs inside quoted values
    stay), dropped runs left out.

    `dest` is compressed with gzip (fast level) when its name ends in .gz, like the landed file.
    """
    dropped = result.dropped
    cut_from, cut_to = dropped.byte_start.tolist(), dropped.byte_end.tolist()
    with _create(dest) as out, _open(path) as fh:
        offset, k = 0, 0
        quotes = _Quotes()
        while chunk := fh.read(CHUNK):
            if result.cr_only:
                arr = np.frombuffer(chunk, dtype=np.uint8)
                quotes.feed(arr, np.flatnonzero(arr == QUOTE))
                chunk = _cr_to_lf(chunk, arr, quotes)[0]
            end = offset + len(chunk)
            pos = offset
            while k < len(cut_from) and cut_from[k] < end:
                if cut_from[k] > pos:
                    out.write(chunk[pos - offset : cut_from[k] - offset])
                pos = max(pos, min(cut_to[k], end))
                if cut_to[k] > end:
                    break
                k += 1
            if pos < end:
                out.write(chunk[pos - offset :])
            offset = end
    return dest


def sha256(path: Path) -> str:
    """SHA-256 of the file's bytes as landed."""
    digest = hashlib.sha256()
    with open_regular(path) as fh:
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
