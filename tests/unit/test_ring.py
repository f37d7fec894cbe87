"""The ring (memlogd.daemon.ring) model-checked against a plain list (hypothesis stateful)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate, pairwise

import pytest
from hypothesis import given, settings
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
        lines = [(b"%d-" % (first + i) * (size // 2 + 1))[:size] for i, size in enumerate(sizes)]
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


def fair_choice(held: list[tuple[str, int, int]]) -> str:
    """The source the fair policy takes the next entry from: ``held`` is each
    entry's (source, seq, weight) in seq order, weight 1 by count or its
    message bytes; the largest total, ties to the oldest oldest entry."""
    size: Counter[str] = Counter()
    oldest: dict[str, int] = {}
    for source, seq, weight in held:
        size[source] += weight
        oldest.setdefault(source, seq)
    return min(size, key=lambda s: (-size[s], oldest[s]))


def ring_machine(
    names: list[str], max_lines: int, sizes: st.SearchStrategy[int], level_only: bool = False
) -> type[RuleBasedStateMachine]:
    """The model check of a ring with sources of these ``names``, at most
    ``max_lines`` lines and entries of ``sizes`` message bytes (``level_only``:
    fair, without ``max_bytes``, where the ring keeps a level)."""
    sources = st.sampled_from(names)

    class RingMachine(RuleBasedStateMachine):
        """A Ring and a list of the entries it should hold, by its policy (SPEC 14):
        while over max_lines (then while over max_bytes with more than one entry)
        ``fair`` drops the oldest entry of the source holding the most (entries,
        then message bytes; ties to the source whose oldest entry is oldest),
        ``oldest`` the oldest entry.  Appends may leave the eviction for later (the
        ring over its limits until then).  Followers keep a cursor across steps and
        must be told of every seq after it exactly once: received, or dropped."""

        def __init__(self) -> None:
            super().__init__()
            self.ring = Ring(1)
            self.max_lines = 1
            self.max_bytes = 0
            self.fair = True
            self.model: list[Held] = []
            self.appended = 0
            self.pending = False  # appended without eviction yet
            self.snapshots: list[tuple[Slice, list[bytes]]] = []
            self.every: dict[int, bytes] = {}  # every entry ever appended, by seq
            self.gone: set[int] = set()
            self.evicted: Counter[str] = Counter()
            self.followers: list[tuple[int, list[int]]] = []  # start, seqs told of in order
            # the last batch appended without room made: its first seq, count,
            # and the cut the ring planned for it (Ring.planned_cut)
            self.planned: tuple[int, int, int] | None = None

        @initialize(
            max_lines=st.integers(1, max_lines),
            max_bytes=st.just(0) if level_only else st.just(0) | st.integers(1, 40),
            policy=st.just("fair") if level_only else st.sampled_from(["fair", "oldest"]),
        )
        def init(self, max_lines: int, max_bytes: int, policy: str) -> None:
            self.ring = Ring(max_lines, max_bytes, policy=policy)
            self.max_lines = max_lines
            self.max_bytes = max_bytes
            self.fair = policy == "fair"

        def _evict_one(self, by_bytes: bool, protect: int | None = None) -> bool:
            """Drop the policy's next entry, unless it is protected (False)."""
            victim = 0
            if self.fair:
                chosen = fair_choice(
                    [(h.source, h.seq, h.size if by_bytes else 1) for h in self.model]
                )
                victim = next(i for i, h in enumerate(self.model) if h.source == chosen)
            if protect is not None and self.model[victim].seq >= protect:
                return False
            held = self.model.pop(victim)
            self.gone.add(held.seq)
            self.evicted[held.source] += 1
            return True

        def _trim(self, protect: int | None = None) -> None:
            self.pending = False
            while len(self.model) > self.max_lines:
                if not self._evict_one(False, protect):
                    self.pending = True
                    return
            if self.max_bytes:
                while len(self.model) > 1 and sum(h.size for h in self.model) > self.max_bytes:
                    if not self._evict_one(True, protect):
                        self.pending = True
                        return

        @rule(
            sizes=st.lists(sizes, max_size=20),
            source=sources,
            layout=st.sampled_from(["step", "lazy", "explicit"]),
            evict=st.booleans(),
        )
        def extend(self, sizes: list[int], source: str, layout: str, evict: bool) -> None:
            first = self.appended + 1
            block, encoded = make_block(source, first, sizes, layout)
            result = self.ring.extend(block) if evict else self.ring.append(block)
            self.planned = None if evict else (first, len(sizes), self.ring.planned_cut(block))
            for i, (data, size) in enumerate(zip(encoded, sizes, strict=True)):
                self.model.append(Held(first + i, data, size, source))
                self.every[first + i] = data
            self.appended += len(sizes)
            if evict:
                self._trim()
            else:
                self.pending = self.pending or bool(sizes)
            assert result == self.appended + 1

        @rule(
            sizes=st.lists(sizes, min_size=1, max_size=20),
            source=sources,
            lag=st.integers(0, 10),
        )
        def extend_behind_a_follower(self, sizes: list[int], source: str, lag: int) -> None:
            """A batch appended while a follower is ``lag`` entries short of
            it: room is made, but neither the batch nor those go yet."""
            first = self.appended + 1
            self.extend(sizes, source, "step", False)
            self.evict(self.ring.next_seq - first + lag)

        @rule(back=st.none() | st.integers(0, 12))
        def evict(self, back: int | None) -> None:
            """Entries from ``protect`` on were not handed to a follower: they stay."""
            protect = None if back is None else self.ring.next_seq - back
            self.ring.evict(protect)
            self._trim(protect)
            assert self.ring.over == self.pending
            planned, self.planned = self.planned, None
            if planned is not None and planned[2] and protect is None:  # the cut it planned
                first, n, cut = planned  # (at least: the level's next loss may take more)
                gone = [seq for seq in range(first, first + n) if seq in self.gone]
                assert gone == list(range(first, first + len(gone))) and len(gone) >= cut

        @rule(delta=st.integers(-30, 3), limit=st.none() | st.integers(-2, 10))
        def read(self, delta: int, limit: int | None) -> None:
            cursor = self.ring.next_seq + delta
            got = self.ring.read(cursor, limit)
            start = max(cursor, 1)
            wanted = [h for h in self.model if h.seq >= start]
            end = max(start, self.ring.next_seq)
            if limit is not None and len(wanted) >= max(0, limit):
                wanted = wanted[: max(0, limit)]
                end = wanted[-1].seq + 1 if wanted else start
            assert (got.start, got.end) == (start, end)
            assert got.data == [h.data for h in wanted]
            assert got.count == len(wanted)
            assert got.joined() == b"".join(h.data + b"\n" for h in wanted)
            assert [block.source for block, a, b in got.parts for _ in range(a, b)] == [
                h.source for h in wanted
            ]
            assert [block.first_seq + i for block, a, b in got.parts for i in range(a, b)] == [
                h.seq for h in wanted
            ]
            held = {h.seq for h in wanted}
            assert list(got.gaps) == runs([s for s in range(start, end) if s not in held])
            assert got.missed == end - start - len(wanted)

        @rule(limit=st.integers(1, 7))
        def pieces(self, limit: int) -> None:
            whole = self.ring.read(self.ring.next_seq - 12)
            pieces = list(whole.pieces(limit))
            assert all(0 <= piece.count <= limit for piece in pieces)
            assert [e for piece in pieces for e in piece.data] == whole.data
            assert [g for piece in pieces for g in piece.gaps] == list(whole.gaps)
            if pieces:
                assert pieces[0].start == whole.start
                assert pieces[-1].end == whole.end
                assert all(p.end == q.start for p, q in pairwise(pieces))

        @rule()
        def start_follower(self) -> None:
            self.followers.append((self.ring.next_seq, []))

        @rule(i=st.integers(0, 3), limit=st.integers(1, 4))
        def follow(self, i: int, limit: int) -> None:
            """A follower reads on from its cursor: each seq is an entry or dropped."""
            if not self.followers:
                return
            start, told = self.followers[i % len(self.followers)]
            cursor = told[-1] + 1 if told else start
            while cursor < self.ring.next_seq:
                piece = self.ring.read(cursor, limit)
                assert piece.start == cursor and piece.end > cursor
                for item in piece.items():
                    if len(item) == 2:
                        seq, n = item
                        assert all(s in self.gone for s in range(seq, seq + n))
                        told += range(seq, seq + n)
                    else:
                        block, a, b = item
                        for j, entry in enumerate(block.entries(a, b)):
                            assert self.every[block.first_seq + a + j] == entry
                            told.append(block.first_seq + a + j)
                cursor = piece.end
            assert told == list(range(start, cursor))

        @rule()
        def snapshot(self) -> None:
            snap = self.ring.snapshot()
            assert snap.missed == 0
            assert snap.data == [h.data for h in self.model]
            self.snapshots.append((snap, list(snap.data)))

        @rule(source=sources)
        def forget(self, source: str) -> None:
            """A source that holds nothing is forgotten, its count of evicted too
            (one that holds entries is not)."""
            self.planned = None
            self.ring.forget(source)
            if not any(h.source == source for h in self.model):
                self.evicted.pop(source, None)

        @rule(source=sources)
        def last_of(self, source: str) -> None:
            mine = [h.data for h in self.model if h.source == source]
            assert self.ring.last_of(source) == (mine[-1] if mine else None)

        @invariant()
        def contents_and_seqs_equal_the_model(self) -> None:
            ring = self.ring
            assert ring.next_seq == self.appended + 1
            assert len(ring) == len(self.model)
            assert ring.first_seq == (self.model[0].seq if self.model else ring.next_seq)
            assert ring.snapshot().data == [h.data for h in self.model]

        @invariant()
        def bounded_by_lines_and_bytes(self) -> None:
            held_bytes = sum(h.size for h in self.model)
            assert self.ring.bytes == held_bytes
            if self.pending:
                return
            assert len(self.ring) <= self.max_lines
            if self.max_bytes and len(self.ring) > 1:
                assert self.ring.bytes <= self.max_bytes

        @invariant()
        def overwritten_is_appended_minus_held(self) -> None:
            assert self.ring.overwritten == self.appended - len(self.model)
            assert self.ring.evicted_by_source() == dict(+self.evicted)

        @invariant()
        def next_victim_is_the_policys(self) -> None:
            if not self.model or not self.fair:
                expected = self.model[0].seq if self.model else None
            else:
                chosen = fair_choice([(h.source, h.seq, 1) for h in self.model])
                expected = next(h.seq for h in self.model if h.source == chosen)
            assert self.ring.next_victim() == expected

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

    return RingMachine


def runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Consecutive seqs as (first, count) runs."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and out[-1][0] + out[-1][1] == seq:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((seq, 1))
    return out


TestRing = ring_machine(["a", "b", "c"], 8, st.integers(0, 15)).TestCase
TestRing.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
# many sources at a level that goes down a long way, blocks over 16 KiB among them
# (the level's cursor, the sources looked at again as their oldest block goes)
TestRingOfManySources = ring_machine(
    [f"s{i}" for i in range(8)], 30, st.integers(0, 15) | st.integers(900, 2500), level_only=True
).TestCase
TestRingOfManySources.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)


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
    assert (got.gaps, got.start, got.end, got.data) == (((2, 3),), 2, 8, snap.data)


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
    assert ring.snapshot() == Slice(1, 1, ())
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


def test_a_flood_evicts_its_own_oldest_and_the_quiet_stay():
    ring = Ring(4)
    ring.extend(make_block("quiet", 1, [1], "step")[0])
    for first in range(2, 12, 2):
        ring.extend(make_block("flood", first, [1, 1], "step")[0])
    assert ring.held_by_source() == Counter({"flood": 3, "quiet": 1})
    assert ring.evicted_by_source() == {"flood": 7}
    got = ring.read(1)
    assert got.gaps == ((2, 7),)
    assert [block.first_seq + a for block, a, _ in got.parts] == [1, 9, 10]


def test_a_batch_that_takes_a_source_above_the_level_alone_takes_its_lazy_entries_along():
    """b's oldest entry left the ring lazily (at the level, its blocks
    untouched); its next batch takes it above the level alone: the append
    drops nothing from the blocks (``dropped``: what a journal counts), the
    entry that left is neither the next victim nor counted in the planned
    cut, and the room made takes it with b's other old entries and the
    batch's first three."""
    ring = Ring(6)
    seq = 1
    for source, n in [("a", 3), ("b", 3), ("c", 1), ("d", 1)]:
        ring.extend(make_block(source, seq, [3] * n, "step")[0])
        seq += n
    assert ring.held_by_source() == Counter({"a": 2, "b": 2, "c": 1, "d": 1})
    assert (ring.evicted_by_source(), ring.overwritten, ring.dropped) == ({"a": 1, "b": 1}, 2, 1)
    assert ring.read(4).gaps[0] == (4, 1)  # (it left lazily)
    block = make_block("b", seq, [3] * 5, "step")[0]  # seqs 9 .. 13
    ring.append(block)
    assert (ring.dropped, ring.next_victim(), ring.planned_cut(block)) == (1, 5, 3)
    ring.evict()
    assert block.start == 3
    assert ring.held_by_source() == Counter({"a": 2, "b": 2, "c": 1, "d": 1})
    assert (ring.evicted_by_source(), ring.overwritten, ring.dropped) == ({"a": 1, "b": 6}, 7, 7)
    assert ring.read(1).gaps == ((1, 1), (4, 3), (9, 3))


def test_oldest_policy_is_upstreams_order():
    ring = Ring(4, policy="oldest")
    ring.extend(make_block("quiet", 1, [1], "step")[0])
    for first in range(2, 12, 2):
        ring.extend(make_block("flood", first, [1, 1], "step")[0])
    assert ring.held_by_source() == Counter({"flood": 4})
    assert (ring.first_seq, ring.read(1).gaps) == (8, ((1, 7),))


def test_a_block_little_of_which_is_held_is_compacted():
    ring = Ring(10)
    block, entries = make_block("a", 1, [200] * 100, "lazy")  # over 16 KiB
    ring.extend(block)
    held = ring.snapshot()
    assert held.parts[0][0] is not block  # a copy of the 10 held
    assert len(held.parts[0][0].data) < len(block.data) // 4
    assert held.data == entries[90:]
    assert ring.read(85).gaps == ((85, 6),)
    assert ring.bytes == 2000


@pytest.mark.parametrize(("held", "copied"), [(66, False), (65, True)])
def test_a_block_is_compacted_when_less_than_two_thirds_of_it_is_held(
    held: int, copied: bool
) -> None:
    ring = Ring(held)
    block, entries = make_block("a", 1, [200] * 99, "lazy")  # over 16 KiB
    ring.extend(block)
    snap = ring.snapshot()
    assert (snap.parts[0][0] is not block) == copied  # 66 of 99: two thirds, kept
    assert snap.data == entries[99 - held :]


@pytest.mark.parametrize(("held", "copied"), [(50, False), (49, True)])
def test_oldest_first_compacts_a_block_when_less_than_half_of_it_is_held(
    held: int, copied: bool
) -> None:
    """Its block held in part is the oldest, which the next room made takes
    next: not copied at two thirds as the fair ring's are."""
    ring = Ring(held, policy="oldest")
    block, entries = make_block("a", 1, [200] * 99, "lazy")  # over 16 KiB
    ring.extend(block)
    snap = ring.snapshot()
    assert (snap.parts[0][0] is not block) == copied  # 50 of 99: more than half, kept
    assert snap.data == entries[99 - held :]


@pytest.mark.parametrize(("level", "copied"), [(100, False), (99, True)])
def test_a_source_at_the_level_is_compacted_when_it_holds_less_than_two_thirds_of_its_block(
    level: int, copied: bool
) -> None:
    ring = Ring(300)
    a, a_entries = make_block("a", 1, [200] * 150, "lazy")  # over 16 KiB
    b, _ = make_block("b", 151, [200] * 150, "lazy")
    ring.extend(a)
    ring.extend(b)
    ring.extend(make_block("c", 301, [10] * 30, "step")[0])  # a and b cut to 135: the level
    for i in range(2 * (135 - level)):  # each a one-entry source: a, b lose one in turn
        ring.extend(make_block(f"z{i}", ring.next_seq, [10], "step")[0])
    assert ring.held_by_source()["a"] == level
    part = ring.snapshot().parts[0]
    assert (part[0] is not a) == copied  # 100 of a's 150: two thirds, left as it is
    assert part[0].entries(part[1], part[2]) == a_entries[150 - level :]


def test_a_block_of_16_kib_or_less_is_not_copied():
    ring = Ring(10)
    block, entries = make_block("a", 1, [50] * 100, "lazy")  # about 8 KiB
    ring.extend(block)
    held = ring.snapshot()
    assert held.parts == ((block, 90, 100),)  # held in part: no copy
    assert held.data == entries[90:]
    assert ring.bytes == 500


def test_invalid_policy_is_refused():
    with pytest.raises(ValueError, match="policy"):
        Ring(1, policy="random")


@given(
    max_lines=st.integers(1, 40),
    batches=st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 15), st.booleans()), min_size=1, max_size=30
    ),
)
def test_fair_by_count_does_not_depend_on_when_entries_go(
    max_lines: int, batches: list[tuple[int, int, bool]]
) -> None:
    """Under -max-lines the fair ring's contents are a function of what was
    appended: making room after every batch, after some, or once at the end
    leaves the same entries (what a replay of a journal that is behind the ring
    relies on).  (Not so under -max-bytes, where the last entry always stays.)"""
    every, some, once = Ring(max_lines), Ring(max_lines), Ring(max_lines)
    for i, (source, n, evict) in enumerate(batches):
        for ring in (every, some, once):
            block, _ = make_block(f"s{source}", ring.next_seq, [i % 7 + 1] * n, "explicit")
            ring.append(block)
        every.evict()
        if evict:
            some.evict()
    some.evict()
    once.evict()

    def held(ring: Ring) -> list[tuple[str, int, int]]:
        return [(b.source, b.first_seq + a, b.first_seq + z) for b, a, z in ring.snapshot().parts]

    assert held(some) == held(every) == held(once)
    assert every.evicted_by_source() == some.evicted_by_source() == once.evicted_by_source()
    assert len(every) == min(max_lines, sum(n for _, n, _ in batches))


@settings(max_examples=25, deadline=None)
@given(
    max_lines=st.integers(20, 60),
    sources=st.integers(2, 24),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_long_run_of_small_batches_keeps_what_the_policy_keeps(
    max_lines: int, sources: int, seed: int
) -> None:
    """1,500 batches of 1-3 lines from many sources, room made after each:
    what the fair ring holds after every batch is what dropping the largest
    source's oldest entry (ties: the oldest oldest) leaves.  Long enough for
    the level to go down many times and its bookkeeping to be rebuilt (the
    model machines' runs are too short for that)."""
    rnd = random.Random(seed)
    ring = Ring(max_lines)
    model: list[tuple[int, str]] = []  # seq, source
    evicted: Counter[str] = Counter()
    for _ in range(1500):
        source, n = f"s{rnd.randrange(sources)}", rnd.randint(1, 3)
        first = ring.next_seq
        block, _ = make_block(source, first, [5] * n, "explicit")
        ring.extend(block)
        model += [(first + i, source) for i in range(n)]
        while len(model) > max_lines:
            chosen = fair_choice([(s, seq, 1) for seq, s in model])
            model.remove(next(held for held in model if held[1] == chosen))
            evicted[chosen] += 1
        parts = ring.snapshot().parts
        assert [(b.first_seq + i, b.source) for b, a, z in parts for i in range(a, z)] == model
    assert ring.evicted_by_source() == dict(evicted)
    assert ring.held_by_source() == Counter(s for _, s in model)
