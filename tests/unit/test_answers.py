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


def filled(max_lines: int, batch_list: Batches) -> tuple[Ring, list[Held]]:
    """A ring and, in order, the entries it holds."""
    ring = Ring(max_lines)
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
    return ring, model[len(model) - len(ring) :]


def with_seq(held: list[Held]) -> bytes:
    return b"".join(proto.add_seq(h.encoded, h.seq) + b"\n" for h in held)


@settings(max_examples=200)
@given(
    st.integers(1, 30),
    batches,
    st.lists(st.sampled_from(["web", "d*", "kmsg", "nothing"]), max_size=2).map(tuple),
    st.none() | st.integers(0, 60),
    st.none() | st.integers(0, 40),
    st.none() | st.integers(0, 5),
    st.none() | st.tuples(st.integers(0, 7), st.integers(0, 7)).map(sorted).map(tuple),
)
def test_an_extended_dump_is_the_held_entries_filtered_after_the_cursor_cut_to_the_tail(
    max_lines: int,
    batch_list: Batches,
    sources: tuple[str, ...],
    after_seq: int | None,
    tail: int | None,
    since_s: int | None,
    priority: tuple[int, int] | None,
) -> None:
    ring, model = filled(max_lines, batch_list)
    since_ns = None if since_s is None else since_s * 1_000_000_000
    request = proto.QueryRequest(
        sources=sources, after_seq=after_seq, tail=tail, since_ns=since_ns, priority=priority
    )
    keep = RequestFilter(request)
    chunks = list(answers.extended_dump(ring, request, keep))
    first_seq = ring.first_seq
    expected = b""
    if after_seq is not None and after_seq + 1 < first_seq:
        expected = proto.encode_dropped(after_seq + 1, first_seq - after_seq - 1)
    chosen = [h for h in model if keep.keeps(h.source, h.time_ns)]
    if priority is not None:  # each entry's own level, before the tail
        lo, hi = priority
        chosen = [
            h for h in chosen if lo <= level_or_default(proto.decode_entry(h.encoded).msg) <= hi
        ]
    chosen = [h for h in chosen if after_seq is None or h.seq > after_seq]
    if tail is not None:
        chosen = chosen[max(0, len(chosen) - tail) :] if tail else []
    assert b"".join(chunks) == expected + with_seq(chosen)
    assert all(chunk.count(b"\n") <= FOLLOW_BATCH for chunk in chunks)


@settings(max_examples=200)
@given(st.integers(1, 30), batches, st.integers(-5, 40), st.integers(1, 7))
def test_a_follower_is_sent_every_entry_from_its_cursor_once(
    max_lines: int, batch_list: Batches, cursor: int, limit: int
) -> None:
    """Base mode: the entries as they are; extended: with their seq, after a
    dropped record for what was gone."""
    ring, model = filled(max_lines, batch_list)
    keep = RequestFilter(proto.QueryRequest(sources=("web", "kmsg"), priority=(0, 4)))
    render = answers.extended_renderer(keep)
    base, extended, seq = b"", b"", cursor
    while seq < ring.next_seq:
        piece = ring.read(seq, limit)
        base += answers.render_base(piece)
        extended += render(piece)
        seq = piece.next_seq
    held = [h for h in model if h.seq >= cursor]
    assert base == b"".join(h.encoded + b"\n" for h in held)
    gone = max(0, ring.first_seq - max(cursor, 1))
    dropped = proto.encode_dropped(max(cursor, 1), gone) if gone else b""
    kept = [
        h
        for h in held
        if h.source in ("web", "kmsg") and level_or_default(proto.decode_entry(h.encoded).msg) <= 4
    ]
    assert extended == dropped + with_seq(kept)


@given(st.integers(1, 30), batches)
def test_a_base_dump_is_every_held_entry_in_chunks(max_lines: int, batch_list: Batches) -> None:
    ring, model = filled(max_lines, batch_list)
    chunks = list(answers.base_dump(ring.snapshot()))
    assert b"".join(chunks) == b"".join(h.encoded + b"\n" for h in model)
    assert all(0 < chunk.count(b"\n") <= FOLLOW_BATCH for chunk in chunks)
