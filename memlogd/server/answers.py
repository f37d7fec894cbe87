"""What memlogd sends to a reader: filtering and rendering of answers. PURE: no I/O.

Entries sit in the ring as encoded JSON (docs/protocol.md); an answer is
chunks of at most ``FOLLOW_BATCH`` of them joined with newlines, with
``"seq"`` added in extended mode, only the entries that pass the request's
filters, and a ``{"seq":N,"dropped":K}`` record wherever entries the reader
asked for could not be sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from memlogd import protocol as proto
from memlogd.config import FOLLOW_BATCH
from memlogd.filters import RequestFilter
from memlogd.ring import Ring, Slice

Render = Callable[[Slice], bytes]


def matching(ring: Ring, keep: RequestFilter, start: int, count: int) -> list[int]:
    """Offsets ``0 .. count-1`` of the entries from seq ``start`` (all held)
    that pass the request's filters."""
    if keep.everything:
        return list(range(count))
    keeps = keep.keeps
    return [i for i, b in enumerate(ring.batches(start, count)) if keeps(b.source, b.time_ns)]


def render_base(piece: Slice) -> bytes:
    """A piece of a base-mode follow: its entries as they are."""
    return proto.join_lines(piece.data)


def base_dump(snap: Slice) -> Iterator[bytes]:
    """A base-mode dump of a snapshot, in lazily joined chunks."""
    data = snap.data
    for i in range(0, len(data), FOLLOW_BATCH):
        yield proto.join_lines(data[i : i + FOLLOW_BATCH])


def extended_renderer(ring: Ring, keep: RequestFilter) -> Render:
    """Renders pieces of an extended follow: the dropped record first, then
    the matching entries with their ``seq``."""

    def render(piece: Slice) -> bytes:
        out = []
        if piece.missed:
            out.append(proto.encode_dropped(piece.start - piece.missed, piece.missed))
        data = piece.data
        if data:
            start = piece.start
            lines = [
                proto.add_seq(data[i], start + i) for i in matching(ring, keep, start, len(data))
            ]
            out.append(proto.join_lines(lines))
        return b"".join(out)

    return render


def extended_dump(ring: Ring, request: proto.QueryRequest, keep: RequestFilter) -> Iterator[bytes]:
    """The dump part of an extended answer: a snapshot of references, taken now
    (the follow part starts where it ends), sent in lazily encoded chunks."""
    snap = ring.snapshot()
    start, data = snap.start, snap.data
    missed = 0
    if request.after_seq is not None:
        skip = max(0, request.after_seq + 1 - start)
        missed = max(0, start - request.after_seq - 1)
        start, data = start + skip, data[skip:]
    chosen = matching(ring, keep, start, len(data))
    if request.tail is not None:
        chosen = chosen[max(0, len(chosen) - request.tail) :] if request.tail else []
    first = [proto.encode_dropped(start - missed, missed)] if missed else []

    def chunks() -> Iterator[bytes]:
        yield from first
        for i in range(0, len(chosen), FOLLOW_BATCH):
            yield proto.join_lines(
                [proto.add_seq(data[k], start + k) for k in chosen[i : i + FOLLOW_BATCH]]
            )

    return chunks()


def follow_start(ring: Ring, request: proto.QueryRequest) -> int | None:
    """The seq an extended answer's follow part starts at (None: no follow)."""
    if not request.follow:
        return None
    if request.dump or request.after_seq is None:
        return ring.next_seq
    # a cursor beyond the ring's end (another instance's) follows from now
    return min(request.after_seq + 1, ring.next_seq)
