"""logread, the program: show what memlogd holds, and follow it (docs/logread.md).

The command line (flags -> :class:`Options`) is :mod:`logread.cli`.

Flags -> :class:`Options` -> one or two :class:`memlogd.client.Subscription`\\ s
(which do all the talking to memlogd) -> :class:`logread.selection.Selector`
(``-g``, ``--until``, a tail kept here, ``-r``) -> :mod:`logread.render` -> stdout
through :class:`memlogd.termio.Output`, one write per batch.  Losses go to stderr
through :class:`logread.losses.LossReport` (at most one line per second).
Closed stdout (``| head``) ends logread quietly with status 0; Ctrl-C ends it
quietly with status 130.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

import trio

from logread.hints import stdout_hint
from logread.losses import LossReport
from logread.render import (
    escape_controls,
    escape_json_controls,
    make_renderer,
    render_sources,
    render_stats,
    source_counts,
)
from logread.selection import Selector
from memlogd.client import Subscription, fetch_stats
from memlogd.errors import EXIT_INTERRUPTED, MemlogdError, RequestRefusedError
from memlogd.termio import Output, OutputClosedError, watch_closed
from memlogd.wire import protocol as proto
from memlogd.wire.events import Connected, Disconnected, Entries, Gap, Restarted, Waiting
from memlogd.wire.protocol import Cursor

NO_ENTRIES = "-- No entries --"  # journalctl's words (on stderr here: stdout stays data)
HINT_TIMEOUT_S = 5.0  # for the source list, from a memlogd known to answer it
# --stats, --list-sources: upstream's memlogd never answers, so silence this long says
# "upstream's"; a busy VM's memlogd may take longer than the subscription's 0.5 s
STATS_TIMEOUT_S = 2.0


class Fatal(Exception):
    """An expected failure: one line on stderr, exit 1."""


@dataclass(frozen=True)
class Options:
    socket: str
    action: str  # "entries", "stats", "sources" or "boots"
    extended: bool  # ask the extended query first (else upstream's base modes)
    request: proto.QueryRequest  # what memlogd selects: sources, since, tail
    two_phase: bool  # the dump (its tail kept here), then a follow from its end
    grep: re.Pattern[str] | None
    until_ns: int | None
    local_tail: int | None  # -n applied here (with -g or --until, or -p done here)
    reverse: bool
    output: str
    color: bool
    escape: bool  # control characters escaped (a terminal, without -a)
    retry: bool
    source_globs: tuple[str, ...]  # the -s globs, for the hint after "-- No entries --"
    local_priority: tuple[int, int] | None = None  # -p applied here (memlogd refused the key)
    directory: str | None = None  # -D: read logwrite's files there (logread.fromdir)
    boot: str | None = None  # -b: with -D, one boot's lines


def priority_here(opts: Options) -> Options:
    """The options for a memlogd that refused the ``priority`` key (an older
    one): logread selects by priority itself, and so keeps the tail itself."""
    request = opts.request
    local_tail = opts.local_tail if request.tail is None else request.tail
    return replace(
        opts,
        request=replace(request, priority=None, tail=None),
        local_priority=request.priority,
        local_tail=local_tail,
        two_phase=request.follow and request.dump and local_tail is not None,
    )


def refused_priority(opts: Options, exc: RequestRefusedError) -> bool:
    """memlogd refused the request because of its ``priority`` key."""
    return opts.request.priority is not None and "priority" in exc.message


@dataclass
class Outcome:
    code: int = 0
    interrupted: bool = False
    stdout_closed: bool = False


def say(message: str) -> None:
    """One line for the user on stderr (not a log event); on a terminal with its
    control characters escaped (it may quote memlogd's words, or a source name)."""
    if sys.stderr.isatty():
        message = escape_controls(message)
    sys.stderr.write(f"logread: {message}\n")
    sys.stderr.flush()


async def watch_stdout(fd: int, outcome: Outcome, scope: trio.CancelScope) -> None:
    """End logread as soon as the reader of stdout goes away (``| head``)."""
    await watch_closed(fd)
    outcome.stdout_closed = True
    scope.cancel()


async def watch_sigint(outcome: Outcome, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            outcome.interrupted = True
            scope.cancel()
            return


class Losses:
    """The loss lines on stderr, paced by :class:`LossReport`: a held line is
    printed when its second is over (:meth:`run`), or at exit (:meth:`flush`)."""

    def __init__(self) -> None:
        self.report = LossReport()
        self._wake = trio.Event()

    def gap(self, gap: Gap) -> None:
        loss = self.report.gap(gap.seq, gap.count, trio.current_time(), gap.last)
        if loss is not None:
            say(loss.line())
        else:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while (deadline := self.report.deadline()) is not None:
                await trio.sleep_until(deadline)
                loss = self.report.due(trio.current_time())
                if loss is not None:
                    say(loss.line())

    def flush(self) -> None:
        loss = self.report.flush()
        if loss is not None:
            say(loss.line())


class Session:
    """One run of logread over its subscriptions."""

    def __init__(self, opts: Options, out: Output, losses: Losses) -> None:
        self.opts = opts
        self.out = out
        self.losses = losses
        self.render = make_renderer(opts.output, color=opts.color, escape=opts.escape)
        self.answered = False  # a connection answered: a later outage is a lost connection

    async def write_text(self, text: str) -> None:
        await self.out.write(text.encode("utf-8", "replace"))

    async def show(self, entries: Sequence[proto.LogEntry]) -> None:
        if entries:
            await self.write_text(self.render(entries))

    def selector(self, *, tail: int | None = None, reverse: bool = False) -> Selector:
        opts = self.opts
        return Selector(
            grep=opts.grep,
            until_ns=opts.until_ns,
            tail=tail,
            reverse=reverse,
            priority=opts.local_priority,
        )

    async def pump(self, subscription: Subscription, selector: Selector) -> proto.Header | None:
        """Show what ``subscription`` delivers through ``selector``, and say what the
        user must know.  Returns the last header memlogd sent (None: upstream's)."""
        header: proto.Header | None = None
        riding = subscription.retry and not self.opts.retry  # through worker restarts
        async with subscription:
            async for event in subscription:
                if isinstance(event, Entries):
                    await self.show(selector.feed(event.entries))
                    if selector.done:  # past --until
                        break
                elif isinstance(event, Gap):
                    self.losses.gap(event)
                elif isinstance(event, Restarted):
                    if riding:
                        raise Fatal(
                            f"memlogd at {self.opts.socket} restarted (a new instance); "
                            "stopped following (--retry goes on with the new one)"
                        )
                    say("memlogd restarted (new instance); printing its whole ring")
                elif isinstance(event, Waiting) and riding:
                    if not self.answered:
                        raise Fatal(str(event.error))
                    raise Fatal(
                        f"memlogd at {self.opts.socket} went away: {event.error.reason}; "
                        "stopped following (--retry waits for the next one)"
                    )
                elif isinstance(event, Waiting):
                    # said once per outage, and only when reconnecting at once failed
                    # (an upgrade of memlogd goes unnoticed)
                    if event.first and self.answered:
                        say(f"lost connection to memlogd at {self.opts.socket}; reconnecting")
                    elif event.first:
                        say(f"{event.error}; retrying")
                elif isinstance(event, proto.Malformed):
                    raise Fatal(f"malformed reply from memlogd: {event.reason}")
                elif isinstance(event, Connected):
                    self.answered = True
                    header = event.header
                elif isinstance(event, Disconnected) and riding and header is None:
                    break  # upstream's memlogd: no cursor to go on from
        return header

    def subscription(
        self, request: proto.QueryRequest, *, upstream: bool, cursor: Cursor | None = None
    ) -> Subscription:
        # a follow goes on through a worker restart (the same instance: its cursor
        # is exact); memlogd going away ends it (pump), unless --retry
        retry = self.opts.retry or (request.follow and not upstream)
        return Subscription(
            self.opts.socket, request, cursor=cursor, retry=retry, upstream=upstream
        )

    async def entries(self) -> None:
        try:
            await self.entries_once()
        except RequestRefusedError as exc:
            if self.answered or not refused_priority(self.opts, exc):
                raise
            self.opts = priority_here(self.opts)  # an older memlogd: -p is done here
            await self.entries_once()

    async def entries_once(self) -> None:
        opts = self.opts
        if opts.two_phase:
            await self.dump_then_follow()
            return
        selector = self.selector(tail=opts.local_tail, reverse=opts.reverse)
        subscription = self.subscription(opts.request, upstream=not opts.extended)
        header = await self.pump(subscription, selector)
        await self.show(selector.finish())
        if not opts.request.follow and not selector.shown:
            self.losses.flush()
            sys.stderr.write(NO_ENTRIES + "\n")
            if header is not None:  # our memlogd (upstream's has no source list)
                await self.hint()

    async def dump_then_follow(self) -> None:
        """``-n N`` with ``-g``/``--until`` while following: the dump alone first
        (its last N shown entries kept here), then a follow that resumes right
        after the dump's last entry, so nothing is lost or repeated between them."""
        opts = self.opts
        dump = self.selector(tail=opts.local_tail)
        request = replace(opts.request, dump=True, follow=False, tail=None)
        header = await self.pump(self.subscription(request, upstream=False), dump)
        await self.show(dump.finish())
        if dump.done:
            return
        request = replace(opts.request, dump=False, follow=True, tail=None)
        if header is None:  # upstream's memlogd: no cursor, follow from now
            following = self.subscription(request, upstream=True)
        else:  # the dump held the entries up to header.next_seq - 1
            cursor = Cursor(header.instance, header.next_seq - 1)
            following = self.subscription(request, upstream=False, cursor=cursor)
        await self.pump(following, self.selector())

    async def hint(self) -> None:
        """After ``-- No entries --``: a ``-s NAME`` that only ``NAME.out`` matches."""
        if not self.opts.source_globs:
            return
        try:  # the daemon that just answered the extended query: it will answer
            stats = await fetch_stats(self.opts.socket, timeout_s=HINT_TIMEOUT_S)
        except MemlogdError:
            return  # no hint then (gone meanwhile)
        names = [name for name, held in source_counts(stats) if held]  # (0: overwritten)
        line = stdout_hint(self.opts.source_globs, names)
        if line is not None:
            say(line)

    async def stats(self) -> None:
        stats = await fetch_stats(self.opts.socket, timeout_s=STATS_TIMEOUT_S)
        output = self.opts.output
        if output == "json":
            text = json.dumps(stats, separators=(",", ":")) + "\n"
        elif output == "json-pretty":
            text = json.dumps(stats, indent=2) + "\n"
        else:
            return await self.write_text(render_stats(stats))
        await self.write_text(escape_json_controls(text) if self.opts.escape else text)

    async def sources(self) -> None:
        stats = await fetch_stats(self.opts.socket, timeout_s=STATS_TIMEOUT_S)
        await self.write_text(
            render_sources(stats, output=self.opts.output, escape=self.opts.escape)
        )


async def run(opts: Options) -> int:
    outcome = Outcome()
    out = Output(1)
    losses = Losses()
    session = Session(opts, out, losses)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_sigint, outcome, nursery.cancel_scope)
            nursery.start_soon(watch_stdout, out.fd, outcome, nursery.cancel_scope)
            nursery.start_soon(losses.run)
            try:
                if opts.directory is not None:
                    from logread.fromdir import from_directory  # -D only

                    await from_directory(session)
                elif opts.action == "stats":
                    await session.stats()
                elif opts.action == "sources":
                    await session.sources()
                else:
                    await session.entries()
            except (Fatal, MemlogdError) as exc:
                if isinstance(exc, OutputClosedError):
                    outcome.stdout_closed = True
                else:
                    losses.flush()
                    say(str(exc))
                    outcome.code = 1
            nursery.cancel_scope.cancel()
    finally:
        out.close()
        losses.flush()  # a held loss line is never dropped
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.stdout_closed:
        return 0
    return outcome.code
