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
for each next entry.  When full (by lines, or by message bytes if
``max_bytes`` is set) entries go (``overwritten`` counts them) by the ring's
policy (SPEC 14, docs/memlogd.md "Which entries go"): ``fair`` drops the
oldest entry of the source (a name) holding the most entries (by count when
over ``max_lines``, by message bytes when over ``max_bytes``; ties to the
source whose oldest entry is oldest); ``oldest`` drops the oldest entry.
Either way a source loses its oldest entries first, so each block is held
from some entry on (``Block.start``) to its end, and the ring in ``seq``
order may have holes.  A read from a cursor lists them (``Slice.gaps``).

The largest source is the top of a heap (stale entries are skipped), so a
dropped block costs O(log sources); once full, fair by count, the ring keeps
a level instead (the sources at it lose an entry each as a cursor moves
over them: see "the level" below); finding a seq is a bisection over the
blocks, gone ones included until they are more than half of them
(O(held blocks)).  A partly held block over 16 KiB of which less than two
thirds (oldest-first: half) is still held is compacted: what it holds is
copied into a new block.
"""

from __future__ import annotations

import builtins
import heapq
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, compress, count
from operator import attrgetter, lt, sub

from memlogd.daemon.lines import line_start

_FIRST_SEQ = attrgetter("first_seq")
_START = attrgetter("start")
_COUNT = attrgetter("count")
_COMPACT_ABOVE = 16384  # bytes: a smaller block is never copied to free what left it
_push = heapq.heappush
_pop = heapq.heappop


def _most_compacted(count: int, fair: bool) -> int:
    """The most of a block's ``count`` entries it may hold and be compacted
    (when over 16 KiB): less than two thirds of them under the fair policy
    (else a flood's first blocks hold the ring twice over while the level
    falls), less than half oldest-first (the block held in part is the
    oldest, which the room made next takes next: a copy is mostly wasted)."""
    return (2 * count - 1) // 3 if fair else (count - 1) // 2


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
        "_known",
        "count",
        "data",
        "enc_ends",
        "first_seq",
        "origin",
        "source",
        "start",
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
        self.first_seq = 0  # set by Ring.append
        self.origin = 0  # the seq of the batch's first entry (kept when compacted)
        self.start = 0  # the ring holds entries start .. count-1 (count: none)
        self._known: tuple[int, int] | None = None  # (i, where entry i starts): remember
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

    def remember(self, i: int, tail: int) -> None:
        """The lines of entries ``i`` on take ``tail`` bytes joined with
        newlines (LogState found them for the journal: Lines.tail): where
        entry ``i`` starts follows, in a block of one ``step``, without
        finding where each entry ends (the fair ring cuts it there next)."""
        if self.enc_ends is None and 0 < i < self.count:
            self._known = (i, len(self.data) - tail - 1 - (self.count - i) * self.step)

    def offset(self, i: int) -> int:
        """Where entry ``i`` starts in ``data`` (``len(self)``: its end)."""
        if i <= 0:
            return 0
        if i >= self.count:
            return len(self.data)
        known = self._known
        if known is not None and known[0] == i:
            return known[1]
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

    def compacted(self) -> Block:
        """A new block of the entries held (``start`` on): the same ``source``,
        ``time_ns`` and ``origin``, its ``first_seq`` that of its first entry."""
        a, n = self.start, self.count
        known = self._known
        if known is not None and known[0] == a:
            data = self.data[known[1] :]
        elif self.enc_ends is None and self._ends is None:  # the held ones' start, from the end
            data = self.data
            data = data[line_start(data, len(data) - 1, n, a) :]
        else:
            data = self.data[self.offset(a) :]
        if self.enc_ends is None:
            block = Block(self.source, self.time_ns, data, None, self.step, count=n - a)
        else:
            ends, base = self.ends, self.ends[a - 1] + 1 if a else 0
            at = self.offset(a)
            block = Block(
                self.source,
                self.time_ns,
                data,
                [e - base for e in ends[a:]],
                enc_ends=[e - at for e in self.enc_ends[a:]],
            )
        block.first_seq = self.first_seq + a
        block.origin = self.origin
        return block


Part = tuple[Block, int, int]  # entries a .. b-1 of a block
Cut = tuple[int, int, str]  # a block cut: its origin, the seq it is held from now, its source
Gap = tuple[int, int]  # a run of seqs not held: its first seq, how many


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
    """Entries read from a cursor: the seqs ``start .. end-1``, each either
    held (in ``parts``) or not (a run of them in ``gaps``, in seq order); the
    next cursor is ``end``.  A snapshot has no gaps (it lists what is held).
    A slice holds references to blocks, whose bytes never change, so it stays
    whole however slowly it is sent."""

    start: int
    end: int
    parts: tuple[Part, ...]
    gaps: tuple[Gap, ...] = ()

    @property
    def next_seq(self) -> int:
        return self.end

    @property
    def missed(self) -> int:
        """Seqs of the slice not held (overwritten before the read)."""
        return sum(n for _, n in self.gaps)

    @property
    def count(self) -> int:
        """Entries held in the slice."""
        return sum(b - a for _, a, b in self.parts)

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

    def items(self) -> Iterator[Part | Gap]:
        """Parts and gaps merged in seq order (a gap is a pair, a part a triple)."""
        gaps, g = self.gaps, 0
        for part in self.parts:
            seq = part[0].first_seq + part[1]
            while g < len(gaps) and gaps[g][0] < seq:
                yield gaps[g]
                g += 1
            yield part
        yield from gaps[g:]

    def pieces(self, limit: int) -> Iterator[Slice]:
        """This slice in consecutive slices of at most ``limit`` entries each
        (gaps go with the entries that follow them; none when it is empty)."""
        start, taken = self.start, 0
        parts: list[Part] = []
        gaps: list[Gap] = []
        for item in self.items():
            if len(item) == 2:
                gaps.append(item)
                continue
            block, a, b = item
            while a < b:
                end = min(b, a + limit - taken)
                parts.append((block, a, end))
                taken += end - a
                a = end
                if taken == limit:
                    stop = block.first_seq + end
                    yield Slice(start, stop, tuple(parts), tuple(gaps))
                    start, taken, parts, gaps = stop, 0, [], []
        if parts or gaps:
            yield Slice(start, max(start, self.end), tuple(parts), tuple(gaps))


class _Source:
    """What the ring knows of one source name: its blocks held (from
    ``head`` on, the first maybe in part), how many entries and message bytes
    (in ``fair`` mode with ``max_bytes``: exact; else its blocks counted
    whole), and how many of its entries were evicted."""

    __slots__ = (
        "bkey",
        "blocks",
        "bp",
        "bytes",
        "count",
        "evicted",
        "head",
        "key",
        "lazy",
        "name",
        "order",
        "place",
        "rkey",
    )

    def __init__(self, name: str, order: int) -> None:
        self.name = name
        self.order = order  # ties in the heap never compare sources
        self.blocks: list[Block] = []
        self.head = 0
        self.count = 0
        self.bytes = 0
        self.evicted = 0
        # its keys in the ring's heaps now (any other key of it there is stale)
        self.key: _Key | None = None
        self.bkey: _Key | None = None
        # the level (Ring._evict_level): of its ``count`` entries in the blocks,
        # the oldest ``lazy`` left the ring (``count - lazy`` held; at the level,
        # Ring._lazy_of); where it is (_ABOVE, _AT: at the level, in ring._at as
        # ``rkey``, or below: its count); at the level, ``bp``: the level at
        # which its oldest block's entries are looked at again (Ring._watch)
        self.lazy = 0
        self.place = _NOWHERE
        self.rkey: _AtKey | None = None
        self.bp = 0

    @property
    def oldest(self) -> int:
        """The seq of its oldest entry held (only while it holds one)."""
        block = self.blocks[self.head]
        return block.first_seq + block.start


_Key = tuple[int, int, int, _Source]  # -size, oldest seq, order, source
_AtKey = tuple[int, int, _Source]  # anchor (oldest seq held + count held), order, source
_BpKey = tuple[int, int, _Source]  # -bp, order, source
_NOWHERE, _ABOVE, _AT = -3, -2, -1  # _Source.place; a count (>= 0): below the level

POLICIES = ("fair", "oldest")


class Ring:
    __slots__ = (
        "_above",
        "_at",
        "_below",
        "_blocks",
        "_bps",
        "_by_bytes",
        "_by_count",
        "_cap",
        "_count",
        "_cut",
        "_dropped",
        "_exact",
        "_fair",
        "_gone",
        "_head",
        "_held",
        "_lazy",
        "_level",
        "_max_bytes",
        "_orders",
        "_protect",
        "_solo",
        "_sources",
        "next_seq",
        "trimmed",
    )

    def __init__(
        self, max_lines: int, max_bytes: int = 0, first_seq: int = 1, policy: str = "fair"
    ) -> None:
        """``first_seq``: the seq of the first entry (a ring rebuilt from a
        journal continues its predecessor's numbering).  ``policy``: ``fair``
        or ``oldest`` (which entries go when full)."""
        if max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if first_seq < 1:
            raise ValueError("first_seq must be at least 1")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        self._cap = max_lines
        self._max_bytes = max_bytes
        self._fair = policy == "fair"
        self._exact = bool(max_bytes)  # message bytes kept exact as entries go
        self._blocks: list[Block] = []  # in seq order; from _head on, gone ones among them
        self._head = 0  # the first block held
        self._gone = 0  # gone blocks in _blocks
        self.next_seq = first_seq
        self._count = 0
        self._held = 0  # message bytes held (see _Source.bytes)
        self._dropped = 0  # entries dropped from the blocks (``overwritten`` less the lazy)
        self._sources: dict[str, _Source] = {}
        self._orders = 0  # sources made (a forgotten one's number is not given again)
        self._by_count: list[_Key] = []  # fair: heaps of the sources, stale keys skipped
        self._by_bytes: list[_Key] = []
        self._protect: int | None = None
        # set to a list: each cut of a block by an eviction, noted as the block's
        # origin, the seq it is held from now (past its end: gone) and its source
        # (not the block: one that is gone is freed at once, and its memory is
        # there for the copy of the next block compacted)
        self.trimmed: list[Cut] | None = None
        # fair by count, once full: the level (docs in _evict_level), None before
        self._level: int | None = None
        self._above = 0  # the sources above it: in the heap, or the one there is _solo
        self._solo: _Source | None = None
        self._at: list[_AtKey] = []  # the sources at the level, by their oldest entry
        self._cut = 0  # the first _cut of them hold one less (they lost one at this level)
        self._below: dict[int, set[_Source]] = {}  # the others under it, by count held
        self._bps: list[_BpKey] = []  # a heap of those at it by their ``bp`` (stale ones skipped)
        self._lazy = 0  # entries that left the ring still in its blocks (sum of lazy)

    def __len__(self) -> int:
        return self._count - self._lazy

    def _order(self) -> int:
        self._orders += 1
        return self._orders

    @property
    def overwritten(self) -> int:
        """Entries that left the ring because it was full."""
        return self._dropped + self._lazy

    @overwritten.setter
    def overwritten(self, value: int) -> None:  # a ring rebuilt from a journal
        self._dropped = value - self._lazy

    @property
    def dropped(self) -> int:
        """``overwritten`` less the entries that left the ring but are still in
        its blocks (what a journal of the blocks counts: docs in _evict_level)."""
        return self._dropped

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def policy(self) -> str:
        return "fair" if self._fair else "oldest"

    @property
    def first_seq(self) -> int:
        """The seq of the oldest entry held (``next_seq`` when empty)."""
        blocks = self._blocks
        if not self._lazy:
            if self._head >= len(blocks):
                return self.next_seq
            block = blocks[self._head]
            return block.first_seq + block.start
        for i in range(self._head, len(blocks)):
            block = blocks[i]
            start = self._start_of(block)
            if start < block.count:
                return block.first_seq + start
        return self.next_seq

    @property
    def first_block_seq(self) -> int:
        """The seq of the oldest entry still in the blocks (``first_seq`` but
        for entries that left the ring lazily: what a journal may drop before)."""
        blocks = self._blocks
        if self._head >= len(blocks):
            return self.next_seq
        block = blocks[self._head]
        return block.first_seq + block.start

    def _start_of(self, block: Block) -> int:
        """The first entry of ``block`` the ring holds (``count``: none)."""
        start = block.start
        if self._lazy:
            source = self._sources.get(block.source)
            if source is not None and self._lazy_of(source):
                cut = self._oldest_held(source) - block.first_seq
                if cut > start:
                    return min(cut, block.count)
        return start

    def _oldest_held(self, source: _Source) -> int:
        """The seq of the oldest entry the source holds (its ``lazy`` oldest
        skipped; none held: past its newest)."""
        return self._seq_at(source, self._lazy_of(source))

    @property
    def bytes(self) -> int:
        """Message bytes held (the gone entries of partly held blocks found only now)."""
        if self._exact:
            return self._held
        held = self._held
        for source in self._sources.values():
            if source.count:
                block = source.blocks[source.head]
                if block.start:
                    held -= block.size(0, block.start)
                k, j = self._lazy_of(source), source.head
                while k:  # entries that left lazily
                    block = source.blocks[j]
                    n = min(k, block.count - block.start)
                    held -= block.size(block.start, block.start + n)
                    k -= n
                    j += 1
        return held

    # ------------------------------------------------------------------ writing

    def extend(self, block: Block) -> int:
        """Append a batch's block and make room; returns the new ``next_seq``."""
        self.append(block)
        self.evict()
        return self.next_seq

    def append(self, block: Block) -> int:
        """Append a batch's block (its ``first_seq`` is set here) without making
        room yet (:meth:`evict`); returns the ring's new ``next_seq``."""
        n = block.count
        if n == 0:
            return self.next_seq
        block.first_seq = block.origin = self.next_seq
        self._blocks.append(block)
        self.next_seq += n
        self._count += n
        self._held += block.total
        source = self._sources.get(block.source)
        if source is None:
            source = self._sources[block.source] = _Source(block.source, self._order())
        elif source.place == _AT:
            self._leave(source)  # (its ``lazy`` count set)
            level = self._level
            assert level is not None
            # alone above the level now, it keeps the entries that left lazily
            # until the room is made: they go with what the room takes of it
            if source.lazy and (self._above or source.count - source.lazy + n <= level):
                self._materialize(source)
        elif source.lazy:
            self._materialize(source)
        source.blocks.append(block)
        source.count += n
        source.bytes += block.total
        if self._fair:
            level = self._level
            held = source.count - source.lazy
            if level is not None and source.place == _NOWHERE and held > level:
                self._go_above(source)  # (what _place does then, without its checks)
            else:
                self._note(source)
        return self.next_seq

    def skip_to(self, seq: int) -> None:
        """A ring rebuilt from a journal: the seqs up to ``seq`` not held are a hole."""
        self.next_seq = max(self.next_seq, seq)

    @property
    def over(self) -> bool:
        """Whether the ring holds more than its limits (entries must go)."""
        return self._count - self._lazy > self._cap or (
            self._max_bytes > 0 and self._held > self._max_bytes and self._count > 1
        )

    def evict(self, protect: int | None = None) -> None:
        """Drop entries by the policy until the ring is within its limits
        (lines first, then bytes; the last entry always stays).  Entries from
        seq ``protect`` on (not yet handed to a follower) do not go: the
        eviction stops before the first of them, the ring over its limits."""
        self._protect = protect
        over = self._count - self._lazy - self._cap
        if over > 0 and self._level is not None:
            self._evict_level(over)
            return
        if over > 0 and not self._evict_lines(over):
            return  # the next entry to go is protected: nothing else goes first
        if over > 0 and self._fair and not self._max_bytes:
            self._start_level()
        if self._max_bytes and self._held > self._max_bytes and self._count > 1:
            self._evict_bytes()

    def _allowed(self, source: _Source, k: int) -> int:
        """How many of the source's ``k`` oldest entries held may go: those
        before the first a follower has not been handed (``protect``)."""
        protect = self._protect
        if protect is None:
            return k
        done = 0
        for first, held in self._runs(source):
            if protect < first + held or done + held >= k:
                return min(k, done + max(0, protect - first))
            done += held
        return done

    def _note(self, source: _Source) -> None:
        """Push the source's key (its older keys become stale): called after
        every change of its count, bytes or oldest entry.  Once the ring keeps
        a level, the source goes where it belongs (:meth:`_place`)."""
        if self._level is not None:
            self._place(source)
            return
        if not source.count:
            source.key = source.bkey = None
            return
        self._push_keys(source)

    def _push_keys(self, source: _Source) -> None:
        """Push the keys of a source that holds entries, none of them lazily."""
        oldest = source.oldest
        heap = self._by_count
        source.key = key = (-source.count, oldest, source.order, source)
        _push(heap, key)
        if self._exact:
            source.bkey = key = (-source.bytes, oldest, source.order, source)
            _push(self._by_bytes, key)
        if len(heap) > 4 * len(self._sources) + 64:  # many stale keys: start again
            self._rebuild_heaps()

    def _rebuild_heaps(self) -> None:
        by_count: list[_Key] = []
        by_bytes: list[_Key] = []
        leveled = self._level is not None
        for s in self._sources.values():
            if s.count and (not leveled or (s.place == _ABOVE and s is not self._solo)):
                s.key = key = (-s.count, s.oldest, s.order, s)
                by_count.append(key)
                if self._exact:
                    s.bkey = key = (-s.bytes, key[1], s.order, s)
                    by_bytes.append(key)
        heapq.heapify(by_count)
        heapq.heapify(by_bytes)
        self._by_count, self._by_bytes = by_count, by_bytes

    @staticmethod
    def _top(heap: list[_Key], by_bytes: bool) -> _Key | None:
        """The valid key of the largest source (stale keys above it popped)."""
        while heap:
            key = heap[0]
            source = key[3]
            if key is (source.bkey if by_bytes else source.key):
                return key
            _pop(heap)
        return None

    def _choose(self, by_bytes: bool) -> tuple[_Source, _Key | None]:
        """The source whose oldest entry goes next, and (fair) the next in line."""
        if not self._fair:
            block = self._blocks[self._head]
            return self._sources[block.source], None
        heap = self._by_bytes if by_bytes else self._by_count
        top = self._top(heap, by_bytes)
        assert top is not None, "the ring holds entries"
        heapq.heappop(heap)
        second = self._top(heap, by_bytes)
        return top[3], second

    def _evict_lines(self, need: int) -> bool:
        """False when it stopped at a protected entry."""
        if self._fair and need > 1 and self._level_all(need):
            return True
        while need > 0:
            source, second = self._choose(False)
            block = source.blocks[source.head]
            k = min(need, block.count - block.start)
            if second is not None:  # it stays the largest while it has more
                k = max(1, min(k, source.count + second[0]))
            k = self._allowed(source, k)
            if not k:  # a follower has not been handed it yet
                if self._fair:
                    self._note(source)
                return False
            self._drop(source, k)
            need -= k
        return True

    def _level_all(self, need: int) -> bool:
        """Fair by count, all at once: the largest sources are cut down to one
        level ``L`` (and ``r`` of those then at ``L``, those whose oldest entry
        is oldest, lose one more), which is what dropping the largest source's
        oldest entry ``need`` times gives, with one drop per source instead of
        one per entry among sources of equal size.  False (nothing done) when
        an entry that would go is protected: the caller goes entry by entry."""
        heap = self._by_count
        taken: list[_Source] = []  # the sources above the level
        total = 0
        level = 0
        while (top := self._top(heap, False)) is not None and (not taken or top[3].count > level):
            heapq.heappop(heap)
            taken.append(top[3])
            total += top[3].count
            level = -(-(total - need) // len(taken))  # ceil: then r of them one less
        r = len(taken) * level - (total - need)
        protect = self._protect
        cuts = []
        for s in taken:
            k = s.count - level
            if k and protect is not None and self._seq_at(s, k - 1) >= protect:
                for t in taken:
                    self._note(t)
                return False
            cuts.append((self._seq_at(s, k), s.order, s, k))
        cuts.sort()  # by their oldest entry once cut down to the level
        # r more, one each, from the sources at the level whose oldest is oldest:
        # those cut down, or those that were at the level (in the heap's order)
        extra: list[tuple[_Source, int]] = []
        i = 0
        while len(extra) < r:
            top = self._top(heap, False)
            at_level = top is not None and top[3].count == level
            if i < len(cuts) and (top is None or not at_level or cuts[i][0] < top[1]):
                extra.append((cuts[i][2], cuts[i][3] + 1))
                i += 1
                continue
            assert top is not None
            heapq.heappop(heap)
            extra.append((top[3], 1))
        if protect is not None and any(self._seq_at(s, k - 1) >= protect for s, k in extra):
            for t in taken:
                self._note(t)
            for t, _k in extra:
                if t.count - level <= 0:  # popped at the level, not among those taken
                    self._note(t)
            return False
        plan = {c[2].order: (c[2], c[3]) for c in cuts[i:]}
        for s, k in extra:
            plan[s.order] = (s, k)
        for s, k in plan.values():
            if not k:
                self._note(s)  # unchanged: its key back
            if k:
                self._drop(s, k)
        return True

    # ----------------------------------------------------- the level (fair, by count)
    #
    # Fair by count, the entries held do not depend on when room is made (the
    # largest sources are cut down to one level, the oldest first among equals:
    # tests/unit/test_ring.py), so once the ring is full it keeps that level
    # ``L`` instead of a heap of every source.  Each source is above it (just
    # appended to: in the heap, cut by the largest first, down to ``L`` at
    # most), at it (in ``_at``), or below it (in ``_below``, by count).
    # When room is needed the sources above go first; then the sources at the
    # level lose their oldest entry each, in the order of their oldest entry,
    # without touching their blocks: that its oldest entries left the ring is
    # a count (``lazy``: readers skip them, stats count them out).  Nor are the
    # sources at the level touched one by one: ``_at`` is in that order and
    # the first ``_cut`` of them lost one at this level, so the level's loss
    # is a cursor moved.  When none is left at the level it goes down by one:
    # ``_cut`` is 0 again, and those below at the new level join.  Each source
    # at the level is kept in ``_at`` by its *anchor*, the seq of its oldest
    # entry held plus the count it holds: that stays the same as the level
    # goes down while its oldest entry held is in its oldest block, so the
    # order of ``_at`` is that of every level below.  A source is looked at
    # again only at its ``bp``, the level at which its oldest block's entries
    # all left (or, for a block over 16 KiB, more than a third of them): then the
    # entries that left are dropped from the blocks (and then from the
    # journal) and it has a new anchor.  So a batch costs the ring O(log
    # sources), and a level O(sources whose oldest block then goes), instead
    # of a count and a drop of each source.  The entries that left lazily are
    # also dropped from the blocks when the source is appended to (alone
    # above the level then, with what the room made next takes of it) or
    # forgotten: memory stays within what is held plus one oldest block a
    # source.  A journal of the blocks holds more than the ring then, with
    # consistent counts (``dropped``, ``dropped_of``), and a replay that makes
    # room gives this ring back.

    def _lazy_of(self, source: _Source) -> int:
        """Of the source's entries in its blocks, how many left the ring."""
        if source.place != _AT:
            return source.lazy
        level = self._level
        assert level is not None
        cut = self._cut
        rkey = source.rkey
        assert rkey is not None
        if cut and rkey <= self._at[cut - 1]:  # it lost one at this level
            return source.count - level + 1
        return source.count - level

    def _start_level(self) -> None:
        """The ring is full, fair by count: keep a level from now on."""
        level = max((s.count for s in self._sources.values()), default=0)
        if not level:
            return
        self._level = level
        self._by_count = []
        for source in self._sources.values():
            source.key = None
            source.place = _NOWHERE
            self._place(source)

    def _place(self, source: _Source) -> None:
        """Put a source where it belongs after a change of what it holds."""
        level = self._level
        assert level is not None
        place = source.place
        if place == _ABOVE:  # appended to, or cut down: it left nothing lazily
            # (but for the one alone above, until the room is made: not placed)
            held = source.count
            if held > level:
                if source is not self._solo:
                    self._push_keys(source)
                return
            self._come_down(source)
        else:
            held = source.count - (self._lazy_of(source) if place == _AT else source.lazy)
            if held > level:  # just appended to: it left nothing lazily
                assert not source.lazy
                if place != _NOWHERE:
                    self._unplace(source)
                self._go_above(source)
                return
            if place == (_AT if held == level else held):  # where it is
                return
            if place != _NOWHERE:
                self._unplace(source)
        if held == level:  # (at least 1)
            self._join(source, level)
        else:
            self._below.setdefault(held, set()).add(source)
            source.place = held

    def _go_above(self, source: _Source) -> None:
        """A source placed nowhere that holds more than the level (none of it
        lazily) goes above it: alone there, as ``_solo``, without a heap."""
        source.place = _ABOVE
        self._above = above = self._above + 1
        if above == 1:
            self._solo = source
            return
        solo = self._solo
        if solo is not None:  # no longer alone: into the heap
            self._solo = None
            if solo.lazy:
                self._materialize(solo)
            self._push_keys(solo)
        self._push_keys(source)

    def _come_down(self, source: _Source) -> None:
        """A source above the level that holds no more than it is placed
        nowhere (its keys in the heap are stale now)."""
        source.key = None
        source.place = _NOWHERE
        self._above -= 1
        if source is self._solo:
            self._solo = None

    def _join(self, source: _Source, level: int) -> None:
        """A source that holds ``level`` entries, placed nowhere, joins the level."""
        rkey = self._rekey(source, level)
        at, cut = self._at, self._cut
        if cut and rkey < at[cut - 1]:  # older than some that lost one already
            self._settle()
        if not at or at[-1] < rkey:  # mostly: its oldest entry held is the newest
            at.append(rkey)
        else:
            insort(at, rkey)
        if len(self._bps) > 2 * len(at) + 64:  # many stale keys: start again
            bps = self._bps = [(-k[2].bp, k[1], k[2]) for k in at if k[2].bp > 0]
            heapq.heapify(bps)

    def _rekey(self, source: _Source, level: int) -> _AtKey:
        """A source that holds ``level`` entries (its ``lazy`` count set) joins
        the level: its anchor and ``bp``, after the entries that left are
        dropped from its blocks if its oldest block holds none, or less than
        two thirds (over 16 KiB).  Returns its key, for the caller to put in ``_at``."""
        lazy = source.lazy
        block = self._watch(source)
        if lazy and level <= source.bp:  # (it would be looked at now)
            self._materialize(source)
            lazy = 0
            block = self._watch(source)  # (the first key is stale: another bp)
        source.rkey = rkey = (block.first_seq + block.start + lazy + level, source.order, source)
        source.place = _AT
        return rkey

    def _watch(self, source: _Source) -> Block:
        """Set the ``bp`` of a source at the level, the count at which it has
        left none of its oldest block's entries held, or, a block over 16 KiB,
        less than two thirds of them: it is looked at again when the level comes
        down to it (Ring._lower).  Returns its oldest block."""
        block = source.blocks[source.head]
        bp = source.count - (block.count - block.start)  # its entries in its later blocks
        if len(block.data) > _COMPACT_ABOVE:
            bp += _most_compacted(block.count, True)
        source.bp = bp
        if bp > 0:
            _push(self._bps, (-bp, source.order, source))
        return block

    def _settle(self) -> None:
        """Those that lost one at this level move below it, with their count."""
        level = self._level
        assert level is not None
        cut = self._cut
        at = self._at
        below = self._below.setdefault(level - 1, set())
        for rkey in at[:cut]:
            source = rkey[2]
            source.lazy = source.count - level + 1
            source.rkey, source.place, source.bp = None, level - 1, 0
            below.add(source)
        del at[:cut]
        self._cut = 0

    def _unplace(self, source: _Source) -> None:
        """Take a source at or below the level out of its place (one above it
        leaves in :meth:`_place`)."""
        place = source.place
        assert place != _ABOVE
        if place == _AT:
            self._leave(source)
            return
        if place >= 0:
            below = self._below[place]
            below.discard(source)
            if not below:
                del self._below[place]
        source.place = _NOWHERE

    def _leave(self, source: _Source) -> None:
        """Take a source at the level out of ``_at`` (its ``lazy`` count set)."""
        at, rkey = self._at, source.rkey
        assert rkey is not None and self._level is not None
        # mostly the first (the oldest writes again) or the last (it just joined)
        i = 0 if at[0] is rkey else len(at) - 1 if at[-1] is rkey else bisect_left(at, rkey)
        assert at[i] is rkey
        del at[i]
        cut = self._cut
        if i < cut:
            self._cut = cut - 1
            source.lazy = source.count - self._level + 1
        else:
            source.lazy = source.count - self._level
        source.rkey, source.bp, source.place = None, 0, _NOWHERE

    def _evict_level(self, need: int) -> bool:
        """Make room for ``need`` entries by the level; False when it stopped
        at a protected entry."""
        heap = self._by_count
        protect = self._protect
        while need > 0:
            level = self._level
            assert level is not None
            if self._above:  # above the level: the largest first, as ever
                solo = self._solo
                lazy = 0
                if solo is not None:
                    source, second, self._solo = solo, None, None  # (in the heap if still above)
                    lazy = source.lazy  # (what left the ring lazily goes with the cut)
                    if lazy and protect is not None:
                        self._materialize(source)
                        lazy = 0
                else:
                    top = self._top(heap, False)
                    assert top is not None
                    source = top[3]
                    _pop(heap)
                    second = self._top(heap, False) if self._above > 1 else None
                floor = level if second is None else max(level, -second[0])
                cut = min(need, max(1, source.count - lazy - floor))  # its oldest
                if protect is not None and (allowed := self._allowed(source, cut)) < cut:
                    if allowed:  # (a follower was not handed the rest)
                        self._drop(source, allowed, note=False)
                    self._place(source)
                    return False
                if lazy:
                    source.lazy = 0
                    self._lazy -= lazy
                self._drop(source, lazy + cut, note=False)
                need -= cut
                if source.count == level:  # down to it: it joins (_place, without its checks)
                    self._come_down(source)
                    self._join(source, level)
                else:
                    self._place(source)
                continue
            at = self._at
            cut = self._cut
            todo = len(at) - cut  # those at the level that hold it still
            if protect is None and need >= todo:  # whole levels down at once
                need = self._lower(need)
                continue
            if not todo:  # a follower's entries among them: one level at a time
                self._lower(0)
                continue
            r = min(need, todo)
            if protect is not None:  # those whose oldest (anchor - level) was handed
                r = min(r, bisect_left(at, (protect + level,), cut) - cut)
                if not r:
                    return False
            self._cut = cut + r
            self._lazy += r
            need -= r
        return True

    def planned_cut(self, block: Block, least: int = 1) -> int:
        """How many of the first entries of ``block``, the one just appended,
        the next :meth:`evict` drops at least if nothing is protected, where
        that is known without making room and at least ``least`` (else 0:
        the eviction may then drop some).  Fair by count, a source alone
        above the level is cut down to it: a batch that makes its source the
        largest is mostly dropped at once (b and c of BENCHMARKS.md), and the
        journal need not be written what goes (LogState).  (When the room
        needed is more than that cut, the level goes down too, and the
        block's next entries may go with it.)"""
        source, level = self._solo, self._level  # (more above: their older entries go first)
        if source is None or level is None or source.blocks[-1] is not block or block.start:
            return 0
        need = self._count - self._lazy - self._cap
        held = source.count - source.lazy  # (alone above: its lazy ones go too)
        cut = min(need, held - level) - (held - block.count)
        if cut < max(1, least):
            return 0
        return min(cut, block.count - 1)  # (one stays)

    def _lower(self, need: int) -> int:
        """The level goes down while ``need`` covers what is left of it (each
        source at it one entry less; those below join it as it reaches their
        count), or, with none at it, to the largest below; returns what is
        still needed (less than the sources at the new level).  Called when
        ``need`` covers what is left of the level."""
        level = self._level
        assert level is not None
        old = level
        at = self._at
        below = self._below
        m = len(at)
        todo = m - self._cut
        joiners: list[_Source] = []
        while need >= todo and level > 0:
            if m:
                need -= todo
                self._lazy += todo
                level -= 1
            else:  # none at this level: down to the largest below
                level = max((c for c in below if c < level), default=0)
            more = below.pop(level, None) if level else None
            if more:
                joiners += more
                m += len(more)
            todo = m
        # (the ring keeps an entry: what is needed is less than what is held)
        assert 0 < level < old, "the level goes down, and not to 0"
        self._level = level
        self._cut = 0
        fresh: list[_AtKey] = []
        bps = self._bps
        while bps and -bps[0][0] >= level:  # the sources whose oldest block is now looked at
            bp, _order, source = _pop(bps)
            if source.place != _AT or source.bp != -bp:
                continue  # (a stale key)
            block = source.blocks[source.head]
            lazy = source.count - level
            if lazy < block.count - block.start:  # its oldest held is in its oldest block:
                self._lazy -= lazy  # what left is dropped, its anchor stands, its bp anew
                self._drop(source, lazy, note=False)
                self._watch(source)
            else:
                self._unplace(source)
                fresh.append(self._rekey(source, level))
        for source in joiners:  # (each lost one a level since it joined)
            source.lazy = source.count - level
            source.place = _NOWHERE
            fresh.append(self._rekey(source, level))
        if len(fresh) > 4:
            at += fresh
            at.sort()
        else:
            for rkey in fresh:
                insort(at, rkey)
        return need

    def _materialize(self, source: _Source) -> None:
        """Drop from the blocks the entries that left the source lazily."""
        if source.place == _AT:
            self._unplace(source)  # (its ``lazy`` count set)
        k = source.lazy
        source.lazy = 0
        self._lazy -= k
        self._drop(source, k, note=False)

    def _seq_at(self, source: _Source, i: int) -> int:
        """The seq of the source's ``i``-th oldest entry held (``count``: past its newest)."""
        for first, held in self._runs(source):
            if i < held:
                return first + i
            i -= held
        return self.next_seq

    @staticmethod
    def _runs(source: _Source) -> Iterator[tuple[int, int]]:
        """The seqs a source holds, block by block: the first, and how many."""
        blocks = source.blocks
        for j in range(source.head, len(blocks)):
            block = blocks[j]
            yield block.first_seq + block.start, block.count - block.start

    def _evict_bytes(self) -> None:
        """Drop entries until the bytes fit (the last entry always stays)."""
        while self._held > self._max_bytes and self._count > 1:
            source, second = self._choose(True)
            block = source.blocks[source.head]
            a = block.start
            b = min(block.count, a + self._count - 1)
            excess = self._held - self._max_bytes
            size = block.size
            # the fewest entries a .. k-1 whose bytes cover the excess
            k = bisect_left(range(a + 1, b + 1), excess, key=lambda k: size(a, k)) + a + 1
            k = min(k, b)
            if second is not None:  # entries go while the source stays the largest
                rest = source.bytes + second[0]  # its bytes over the next one's
                keep = bisect_left(range(a, b), True, key=lambda i: size(a, i) >= rest) + a
                k = max(a + 1, min(k, keep))
            n = self._allowed(source, k - a)
            if not n:  # a follower has not been handed it yet
                if self._fair:
                    self._note(source)
                return
            self._drop(source, n)

    def _drop(self, source: _Source, k: int, note: bool = True) -> None:
        """The ``k`` oldest entries ``source`` holds (at least one) go, block by
        block (the blocks they leave are gone; one left with less than two
        thirds held, over 16 KiB, is compacted).  ``note``: the source is placed
        again (fair)."""
        source.count -= k
        source.evicted += k
        self._count -= k
        self._dropped += k
        trimmed = self.trimmed
        while True:
            head = source.head
            block = source.blocks[head]
            a = block.start
            b = a + k
            n = block.count
            if b < n:  # held in part from now on
                block.start = b
                if trimmed is not None:
                    trimmed.append((block.origin, block.first_seq + b, block.source))
                if self._exact:
                    size = block.size(a, b)
                    source.bytes -= size
                    self._held -= size
                if n - b <= _most_compacted(n, self._fair) and len(block.data) > _COMPACT_ABOVE:
                    self._compact(source, block)
                break
            block.start = n  # gone
            if trimmed is not None:
                trimmed.append((block.origin, block.first_seq + n, block.source))
            size = block.size(a, n) if a and self._exact else block.total
            source.bytes -= size
            self._held -= size
            source.blocks[head] = _GONE
            source.head = head + 1
            self._gone += 1
            self._bury(block)
            if b == n:
                break
            k = b - n
        if source.head > 32 and 2 * source.head > len(source.blocks):
            del source.blocks[: source.head]
            source.head = 0
        if self._fair and note:
            self._note(source)

    def _bury(self, block: Block) -> None:
        """In the index, a gone block's place is kept by an empty one (its
        bytes are freed, unless a reader's slice still holds them); the index
        moves past it if it was the first held (fair: mostly not)."""
        blocks = self._blocks
        head = self._head
        i = bisect_left(blocks, block.first_seq, lo=head, key=_FIRST_SEQ)
        if i < len(blocks) and blocks[i] is block:
            mark = Block("", 0, b"", [])
            mark.first_seq = block.first_seq
            blocks[i] = mark
            if i > head and (self._gone <= 32 or 2 * self._gone <= len(blocks)):
                return  # (blocks[head] is held, and few are gone: the index stands)
        self._forget_gone()

    def _forget_gone(self) -> None:
        """The index from its first held block on, compressed when gone
        blocks are most of it."""
        blocks = self._blocks
        head = self._head
        while head < len(blocks) and blocks[head].start >= blocks[head].count:
            head += 1
        self._head = head
        if self._gone > 32 and 2 * self._gone > len(blocks):
            kept = blocks[head:]  # (those held in part or whole: start < count, found in C)
            self._blocks = list(compress(kept, map(lt, map(_START, kept), map(_COUNT, kept))))
            self._head = 0
            self._gone = 0

    def _compact(self, source: _Source, block: Block) -> None:
        """Replace a block little of which is held by a copy of what is."""
        new = block.compacted()
        source.blocks[source.head] = new
        blocks = self._blocks
        if blocks[-1] is block:  # the batch just appended (the fair ring's planned cut)
            blocks[-1] = new
        else:
            i = bisect_left(blocks, block.first_seq, lo=self._head, key=_FIRST_SEQ)
            while blocks[i] is not block:
                i += 1
            blocks[i] = new
        if not self._exact:  # its blocks are counted whole: now the copy
            gone = block.total - new.total  # (no need to find where each entry ends)
            source.bytes -= gone
            self._held -= gone

    def forget(self, name: str) -> None:
        """Forget a source that holds no entry (its ``evicted`` count too)."""
        source = self._sources.get(name)
        if source is not None and source.count == self._lazy_of(source):
            if source.count:
                self._materialize(source)
            if self._level is not None:
                self._unplace(source)
            del self._sources[name]

    # ------------------------------------------------------------------ reading

    def read(self, cursor: int, limit: int | None = None) -> Slice:
        """Entries from seq ``cursor`` on (at most ``limit`` of them), and the
        runs of seqs not held among them (seqs start at 1: a cursor below 1
        asks from 1).  Without a limit the slice ends at ``next_seq``."""
        cursor = max(cursor, 1)
        end = self.next_seq
        if cursor >= end:
            return Slice(cursor, cursor, ())
        room = end if limit is None else max(0, limit)
        blocks = self._blocks
        i = max(self._head, bisect_right(blocks, cursor, lo=self._head, key=_FIRST_SEQ) - 1)
        parts: list[Part] = []
        gaps: list[Gap] = []
        seq = cursor
        lazy = self._lazy
        while i < len(blocks) and room:
            block = blocks[i]
            i += 1
            first = block.first_seq
            lo = first + (self._start_of(block) if lazy else block.start)
            lo, hi = max(lo, seq), first + block.count
            if lo >= hi:
                continue
            if lo > seq:
                gaps.append((seq, lo - seq))
            n = min(hi - lo, room)
            parts.append((block, lo - first, lo - first + n))
            room -= n
            seq = lo + n
        if room and seq < end:
            gaps.append((seq, end - seq))
            seq = end
        return Slice(cursor, seq, tuple(parts), tuple(gaps))

    def snapshot(self) -> Slice:
        """Every entry held now, in seq order, without the gaps between them:
        references, so it stays whole however slowly it is sent."""
        got = self.read(self.first_seq)
        return Slice(got.start, got.end, got.parts)

    def last_of(self, source: str) -> builtins.bytes | None:
        """The newest entry held of ``source`` (its encoded JSON), if any."""
        held = self._sources.get(source)
        if held is None or held.count == self._lazy_of(held):
            return None
        block = held.blocks[-1]
        n = len(block)
        return block.entries(n - 1, n)[0]

    def held_by_source(self) -> Counter[str]:
        """How many entries each source has in the ring now (for stats)."""
        lazy = self._lazy_of
        return Counter({s.name: n for s in self._sources.values() if (n := s.count - lazy(s))})

    def evicted_of(self, name: str) -> int:
        """How many entries of the source left the ring (since first seen)."""
        source = self._sources.get(name)
        return source.evicted + self._lazy_of(source) if source is not None else 0

    def dropped_of(self, name: str) -> int:
        """``evicted_of`` less its entries that left but are still in the
        blocks (what a journal of the blocks counts, with ``dropped``)."""
        source = self._sources.get(name)
        return source.evicted if source is not None else 0

    def evicted_by_source(self) -> dict[str, int]:
        """How many entries of each source were evicted (since first seen)."""
        lazy = self._lazy_of
        return {s.name: n for s in self._sources.values() if (n := s.evicted + lazy(s))}

    def set_evicted(self, name: str, count: int) -> None:
        """A ring rebuilt from a journal: a source's count of evicted entries."""
        source = self._sources.get(name)
        if source is None:
            source = self._sources[name] = _Source(name, self._order())
        source.evicted = count

    def next_victim(self) -> int | None:
        """The seq of the entry that would go next (None when empty)."""
        if not len(self):
            return None
        if not self._fair:
            return self.first_seq
        solo = self._solo
        if solo is not None:
            return self._oldest_held(solo)
        top = self._top(self._by_count, False)
        if top is not None or self._level is None:
            return top[1] if top is not None else None
        at, cut, level = self._at, self._cut, self._level
        if cut < len(at):
            return at[cut][0] - level
        # the next level's first: of those at it now (all lost one) and those below at it
        level = level - 1 if at else max((c for c in self._below if c), default=0)
        group = [rkey[2] for rkey in at]
        group += self._below.get(level, ())
        return min((self._oldest_held(s) for s in group), default=None)

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


_GONE = Block("", 0, b"", [])  # in the place of a source's block that left the ring
