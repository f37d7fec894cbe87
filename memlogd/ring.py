"""The bounded in-memory ring of log entries (docs/memlogd.md). PURE: no I/O.

Entries are kept as their encoded JSON bytes (encoded once, shared by every
reader), with a reference to the :class:`Batch` they were read in (source and
time, shared by all lines of one read) and their message size in bytes.

Every entry has a ``seq``: 1 for the first entry of the ring's life, one more
for each next entry.  The ring holds the entries ``first_seq .. next_seq - 1``
in a circular list of ``max_lines`` slots, so a reader's cursor is a seq and
finding its place is arithmetic.  When full (by lines, or by message bytes if
``max_bytes`` is set) the oldest entries go; ``overwritten`` counts them.

Batches are written with slice assignment and read with slicing: no Python
work per line on the hot path.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batch:
    """What the lines of one read have in common."""

    source: str
    time_ns: int


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
    read (overwritten); ``data`` starts at seq ``start``; the next cursor is
    ``start + len(data)``."""

    missed: int
    start: int
    data: list[bytes]

    @property
    def next_seq(self) -> int:
        return self.start + len(self.data)


class Ring:
    __slots__ = (
        "_cap",
        "_data",
        "_max_bytes",
        "_meta",
        "_sizes",
        "bytes",
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
        self._cap = max_lines
        self._max_bytes = max_bytes
        self._data: list[bytes] = [b""] * max_lines
        self._meta: list[Batch | None] = [None] * max_lines
        self._sizes = array("l", [0]) * max_lines  # machine ints: no object per entry
        if first_seq < 1:
            raise ValueError("first_seq must be at least 1")
        self.first_seq = first_seq
        self.next_seq = first_seq
        self.bytes = 0
        self.overwritten = 0

    def __len__(self) -> int:
        return self.next_seq - self.first_seq

    @property
    def capacity(self) -> int:
        return self._cap

    # ------------------------------------------------------------------ writing

    def _put(self, seq: int, values: Sequence[T], target: MutableSequence[T]) -> None:
        """Write ``values`` into the slots of seq .. seq+len-1 (at most two slices)."""
        start = seq % self._cap
        first = min(len(values), self._cap - start)
        target[start : start + first] = values[:first]
        if first < len(values):
            target[: len(values) - first] = values[first:]

    def _get(self, seq: int, count: int, source: list[T]) -> list[T]:
        start = seq % self._cap
        end = start + count
        if end <= self._cap:
            return source[start:end]
        return source[start:] + source[: end - self._cap]

    def _size_of(self, seq: int, count: int) -> int:
        """Message bytes of the entries seq .. seq+count-1."""
        start = seq % self._cap
        end = start + count
        sizes = self._sizes
        if end <= self._cap:
            return sum(sizes[start:end])
        return sum(sizes[start:]) + sum(sizes[: end - self._cap])

    def extend(self, batch: Batch, encoded: Sequence[bytes], sizes: Iterable[int]) -> int:
        """Append the entries of one batch (``sizes``: their message bytes, in order);
        returns the ring's new ``next_seq``."""
        n = len(encoded)
        size_of = array("l", sizes)
        if n == 0:
            return self.next_seq
        if n > self._cap:  # only the newest fit; the rest pass through at once
            self._evict(len(self))
            skipped = n - self._cap
            self.overwritten += skipped
            self.next_seq += skipped
            self.first_seq = self.next_seq
            encoded, size_of, n = encoded[skipped:], size_of[skipped:], self._cap
        overflow = len(self) + n - self._cap
        if overflow > 0:  # the oldest entries make room
            self._evict(overflow)
        seq = self.next_seq
        self._put(seq, encoded, self._data)
        self._put(seq, size_of, self._sizes)
        self._put(seq, [batch] * n, self._meta)
        self.next_seq = seq + n
        self.bytes += sum(size_of)
        if self._max_bytes and self.bytes > self._max_bytes:
            self._evict_bytes()
        return self.next_seq

    def _evict(self, count: int) -> None:
        count = min(count, len(self))
        if count <= 0:
            return
        self.bytes -= self._size_of(self.first_seq, count)
        self._put(self.first_seq, [None] * count, self._meta)  # free the batches
        self._put(self.first_seq, [b""] * count, self._data)
        self.first_seq += count
        self.overwritten += count

    def _evict_bytes(self) -> None:
        """Drop the oldest entries until the bytes fit (the newest always stays)."""
        excess = self.bytes - self._max_bytes
        count = 0
        seq = self.first_seq
        while excess > 0 and seq < self.next_seq - 1:
            excess -= self._sizes[seq % self._cap]
            seq += 1
            count += 1
        self._evict(count)

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
        data: list[bytes] = self._get(cursor, count, self._data) if count else []
        return Slice(missed, cursor, data)

    def snapshot(self) -> Slice:
        """Every entry held now: references, so it stays whole however slowly it is sent."""
        return self.read(self.first_seq)

    def batches(self, start: int, count: int) -> list[Batch]:
        """The batch of each entry ``start .. start+count-1`` (all held)."""
        if start < self.first_seq or start + count > self.next_seq:
            raise IndexError("entries not held")
        return self._get(start, count, self._meta)  # type: ignore[arg-type]

    def last_of(self, source: str) -> bytes | None:
        """The newest entry held of ``source`` (its encoded JSON), if any."""
        batches = self.batches(self.first_seq, len(self))
        for offset in range(len(batches) - 1, -1, -1):
            if batches[offset].source == source:
                return self._get(self.first_seq + offset, 1, self._data)[0]
        return None

    def held_by_source(self) -> Counter[str]:
        """How many entries each source has in the ring now (for stats)."""
        return Counter(b.source for b in self.batches(self.first_seq, len(self)))

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
