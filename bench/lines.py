"""The benchmark's line format and the cheap follower-side parsing. PURE: no I/O.

A writer line is exactly ``line_bytes`` bytes, newline included::

    T<time_ns, 19 digits> W<writer, 5 digits> S<seq, 10 digits> xxxx...x\\n

The lines of one write are prepared before the run as *parts*: the text
between two timestamps.  At write time ``timestamp.join(parts)`` (one C call)
stamps every line of the chunk with the same ``time_ns()``, so a writer does
no per-line Python work while it is measured.

In memlogd's JSON output a writer line appears as ``"msg":"T<time_ns> ...``;
a follower counts that marker (cheap ``bytes.count``) and decodes the time of
only a few lines per received chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TIME_DIGITS = 19
HEADER_BYTES = 40  # "T" + time + " W" + writer + " S" + seq + " "
MIN_LINE_BYTES = HEADER_BYTES + 1  # the header and the newline, no padding
MAX_WRITER = 99_999
MAX_SEQ = 9_999_999_999
WRITE_BYTES = 64 * 1024  # a writer's chunk: as many whole lines as fit
MSG_MARKER = b'"msg":"T'  # where a writer line starts in a JSON entry
SYNC_TEXT = b"BENCH-SYNC"  # the sync line the parent writes until every follower saw it

_LINE_RE = re.compile(rb"T(\d{19}) W(\d{5}) S(\d{10}) (x*)\n\Z")


class LineFormatError(ValueError):
    """Bytes that are not a writer line."""


@dataclass(frozen=True, slots=True)
class WriterLine:
    time_ns: int
    writer: int
    seq: int
    size: int  # bytes, newline included


def lines_per_write(line_bytes: int) -> int:
    """Whole lines in one ~64 KiB write (at least one)."""
    return max(1, WRITE_BYTES // line_bytes)


def line_parts(writer: int, first_seq: int, count: int, line_bytes: int) -> list[bytes]:
    """The parts of ``count`` lines (seq ``first_seq`` on): join them with a
    19-digit timestamp to get the bytes of one write."""
    if line_bytes < MIN_LINE_BYTES:
        raise ValueError(f"a line must be at least {MIN_LINE_BYTES} bytes")
    if not 0 <= writer <= MAX_WRITER:
        raise ValueError(f"writer id must be between 0 and {MAX_WRITER}")
    if count < 1 or first_seq < 0 or first_seq + count - 1 > MAX_SEQ:
        raise ValueError("bad sequence range")
    pad = b"x" * (line_bytes - MIN_LINE_BYTES)
    body = b" W%05d S%%010d %s\n" % (writer, pad)
    parts = [b"T"]
    parts.extend(body % seq + b"T" for seq in range(first_seq, first_seq + count - 1))
    parts.append(body % (first_seq + count - 1))
    return parts


def stamp(parts: list[bytes], time_ns: int) -> bytes:
    """The bytes of one write: every line carries ``time_ns``."""
    return (b"%019d" % time_ns).join(parts)


def parse_line(line: bytes) -> WriterLine:
    """Decode one writer line (newline included); for tests and checks."""
    m = _LINE_RE.match(line)
    if m is None:
        raise LineFormatError(f"not a writer line: {line[:60]!r}")
    return WriterLine(int(m.group(1)), int(m.group(2)), int(m.group(3)), len(line))


def sample_times(chunk: bytes, probes: int = 4) -> list[int]:
    """Embedded times of at most ``probes`` writer lines of ``chunk``, found
    from evenly spaced offsets (a line cut by the chunk's end is skipped)."""
    times: list[int] = []
    size = len(chunk)
    last = -1
    start = len(MSG_MARKER)
    for i in range(probes):
        pos = chunk.find(MSG_MARKER, size * i // probes)
        if pos < 0:
            break
        if pos == last:
            continue
        last = pos
        digits = chunk[pos + start : pos + start + TIME_DIGITS]
        if len(digits) == TIME_DIGITS and digits.isdigit():
            times.append(int(digits))
    return times


class MarkerCounter:
    """Counts a marker in a stream fed in arbitrary chunks (the count never
    depends on where the chunks were cut). The marker must not overlap itself."""

    __slots__ = ("_k", "_marker", "_tail", "count")

    def __init__(self, marker: bytes) -> None:
        if not marker:
            raise ValueError("empty marker")
        self._marker = marker
        self._k = len(marker) - 1
        self._tail = b""  # the last len(marker)-1 bytes seen
        self.count = 0

    def feed(self, chunk: bytes) -> int:
        """Count occurrences completed by ``chunk``; returns how many were new."""
        k = self._k
        new = chunk.count(self._marker)
        if k and self._tail:
            new += (self._tail + chunk[:k]).count(self._marker)
        if k:
            self._tail = chunk[-k:] if len(chunk) >= k else (self._tail + chunk)[-k:]
        self.count += new
        return new
