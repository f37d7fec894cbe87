"""The daemon's state: the ring, what is known of each source, counters, stats.

:meth:`LogState.append` is the one way into the ring: a batch of lines read
together from one source gets one timestamp, is encoded to JSON once,
written to the journal (when a keeper holds one), and is then offered to the
console echo and to every reader (docs/memlogd.md, "How a line travels");
only then does the ring make room (SPEC 14: a follower that keeps up is
handed a batch before the fair policy may evict it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from memlogd.config import DROP_REPORT_S, WARN_BURST, DaemonConfig
from memlogd.daemon.console import Console
from memlogd.daemon.encoding import encode_block
from memlogd.daemon.journal import Journal
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Block, Ring
from memlogd.ratelimit import LimitedLog
from memlogd.wire import protocol as proto
from memlogd.wire.timefmt import format_time

log = structlog.get_logger("memlogd")


@dataclass
class SourceInfo:
    """Per source name, for stats."""

    received: int = 0
    open: int = 0
    pid: int | None = None
    uid: int | None = None


def new_warnings() -> LimitedLog:
    """Warnings a hostile peer can trigger: a few per period, then a count, so a
    flood never pushes real log lines out of the ring."""
    return LimitedLog(log, DROP_REPORT_S, burst=WARN_BURST)


class LogState:
    """The ring and everything counted about what went into it."""

    def __init__(
        self,
        config: DaemonConfig,
        instance: str,
        ring: Ring | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.instance = instance
        if ring is None:
            ring = Ring(config.max_lines, config.max_bytes, policy=config.evict)
        self.ring = ring
        self.journal = journal  # the ring's crash-safe copy, when a keeper holds it
        if journal is not None:
            if ring.trimmed is None:
                ring.trimmed = []  # the blocks evictions cut, for the journal
            self._trim_journal(journal)  # what a replay cut (memlogd.daemon.worker)
        self.frozen = False  # handed over to the next worker: nothing more is appended
        self.started = time.monotonic()
        self.sources: dict[str, SourceInfo] = {
            proto.INTERNAL_SOURCE: SourceInfo(pid=os.getpid(), uid=os.getuid())
        }
        self.received = 0
        self.console: Console | None = None
        self.warnings = new_warnings()
        # called after every append (the readers' push), and to add stats
        self.on_append: Callable[[], None] = _nothing
        # the first seq a blocked follower has not been handed yet (None: none),
        # and what to do when the ring kept such entries over its limits
        self.protect: Callable[[], int | None] = _no_one
        self.protected: Callable[[], None] = _nothing
        self.extra_stats: list[Callable[[], dict[str, Any]]] = []

    def append(self, source: str, lines: Lines, info: SourceInfo | None = None) -> int:
        """One batch of lines from one source into the ring, then to readers;
        returns how many lines it was."""
        if self.frozen or not lines:
            return 0
        now = time.time_ns()
        ring = self.ring
        first_seq = ring.next_seq
        block = encode_block(now, source, lines)
        n = len(block)
        journal = self.journal
        # the counts the journal's trims have reached (the append may drop more)
        dropped, evicted, keep_from = ring.dropped, ring.dropped_of(source), ring.first_block_seq
        ring.append(block)
        cut = 0
        if journal is not None:  # committed before any reader can see the entries
            # but for the batch's first ``cut`` lines, which the room made next
            # drops, when they are most of it: then they would be copied, carried
            # or compacted (docs/memlogd.md, "What a batch is journaled as").
            # What the append dropped of the source's entries that had left the
            # ring lazily is trimmed with the room made next (one trim a batch):
            # until then the journal holds those entries and does not count them
            cut = self._journal_cut(block, lines) if n > 1 else 0  # (one entry always stays)
            journal.overwritten = dropped + cut
            journal.append_lines(
                first_seq, now, source, lines, n, keep_from, evicted + cut, skip=cut
            )
        self.received += n
        if info is None:
            info = self.sources.get(source)
        if info is not None:
            info.received += n
        if self.console is not None:
            self.console.echo(format_time(now), source, lines)
        self.on_append()
        self.make_room((block, cut) if cut else None)
        if cut and block.start < cut:  # a follower blocked within it meanwhile: kept
            self._journal_kept(block, lines, cut)
        return n

    def _journal_cut(self, block: Block, lines: Lines) -> int:
        """How many of the first lines of the batch just appended need not be
        journaled: those the room made next drops (Ring.planned_cut), but for
        any a blocked follower was not handed yet, when they are at least half
        of it (fewer: a record mostly held, trimmed as the ring cuts it, is
        cheaper than finding where the kept lines start).  The block is told
        where its kept entries start (found once, for both)."""
        n = len(block)
        least = (n + 1) // 2
        cut = self.ring.planned_cut(block, least)
        if cut:
            protect = self.protect()
            if protect is not None:
                cut = min(cut, protect - block.first_seq)
            if cut < least:
                return 0
            head, body = lines.tail(cut, n)
            block.remember(cut, len(head) + len(body))
        return cut

    def make_room(self, journaled: tuple[Block, int] | None = None) -> None:
        """Evict what the ring holds beyond its limits, but for what a follower
        that holds the intake was not handed yet (SPEC 14); then the journal.
        ``journaled``: the batch just appended and its first lines the journal
        was not written (LogState.append): when the room made is those lines
        only, the journal has it already (the batch from there on, and the
        counts: the commit of the append), so nothing more is written.  The
        journal is trimmed of what the append dropped too (the entries of the
        source that had left the ring lazily), even with no room to make."""
        ring = self.ring
        if ring.over:
            protect = self.protect()
            ring.evict(protect)
            if protect is not None and ring.over:
                self.protected()
        journal = self.journal
        if journal is None:
            return
        if journaled is not None:
            block, cut = journaled
            if ring.trimmed == [(block.origin, block.origin + cut, block.source)]:
                ring.trimmed.clear()
                return
        self._trim_journal(journal)

    def _journal_kept(self, block: Block, lines: Lines, cut: int) -> None:
        """The ring kept more of a batch than the journal was written (a
        follower blocked within it as it was handed): the rest, and the
        source's count of evicted entries, now."""
        journal = self.journal
        assert journal is not None
        ring, source, first_seq = self.ring, block.source, block.origin
        journal.trim((), [(source, ring.dropped_of(source))])
        journal.overwritten = ring.dropped
        journal.append_lines(
            first_seq,
            block.time_ns,
            source,
            lines,
            len(block),
            ring.first_block_seq,
            ring.dropped_of(source),
            skip=block.start,
            stop=cut,
        )

    def _trim_journal(self, journal: Journal) -> None:
        """Tell the journal what left the ring's blocks (the ring's ``dropped``
        counts: entries that left the ring lazily are still in its blocks, and
        in the journal, which a replay cuts again: docs/memlogd.md)."""
        ring = self.ring
        trimmed = ring.trimmed
        if not trimmed:
            return
        # a block cut twice is listed twice (or its compacted copy: the same
        # origin), the last cut last; each record's store is written once
        cuts = {origin: seq for origin, seq, _ in trimmed}
        sources = {source for _, _, source in trimmed}
        journal.trim(cuts.items(), [(s, ring.dropped_of(s)) for s in sources])
        trimmed.clear()
        journal.commit(ring.dropped)

    def append_event(self, text: str) -> None:
        """The daemon's own structlog events, as lines of source ``memlogd``."""
        self.append(proto.INTERNAL_SOURCE, Lines.of([text.encode("utf-8", "replace")]))

    def source_info(self, name: str) -> SourceInfo:
        info = self.sources.get(name)
        if info is None:
            if len(self.sources) >= 4 * self.config.max_sources:
                self._forget_idle_sources()
            info = self.sources[name] = SourceInfo()
        return info

    def _forget_idle_sources(self) -> None:
        held = self.ring.held_by_source()
        for name in [n for n, i in self.sources.items() if i.open == 0 and not held[n]]:
            del self.sources[name]
            self.ring.forget(name)

    def stats(self) -> dict[str, Any]:
        ring = self.ring.statistics()
        held = self.ring.held_by_source()
        evicted = self.ring.evicted_by_source()
        values: dict[str, Any] = {
            "entries": ring.entries,
            "bytes": ring.bytes,
            "received": self.received,
            "overwritten": ring.overwritten,
            "evict": self.config.evict,
            "console_dropped": self.console.dropped if self.console else 0,
            "first_seq": ring.first_seq,
            "next_seq": ring.next_seq,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        for extra in self.extra_stats:
            values.update(extra())
        values["limits"] = self.config.limits()
        # also the sources a previous worker registered that still hold entries
        # (or were evicted from): the ring came from its journal
        sources = dict(self.sources)
        for name in [*held, *evicted]:
            if name not in sources:
                sources[name] = SourceInfo()
        values["sources"] = {
            name: {
                "entries": held[name],
                "received": info.received,
                "evicted": evicted.get(name, 0),
                "open": info.open,
                "pid": info.pid,
                "uid": info.uid,
            }
            for name, info in sources.items()
        }
        return values


def _nothing() -> None:
    pass


def _no_one() -> int | None:
    return None
