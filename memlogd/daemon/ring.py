"""The bounded in-memory ring of log entries (docs/memlogd.md). PURE: no I/O.

The ring holds *blocks*: the entries of one batch (the lines of one read,
with their source and time) encoded to JSON once, back to back in one
``bytes`` object, each entry ending in ``\\n``.  There is no object per entry:
a reader is sent a block as it is, or a slice of it (BENCHMARKS.md, "Long
lines").  A :class:`Block` knows its count of entries and their message
bytes; where each entry ends (in its encoded bytes and in the lines it was
made of) it knows from the start, or finds from its bytes the first time a
reader or an eviction cuts it in the middle.

Every entry has a ``seq``: 1 for the first entry of the ring's life, one more
for each next entry.  The ring holds the entries ``first_seq .. next_seq - 1``;
the oldest block may be held only in part.  When full (by lines, or by
message bytes if ``max_bytes`` is set) the oldest entries go;
``overwritten`` counts them.  Finding a seq is a bisection over the blocks.
"""

from __future__ import annotations

import builtins
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, count
from operator import attrgetter, sub

_FIRST_SEQ = attrgetter("first_seq")


class Block:
    """The entries of one batch: ``data`` is their encoded JSON, each ending in
    ``\\n`` (an entry never contains one).  ``ends[i]`` is where line ``i``
    ended in the lines joined with ``\\n`` (memlogd.daemon.lines.Lines).  Where entry
    ``i`` ends in ``data`` is ``enc_ends[i]``, or when every entry is its line
    between a fixed prefix and suffix, ``ends[i] + 1 + (i + 1) * step``.  In
    that case ``ends`` may be given as None with the ``count`` of entries: it
    is then found from ``data`` when first needed (a block read or evicted
    whole never needs it)."""

    __slots__ = (
        "_ends",
        "count",
        "data",
        "enc_ends",
        "first_seq",
        "source",
        "step",
        "time_ns",
        "total",
    )

    def __init__(
        self,
        source: str,
        time_ns: int,
        data: bytes,
        ends: list[int] | None,
        step: int = 0,
        enc_ends: list[int] | None = None,
        count: int | None = None,
    ) -> None:
        self.source = source
        self.time_ns = time_ns
        self.data = data
        self._ends = ends
        self.step = step
        self.enc_ends = enc_ends
        self.first_seq = 0  # set by Ring.extend
        if ends is not None:
            self.count = len(ends)
            self.total = ends[-1] - self.count + 1 if ends else 0  # message bytes
        elif count is None or enc_ends is not None:
            raise ValueError("a block without ends needs its count, and a step")
        else:
            self.count = count
            self.total = len(data) - count * (step + 1)  # each entry: line, step, newline

    @property
    def ends(self) -> list[int]:
        ends = self._ends
        if ends is None:  # entry i is its line and ``step`` bytes, then a newline
            entries = self.data.split(b"\n")
            entries.pop()
            lengths = accumulate(map(len, entries))
            ends = self._ends = list(map(sub, lengths, count(self.step, self.step - 1)))
        return ends

    def __len__(self) -> int:
        return self.count

    def offset(self, i: int) -> int:
        """Where entry ``i`` starts in ``data`` (``len(self)``: its end)."""
        if i <= 0:
            return 0
        if i >= self.count:
            return len(self.data)
        if self.enc_ends is not None:
            return self.enc_ends[i - 1]
        return self.ends[i - 1] + 1 + i * self.step

    def size(self, a: int, b: int) -> int:
        """Message bytes of entries ``a .. b-1``."""
        if b <= a:
            return 0
        if a == 0 and b == self.count:
            return self.total
        ends = self.ends
        return ends[b - 1] - (ends[a - 1] + 1 if a else 0) - (b - 1 - a)

    def view(self, a: int, b: int) -> bytes | memoryview:
        """The encoded entries ``a .. b-1``, each with its ``\\n``: the block
        itself when whole, else a view of it (no copy)."""
        if a == 0 and b == self.count:
            return self.data
        return memoryview(self.data)[self.offset(a) : self.offset(b)]

    def entries(self, a: int, b: int) -> list[bytes]:
        """The encoded entries ``a .. b-1`` (without ``\\n``), one object each."""
        if b <= a:
            return []
        return self.data[self.offset(a) : self.offset(b) - 1].split(b"\n")


Part = tuple[Block, int, int]  # entries a .. b-1 of a block
_GONE = Block("", 0, b"", [])  # in the place of a block that left the ring


@dataclass(frozen=True, slots=True)
class RingStats:
    entries: int
    bytes: int  # message bytes held
    capacity: int
    max_bytes: int
    first_seq: int
    next_seq: int
    overwritten: int  # entries that left the ring because it was full


@dataclass(frozen=True, slots=True)
class Slice:
    """Entries read from a cursor: ``missed`` entries were gone before the
    read (overwritten); ``parts`` hold ``count`` entries from seq ``start`` on;
    the next cursor is ``start + count``.  A slice holds references to blocks,
    which never change, so it stays whole however slowly it is sent."""

    missed: int
    start: int
    count: int
    parts: tuple[Part, ...]

    @property
    def next_seq(self) -> int:
        return self.start + self.count

    @property
    def data(self) -> list[bytes]:
        """Each entry's encoded JSON (without ``\\n``)."""
        out: list[bytes] = []
        for block, a, b in self.parts:
            out += block.entries(a, b)
        return out

    def joined(self) -> bytes:
        """The entries as sent in base mode: each with its ``\\n``, one buffer."""
        parts = self.parts
        if len(parts) == 1:
            block, a, b = parts[0]
            return bytes(block.view(a, b))
        return b"".join([block.view(a, b) for block, a, b in parts])

    def pieces(self, limit: int) -> Iterator[Slice]:
        """This slice's entries in consecutive slices of at most ``limit``
        (none when it has none; ``missed`` is left to the caller)."""
        start, taken, parts = self.start, 0, []
        for block, a, b in self.parts:
            while a < b:
                end = min(b, a + limit - taken)
                parts.append((block, a, end))
                taken += end - a
                a = end
                if taken == limit:
                    yield Slice(0, start, taken, tuple(parts))
                    start, taken, parts = start + taken, 0, []
        if parts:
            yield Slice(0, start, taken, tuple(parts))


class Ring:
    __slots__ = (
        "_blocks",
        "_cap",
        "_head",
        "_held",
        "_max_bytes",
        "first_seq",
        "next_seq",
        "overwritten",
    )

    def __init__(self, max_lines: int, max_bytes: int = 0, first_seq: int = 1) -> None:
        """``first_seq``: the seq of the first entry (a ring rebuilt from a
        journal continues its predecessor's numbering)."""
        if max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if first_seq < 1:
            raise ValueError("first_seq must be at least 1")
        self._cap = max_lines
        self._max_bytes = max_bytes
        self._blocks: list[Block] = []  # those from _head on are (at least partly) held
        self._head = 0
        self.first_seq = first_seq
        self.next_seq = first_seq
        self._held = 0  # message bytes of the blocks held, the oldest counted whole
        self.overwritten = 0

    def __len__(self) -> int:
        return self.next_seq - self.first_seq

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def bytes(self) -> int:
        """Message bytes held (the oldest block's gone entries found only now)."""
        if self._head >= len(self._blocks):
            return self._held
        block = self._blocks[self._head]
        return self._held - block.size(0, self.first_seq - block.first_seq)

    # ------------------------------------------------------------------ writing

    def extend(self, block: Block) -> int:
        """Append a batch's block (its ``first_seq`` is set here); returns the
        ring's new ``next_seq``."""
        n = len(block)
        if n == 0:
            return self.next_seq
        block.first_seq = self.next_seq
        self._blocks.append(block)
        self.next_seq += n
        self._held += block.total
        overflow = len(self) - self._cap
        if overflow > 0:  # the oldest entries make room
            self._evict(overflow)
        if self._max_bytes and self.bytes > self._max_bytes:
            self._evict_bytes()
        return self.next_seq

    def _evict(self, count: int) -> None:
        """The oldest ``count`` entries go (work per block, not per entry)."""
        blocks = self._blocks
        while count > 0:
            block = blocks[self._head]
            a = self.first_seq - block.first_seq
            take = min(count, len(block) - a)
            self.first_seq += take
            self.overwritten += take
            count -= take
            if a + take == len(block):
                self._held -= block.total
                blocks[self._head] = _GONE  # free it now
                self._head += 1
        if self._head > 32 and 2 * self._head > len(blocks):  # amortised: free old blocks
            del blocks[: self._head]
            self._head = 0

    def _evict_bytes(self) -> None:
        """Drop the oldest entries until the bytes fit (the newest always stays)."""
        while self.bytes > self._max_bytes and len(self) > 1:
            block = self._blocks[self._head]
            a = self.first_seq - block.first_seq
            b = len(block) if self.first_seq + len(block) - a < self.next_seq else len(block) - 1
            excess = self.bytes - self._max_bytes
            if block.size(a, b) < excess:
                self._evict(b - a)
                continue
            # the fewest entries a .. k-1 whose bytes cover the excess
            k = bisect_left(range(a + 1, b + 1), excess, key=lambda k: block.size(a, k)) + a + 1
            self._evict(k - a)
            return

    # ------------------------------------------------------------------ reading

    def read(self, cursor: int, limit: int | None = None) -> Slice:
        """Entries from seq ``cursor`` on (at most ``limit`` of them).

        ``missed`` counts the entries before ``first_seq`` that the cursor asked
        for: seqs start at 1, so a cursor below 1 misses nothing more than 1 does.
        """
        missed = 0
        if cursor < self.first_seq:
            missed = self.first_seq - max(cursor, 1)
            cursor = self.first_seq
        count = max(0, self.next_seq - cursor)
        if limit is not None:
            count = max(0, min(count, limit))
        return Slice(missed, cursor, count, self._parts(cursor, count))

    def _parts(self, seq: int, count: int) -> tuple[Part, ...]:
        if not count:
            return ()
        blocks = self._blocks
        i = bisect_right(blocks, seq, lo=self._head, key=_FIRST_SEQ) - 1
        parts = []
        while count:
            block = blocks[i]
            a = seq - block.first_seq
            b = min(len(block), a + count)
            parts.append((block, a, b))
            count -= b - a
            seq += b - a
            i += 1
        return tuple(parts)

    def snapshot(self) -> Slice:
        """Every entry held now: references, so it stays whole however slowly it is sent."""
        return self.read(self.first_seq)

    def last_of(self, source: str) -> builtins.bytes | None:
        """The newest entry held of ``source`` (its encoded JSON), if any."""
        blocks = self._blocks
        for i in range(len(blocks) - 1, self._head - 1, -1):
            block = blocks[i]
            if block.source == source:
                n = len(block)
                if block.first_seq + n - 1 < self.first_seq:
                    return None
                return block.entries(n - 1, n)[0]
        return None

    def held_by_source(self) -> Counter[str]:
        """How many entries each source has in the ring now (for stats)."""
        held: Counter[str] = Counter()
        for block, a, b in self._parts(self.first_seq, len(self)):
            held[block.source] += b - a
        return held

    def statistics(self) -> RingStats:
        return RingStats(
            entries=len(self),
            bytes=self.bytes,
            capacity=self._cap,
            max_bytes=self._max_bytes,
            first_seq=self.first_seq,
            next_seq=self.next_seq,
            overwritten=self.overwritten,
        )
