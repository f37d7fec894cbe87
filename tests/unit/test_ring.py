"""The ring (memlogd.daemon.ring) model-checked against a plain list (hypothesis stateful)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import accumulate

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from memlogd.daemon.ring import Block, Ring, Slice

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Held:
    seq: int
    data: bytes
    size: int
    source: str


def raw_ends(sizes: list[int]) -> list[int]:
    """Where lines of these sizes end when joined with newlines."""
    return [end + i for i, end in enumerate(accumulate(sizes))]


def make_block(source: str, first: int, sizes: list[int], layout: str) -> tuple[Block, list[bytes]]:
    """A block of ``len(sizes)`` entries (seqs from ``first``) and those
    entries; ``layout`` "step": each is a prefix, its line and a suffix (as
    encoded from plain lines), "lazy": the same with its ends left to be found,
    "explicit": any bytes, with their ends listed."""
    if layout in ("step", "lazy"):
        prefix = b"<" + source.encode() + b">"
        lines = [(b"%d-" % (first + i) * 20)[:size] for i, size in enumerate(sizes)]
        entries = [prefix + line + b"!}" for line in lines]
        data = b"".join(e + b"\n" for e in entries)
        step = len(prefix) + 2
        if layout == "lazy":  # where each line ends is found from data when needed
            return Block(source, 0, data, None, step=step, count=len(sizes)), entries
        return Block(source, 0, data, raw_ends(sizes), step=step), entries
    entries = [b"entry %d of size %d" % (first + i, size) for i, size in enumerate(sizes)]
    data = b"".join(e + b"\n" for e in entries)
    enc_ends = list(accumulate(len(e) + 1 for e in entries))
    return Block(source, 0, data, raw_ends(sizes), enc_ends=enc_ends), entries


class RingMachine(RuleBasedStateMachine):
    """A Ring and a list of the entries it should hold: the newest ones, as many
    as fit in max_lines and (when set) max_bytes, but always the newest one."""

    def __init__(self) -> None:
        super().__init__()
        self.ring = Ring(1)
        self.max_lines = 1
        self.max_bytes = 0
        self.model: list[Held] = []
        self.appended = 0
        self.snapshots: list[tuple[Slice, list[bytes]]] = []

    @initialize(
        max_lines=st.integers(1, 8),
        max_bytes=st.one_of(st.just(0), st.integers(1, 40)),
    )
    def init(self, max_lines: int, max_bytes: int) -> None:
        self.ring = Ring(max_lines, max_bytes)
        self.max_lines = max_lines
        self.max_bytes = max_bytes

    def _trim(self) -> None:
        del self.model[: max(0, len(self.model) - self.max_lines)]
        if self.max_bytes:
            while len(self.model) > 1 and sum(h.size for h in self.model) > self.max_bytes:
                del self.model[0]

    @rule(
        sizes=st.lists(st.integers(0, 15), max_size=20),
        source=st.sampled_from(["a", "b", "c"]),
        layout=st.sampled_from(["step", "lazy", "explicit"]),
    )
    def extend(self, sizes: list[int], source: str, layout: str) -> None:
        first = self.appended + 1
        block, encoded = make_block(source, first, sizes, layout)
        result = self.ring.extend(block)
        for i, (data, size) in enumerate(zip(encoded, sizes, strict=True)):
            self.model.append(Held(first + i, data, size, source))
        self.appended += len(sizes)
        self._trim()
        assert result == self.appended + 1

    @rule(delta=st.integers(-30, 3), limit=st.none() | st.integers(-2, 10))
    def read(self, delta: int, limit: int | None) -> None:
        cursor = self.ring.next_seq + delta
        got = self.ring.read(cursor, limit)
        first = self.model[0].seq if self.model else self.appended + 1
        expected_missed = max(0, first - max(cursor, 1))
        assert got.missed == expected_missed
        assert got.start == max(cursor, first)
        wanted = [h.data for h in self.model if h.seq >= cursor]
        if limit is not None:
            wanted = wanted[: max(0, limit)]
        assert got.data == wanted
        assert got.next_seq == got.start + len(wanted) == got.start + got.count
        assert got.joined() == b"".join(w + b"\n" for w in wanted)
        sources = [h.source for h in self.model if h.seq >= got.start][: len(wanted)]
        assert [block.source for block, a, b in got.parts for _ in range(a, b)] == sources
        if got.parts:
            block, a, _ = got.parts[0]
            assert block.first_seq + a == got.start

    @rule(limit=st.integers(1, 7))
    def pieces(self, limit: int) -> None:
        snap = self.ring.snapshot()
        pieces = list(snap.pieces(limit))
        assert all(0 < piece.count <= limit for piece in pieces)
        assert [e for piece in pieces for e in piece.data] == snap.data
        assert [p.start for p in pieces] == list(range(snap.start, snap.next_seq, limit))

    @rule()
    def read_all_in_pieces(self) -> None:
        """A follower from the oldest held entry sees each entry once, in order."""
        cursor = self.ring.first_seq
        seen: list[bytes] = []
        while cursor < self.ring.next_seq:
            piece = self.ring.read(cursor, 3)
            assert piece.missed == 0
            seen.extend(piece.data)
            cursor = piece.next_seq
        assert seen == [h.data for h in self.model]

    @rule()
    def snapshot(self) -> None:
        snap = self.ring.snapshot()
        assert snap.missed == 0
        assert snap.data == [h.data for h in self.model]
        self.snapshots.append((snap, list(snap.data)))

    @rule(source=st.sampled_from(["a", "b", "c"]))
    def last_of(self, source: str) -> None:
        mine = [h.data for h in self.model if h.source == source]
        assert self.ring.last_of(source) == (mine[-1] if mine else None)

    @invariant()
    def contents_and_seqs_equal_the_model(self) -> None:
        ring = self.ring
        assert ring.next_seq == self.appended + 1
        assert len(ring) == len(self.model)
        assert ring.first_seq == ring.next_seq - len(self.model)
        if self.model:
            assert ring.first_seq == self.model[0].seq
        assert ring.read(ring.first_seq).data == [h.data for h in self.model]

    @invariant()
    def bounded_by_lines_and_bytes(self) -> None:
        assert len(self.ring) <= self.max_lines
        held_bytes = sum(h.size for h in self.model)
        assert self.ring.bytes == held_bytes
        if self.max_bytes and len(self.ring) > 1:
            assert self.ring.bytes <= self.max_bytes

    @invariant()
    def overwritten_is_appended_minus_held(self) -> None:
        assert self.ring.overwritten == self.appended - len(self.model)

    @invariant()
    def statistics_agree(self) -> None:
        stats = self.ring.statistics()
        assert (stats.entries, stats.bytes, stats.first_seq, stats.next_seq) == (
            len(self.ring),
            self.ring.bytes,
            self.ring.first_seq,
            self.ring.next_seq,
        )
        assert (stats.capacity, stats.max_bytes) == (self.max_lines, self.max_bytes)
        assert stats.overwritten == self.ring.overwritten
        assert self.ring.held_by_source() == Counter(h.source for h in self.model)

    @invariant()
    def snapshots_never_change(self) -> None:
        for snap, copy in self.snapshots:
            assert snap.data == copy


TestRing = RingMachine.TestCase
TestRing.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def block_of(*entries: bytes) -> Block:
    """A block of entries whose message sizes are their lengths."""
    return make_block("s", 0, [len(e) for e in entries], "explicit")[0]


def test_extend_larger_than_capacity_keeps_the_newest():
    ring = Ring(3)
    assert ring.extend(block_of(b"1", b"2")) == 3
    assert ring.extend(block_of(b"3", b"4", b"5", b"6", b"7")) == 8
    snap = ring.snapshot()
    assert (snap.missed, snap.start, snap.count) == (0, 5, 3)
    assert snap.data == [b"entry %d of size 1" % i for i in (2, 3, 4)]
    assert ring.overwritten == 4
    got = ring.read(2)
    assert (got.missed, got.start, got.data) == (3, 5, snap.data)


def test_single_entry_larger_than_max_bytes_stays_alone():
    ring = Ring(10, max_bytes=5)
    ring.extend(block_of(b"aa", b"bb"))
    ring.extend(block_of(b"b" * 9))
    assert ring.snapshot().data == [b"entry 0 of size 9"]
    assert (ring.bytes, ring.overwritten) == (9, 2)
    ring.extend(block_of(b"c"))
    assert ring.snapshot().data == [b"entry 0 of size 1"]


def test_empty_extend_changes_nothing():
    ring = Ring(2)
    assert ring.extend(block_of()) == 1
    assert ring.snapshot() == Slice(0, 1, 0, ())
    assert list(ring.snapshot().pieces(3)) == []


def test_a_whole_block_is_sent_as_it_is():
    ring = Ring(10)
    block = block_of(b"a", b"b")
    ring.extend(block)
    assert ring.snapshot().joined() is block.data
    assert ring.read(2).joined() == b"entry 1 of size 1\n"


@pytest.mark.parametrize(("max_lines", "max_bytes"), [(0, 0), (-1, 0), (1, -1)])
def test_invalid_limits_are_refused(max_lines: int, max_bytes: int):
    with pytest.raises(ValueError, match="max_"):
        Ring(max_lines, max_bytes)
