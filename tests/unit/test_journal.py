"""The journal (memlogd.daemon.journal): what a new worker replays is what the ring held.

A journal is driven by a model of the ring (the seq of the oldest entry still
held), and killed at any write, with that write torn at any byte: whatever
is left must open, and hold a run of batches that ends with the last batch
whose commit was written whole and covers everything the ring held then.
"""

from __future__ import annotations

import itertools
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from memlogd.config import READ_BURST, DaemonConfig
from memlogd.daemon.encoding import encode_block
from memlogd.daemon.journal import (
    HEADER_SIZE,
    SLACK,
    VERSION,
    Journal,
    JournalError,
    Record,
    capacity_for,
    new_header,
    upgrade,
)
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Ring
from memlogd.daemon.state import LogState
from memlogd.daemon.worker import open_journal, replay
from tests import journal_v1

pytestmark = pytest.mark.unit

INSTANCE = str(uuid.UUID(int=7))


class Recorder(Journal):
    """A journal that logs every write (offset, bytes) before making it."""

    def __init__(self, buf: memoryview, log: list[tuple[int, bytes]]) -> None:
        self.log = log
        super().__init__(buf)

    def _write(self, at: int, data: bytes | memoryview) -> None:
        self.log.append((at, bytes(data)))
        super()._write(at, data)


def fresh(size: int) -> bytearray:
    buf = bytearray(size)
    header = new_header(size, INSTANCE)
    buf[: len(header)] = header
    return buf


line_text = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"."))
# batches of one shape per example (a service's reads look alike): the journal
# then never drops a batch the ring holds
batches = st.tuples(
    st.sampled_from(["a", "b.out", "kmsg", "ü;\\x", ""]), st.integers(1, 6)
).flatmap(
    lambda shape: st.lists(
        st.tuples(st.just(shape[0]), st.lists(line_text, min_size=shape[1], max_size=shape[1])),
        min_size=1,
        max_size=40,
    )
)


def run(buf: bytearray, batch_list: list[tuple[str, list[bytes]]], ring_lines: int):
    """Append every batch as the ring would (it holds ``ring_lines`` entries);
    returns the write log and, after each batch, (writes so far, expected records)."""
    log: list[tuple[int, bytes]] = []
    journal = Recorder(memoryview(buf), log)
    appended: list[Record] = []
    seq = 1
    # (writes, next_seq, records, the same without those the next batch evicts)
    states: list[tuple[int, int, list[Record], list[Record]]] = []
    held: list[Record] = []
    for i, (source, lines) in enumerate(batch_list):
        first_seq = seq
        seq += len(lines)
        keep_from = max(1, seq - ring_lines)
        states.append((len(log), first_seq, held, [r for r in held if last(r) >= keep_from]))
        raw = b"\n".join(lines)  # in two pieces, as the intake gives them
        pieces: list[bytes | memoryview] = [raw[: len(raw) // 2], memoryview(raw)[len(raw) // 2 :]]
        journal.append(first_seq, 1000 + i, source, pieces, len(lines), keep_from)
        appended.append(Record(first_seq, 1000 + i, source, lines))
        held = [r for r in appended if last(r) >= keep_from]
        assert journal.squeezed == 0, "the journal lost batches the ring holds"
    states.append((len(log), seq, held, held))
    return log, states


def last(record: Record) -> int:
    return record.first_seq + len(record.lines) - 1


def replayed(buf: bytearray) -> tuple[int, list[Record]]:
    journal = Journal(memoryview(buf))
    assert journal.instance == INSTANCE
    return journal.next_seq, list(journal.records())


@settings(max_examples=150)
@given(batches, st.integers(1, 30))
def test_a_journal_holds_what_the_ring_holds(batch_list, ring_lines):
    buf = fresh(capacity_for(ring_lines, 40))
    _log, states = run(buf, batch_list, ring_lines)
    _writes, next_seq, held, _ = states[-1]
    got_next, got = replayed(buf)
    assert got_next == next_seq
    assert got == held


@settings(max_examples=150)
@given(batches, st.integers(1, 30), st.data())
def test_a_kill_at_any_write_leaves_a_journal_of_what_was_committed(batch_list, ring_lines, data):
    size = capacity_for(ring_lines, 40)
    original = fresh(size)
    log, states = run(bytearray(original), batch_list, ring_lines)
    cut = data.draw(st.integers(0, len(log) - 1), label="killed during write")
    at, torn = log[cut]
    kept = data.draw(st.integers(0, len(torn)), label="bytes of it written")
    buf = bytearray(original)
    for offset, chunk in log[:cut]:
        buf[offset : offset + len(chunk)] = chunk
    buf[at : at + kept] = torn[:kept]
    got_next, got = replayed(buf)
    # the last batch whose commit was written whole; while the next one is being
    # written, the batches it evicts from the ring may already be gone
    done = [s for s in states if s[0] <= cut or (s[0] == cut + 1 and kept == len(torn))]
    _writes, next_seq, held, after_eviction = done[-1]
    assert got_next == next_seq
    assert got in (held, after_eviction)


def test_pages_touched_stay_near_what_the_ring_holds():
    """100-byte lines in batches of 50, a ring of 5000: the journal's area is
    sized for the worst case (13 MB) but only the front of it is used."""
    size = capacity_for(5000, 1024)
    buf = fresh(size)
    journal = Journal(memoryview(buf))
    seq = 1
    for i in range(2000):
        lines = [b"%06d " % i + b"x" * 93] * 50
        journal.append(seq, i, "svc.out", [b"\n".join(lines)], 50, max(1, seq + 50 - 5000))
        seq += 50
    used = max(i for i in range(len(buf)) if buf[i]) - HEADER_SIZE
    assert used < 2.1 * 5000 * 101  # about twice what the ring holds (101 bytes a line)
    assert size > 10 * 1024 * 1024
    assert sum(len(r.lines) for r in Journal(memoryview(buf)).records()) >= 5000


def test_not_a_journal_is_refused():
    with pytest.raises(JournalError):
        Journal(memoryview(bytearray(HEADER_SIZE * 2)))
    buf = fresh(HEADER_SIZE * 4)
    buf[64:200] = bytes(136)  # both commit slots wiped
    with pytest.raises(JournalError):
        Journal(memoryview(buf))


def test_the_largest_ring_gets_a_journal_its_header_can_describe():
    # -max-lines 2000000 with the default line length: more than 4 GiB at worst,
    # capped so that the header's 32-bit area size holds it
    size = capacity_for(2_000_000, 1024)
    header = new_header(size, INSTANCE)
    assert int.from_bytes(header[8:12], "little") == size - HEADER_SIZE
    assert size - HEADER_SIZE < 1 << 32


def test_an_empty_line_batch_and_a_new_journal():
    buf = fresh(HEADER_SIZE * 4)
    assert replayed(buf) == (1, [])
    journal = Journal(memoryview(buf))
    journal.append(1, 5, "x", [b""], 1, 1)
    assert replayed(buf) == (2, [Record(1, 5, "x", [b""])])


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(st.text(max_size=600), st.lists(line_text, min_size=1, max_size=6)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 30),
)
def test_any_batches_a_replay_gives_the_newest_batches_in_order(batch_list, ring_lines):
    """Batches whose size per entry swings wildly may squeeze the oldest out of
    a journal early (counted); what is left is still the newest, in order."""
    # the worst case's size for this ring (capacity_for would add room for a whole read)
    buf = fresh(HEADER_SIZE + ring_lines * (26 + 8 + 1536 + 40))
    journal = Journal(memoryview(buf))
    appended = []
    seq = 1
    for i, (source, lines) in enumerate(batch_list):
        journal.append(seq, i, source, [b"\n".join(lines)], len(lines), max(1, seq - ring_lines))
        appended.append(Record(seq, i, source.encode("utf-8", "replace").decode(), lines))
        seq += len(lines)
    got = sorted(Journal(memoryview(buf)).records(), key=lambda r: r.first_seq)
    keep = max(1, seq - ring_lines)
    held = [r for r in appended if r.first_seq + len(r.lines) - 1 >= keep]
    # what is held is the newest, in order (a copy comes later: replay sorts);
    # a record relocated for room before the ring let go of it may still be
    # there (nothing here marks its lines dead as LogState's trims do): its
    # lines are then the batch's own
    got_held = [r for r in got if r.first_seq + len(r.lines) - 1 >= keep]
    assert got_held == held[len(held) - len(got_held) :]
    assert all(r in appended for r in got)
    assert len(got_held) >= len(held) - journal.squeezed


@settings(max_examples=60)
@given(
    st.lists(
        st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"."))
        | st.integers(250, 300).map(lambda n: b"z" * n),
        min_size=1,
    ),
    st.integers(1, 5),
    st.integers(0, 10),
    st.booleans(),
)
@example([b"z" * 300] * 7, 5, 3, True)  # 1504 bytes held: two records
@example([b"z" * 300] * 7, 5, 3, False)
def test_a_batch_larger_than_half_the_journal_is_journaled_in_records_that_fit(
    lines: list[bytes], held: int, head: int, known: bool
):
    """A small journal (-max-lines 3 with long lines, say) and a batch of any
    size: the lines the ring still holds are all journaled, with their seqs,
    in as many records as fit, and none is refused."""
    buf = fresh(HEADER_SIZE + 3000)  # 5 lines of 300 bytes are more than half
    journal = Journal(memoryview(buf))
    journal.append(1, 0, "before", [b"old"], 1, 1)
    raw = b"\n".join(lines)
    head = min(head, len(lines[0]))  # the partial line carried over, then the read
    ends = Lines.of(lines).ends if known else None  # None: found when needed
    batch = Lines(raw[:head], raw[head:], len(raw) - head, ends)
    keep_from = max(2, 2 + len(lines) - held)
    journal.append_lines(2, 7, "svc", batch, len(lines), keep_from)
    records = list(Journal(memoryview(buf)).records())
    mine = [r for r in records if r.source == "svc"]
    assert [line for r in mine for line in r.lines] == lines[keep_from - 2 :]
    assert [r.first_seq for r in mine][:1] == [keep_from]
    assert all(r.first_seq + len(r.lines) == n.first_seq for r, n in itertools.pairwise(mine))
    assert Journal(memoryview(buf)).next_seq == 2 + len(lines)


def test_however_small_the_ring_a_whole_read_fits_in_one_record():
    """-max-lines 1: a read of READ_BURST bytes after a partial line of
    max_line_len, from a source with the longest name, is one record."""
    buf = fresh(capacity_for(1, 1024))
    journal = Journal(memoryview(buf))
    lines = [b"p" * 1023 + b"x" * 1024] + [b"y" * 1023] * (READ_BURST // 1024 - 1)
    raw = b"\n".join(lines)
    name = "\u20ac" * 512  # 1536 bytes of UTF-8
    batch = Lines(raw[:1023], raw[1023:], len(raw) - 1023, None)
    journal.append_lines(1, 7, name, batch, len(lines), 1)
    assert [len(r.lines) for r in Journal(memoryview(buf)).records()] == [len(lines)]


# ---------------------------------------------------------------------- the fair ring


def held_entries(ring: Ring) -> list[tuple[int, bytes]]:
    snap = ring.snapshot()
    return [
        (block.first_seq + a + i, entry)
        for block, a, b in snap.parts
        for i, entry in enumerate(block.entries(a, b))
    ]


def blocking_follower(state: LogState, blocked_at: int | None) -> None:
    """A follower of ``state`` for its next batch: not blocked as the batch is
    journaled; blocked at its line ``blocked_at`` (None: never) once it has
    been handed the batch (``on_append``), before the room is made."""
    first_seq = state.ring.next_seq
    handed = False

    def hand() -> None:
        nonlocal handed
        handed = True

    def protect() -> int | None:
        return None if not handed or blocked_at is None else first_seq + blocked_at

    state.on_append = hand
    state.protect = protect


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 30),
    st.sampled_from(["fair", "oldest"]),
    st.one_of(st.just(0), st.integers(40, 200)),
    st.integers(1, 6).flatmap(
        lambda n: st.lists(
            st.tuples(
                st.sampled_from(["quiet", "flood", "kmsg1"]),
                st.lists(line_text, min_size=n, max_size=n),
                st.booleans(),  # then a worker restart: a new worker replays the journal
                # a follower blocks at this line of the batch as it is handed
                # (after the journal was written what the ring would keep)
                st.one_of(st.none(), st.integers(0, 6)),
            ),
            min_size=1,
            max_size=60,
        )
    ),
)
@example(  # an append that drops what left a source lazily commits that count too
    1, "fair", 0, [("quiet", [b""], False, None), ("quiet", [b""], False, None),
                   ("flood", [b""], False, None), ("quiet", [b""], True, None)],
)  # fmt: skip
def test_a_replay_gives_the_fair_ring_with_its_holes_and_counts(
    max_lines: int,
    policy: str,
    max_bytes: int,
    steps: list[tuple[str, list[bytes], bool, int | None]],
) -> None:
    """LogState writes the journal as the ring evicts (dead lines, relocated
    records, batches without what the ring drops at once, and what a
    follower that blocked within one kept); a worker started at any point
    replays the same entries with the same seqs and times, the same
    overwritten count and evicted per source."""
    config = DaemonConfig(max_lines=max_lines, max_line_len=40, max_bytes=max_bytes, evict=policy)
    check_replays(config, steps)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 12),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(1, 14),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 14)),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_a_replay_after_batches_journaled_without_what_goes_at_once(
    max_lines: int, batches: list[tuple[str, int, bool, int | None]]
) -> None:
    """The same, with batches large against a small fair ring of a few
    sources: most are journaled without what the level drops at once, and a
    follower often blocks within one as it is handed."""
    config = DaemonConfig(max_lines=max_lines, max_line_len=40)
    steps = [
        (source, [b"%s%d.%d" % (source.encode(), i, k) for k in range(n)], restart, blocked_at)
        for i, (source, n, restart, blocked_at) in enumerate(batches)
    ]
    check_replays(config, steps)


def check_replays(
    config: DaemonConfig, steps: list[tuple[str, list[bytes], bool, int | None]]
) -> None:
    """Each step's batch into a LogState with a journal, a follower maybe
    blocking within it; where a step says so, the worker is killed and a new
    one replays the journal: the same ring as this one once it has made room
    without the follower, counts too; and so does the journal as the append
    committed it, before the room was made (and the journal trimmed)."""
    buf = fresh(capacity_for(config.max_lines, config.max_line_len))
    journal = Journal(memoryview(buf))
    journal.compact_above = 0  # records of any size little of which is held are copied
    journal.slack = 0  # at once
    state = LogState(config, INSTANCE, None, journal)
    for source, lines, restart, blocked_at in steps:
        blocking_follower(state, blocked_at)
        committed: list[bytearray] = []  # the journal when the followers are handed the batch
        hand = state.on_append

        def commit_point(
            hand: Callable[[], None] = hand, seen: list[bytearray] = committed, at: bytearray = buf
        ) -> None:
            seen.append(bytearray(at))
            hand()

        state.on_append = commit_point
        state.append(source, Lines.of(lines))
        blocking_follower(state, None)
        assert state.journal is not None
        if state.journal.squeezed:  # the journal's start came too soon (counted): not here
            break
        if not restart:
            continue
        # killed now, a follower maybe still blocked: the new worker has none,
        # so its ring is this one once room is made without the follower
        buf = bytearray(buf)
        state.make_room()
        journal = Journal(memoryview(buf))
        ring = replay(journal, config)
        assert held_entries(ring) == held_entries(state.ring)
        assert (ring.next_seq, ring.overwritten) == (state.ring.next_seq, state.ring.overwritten)
        held = state.ring.held_by_source()
        evicted = {n: c for n, c in state.ring.evicted_by_source().items() if held[n]}
        assert {n: c for n, c in ring.evicted_by_source().items() if held[n]} == evicted
        for snapshot in committed:  # (none when the batch was empty)
            early = replay(Journal(memoryview(snapshot)), config)
            assert held_entries(early) == held_entries(state.ring)
            assert (early.next_seq, early.overwritten) == (ring.next_seq, ring.overwritten)
            assert {n: c for n, c in early.evicted_by_source().items() if held[n]} == evicted
        journal.compact_above = 0
        journal.slack = 0
        state = LogState(config, INSTANCE, ring, journal)


def test_a_quiet_batch_among_a_flood_is_relocated_and_pages_stay_few() -> None:
    """The quiet source's record would pin the journal's start: it is written
    again further on, and the area used stays near twice what the ring holds."""
    config = DaemonConfig(max_lines=5000, max_line_len=1024)
    buf = fresh(capacity_for(5000, 1024))
    journal = Journal(memoryview(buf))
    state = LogState(config, INSTANCE, None, journal)
    state.append("onboot", Lines.of([b"mounted /data"]))
    for i in range(2000):
        state.append("flood", Lines.of([b"%06d " % i + b"x" * 93] * 50))
    assert journal.relocated > 0 and journal.squeezed == 0
    used = max(i for i in range(len(buf)) if buf[i]) - HEADER_SIZE
    assert used < 4.5 * 5000 * 110  # about four times what the ring holds (docs)
    ring = replay(Journal(memoryview(buf)), config)
    assert held_entries(ring) == held_entries(state.ring)
    assert ring.held_by_source() == {"onboot": 1, "flood": 4999}


def test_a_batch_is_journaled_without_what_the_fair_ring_drops_at_once() -> None:
    """Fair by count, a batch that makes its source the largest is cut down
    to the level as soon as followers are handed it: the journal is written
    only what the ring keeps of it (the rest never reaches the buffer, so it
    is never copied, carried or compacted).  A follower that blocks within
    the batch as it is handed keeps more of it in the ring: that is
    journaled too before the append returns."""
    config = DaemonConfig(max_lines=100, max_line_len=64)
    buf = fresh(capacity_for(100, 64))
    journal = Journal(memoryview(buf))
    state = LogState(config, INSTANCE, None, journal)
    for i in range(10):  # full: ten sources of ten
        state.append(f"w{i}", Lines.of([b"w%d %03d" % (i, k) for k in range(10)]))
    state.append("w0", Lines.of([b"w0 new %03d" % k for k in range(50)]))  # the level starts
    state.append("w1", Lines.of([b"w1 new %03d" % k for k in range(50)]))
    assert b"w1 new 039" not in buf and b"w1 new 040" in buf
    last = list(Journal(memoryview(buf)).records())[-1]
    assert (last.source, last.first_seq, last.lines, last.evicted) == (
        "w1",
        191,
        [b"w1 new %03d" % k for k in range(40, 50)],
        50,
    )
    blocking_follower(state, 20)
    state.append("w2", Lines.of([b"w2 new %03d" % k for k in range(50)]))
    assert state.ring.held_by_source()["w2"] == 30
    assert b"w2 new 019" not in buf and b"w2 new 020" in buf
    roomy = DaemonConfig(max_lines=1000, max_line_len=64)  # a replay that keeps all
    assert held_entries(replay(Journal(memoryview(buf)), roomy)) == held_entries(state.ring)
    blocking_follower(state, None)
    state.make_room()  # the follower read on
    ring = replay(Journal(memoryview(buf)), config)
    assert held_entries(ring) == held_entries(state.ring)
    assert ring.evicted_by_source() == state.ring.evicted_by_source()


def v1_journal(size: int, batches: list[tuple[int, str, list[bytes]]], next_seq: int) -> bytearray:
    """A journal as the version before the fair ring wrote it (its layout:
    records of ``size, count, first_seq, time_ns, name_len``, slots without
    overwritten)."""
    buf = bytearray(size)
    buf[:112] = new_header(size, INSTANCE, version=1)[:112]
    pos = 0
    for first_seq, source, lines in batches:
        name = source.encode()
        body = b"\n".join(lines)
        rec = struct.pack("<IIQQH", 26 + len(name) + len(body), len(lines), first_seq, 5, len(name))
        buf[HEADER_SIZE + pos : HEADER_SIZE + pos + len(rec) + len(name) + len(body)] = (
            rec + name + body
        )
        pos += -(-(len(rec) + len(name) + len(body)) // 8) * 8
    slot = struct.pack("<QQQQ", 7, 0, pos, next_seq)
    buf[64 : 64 + 36] = slot + struct.pack("<I", zlib.crc32(slot))
    return buf


def test_an_upgrade_reads_the_previous_versions_journal() -> None:
    buf = v1_journal(capacity_for(10, 40), [(3, "a", [b"1", b"2"]), (5, "b", [b"3"])], 6)
    old = Journal(memoryview(buf))
    assert old.version == 1
    assert [r.lines for r in old.records()] == [[b"1", b"2"], [b"3"]]
    with pytest.raises(JournalError, match="read only"):
        old.append(6, 0, "c", [b"x"], 1, 1)
    journal = upgrade(memoryview(buf))
    assert journal.version == VERSION and journal.instance == INSTANCE
    config = DaemonConfig(max_lines=10, max_line_len=40)
    ring = replay(Journal(memoryview(buf)), config)
    assert (ring.first_seq, ring.next_seq, len(ring)) == (3, 6, 3)
    state = LogState(config, INSTANCE, ring, journal)
    state.append("c", Lines.of([b"4"]))
    again = replay(Journal(memoryview(buf)), config)
    assert held_entries(again) == held_entries(state.ring)


@pytest.mark.parametrize("slack", [4 << 20, SLACK])
def test_records_held_in_part_are_copied_only_past_the_slack(slack: int) -> None:
    """Many sources whose batches the fair ring cuts to a sixth: their records
    are copied only once the lines dropped from them pass the slack, so the
    journal's span stays within twice what the ring holds and the slack
    (and the pages touched within twice that: writing goes back to the area's
    start once the space there can hold as much again).  ``-max-bytes`` is
    set (and never reached): the ring keeps no level, so each batch is
    journaled whole and cut after (as when a follower held the intake)."""
    config = DaemonConfig(max_lines=5000, max_line_len=1024, max_bytes=64 << 20)
    buf = fresh(capacity_for(5000, 1024))
    journal = Journal(memoryview(buf))
    journal.slack = slack
    state = LogState(config, INSTANCE, None, journal)
    for _round in range(4):
        for i in range(60):
            state.append(f"w{i}", Lines.of([b"%03d " % i + b"y" * 95] * 600))
    assert journal.squeezed == 0
    if slack > SLACK:  # 60 records of 60 KB, 5/6 dropped: under 4 MiB
        assert journal.relocated == 0
    else:
        assert journal.relocated > 0
    used = max(i for i in range(len(buf)) if buf[i]) - HEADER_SIZE
    assert used < 2 * (2 * 5000 * 110 + slack + 600 * 110 + 65536)
    ring = replay(Journal(memoryview(buf)), config)
    assert held_entries(ring) == held_entries(state.ring)


def quiet_among_a_flood(
    area: int, max_lines: int, quiet: list[tuple[str, bytes]], floods: int
) -> tuple[Journal, list[tuple[int, bytes]], Iterator[Ring]]:
    """The ``quiet`` lines (a batch each), then ``floods`` batches of 7 lines
    of a flood, into a LogState journaled in ``area`` bytes (0: as sized for
    the ring): the journal, its writes, and the ring a worker killed at each
    write after the quiet ones (whole, or torn in half) replays."""
    config = DaemonConfig(max_lines=max_lines, max_line_len=40)
    original = fresh(HEADER_SIZE + area if area else capacity_for(max_lines, 40))
    buf = bytearray(original)
    log: list[tuple[int, bytes]] = []
    journal = Recorder(memoryview(buf), log)
    journal.compact_above = 0
    state = LogState(config, INSTANCE, None, journal)
    for source, line in quiet:
        state.append(source, Lines.of([line]))
    committed = len(log)
    for i in range(floods):
        state.append("flood", Lines.of([b"%05d " % i + b"x" * 30] * 7))

    def replays() -> Iterator[Ring]:
        killed = bytearray(original)
        for offset, chunk in log[:committed]:
            killed[offset : offset + len(chunk)] = chunk
        for offset, chunk in log[committed:]:
            for kept in {0, len(chunk) // 2}:
                torn = bytearray(killed)
                torn[offset : offset + kept] = chunk[:kept]
                yield replay(Journal(memoryview(torn)), config)
            killed[offset : offset + len(chunk)] = chunk

    return journal, log, replays()


@pytest.mark.parametrize("area", [0, 2400, 2800])  # 0: as sized for the ring; else tight
def test_a_quiet_record_written_again_is_never_out_of_the_journal(area: int) -> None:
    """A quiet source's record among a flood's is written again for room (the
    copy first, in free space, then the original leaves with the commit that
    takes the copy in): killed at any write, torn anywhere, the journal holds it."""
    journal, _log, replays = quiet_among_a_flood(area, 20, [("onboot", b"mounted /data")], 400)
    assert journal.relocated > 0 and journal.unsafe_copies == 0 and journal.squeezed == 0
    for ring in replays:
        assert ring.held_by_source()["onboot"] == 1


@pytest.mark.parametrize("area", [0, 4000])  # 0: as sized for the ring; else tight
def test_quiet_records_written_again_together_are_never_out_of_the_journal(area: int) -> None:
    """Five quiet batches of three sources among a flood: the span needs them
    written again (or, in a journal too small for the ring, the writing
    meets them), and they are, together: one write holds all five; the
    originals leaving with the commit that takes the copies in: killed at any
    write, torn anywhere, the journal holds every quiet line."""
    quiet = [("onboot", b"mounted /data"), ("kmsg", b"eth0 up"), ("onboot", b"mounted /var")]
    quiet += [("acpid", b"listening"), ("kmsg", b"sda ready")]
    journal, log, replays = quiet_among_a_flood(area, 40, quiet, 300)
    assert journal.relocated > 0 and journal.unsafe_copies == 0 and journal.squeezed == 0
    together = max(sum(line in chunk for _source, line in quiet) for _at, chunk in log)
    assert together == len(quiet)  # each lap writes the five again in one piece
    for ring in replays:
        held = ring.held_by_source()
        assert (held["onboot"], held["kmsg"], held["acpid"]) == (2, 2, 1)


@settings(max_examples=40)
@given(
    st.integers(1, 30),
    st.lists(
        st.tuples(
            st.sampled_from(["a", "kmsg", "ü;x"]), st.lists(line_text, min_size=1, max_size=6)
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_the_worker_reads_a_journal_the_previous_version_wrote(
    max_lines: int, batch_list: list[tuple[str, list[bytes]]]
) -> None:
    """A journal written by main's writer before the fair ring (version 1, an
    oldest-first ring) is opened by today's worker as on an upgrade: the same
    instance, the entries the old ring held with their seqs and times, seq
    going on; written in this version, it then replays as usual."""
    config = DaemonConfig(max_lines=max_lines, max_line_len=40)
    buf = bytearray(journal_v1.capacity_for(max_lines, 40))
    header = journal_v1.new_header(len(buf), INSTANCE)
    buf[: len(header)] = header
    old = journal_v1.Journal(memoryview(buf))
    entries: list[
        tuple[int, int, str, bytes]
    ] = []  # what the old ring held: seq, time, source, line
    seq = 1
    for i, (source, lines) in enumerate(batch_list):
        entries += [(seq + j, 100 + i, source, line) for j, line in enumerate(lines)]
        entries = entries[-max_lines:]
        old.append_lines(seq, 100 + i, source, Lines.of(lines), len(lines), entries[0][0])
        seq += len(lines)
    # the previous version dropped a batch its ring still held when a record
    # found no room right after writing went back to the area's start (tiny
    # records: counted in its `squeezed`); no upgrade gives back what is gone
    assume(old.squeezed == 0)
    journal = open_journal(memoryview(buf), config)
    assert (journal.version, journal.instance) == (VERSION, INSTANCE)
    ring = replay(journal, config)
    assert held_entries(ring) == [
        (s, encode_block(t, n, Lines.of([m])).entries(0, 1)[0]) for s, t, n, m in entries
    ]
    assert (ring.next_seq, ring.overwritten) == (seq, entries[0][0] - 1)
    state = LogState(config, INSTANCE, ring, journal)
    state.append("after", Lines.of([b"upgraded"]))
    again = replay(Journal(memoryview(buf)), config)
    assert held_entries(again) == held_entries(state.ring)
    assert again.next_seq == seq + 1
