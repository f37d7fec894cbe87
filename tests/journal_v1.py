"""The journal as main wrote it before the fair ring (version 1), kept as a
fixture: tests write a journal with it and check that the worker of today
reads it (an upgrade, docs/memlogd.md).  This is memlogd/daemon/journal.py
of commit 8c88633, unchanged but for this docstring; do not change it.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from memlogd.config import READ_BURST
from memlogd.daemon.lines import Lines
from memlogd.errors import MemlogdError

MAGIC = b"MLJ1"
VERSION = 1
HEADER_SIZE = 4096  # bytes before the record area
RECORD_ALIGN = 8
MAX_NAME_UTF8 = 3 * 512  # a 512-byte name decoded with replacement, encoded again
# bytes of record area at most, whatever the ring's size: the header stores the
# area's size in 32 bits (and an offset is never more than the size)
MAX_CAPACITY = (1 << 32) - 4096

_HEAD = struct.Struct("<4sII36s")  # magic, version, area size, instance
_SLOT = struct.Struct("<QQQQI")  # generation, start, end, next_seq, crc32 of the rest
_SLOT_AT = (64, 128)
_REC = struct.Struct("<IIQQH")  # size, count, first_seq, time_ns, name_len
_WRAP = b"\0" * _REC.size  # a size of 0: the records continue at the area's start


class JournalError(MemlogdError):
    """A buffer that is not a journal (or of another version)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One batch as it was appended: ``lines`` from seq ``first_seq`` on."""

    first_seq: int
    time_ns: int
    source: str
    lines: list[bytes]


def capacity_for(max_lines: int, max_line_len: int) -> int:
    """Bytes of record area that hold a whole ring whatever its batches: in the
    worst case every entry is a batch of its own with a name of maximal size.
    However small the ring, a whole read (READ_BURST bytes and a partial
    line) fits in one record of at most half the area."""
    per_entry = _REC.size + RECORD_ALIGN + MAX_NAME_UTF8 + max_line_len
    area = max(max_lines * per_entry, 2 * (per_entry + READ_BURST) + RECORD_ALIGN)
    return min(HEADER_SIZE + area, HEADER_SIZE + MAX_CAPACITY)


def _aligned(size: int) -> int:
    return -(-size // RECORD_ALIGN) * RECORD_ALIGN


def new_header(size: int, instance: str) -> bytes:
    """The first bytes of a new journal of ``size`` bytes (the rest zero)."""
    if size < HEADER_SIZE + 2 * _aligned(_REC.size + 1):
        raise JournalError("journal too small")
    head = _HEAD.pack(MAGIC, VERSION, size - HEADER_SIZE, instance.encode("ascii"))
    return head + bytes(_SLOT_AT[0] - _HEAD.size) + _slot(0, 0, 0, 1) + _slot(1, 0, 0, 1)


def _slot(generation: int, start: int, end: int, next_seq: int) -> bytes:
    body = _SLOT.pack(generation, start, end, next_seq, 0)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def _read_slot(buf: memoryview, at: int) -> tuple[int, int, int, int] | None:
    generation, start, end, next_seq, crc = _SLOT.unpack_from(buf, at)
    if zlib.crc32(buf[at : at + _SLOT.size - 4]) != crc:
        return None
    return generation, start, end, next_seq


class Journal:
    """A journal in ``buf`` (an mmap of the shared memory, or any writable buffer)."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        magic, version, area, instance = _HEAD.unpack_from(buf, 0)
        if magic != MAGIC or version != VERSION or area + HEADER_SIZE > len(buf):
            raise JournalError("not a memlogd journal of this version")
        self.instance = instance.rstrip(b"\0").decode("ascii")
        self._area = area
        slots = [s for s in (_read_slot(buf, at) for at in _SLOT_AT) if s is not None]
        if not slots:
            raise JournalError("no valid commit in the journal")
        self._generation, self._start, self._end, self.next_seq = max(slots)
        self._committed = (self._start, self._end)
        self.squeezed = 0  # live batches dropped for room (the ring still held them)
        # the live records: (offset, size, last seq) from the oldest on
        self._live: deque[tuple[int, int, int]] = deque()
        for offset, size, record in self._walk():
            self._live.append((offset, size, record.first_seq + len(record.lines) - 1))

    # -------------------------------------------------------------- reading

    def _walk(self) -> Iterator[tuple[int, int, Record]]:
        buf, pos, end, area = self.buf, self._start, self._end, self._area
        steps = 0
        while pos != end:
            steps += 1
            if steps > area // RECORD_ALIGN + 2:
                raise JournalError("the journal's records do not lead to its end")
            if area - pos < _REC.size:  # no room for a record: the next is at 0
                pos = 0
                continue
            size, count, first_seq, time_ns, name_len = _REC.unpack_from(buf, HEADER_SIZE + pos)
            if size == 0:  # the wrap marker
                pos = 0
                continue
            if size < _REC.size + name_len or pos + size > area:
                raise JournalError(f"a record at {pos} is damaged")
            at = HEADER_SIZE + pos + _REC.size
            name = bytes(buf[at : at + name_len]).decode("utf-8", "replace")
            block = bytes(buf[at + name_len : HEADER_SIZE + pos + size])
            lines = block.split(b"\n") if count else []
            if len(lines) != count:
                raise JournalError(f"a record at {pos} is damaged")
            yield pos, _aligned(size), Record(first_seq, time_ns, name, lines)
            pos += _aligned(size)

    def records(self) -> Iterator[Record]:
        """The batches held, oldest first."""
        for _offset, _size, record in self._walk():
            yield record

    # -------------------------------------------------------------- writing

    def append_lines(
        self, first_seq: int, time_ns: int, source: str, lines: Lines, count: int, keep_from: int
    ) -> None:
        """Journal a batch of ``count`` ``lines`` from seq ``first_seq`` on:
        those the ring still holds (from ``keep_from``, its first seq now), in as
        few records as fit (one, but for a batch larger than half the journal)."""
        name_len = len(source.encode("utf-8", "replace"))
        room = self._area // 2 - _REC.size - name_len - RECORD_ALIGN
        a = max(0, keep_from - first_seq)
        if not a and len(lines.head) + lines.stop <= room:  # the common case: as it is
            self.append(first_seq, time_ns, source, lines.pieces(), count, keep_from)
            return
        while a < count:
            b = lines.fit(a, room)
            self.append(first_seq + a, time_ns, source, lines.pieces(a, b), b - a, keep_from)
            a = b

    def append(
        self,
        first_seq: int,
        time_ns: int,
        source: str,
        block: Sequence[bytes | memoryview],
        count: int,
        keep_from: int,
    ) -> None:
        """Journal one batch (``count`` lines joined with newlines, in the
        pieces of ``block``) and commit it.

        ``keep_from``: the ring's first seq now; records wholly before it may go."""
        name = source.encode("utf-8", "replace")
        size = _REC.size + len(name) + sum(map(len, block))
        total = _aligned(size)
        if total >= self._area // 2:  # append_lines never makes one
            raise JournalError("batch larger than half the journal")
        self._forget_before(keep_from)
        pos = self._place(total)
        at = HEADER_SIZE + pos
        self._write(at, _REC.pack(size, count, first_seq, time_ns, len(name)) + name)
        at += _REC.size + len(name)
        for piece in block:
            self._write(at, piece)
            at += len(piece)
        if not self._live:
            self._start = pos
        self._live.append((pos, total, first_seq + count - 1))
        self._end = pos + total
        self.next_seq = first_seq + count
        self._commit()

    def _forget_before(self, seq: int) -> None:
        """Records whose entries all left the ring may be overwritten."""
        live = self._live
        while live and live[0][2] < seq:
            live.popleft()
        self._start = live[0][0] if live else self._end

    def _place(self, total: int) -> int:
        """Where a record of ``total`` bytes goes.  The oldest records go when
        there is no room (only when the journal is smaller than the ring needs);
        what the last commit counts is never overwritten before a commit has
        moved past it."""
        live, area = self._live, self._area
        marker = -1  # where a wrap marker goes, if one does
        while True:
            if not live:
                pos = 0
                break
            start, end = self._start, self._end
            if start < end:  # not wrapped: free space after end, and before start
                if start >= end - start + total:  # back to the start: room for as much again
                    marker, pos = end, 0
                    break
                if end + total <= area:
                    pos = end
                    break
            elif end + total < start:  # wrapped: free space between end and start
                pos = end
                break
            live.popleft()  # no room: the journal is full, the oldest batch goes
            self.squeezed += 1
            self._start = live[0][0] if live else end
        has_marker = marker >= 0 and area - marker >= _REC.size
        if self._overlaps_committed(pos, total) or (
            has_marker and self._overlaps_committed(marker, _REC.size)
        ):
            self._commit()
        if has_marker:
            self._write(HEADER_SIZE + marker, _WRAP)
        return pos

    def _overlaps_committed(self, pos: int, total: int) -> bool:
        """Would writing ``[pos, pos+total)`` touch what the last commit counts?"""
        start, end = self._committed
        if start == end:
            return False
        lo, hi = pos, pos + total
        if start < end:
            return lo < end and hi > start
        return hi > start or lo < end  # wrapped: [start, area) and [0, end)

    def _commit(self) -> None:
        if not self._live:
            self._start = self._end
        self._generation += 1
        slot = _slot(self._generation, self._start, self._end, self.next_seq)
        self._write(_SLOT_AT[self._generation % 2], slot)
        self._committed = (self._start, self._end)

    def _write(self, at: int, data: bytes | memoryview) -> None:
        """Every write to the buffer goes through here (tests tear them)."""
        self.buf[at : at + len(data)] = data
