"""logship.outbox: the window, delivery in send order, the state file's cadence,
gaps and what is left undelivered, against a plain model (a list per state)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from logship.outbox import Outbox, OutboxError
from memlogd.wire.protocol import Cursor

pytestmark = pytest.mark.unit


Message = tuple[tuple[str, int, int], bytes]  # ((instance, seq, 1 entry / 0 gap), data)


def entries(instance: str, first: int, count: int) -> list[Message]:
    return [((instance, s, 1), b"m%d" % s) for s in range(first, first + count)]


def push(box: Outbox, messages: list[Message]) -> None:
    for (instance, seq, kind), data in messages:
        if kind:
            box.push(instance, [seq], [data])
        else:
            box.push_gap(instance, seq, data)


def test_in_order_acks_deliver_and_move_the_cursor() -> None:
    box = Outbox(4)
    push(box, entries("i", 1, 6))
    assert box.room() == 4 and box.take(box.room()) == [b"m1", b"m2", b"m3", b"m4"]
    assert box.head == 0 and box.next_position == 4 and box.room() == 0
    assert box.ack([0, 1]) == 2
    assert box.cursor == Cursor("i", 2) and box.delivered == 2
    assert box.save_due and box.room() == 0  # the unsaved still hold their place
    box.saved()
    assert box.room() == 2 and box.undelivered() == 4


def test_an_ack_ahead_waits_for_the_older_ones() -> None:
    box = Outbox(8, stateful=False)
    push(box, entries("i", 1, 3))
    box.take(3)
    assert box.ack([1, 2]) == 0 and box.cursor is None and box.unacked == 1
    assert box.resend() == [(0, b"m1")]
    assert box.ack([0]) == 3 and box.cursor == Cursor("i", 3) and box.idle
    with pytest.raises(OutboxError):
        box.ack([3])


def test_a_gap_counts_as_a_gap_and_completes_its_cursor() -> None:
    box = Outbox(8, stateful=False)
    box.push("i", [1], [b"m1"])
    box.push_gap("i", 9, b"gap")
    box.push("j", [10, 11], [b"m10", b"m11"])
    assert box.undelivered() == 3 and box.waiting == 4
    box.take(4)
    box.deliver(2)
    assert (box.delivered, box.gaps, box.cursor) == (1, 1, Cursor("i", 9))
    assert box.undelivered() == 2
    box.deliver(1)
    assert (box.delivered, box.gaps, box.cursor) == (2, 1, Cursor("j", 10))


def test_acks_with_an_offset_and_unknown_numbers() -> None:
    box = Outbox(8)
    push(box, entries("i", 1, 4))
    box.take(4)
    assert box.ack([2, 3], offset=2) == 2  # transaction numbers 2.. for positions 0..
    with pytest.raises(OutboxError) as caught:
        box.ack([9], offset=2)
    assert caught.value.number == 9


class CompactingOutbox(Outbox):
    """Drops delivered messages from its lists as soon as it may."""

    __slots__ = ()
    compact_at = 1


class OutboxModel(RuleBasedStateMachine):
    """The outbox against lists: waiting, in flight (with acked flags), delivered."""

    @initialize(
        window=st.integers(1, 8),
        stateful=st.booleans(),
        tcp=st.booleans(),
        limit=st.integers(1, 12),
        compact=st.booleans(),
    )
    def start(self, window: int, stateful: bool, tcp: bool, limit: int, compact: bool) -> None:
        self.window = window
        self.stateful = stateful
        self.limit = limit
        self.save_every = 1 if tcp else max(1, window // 2)
        kind = CompactingOutbox if compact else Outbox
        self.box = kind(window, save_every=1 if tcp else None, stateful=stateful, limit=limit)
        self.instance = "i-1"
        self.waiting: list[Message] = []
        self.flight: list[tuple[Message, bool]] = []
        self.done: list[Message] = []
        self.unsaved = 0
        self.seq = 0
        self.taken = 0  # positions given out

    @rule(count=st.integers(1, 6), gap=st.booleans(), restart=st.booleans())
    def push(self, count: int, gap: bool, restart: bool) -> None:
        if restart:  # a new memlogd instance: its seqs start again
            self.instance += "+"
            self.seq = 0
        if gap:
            self.seq += count
            batch: list[Message] = [((self.instance, self.seq, 0), b"gap%d" % self.seq)]
            self.box.push_gap(self.instance, self.seq, batch[0][1])
        else:
            batch = entries(self.instance, self.seq + 1, count)
            self.seq += count
            self.box.push(self.instance, [m[0][1] for m in batch], [m[1] for m in batch])
        self.waiting += batch

    @rule(count=st.integers(0, 10))
    def take(self, count: int) -> None:
        room = self.box.room()
        assert room == self.window - len(self.flight) - self.unsaved
        n = min(count, max(room, 0), len(self.waiting))
        assert self.box.next_position == self.taken
        got = self.box.take(n)
        assert got == [data for _, data in self.waiting[:n]]
        self.flight += [(m, False) for m in self.waiting[:n]]
        del self.waiting[:n]
        self.taken += n

    @precondition(lambda self: any(not acked for _, acked in self.flight))
    @rule(data=st.data(), offset=st.integers(0, 3))
    def ack(self, data: st.DataObject, offset: int) -> None:
        head = self.box.head
        unacked = [head + i for i, (_, acked) in enumerate(self.flight) if not acked]
        chosen = data.draw(st.lists(st.sampled_from(unacked), min_size=1, unique=True))
        if data.draw(st.booleans()):
            chosen.sort()
        done = self.box.ack([p + offset for p in chosen], offset)
        for pos in chosen:
            msg, _ = self.flight[pos - head]
            self.flight[pos - head] = (msg, True)
        expected = 0
        while self.flight and self.flight[0][1]:
            self.deliver_one()
            expected += 1
        assert done == expected

    @rule(count=st.integers(0, 5))
    def deliver(self, count: int) -> None:
        """TCP: the oldest are delivered (never with acks ahead of them)."""
        if any(acked for _, acked in self.flight):
            return
        n = min(count, len(self.flight))
        assert self.box.deliver(count) == n
        for _ in range(n):
            self.deliver_one()

    def deliver_one(self) -> None:
        msg, _ = self.flight.pop(0)
        self.done.append(msg)
        if self.stateful:
            self.unsaved += 1

    @rule(data=st.data())
    def bad_ack(self, data: st.DataObject) -> None:
        head = self.box.head
        acked = {head + i for i, (_, a) in enumerate(self.flight) if a}
        pos = data.draw(st.integers(-2, self.taken + 3))
        if head <= pos < head + len(self.flight) and pos not in acked:
            return
        with pytest.raises(OutboxError):
            self.box.ack([pos])
        assert self.box.head == head

    @rule()
    def save(self) -> None:
        if self.box.save_due:
            self.box.saved()
            self.unsaved = 0

    @invariant()
    def agrees(self) -> None:
        box = self.box
        assert box.in_flight == len(self.flight)
        assert box.unacked == sum(not a for _, a in self.flight)
        assert box.unsaved == self.unsaved
        assert box.save_due == (
            self.unsaved >= self.save_every or (self.unsaved > 0 and not self.flight)
        )
        assert box.delivered == sum(item[2] for item, _ in self.done)
        assert box.gaps == sum(1 - item[2] for item, _ in self.done)
        last = self.done[-1][0] if self.done else None
        assert box.cursor == (Cursor(last[0], last[1]) if last else None)
        assert box.undelivered() == sum(i[2] for i, _ in self.waiting) + sum(
            m[0][2] for m, _ in self.flight
        )
        head = box.head
        assert box.resend() == [(head + i, m[1]) for i, (m, a) in enumerate(self.flight) if not a]
        assert box.head + box.in_flight == self.taken
        assert box.waiting == len(self.waiting)
        assert box.full == (len(self.waiting) >= self.limit)


TestOutboxModel = OutboxModel.TestCase
TestOutboxModel.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
