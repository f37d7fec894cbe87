"""What memlogd sends to a reader: filtering and rendering of answers. PURE: no I/O.

Entries sit in the ring as blocks of encoded JSON (docs/protocol.md); an
answer is chunks of at most ``FOLLOW_BATCH`` of them, each ending in a
newline: in base mode the blocks as they are, in extended mode with
``"seq"`` added to each entry, only the entries that pass the request's
filters, and a ``{"seq":N,"dropped":K}`` record wherever entries the reader
asked for could not be sent: one per run of seqs after the reader's cursor
that the ring no longer holds (SPEC 14: the fair ring has holes), so that an
unfiltered answer from ``after_seq`` 0 covers every seq exactly once.
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


def _render(piece: Slice, keep: RequestFilter | None) -> bytes:
    """A piece in extended mode: its dropped records and (matching) entries
    with their ``seq``, in seq order."""
    if not piece.gaps:
        return _with_seq(piece.parts if keep is None else _kept(keep, piece.parts))
    out: list[bytes] = []
    run: list[Part] = []
    for item in piece.items():
        if len(item) == 2:
            if run:
                out.append(_with_seq(run if keep is None else _kept(keep, run)))
                run = []
            out.append(proto.encode_dropped(item[0], item[1]))
        else:
            run.append(item)
    if run:
        out.append(_with_seq(run if keep is None else _kept(keep, run)))
    return b"".join(out)


def extended_renderer(keep: RequestFilter) -> Render:
    """Renders pieces of an extended follow: the matching entries with their
    ``seq``, and a dropped record for each run of seqs it missed."""

    def render(piece: Slice) -> bytes:
        return _render(piece, keep)

    return render


def extended_dump(ring: Ring, request: proto.QueryRequest, keep: RequestFilter) -> Iterator[bytes]:
    """The dump part of an extended answer: a snapshot of references, taken now
    (the follow part starts where it ends), sent in lazily encoded chunks.
    With a cursor (``after_seq``) the runs of seqs after it that the ring no
    longer holds are dropped records (with ``tail``: those among the entries sent)."""
    snap = ring.snapshot() if request.after_seq is None else ring.read(request.after_seq + 1)
    chosen = _kept(keep, snap.parts)
    gaps = snap.gaps
    if request.tail is not None:
        chosen = _last(chosen, request.tail)
        since = chosen[0][0].first_seq + chosen[0][1] if chosen else snap.end
        gaps = tuple(gap for gap in gaps if gap[0] > since)
    held = Slice(snap.start, snap.end, tuple(chosen), gaps)

    def chunks() -> Iterator[bytes]:
        for piece in held.pieces(FOLLOW_BATCH):
            yield _render(piece, None)

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
