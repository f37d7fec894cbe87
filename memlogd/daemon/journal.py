"""The ring's crash-safe copy: a journal of batches in shared memory. PURE: no I/O.

docs/memlogd.md, "What survives what".  The worker keeps the ring in its own
memory (a dump is a snapshot of references, so the ring must not change
under a slow reader) and writes every batch, as it appends it, into this
journal too: a buffer (a memfd the keeper holds) that outlives the worker.
A new worker replays the journal into a new ring: the same ``instance``, the
same entries with the same ``seq``, and ``seq`` continuing where it stopped.

Layout of the buffer (all integers little-endian)::

    0     header: magic, version, capacity, instance (36 bytes of a UUID)
    64    commit slot 0 \\  generation, start, end, next_seq, overwritten, crc32;
    128   commit slot 1 /   the valid slot with the higher generation counts
    4096  records, 8-byte aligned, in a circular area

A record is one batch: ``size, count, first_seq, time_ns, name_len, 0, dead,
evicted`` then the source name and the lines joined with ``\\n`` (lines never
contain one).  The records from ``start`` to ``end`` (wrapping at the area's
end, where a size of 0 means "continue at the area's start") are the journal.

The ring drops a source's oldest entries first (SPEC 14), so what it holds of
a batch is its lines from some line on: a record's ``dead`` counts its first
lines the ring no longer holds (set in place, one aligned 4-byte store, when
the ring evicts them; a record all dead may be overwritten), and ``evicted``
is its source's count of evicted entries, kept up to date in the newest
record of that source.  A record the ring still holds in part that stands in
the way of reusing the area's start (a quiet source's, among a flood's dead
ones) is *relocated*: what it holds is written again as a new record, and the
commit that takes the copy in leaves the original out.  Version 1 (before the
fair ring: no ``dead``, ``evicted``, ``overwritten``) is read, for an upgrade
(:func:`upgrade`).  Writing is ordered
so that a kill at any instruction leaves a readable journal: a record is
written outside the committed range, then a commit (into the slot not in use)
takes it in; a commit that would let a record be overwritten first moves
``start`` past it.  A torn commit fails its crc and the other slot counts.

The area is sized for the worst case (every entry a batch of its own with a
name of maximal length) but used from its start only as far as needed:
writing goes back to the area's start as soon as the space there can hold
as much again as the live records, so the pages touched stay within about
twice what the ring holds.  Should the batches grow much longer per entry
within one lap, the oldest batches go before the ring lets go of them
(counted in ``squeezed``: a crash then loses them).
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from memlogd.config import READ_BURST
from memlogd.daemon.lines import Lines
from memlogd.errors import MemlogdError

MAGIC = b"MLJ1"
VERSION = 2
HEADER_SIZE = 4096  # bytes before the record area
RECORD_ALIGN = 8
MAX_NAME_UTF8 = 3 * 512  # a 512-byte name decoded with replacement, encoded again
# bytes of record area at most, whatever the ring's size: the header stores the
# area's size in 32 bits (and an offset is never more than the size)
MAX_CAPACITY = (1 << 32) - 4096

_HEAD = struct.Struct("<4sII36s")  # magic, version, area size, instance
_SLOT = struct.Struct("<QQQQQI")  # generation, start, end, next_seq, overwritten, crc32
_SLOT1 = struct.Struct("<QQQQI")  # version 1: no overwritten
_SLOT_AT = (64, 128)
_REC = struct.Struct("<IIQQHHIQ")  # size, count, first_seq, time_ns, name_len, 0, dead, evicted
_REC1 = struct.Struct("<IIQQH")  # version 1: no dead, no evicted
_DEAD_AT = 28  # offsets in a record of dead (4 bytes) and evicted (8 bytes)
_EVICTED_AT = 32
_U32 = struct.Struct("<I")  # a record's dead, a slot's crc32
_U64 = struct.Struct("<Q")  # a record's evicted
_WRAP = b"\0" * _REC.size  # a size of 0: the records continue at the area's start
SLACK = 1 << 20  # bytes of dropped lines that records held in part may keep (docs)
GROUP_BYTES = 1 << 16  # bytes of copies of records held in part written together at most


class JournalError(MemlogdError):
    """A buffer that is not a journal (or of another version)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One batch as it was appended (what the ring still holds of it): ``lines``
    from seq ``first_seq`` on; ``evicted``: its source's evicted entries then."""

    first_seq: int
    time_ns: int
    source: str
    lines: list[bytes]
    evicted: int = 0


class _Live:
    """A record in the journal, as the writer knows it."""

    __slots__ = (
        "count",
        "dead",
        "first_seq",
        "origin",
        "pos",
        "source",
        "time_ns",
        "total",
        "tracked",
    )

    def __init__(
        self, pos: int, total: int, first_seq: int, count: int, source: str, time_ns: int
    ) -> None:
        self.pos = pos
        self.total = total
        self.first_seq = first_seq
        self.count = count
        self.dead = 0
        self.source = source
        self.time_ns = time_ns
        self.origin = first_seq  # the batch's first seq (the ring's Block.origin)
        self.tracked = False  # among the journal's records

    @property
    def last(self) -> int:
        return self.first_seq + self.count - 1


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


def new_header(size: int, instance: str, version: int = VERSION) -> bytes:
    """The first bytes of a new journal of ``size`` bytes (the rest zero)."""
    if size < HEADER_SIZE + 2 * _aligned(_REC.size + 1):
        raise JournalError("journal too small")
    head = _HEAD.pack(MAGIC, version, size - HEADER_SIZE, instance.encode("ascii"))
    slot = _SLOT if version == VERSION else _SLOT1
    slots = [_slot(g, 0, 0, 1, 0, slot) for g in (0, 1)]
    return head + bytes(_SLOT_AT[0] - _HEAD.size) + slots[0] + bytes(64 - slot.size) + slots[1]


def _slot(
    generation: int, start: int, end: int, next_seq: int, overwritten: int, slot: struct.Struct
) -> bytes:
    fields = (generation, start, end, next_seq, overwritten)[: len(slot.format) - 2]
    body = slot.pack(*fields, 0)[:-4]
    return body + _U32.pack(zlib.crc32(body))


def _read_slot(buf: memoryview, at: int, slot: struct.Struct) -> tuple[int, ...] | None:
    *fields, crc = slot.unpack_from(buf, at)
    if zlib.crc32(buf[at : at + slot.size - 4]) != crc:
        return None
    return (*fields, 0)[:5]


class Journal:
    """A journal in ``buf`` (an mmap of the shared memory, or any writable buffer)."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        magic, version, area, instance = _HEAD.unpack_from(buf, 0)
        if magic != MAGIC or version not in (1, VERSION) or area + HEADER_SIZE > len(buf):
            raise JournalError("not a memlogd journal of this version")
        self.version = version  # 1: read only, for an upgrade (upgrade())
        self._rec = _REC if version == VERSION else _REC1
        self.instance = instance.rstrip(b"\0").decode("ascii")
        self._area = area
        slot = _SLOT if version == VERSION else _SLOT1
        slots = [s for s in (_read_slot(buf, at, slot) for at in _SLOT_AT) if s is not None]
        if not slots:
            raise JournalError("no valid commit in the journal")
        self._generation, self._start, self._end, self.next_seq, self.overwritten = max(slots)
        self._committed = (self._start, self._end)
        self.squeezed = 0  # live batches dropped for room (the ring still held them)
        self.relocated = 0  # records written again (held in part among dead ones)
        self._sparse: list[_Live] = []  # records little of which is held: copied past the slack
        self._dead_after_commit: list[_Live] = []  # originals of copies not committed yet
        self.compact_above = 4096  # bytes: smaller records are not copied
        self.slack = SLACK  # bytes of dropped lines records held in part may keep
        self._waste = 0  # bytes of dropped lines in the records held in part (about)
        self._placing_copy = False
        self.unsafe_copies = 0  # records written again over their original (no free space)
        # the live records from the oldest on; each batch's records; each source's newest
        self._live: deque[_Live] = deque()
        self._batches: dict[int, list[_Live]] = {}
        self._newest: dict[str, _Live] = {}
        self._live_bytes = 0  # of the records still held in part
        self._all_bytes = 0  # of every record in _live
        for offset, size, record, count in self._walk():
            dead = count - len(record.lines)
            live = _Live(
                offset, size, record.first_seq - dead, count, record.source, record.time_ns
            )
            live.dead = dead
            live.origin = record.first_seq  # a replayed ring's block starts there
            self._track(live)

    # -------------------------------------------------------------- reading

    def _walk(self) -> Iterator[tuple[int, int, Record, int]]:
        """Each record: its offset, size, what is held of it, its count of lines."""
        buf, pos, end, area = self.buf, self._start, self._end, self._area
        rec = self._rec
        steps = 0
        while pos != end:
            steps += 1
            if steps > area // RECORD_ALIGN + 2:
                raise JournalError("the journal's records do not lead to its end")
            if area - pos < rec.size:  # no room for a record: the next is at 0
                pos = 0
                continue
            size, count, first_seq, time_ns, name_len, *more = rec.unpack_from(
                buf, HEADER_SIZE + pos
            )
            if size == 0:  # the wrap marker
                pos = 0
                continue
            dead, evicted = (more[1], more[2]) if more else (0, 0)
            if size < rec.size + name_len or pos + size > area or dead > count:
                raise JournalError(f"a record at {pos} is damaged")
            at = HEADER_SIZE + pos + rec.size
            name = bytes(buf[at : at + name_len]).decode("utf-8", "replace")
            block = bytes(buf[at + name_len : HEADER_SIZE + pos + size])
            lines = block.split(b"\n") if count else []
            if len(lines) != count:
                raise JournalError(f"a record at {pos} is damaged")
            held = Record(first_seq + dead, time_ns, name, lines[dead:], evicted)
            yield pos, _aligned(size), held, count
            pos += _aligned(size)

    def records(self) -> Iterator[Record]:
        """What the ring held of each batch (none: not listed), in the journal's
        order (a relocated one comes later than its seq)."""
        for _offset, _size, record, _count in self._walk():
            if record.lines:
                yield record

    def _track(self, live: _Live) -> None:
        live.tracked = True
        self._live.append(live)
        self._all_bytes += live.total
        self._batches.setdefault(live.origin, []).append(live)
        newest = self._newest.get(live.source)
        if newest is None or live.first_seq >= newest.first_seq:  # not a copy of an older one
            self._newest[live.source] = live
        if live.dead < live.count:
            self._live_bytes += live.total
            self._waste += live.total * live.dead // live.count

    def _untrack(self, live: _Live) -> None:
        live.tracked = False
        batch = self._batches.get(live.origin)
        if batch is not None:
            if live in batch:
                batch.remove(live)
            if not batch:
                del self._batches[live.origin]
        if self._newest.get(live.source) is live:
            del self._newest[live.source]
        self._all_bytes -= live.total
        if live.dead < live.count:
            self._live_bytes -= live.total
            self._waste -= live.total * live.dead // live.count

    # -------------------------------------------------------------- writing

    def append_lines(
        self,
        first_seq: int,
        time_ns: int,
        source: str,
        lines: Lines,
        count: int,
        keep_from: int,
        evicted: int = 0,
        skip: int = 0,
        stop: int | None = None,
    ) -> None:
        """Journal a batch of ``count`` ``lines`` from seq ``first_seq`` on:
        those the ring still holds (from ``keep_from``: no entry before it is
        held), but for the first ``skip`` (those the ring drops as it makes
        room: LogState), up to line ``stop`` (None: all), in as few records
        as fit (one, but for a batch larger than half the journal).
        ``evicted``: the source's count of evicted entries.  Every record is
        of the batch (the ring's ``Block.origin``) for trims."""
        name_len = len(source.encode("utf-8", "replace"))
        room = self._area // 2 - _REC.size - name_len - RECORD_ALIGN
        a = max(skip, keep_from - first_seq, 0)
        end = count if stop is None else stop
        if a >= end:
            return
        if end == count and len(lines.head) + lines.stop <= room:  # the common case: one
            pieces = lines.tail(a, count) if a else lines.pieces()  # (as it is, if whole)
            seq = first_seq + a
            self.append(seq, time_ns, source, pieces, count - a, keep_from, evicted, first_seq)
            return
        while a < end:
            b = min(end, lines.fit(a, room))
            pieces = lines.pieces(a, b)
            self.append(
                first_seq + a, time_ns, source, pieces, b - a, keep_from, evicted, first_seq
            )
            a = b

    def append(
        self,
        first_seq: int,
        time_ns: int,
        source: str,
        block: Sequence[bytes | memoryview],
        count: int,
        keep_from: int,
        evicted: int = 0,
        origin: int = 0,
    ) -> None:
        """Journal one batch (``count`` lines joined with newlines, in the
        pieces of ``block``) and commit it.

        ``keep_from``: no entry before it is held: records wholly before it
        may go.  ``origin``: the seq of the batch's first line, when these
        are not from it (0: they are)."""
        if self.version != VERSION:
            raise JournalError("a journal of version 1 is read only")
        name = source.encode("utf-8", "replace")
        size = _REC.size + len(name) + sum(map(len, block))
        total = _aligned(size)
        if total >= self._area // 2:  # append_lines never makes one
            raise JournalError("batch larger than half the journal")
        self._forget_before(keep_from)
        self._relocate(total)
        self._compact()
        self._write_record(first_seq, time_ns, source, block, count, evicted, origin or first_seq)
        self._commit()

    def _write_record(
        self,
        first_seq: int,
        time_ns: int,
        source: str,
        block: Sequence[bytes | memoryview],
        count: int,
        evicted: int,
        origin: int,
        pos: int | None = None,
    ) -> _Live:
        """Place (unless at ``pos``, free) and write one record (not committed yet)."""
        name = source.encode("utf-8", "replace")
        size = _REC.size + len(name) + sum(map(len, block))
        total = _aligned(size)
        if pos is None:
            pos = self._place(total)
        at = HEADER_SIZE + pos
        head = _REC.pack(size, count, first_seq, time_ns, len(name), 0, 0, evicted)
        self._write(at, head + name)
        at += _REC.size + len(name)
        for piece in block:
            self._write(at, piece)
            at += len(piece)
        if not self._live:
            self._start = pos
        live = _Live(pos, total, first_seq, count, source, time_ns)
        live.origin = origin
        self._track(live)
        self._end = pos + total
        self.next_seq = max(self.next_seq, first_seq + count)
        return live

    def trim(self, cuts: Iterable[tuple[int, int]], evicted: Iterable[tuple[str, int]]) -> None:
        """The ring cut batches: it holds the batch of seq ``origin`` only from
        seq ``held_from`` on now (each ``(origin, held_from)`` of ``cuts``), and
        a source's count of evicted entries is ``evicted`` (each ``(source,
        evicted)``).  Each record's ``dead`` and each newest record's
        ``evicted`` is one store, not committed until :meth:`commit`."""
        batches, write, sparse = self._batches, self._write, self._sparse
        compact_above = self.compact_above
        pack_dead = _U32.pack
        for origin, held_from in cuts:
            for live in batches.get(origin, ()):
                n = live.count
                dead = held_from - live.first_seq
                if dead <= live.dead:
                    continue
                if dead > n:
                    dead = n
                total = live.total
                self._waste -= total * live.dead // n
                if dead == n:
                    self._live_bytes -= total
                else:
                    self._waste += total * dead // n
                    if 4 * (n - live.dead) >= n > 4 * (n - dead) and total > compact_above:
                        sparse.append(live)  # copied once the slack is passed
                live.dead = dead
                write(HEADER_SIZE + live.pos + _DEAD_AT, pack_dead(dead))
        newest = self._newest
        pack_evicted = _U64.pack
        for source, count in evicted:
            record = newest.get(source)
            if record is not None:
                write(HEADER_SIZE + record.pos + _EVICTED_AT, pack_evicted(count))

    def commit(self, overwritten: int) -> None:
        """Commit the ring's count of entries that left it (after trims)."""
        self.overwritten = overwritten
        self._commit()

    def _forget_before(self, seq: int) -> None:
        """Records whose entries all left the ring may be overwritten."""
        live = self._live
        while live and (live[0].last < seq or live[0].dead >= live[0].count):
            self._untrack(live.popleft())
        self._start = live[0].pos if live else self._end

    def _relocate(self, total: int) -> None:
        """Write again the records at the front while the records span more
        than twice what is held (a quiet source's batch among a flood's dead
        ones), so that the start moves on as with oldest-first eviction,
        writing goes back to the area's start, and the pages touched stay few.
        Those the span needs moved are written together (:meth:`_move`) in
        free space, as many as it holds; one at a time (making room) only
        when it does not hold the first.
        (A record in the way of one that finds no room is written again too:
        _place.)"""
        live = self._live
        budget = len(live)
        while live and budget and self._all_bytes > self._span_allowed(total):
            moved = self._move_front(total)
            if moved:  # (else one at a time, making room if need be)
                budget -= moved
                continue
            budget -= 1
            front = live[0]
            held = self._held_lines(front)
            count = front.count - front.dead
            first = front.first_seq + front.dead
            evicted = self._evicted_of(front)
            # the copy first (uncommitted), then the original is left out
            self._write_record(
                first, front.time_ns, front.source, [held], count, evicted, front.origin
            )
            if live and live[0] is front:
                self._untrack(live.popleft())
            self.relocated += 1
            self._forget_before(0)

    def _front_group(
        self, total: int, free: int, room: int
    ) -> tuple[list[_Live], list[int], list[bytes]]:
        """The records still held at the front that :meth:`_relocate` would
        write again one by one (before a record of ``total`` bytes), or, with
        ``free``, that :meth:`_place` would, to free that many bytes at the
        front; as many as ``room`` bytes of copies hold (and GROUP_BYTES):
        the records, the size of each copy, and the copies' bytes in pieces.
        The span as each is moved and the dead ones after it are let go is
        reckoned here."""
        all_bytes, held_bytes, waste = self._all_bytes, self._live_bytes, self._waste
        group: list[_Live] = []
        sizes: list[int] = []
        pieces: list[bytes] = []
        room = min(room, GROUP_BYTES)
        pack, head_size, align = _REC.pack, _REC.size, RECORD_ALIGN
        buf = self.buf
        freed = 0
        for rec in self._live:
            dead, count, gone = rec.dead, rec.count, rec.total
            if dead >= count:  # let go once those before it are moved
                all_bytes -= gone
                freed += gone
                continue
            if group and (
                freed >= free
                if free
                else all_bytes <= 2 * (held_bytes - waste + total) + waste + 65536
            ):
                break  # enough freed; or within _span_allowed, as it will be
            freed += gone
            if dead:  # held in part: what is held, under a header of its own
                held = self._held_lines(rec)
                name = rec.source.encode("utf-8", "replace")
                size = head_size + len(name) + len(held)
                copy = -(-size // align) * align
                evicted = self._evicted_of(rec)
                head = pack(
                    size, count - dead, rec.first_seq + dead, rec.time_ns, len(name), 0, 0, evicted
                )
                written: tuple[bytes, ...] = (head, name, held, bytes(copy - size))
            else:  # held whole (a quiet source's): the record as it is
                at = HEADER_SIZE + rec.pos
                copy = gone
                written = (bytes(buf[at : at + gone]),)
            if copy > room:  # (the first too: then none is moved)
                break
            pieces += written
            group.append(rec)
            sizes.append(copy)
            room -= copy
            all_bytes += copy - gone
            held_bytes += copy - gone
            waste -= gone * dead // count
        return group, sizes, pieces

    def _move_front(self, total: int, free: int = 0) -> int:
        """Write the front records :meth:`_front_group` picks (with its
        arguments), as many as free space holds, again together there
        (:meth:`_move`); returns how many (0: free space does not hold the
        first, nothing written)."""
        group, sizes, pieces = self._front_group(total, free, self._free_room())
        if not group:
            return 0
        pos = self._free_place(sum(sizes))
        assert pos is not None  # (they fit the free room)
        self._move(group, sizes, pieces, pos)
        return len(group)

    def _move(self, group: list[_Live], sizes: list[int], pieces: list[bytes], pos: int) -> None:
        """Write the copies of the front records of ``group`` together at
        ``pos`` (after the last record), not committed yet: each record is
        then its copy (the commit that takes the copies in leaves the
        originals out)."""
        self._write(HEADER_SIZE + pos, b"".join(pieces))
        at = pos
        grown = waste = 0
        for rec, copy in zip(group, sizes, strict=True):
            gone, dead = rec.total, rec.dead
            grown += copy - gone
            waste += gone * dead // rec.count
            rec.pos, rec.total = at, copy
            rec.first_seq += dead
            rec.count -= dead
            rec.dead = 0
            at += copy
        self._all_bytes += grown
        self._live_bytes += grown
        self._waste -= waste
        live = self._live
        for _rec in group:  # the originals leave the front, and the dead among them
            while live[0].dead >= live[0].count:
                self._untrack(live.popleft())
            live.popleft()
        while live and live[0].dead >= live[0].count:
            self._untrack(live.popleft())
        live.extend(group)
        self._start = live[0].pos
        self._end = at
        self.relocated += len(group)

    def _span_allowed(self, total: int) -> int:
        """Bytes the records may span: twice what is held, and the slack."""
        return 2 * (self._live_bytes - self._waste + total) + self._waste + 65536

    def _compact(self) -> None:
        """Once the records held in part keep more than ``slack`` bytes of
        dropped lines, copy what is held of those little of which is (a batch
        of one of many sources that the fair ring cut), the oldest first,
        until they keep half the slack: the copy is written and committed
        first, then the original counted all dead, so the records' span, and
        the pages touched, stay near what the ring holds plus the slack."""
        sparse = self._sparse
        if self._waste <= self.slack:
            if len(sparse) > 2 * len(self._live) + 64:  # forget those gone meanwhile
                self._sparse = [s for s in sparse if s.tracked and s.dead < s.count]
            return
        self._sparse = []
        for i, live in enumerate(sparse):
            if self._waste <= self.slack // 2:
                self._sparse = sparse[i:]
                break
            batch = self._batches.get(live.origin)
            if (
                not live.tracked
                or not live.dead
                or live.dead >= live.count
                or batch is None
                or live not in batch
            ):
                continue  # gone meanwhile, or copied already (as it holds it, whole)
            held = self._held_lines(live)
            first = live.first_seq + live.dead
            evicted = self._evicted_of(live)
            count = live.count - live.dead
            origin = live.origin
            self._write_record(first, live.time_ns, live.source, [held], count, evicted, origin)
            self.relocated += 1
            if not live.tracked:  # written again for room meanwhile (replay keeps one)
                continue
            self._batches[origin].remove(live)  # trims go to the copy
            self._live_bytes -= live.total
            self._waste -= live.total * live.dead // live.count
            live.dead = live.count
            self._dead_after_commit.append(live)

    def _held_lines(self, live: _Live) -> bytes:
        at = HEADER_SIZE + live.pos
        size, count, _first, _time, name_len, _pad, dead, _ev = _REC.unpack_from(self.buf, at)
        data = bytes(self.buf[at + _REC.size + name_len : at + size])
        if not dead:
            return data
        if 2 * dead < count:
            return data.split(b"\n", dead)[-1]
        cut = len(data)  # few held: their start found from the end
        for _ in range(count - dead):
            cut = data.rfind(b"\n", 0, cut)
        return data[cut + 1 :]

    def _evicted_of(self, live: _Live) -> int:
        value: int = _U64.unpack_from(self.buf, HEADER_SIZE + live.pos + _EVICTED_AT)[0]
        return value

    def _place(self, total: int) -> int:
        """Where a record of ``total`` bytes goes.  The oldest records go when
        there is no room (only when the journal is smaller than the ring needs);
        what the last commit counts is never overwritten before a commit has
        moved past it."""
        live, area = self._live, self._area
        marker = -1  # where a wrap marker goes, if one does
        # records written again here at most: past a whole round of them (all
        # held, their copies no smaller), free space does not grow: they go
        rounds = len(live)
        while True:
            if not live:
                pos = 0
                break
            start, end = self._start, self._end
            front = live[0]
            spare = front.total if front.dead < front.count and not self._placing_copy else 0
            if start < end:  # not wrapped: free space after end, and before start
                if (
                    start >= end - start + total + spare
                ):  # back to the start: room for as much again
                    marker, pos = end, 0
                    break
                if end + total + spare <= area:  # (room left for a copy of the oldest, if held)
                    pos = end
                    break
            elif end + total + spare < start:  # wrapped: free space between end and start
                pos = end  # (and room left for a copy of the oldest record, if held)
                break
            gone = live[0]  # no room: the oldest batch goes, written again first if held
            held = gone.dead < gone.count and not self._placing_copy
            if held and rounds > 0:  # it and those held after it, together, as many as fit
                moved = self._move_front(total, free=total + spare)
                if moved:
                    rounds -= moved
                    continue
            live.popleft()
            self._untrack(gone)
            self._forget_before(0)
            self._start = live[0].pos if live else self._end
            if gone.dead < gone.count and self._placing_copy:
                self.squeezed += 1  # a copy found no room: the journal is too small
            elif held:  # no free space for a copy (or a round made none): where it was
                self._placing_copy = True  # (a kill before the next commit loses it)
                try:
                    first, count = gone.first_seq + gone.dead, gone.count - gone.dead
                    self._write_record(
                        first,
                        gone.time_ns,
                        gone.source,
                        [self._held_lines(gone)],
                        count,
                        self._evicted_of(gone),
                        gone.origin,
                    )
                finally:
                    self._placing_copy = False
                self.relocated += 1
                self.unsafe_copies += 1
        self._claim(pos, total, marker, area)
        return pos

    def _claim(self, pos: int, total: int, marker: int, area: int) -> None:
        """Make ``total`` bytes at ``pos`` writable: commit first when they (or
        the wrap marker at ``marker``, -1 for none) overlap what the committed
        header still counts, then write the marker."""
        has_marker = marker >= 0 and area - marker >= _REC.size
        if self._overlaps_committed(pos, total) or (
            has_marker and self._overlaps_committed(marker, _REC.size)
        ):
            self._commit()
        if has_marker:
            self._write(HEADER_SIZE + marker, _WRAP)

    def _free_spans(self) -> list[tuple[int, int, int]]:
        """The free space, where a record may go without letting any go:
        each ``(pos, bytes, marker)``, ``marker`` where a wrap marker then
        goes (-1: none).  Not wrapped: after the end, and from the area's
        start to before the start; wrapped: between the end and the start
        (a byte short of either start: a full area would look empty)."""
        start, end, area = self._start, self._end, self._area
        if start < end:
            return [(end, area - end, -1), (0, start - 1, end)]
        return [(end, start - end - 1, -1)]

    def _free_room(self) -> int:
        """The most bytes :meth:`_free_place` finds a place for."""
        return max(0, *(size for _pos, size, _marker in self._free_spans()))

    def _free_place(self, total: int) -> int | None:
        """Where ``total`` bytes go in free space, made writable (:meth:`_claim`),
        without letting any record go (None: no free space holds them)."""
        for pos, size, marker in self._free_spans():
            if total <= size:
                self._claim(pos, total, marker, self._area)
                return pos
        return None

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
        slot = _slot(
            self._generation, self._start, self._end, self.next_seq, self.overwritten, _SLOT
        )
        self._write(_SLOT_AT[self._generation % 2], slot)
        self._committed = (self._start, self._end)
        done, self._dead_after_commit = self._dead_after_commit, []
        for live in done:  # their copies are committed: the originals go
            if live.tracked:  # (not overwritten since)
                self._write(HEADER_SIZE + live.pos + _DEAD_AT, _U32.pack(live.count))

    def _write(self, at: int, data: bytes | memoryview) -> None:
        """Every write to the buffer goes through here (tests tear them)."""
        self.buf[at : at + len(data)] = data


def upgrade(buf: memoryview, max_lines: int = 0, max_bytes: int = 0) -> Journal:
    """The journal in ``buf``, of this version: one of version 1 (written
    before the fair ring, by the worker an upgrade replaces) is read, then
    written again in place as this version, with the same instance and seqs.
    Its records may hold more than its oldest-first ring did (whole batches):
    only the newest ``max_lines`` entries (and ``max_bytes`` of message, if
    set; 0: no limit) are kept, as that ring's replay kept them, and every seq
    before the first kept counts in ``overwritten`` (an oldest-first ring's
    holes are all before its first entry).  The rewrite takes a few
    milliseconds; a kill within them loses the ring."""
    old = Journal(buf)
    if old.version == VERSION:
        return old
    records = list(old.records())
    kept = held = 0  # the newest entries the old ring held, and their bytes
    for record in reversed(records):
        for line in reversed(record.lines):
            over = (max_lines and kept >= max_lines) or (
                max_bytes and kept and held + len(line) > max_bytes
            )
            if over:
                break
            kept += 1
            held += len(line)
        else:
            continue
        break
    keep_from = old.next_seq - kept if records else old.next_seq
    header = new_header(HEADER_SIZE + old._area, old.instance)
    buf[: len(header)] = header
    journal = Journal(buf)
    for record in records:
        skip = max(0, keep_from - record.first_seq)
        lines = record.lines[skip:]
        if lines:
            journal.append_lines(
                record.first_seq + skip,
                record.time_ns,
                record.source,
                Lines.of(lines),
                len(lines),
                keep_from,
            )
    journal.next_seq = max(journal.next_seq, old.next_seq)
    journal.commit(keep_from - 1)
    return journal
