"""What memlogd sends to a reader: filtering and rendering of answers. PURE: no I/O.

Entries sit in the ring as blocks of encoded JSON (docs/protocol.md); an
answer is chunks of at most ``FOLLOW_BATCH`` of them, each ending in a
newline: in base mode the blocks as they are, in extended mode with
``"seq"`` added to each entry, only the entries that pass the request's
filters, and a ``{"seq":N,"dropped":K}`` record wherever entries the reader
asked for could not be sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from memlogd.config import FOLLOW_BATCH
from memlogd.daemon.ring import Part, Ring, Slice
from memlogd.wire import protocol as proto
from memlogd.wire.filters import RequestFilter

Render = Callable[[Slice], bytes]


def _kept(keep: RequestFilter, parts: Iterable[Part]) -> list[Part]:
    """The parts whose entries pass the request's filters (a block's entries
    share their source and time, so a block passes or not as a whole; the
    priority, when asked for, is each entry's own)."""
    if keep.everything:
        return list(parts)
    keeps = keep.keeps
    chosen = [part for part in parts if keeps(part[0].source, part[0].time_ns)]
    if keep.priority is None:
        return chosen
    return _by_priority(keep, chosen)


def _by_priority(keep: RequestFilter, parts: Iterable[Part]) -> list[Part]:
    """The runs of entries of ``parts`` whose level is within the request's
    ``priority`` (SPEC 15; the level is found only here, for a reader that asked)."""
    keeps_level = keep.keeps_level
    out: list[Part] = []
    for block, a, b in parts:
        skip = len(proto.entry_prefix(block.time_ns, block.source).encode("utf-8", "replace"))
        run = -1  # where the current run of kept entries began
        for i, entry in enumerate(block.entries(a, b), a):
            if keeps_level(proto.entry_message(entry, skip)):
                if run < 0:
                    run = i
            elif run >= 0:
                out.append((block, run, i))
                run = -1
        if run >= 0:
            out.append((block, run, b))
    return out


def _with_seq(parts: Iterable[Part]) -> bytes:
    """Entries with their ``seq``, as sent in extended mode."""
    lines = []
    for block, a, b in parts:
        seq = block.first_seq + a
        lines += [proto.add_seq(entry, seq + i) for i, entry in enumerate(block.entries(a, b))]
    return proto.join_lines(lines)


def render_base(piece: Slice) -> bytes:
    """A piece of a base-mode follow: its entries as they are."""
    return piece.joined()


def base_dump(snap: Slice) -> Iterator[bytes]:
    """A base-mode dump of a snapshot, in lazily joined chunks."""
    for piece in snap.pieces(FOLLOW_BATCH):
        yield piece.joined()


def extended_renderer(keep: RequestFilter) -> Render:
    """Renders pieces of an extended follow: the dropped record first, then
    the matching entries with their ``seq``."""

    def render(piece: Slice) -> bytes:
        out = b""
        if piece.missed:
            out = proto.encode_dropped(piece.start - piece.missed, piece.missed)
        return out + _with_seq(_kept(keep, piece.parts))

    return render


def extended_dump(ring: Ring, request: proto.QueryRequest, keep: RequestFilter) -> Iterator[bytes]:
    """The dump part of an extended answer: a snapshot of references, taken now
    (the follow part starts where it ends), sent in lazily encoded chunks."""
    snap = ring.snapshot()
    missed = 0
    if request.after_seq is not None and request.after_seq >= snap.start:
        snap = ring.read(request.after_seq + 1)
    elif request.after_seq is not None:
        missed = snap.start - request.after_seq - 1
    chosen = _kept(keep, snap.parts)
    if request.tail is not None:
        chosen = _last(chosen, request.tail)
    first = [proto.encode_dropped(snap.start - missed, missed)] if missed else []
    held = Slice(0, snap.start, sum(b - a for _, a, b in chosen), tuple(chosen))

    def chunks() -> Iterator[bytes]:
        yield from first
        for piece in held.pieces(FOLLOW_BATCH):
            yield _with_seq(piece.parts)

    return chunks()


def _last(parts: list[Part], n: int) -> list[Part]:
    """The last ``n`` entries of ``parts``."""
    out: list[Part] = []
    for block, a, b in reversed(parts):
        if n <= 0:
            break
        take = min(n, b - a)
        out.append((block, b - take, b))
        n -= take
    out.reverse()
    return out


def follow_start(ring: Ring, request: proto.QueryRequest) -> int | None:
    """The seq an extended answer's follow part starts at (None: no follow)."""
    if not request.follow:
        return None
    if request.dump or request.after_seq is None:
        return ring.next_seq
    # a cursor beyond the ring's end (another instance's) follows from now
    return min(request.after_seq + 1, ring.next_seq)
