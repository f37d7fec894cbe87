"""Lines read together, without an object per line. PURE: no I/O.

:class:`memlogd.daemon.framing.LineSplitter` returns the complete lines of a read as
one :class:`Lines`: the partial line carried over from the previous read
(``head``), the read itself (``body``) up to its last newline (``stop``), and
where each line ends.  Nothing is copied to make it, and what is made of it
(the ring's JSON block, the console echo) is made with one ``replace`` and
one ``join`` of the whole (BENCHMARKS.md, "Long lines").
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate, count
from operator import add


class Lines:
    """The lines ``(head + body[:stop]).split(b"\\n")``; ``ends[i]`` is the
    offset, in ``head + body[:stop]``, just past line ``i`` (the last is its
    length).  ``body[stop]``, if any, is a newline; no line contains one.
    ``ends`` may be left to be found when first asked for (``None``): most
    batches of short lines never need it."""

    __slots__ = ("_ends", "_tail", "body", "head", "stop")

    def __init__(self, head: bytes, body: bytes, stop: int, ends: list[int] | None) -> None:
        self.head = head
        self.body = body
        self.stop = stop
        self._ends = ends
        self._tail: tuple[int, int] | None = None  # (a, where line a starts in body)

    @property
    def known_ends(self) -> list[int] | None:
        """:attr:`ends` if found already, else None."""
        return self._ends

    @property
    def ends(self) -> list[int]:
        ends = self._ends
        if ends is None:
            ends = self._ends = ends_of(self.raw.split(b"\n"))
        return ends

    @classmethod
    def of(cls, lines: list[bytes]) -> Lines:
        if not lines:
            return EMPTY
        raw = b"\n".join(lines)
        return cls(b"", raw, len(raw), ends_of(lines))

    def __len__(self) -> int:
        return len(self.ends)

    def __bool__(self) -> bool:
        """Whether there is a line (without finding where each ends)."""
        return self._ends is None or bool(self._ends)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lines):
            return NotImplemented
        return self.raw == other.raw and self.ends == other.ends

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lines.of({self.split()!r})"

    @property
    def raw(self) -> bytes:
        """The lines joined with ``\\n`` (a copy, unless there is no head)."""
        if not self.head and self.stop == len(self.body):
            return self.body
        return self.head + self.body[: self.stop]

    def offset(self, i: int) -> int:
        """Where line ``i`` starts in :attr:`raw` (``len(self)``: its length + 1)."""
        return self.ends[i - 1] + 1 if i > 0 else 0

    def pieces(self, a: int = 0, b: int | None = None) -> tuple[bytes, memoryview]:
        """Lines ``a .. b-1`` joined with ``\\n``, as two pieces of :attr:`raw`,
        without copying the body."""
        if b is None:  # all of them: no need to know where each ends
            return self.head, memoryview(self.body)[: self.stop]
        start = self.offset(a)
        end = self.ends[b - 1] if b > a else start
        head = self.head
        at = len(head)
        body = memoryview(self.body)[max(0, start - at) : max(0, end - at)]
        return head[start:end], body

    def tail(self, a: int, n: int) -> tuple[bytes, memoryview]:
        """Lines ``a .. n-1`` of the ``n`` there are, as :meth:`pieces` gives
        them; when few of them, found from the end without finding where
        every line ends (line ``a`` starts after a newline of the body: the
        head, part of line 0, has none)."""
        if self._ends is not None or 2 * a < n:
            return self.pieces(a, n)
        known = self._tail
        if known is not None and known[0] == a:  # asked again (LogState, then the journal)
            return b"", memoryview(self.body)[known[1] : self.stop]
        body, stop = self.body, self.stop
        at = line_start(body, stop, n, a)
        self._tail = (a, at)
        return b"", memoryview(body)[at:stop]

    def fit(self, a: int, room: int) -> int:
        """The most lines from line ``a`` on (at least one) whose joined bytes
        are at most ``room``: the ``b`` of the lines ``a .. b-1``."""
        return max(a + 1, bisect_right(self.ends, self.offset(a) + room, lo=a))

    def split(self) -> list[bytes]:
        """The lines, one bytes object each."""
        return self.raw.split(b"\n") if self.ends else []

    def joined_with(self, lead: bytes, sep: bytes, tail: bytes) -> tuple[bytes, int]:
        """``lead + line0 + sep + line1 + ... + sep + lastline + tail``, made by
        one ``replace`` of the body and one ``join``, and the number of lines
        (read off the lengths: ``sep`` is longer than the newline it replaces)."""
        if len(sep) < 2:
            raise ValueError("the separator must be longer than a newline")
        body, stop = self.body, self.stop
        replaced = body.replace(b"\n", sep)  # what follows stop is replaced too, then cut
        newlines = (len(replaced) - len(body)) // (len(sep) - 1)
        cut = len(replaced)
        if stop < len(body):
            cut -= len(sep) + len(body) - stop - 1
            newlines -= 1
        return b"".join((lead, self.head, memoryview(replaced)[:cut], tail)), newlines + 1


def line_start(data: bytes, stop: int, n: int, a: int) -> int:
    """Where line ``a`` (at least 1; ``n``: past the last, ``stop + 1``)
    starts in ``data``, whose ``n`` lines end at ``stop`` (each but the last
    with a newline; the first may start before ``data``): after the newline
    that ends line ``a-1``, the ``(n-a)``-th before ``stop``.  Looked for
    half a line before where it would be with lines of even length, the
    newlines from there counted in C, then one line at a time: a few calls
    for most reads, where a search line by line from the end took one a line."""
    if a <= 0:
        return 0
    k = n - a
    if k <= 0:  # line n: none, past the newline after the last
        return stop + 1
    at = data.find(b"\n", max(0, stop - (2 * k + 1) * stop // (2 * n)), stop)  # (half a line early)
    # (bytes.count of one byte looks at every byte; replace finds each
    # newline with memchr: three times faster with lines of 100 bytes)
    found = stop - at - len(data[at:stop].replace(b"\n", b"")) if at >= 0 else 0
    if at < 0:
        at = stop
    while found < k:
        at = data.rfind(b"\n", 0, at)
        found += 1
    while found > k:
        at = data.find(b"\n", at + 1)
        found -= 1
    return at + 1


def ends_of(lines: list[bytes], past: int = 0) -> list[int]:
    """Where each of ``lines`` ends when they are joined with ``\\n`` (plus
    ``past``: 1 gives where the next one starts)."""
    return list(map(add, accumulate(map(len, lines)), count(past)))


EMPTY = Lines(b"", b"", 0, [])
