"""What memlogd sends a reader (memlogd.daemon.answers) against a naive model:
every entry the ring holds, one by one, filtered, cut to the tail, with its
seq; whatever way the entries sit in the ring's blocks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memlogd.config import FOLLOW_BATCH
from memlogd.daemon import answers
from memlogd.daemon.encoding import encode_block
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Ring
from memlogd.wire import protocol as proto
from memlogd.wire.filters import RequestFilter
from memlogd.wire.severity import level_or_default

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Held:
    seq: int
    source: str
    time_ns: int
    encoded: bytes  # without its newline


# lines with and without a level (SPEC 15), some that must be escaped in JSON
_LEVELLED = st.sampled_from(
    [b"<3>err", b"<4>warn", b"<7>", b'{"level":"error"}', b'level="crit" x', b"ERROR:a:b"]
)
batches = st.lists(
    st.tuples(
        st.sampled_from(["web", "db", "kmsg"]),
        st.integers(0, 5),  # time in seconds
        st.lists(
            _LEVELLED | st.binary(max_size=12).map(lambda b: b.replace(b"\n", b" ")), min_size=1
        ),
    ),
    max_size=12,
)

Batches = list[tuple[str, int, list[bytes]]]


def filled(max_lines: int, batch_list: Batches, policy: str = "fair") -> tuple[Ring, list[Held]]:
    """A ring and, in seq order, every entry appended (held or not: see held())."""
    ring = Ring(max_lines, policy=policy)
    model: list[Held] = []
    for source, secs, lines in batch_list:
        time_ns = secs * 1_000_000_000
        block = encode_block(time_ns, source, Lines.of(lines))
        first = ring.next_seq
        ring.extend(block)
        model += [
            Held(first + i, source, time_ns, entry)
            for i, entry in enumerate(block.entries(0, len(lines)))
        ]
    return ring, model


def held(ring: Ring, model: list[Held]) -> list[Held]:
    """The entries the ring holds (which ones: tests/unit/test_ring.py)."""
    seqs = {b.first_seq + i for b, a, z in ring.snapshot().parts for i in range(a, z)}
    return [h for h in model if h.seq in seqs]


def expected(model: list[Held], kept: list[Held], start: int, end: int, gaps_from: int) -> bytes:
    """Seqs ``start .. end-1``: the ``kept`` entries with their seq, and a
    dropped record for each run of seqs not held (from ``gaps_from`` on)."""
    held_seqs = {h.seq for h in model}
    by_seq = {h.seq: h for h in kept}
    out = b""
    seq = start
    while seq < end:
        if seq in held_seqs:
            if seq in by_seq:
                out += proto.add_seq(by_seq[seq].encoded, seq) + b"\n"
            seq += 1
            continue
        run = seq
        while seq < end and seq not in held_seqs:
            seq += 1
        if run >= gaps_from:
            out += proto.encode_dropped(run, seq - run)
    return out


def with_seq(held: list[Held]) -> bytes:
    return b"".join(proto.add_seq(h.encoded, h.seq) + b"\n" for h in held)


policies = st.sampled_from(["fair", "oldest"])


@settings(max_examples=300)
@given(
    st.integers(1, 30),
    batches,
    st.lists(st.sampled_from(["web", "d*", "kmsg", "nothing"]), max_size=2).map(tuple),
    st.none() | st.integers(0, 60),
    st.none() | st.integers(0, 40),
    st.none() | st.integers(0, 5),
    st.none() | st.tuples(st.integers(0, 7), st.integers(0, 7)).map(sorted).map(tuple),
    policies,
)
def test_an_extended_dump_is_the_held_entries_filtered_after_the_cursor_cut_to_the_tail(
    max_lines: int,
    batch_list: Batches,
    sources: tuple[str, ...],
    after_seq: int | None,
    tail: int | None,
    since_s: int | None,
    priority: tuple[int, int] | None,
    policy: str,
) -> None:
    """With a cursor, the holes after it are dropped records (with a tail,
    those after the first entry sent), in seq order among the entries."""
    ring, everything = filled(max_lines, batch_list, policy)
    model = held(ring, everything)
    since_ns = None if since_s is None else since_s * 1_000_000_000
    request = proto.QueryRequest(
        sources=sources, after_seq=after_seq, tail=tail, since_ns=since_ns, priority=priority
    )
    keep = RequestFilter(request)
    chunks = list(answers.extended_dump(ring, request, keep))
    chosen = [h for h in model if keep.keeps(h.source, h.time_ns)]
    if priority is not None:  # each entry's own level, before the tail
        lo, hi = priority
        chosen = [
            h for h in chosen if lo <= level_or_default(proto.decode_entry(h.encoded).msg) <= hi
        ]
    chosen = [h for h in chosen if after_seq is None or h.seq > after_seq]
    if tail is not None:
        chosen = chosen[max(0, len(chosen) - tail) :] if tail else []
    if after_seq is None:
        want = with_seq(chosen)
    else:
        gaps_from = ring.next_seq if tail is not None and not chosen else 0
        if tail is not None and chosen:
            gaps_from = chosen[0].seq + 1
        want = expected(model, chosen, after_seq + 1, ring.next_seq, gaps_from)
    assert b"".join(chunks) == want
    assert all(chunk.count(b"\n") <= FOLLOW_BATCH for chunk in chunks)


def test_an_unfiltered_dump_from_seq_0_covers_every_seq_once() -> None:
    ring, _everything = filled(4, [("quiet", 0, [b"q"])] + [("flood", 1, [b"f", b"g"])] * 5)
    request = proto.QueryRequest(after_seq=0)
    got = b"".join(answers.extended_dump(ring, request, RequestFilter(request)))
    assert got.count(b"\n") == 5  # quiet 1, dropped 2-8, flood 9, 10 and 11
    assert b'"msg":"q","seq":1}\n{"seq":2,"dropped":7}\n' in got


@settings(max_examples=300)
@given(st.integers(1, 30), batches, st.integers(-5, 40), st.integers(1, 7), policies)
def test_a_follower_is_sent_every_entry_from_its_cursor_once(
    max_lines: int, batch_list: Batches, cursor: int, limit: int, policy: str
) -> None:
    """Base mode: the entries as they are; extended: with their seq, and a
    dropped record for each run of seqs gone."""
    ring, everything = filled(max_lines, batch_list, policy)
    model = held(ring, everything)
    keep = RequestFilter(proto.QueryRequest(sources=("web", "kmsg"), priority=(0, 4)))
    render = answers.extended_renderer(keep)
    base, extended, seq = b"", b"", cursor
    while seq < ring.next_seq:
        piece = ring.read(seq, limit)
        base += answers.render_base(piece)
        extended += render(piece)
        seq = piece.next_seq
    mine = [h for h in model if h.seq >= cursor]
    assert base == b"".join(h.encoded + b"\n" for h in mine)
    kept = [
        h
        for h in mine
        if h.source in ("web", "kmsg") and level_or_default(proto.decode_entry(h.encoded).msg) <= 4
    ]
    assert extended == expected(model, kept, max(cursor, 1), ring.next_seq, 0)


@given(st.integers(1, 30), batches, policies)
def test_a_base_dump_is_every_held_entry_in_chunks(
    max_lines: int, batch_list: Batches, policy: str
) -> None:
    ring, everything = filled(max_lines, batch_list, policy)
    model = held(ring, everything)
    chunks = list(answers.base_dump(ring.snapshot()))
    assert b"".join(chunks) == b"".join(h.encoded + b"\n" for h in model)
    assert all(0 < chunk.count(b"\n") <= FOLLOW_BATCH for chunk in chunks)
