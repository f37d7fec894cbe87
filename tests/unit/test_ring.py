"""The ring (memlogd.ring) model-checked against a plain list (hypothesis stateful)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from memlogd.ring import Batch, Ring, Slice

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Held:
    seq: int
    data: bytes
    size: int
    batch: Batch


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
        time_ns=st.integers(0, 10**18),
    )
    def extend(self, sizes: list[int], source: str, time_ns: int) -> None:
        batch = Batch(source, time_ns)
        first = self.appended + 1
        encoded = [b"entry %d" % (first + i) for i in range(len(sizes))]
        result = self.ring.extend(batch, encoded, sizes)
        for i, (data, size) in enumerate(zip(encoded, sizes, strict=True)):
            self.model.append(Held(first + i, data, size, batch))
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
        assert got.next_seq == got.start + len(wanted)

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

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def batches(self, data: st.DataObject) -> None:
        start = data.draw(st.integers(self.model[0].seq, self.model[-1].seq))
        count = data.draw(st.integers(0, self.model[-1].seq - start + 1))
        expected = [h.batch for h in self.model if start <= h.seq < start + count]
        assert self.ring.batches(start, count) == expected

    @rule()
    def batches_outside_the_ring_raise(self) -> None:
        with pytest.raises(IndexError):
            self.ring.batches(self.ring.first_seq - 1, 1)
        with pytest.raises(IndexError):
            self.ring.batches(self.ring.first_seq, len(self.ring) + 1)

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
        assert self.ring.held_by_source() == Counter(h.batch.source for h in self.model)

    @invariant()
    def snapshots_never_change(self) -> None:
        for snap, copy in self.snapshots:
            assert snap.data == copy


TestRing = RingMachine.TestCase
TestRing.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_extend_larger_than_capacity_keeps_the_newest():
    ring = Ring(3)
    batch = Batch("s", 0)
    assert ring.extend(batch, [b"1", b"2"], [1, 1]) == 3
    assert ring.extend(batch, [b"3", b"4", b"5", b"6", b"7"], [1, 1, 1, 1, 1]) == 8
    assert ring.snapshot() == Slice(0, 5, [b"5", b"6", b"7"])
    assert ring.overwritten == 4
    assert ring.read(2) == Slice(3, 5, [b"5", b"6", b"7"])


def test_single_entry_larger_than_max_bytes_stays_alone():
    ring = Ring(10, max_bytes=5)
    batch = Batch("s", 0)
    ring.extend(batch, [b"a", b"b"], [2, 2])
    ring.extend(batch, [b"big"], [9])
    assert ring.snapshot().data == [b"big"]
    assert (ring.bytes, ring.overwritten) == (9, 2)
    ring.extend(batch, [b"c"], [1])
    assert ring.snapshot().data == [b"c"]


def test_empty_extend_changes_nothing():
    ring = Ring(2)
    assert ring.extend(Batch("s", 0), [], []) == 1
    assert ring.snapshot() == Slice(0, 1, [])


@pytest.mark.parametrize(("max_lines", "max_bytes"), [(0, 0), (-1, 0), (1, -1)])
def test_invalid_limits_are_refused(max_lines: int, max_bytes: int):
    with pytest.raises(ValueError, match="max_"):
        Ring(max_lines, max_bytes)
