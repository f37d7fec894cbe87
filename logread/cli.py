"""logread: show what memlogd holds, and follow it (docs/logread.md).

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
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import click
import trio

from logread.hints import stdout_hint
from logread.losses import LossReport
from logread.render import (
    OUTPUTS,
    escape_controls,
    escape_json_controls,
    make_renderer,
    render_sources,
    render_stats,
    source_counts,
)
from logread.selection import Selector, unit_globs
from logread.when import WhenError, parse_when
from memlogd import protocol as proto
from memlogd.client import Subscription, fetch_stats
from memlogd.cliflags import go_command, go_option, query_socket_option, source_option
from memlogd.config import DEFAULT_QUERY_SOCKET
from memlogd.errors import MemlogdError
from memlogd.events import Connected, Disconnected, Entries, Gap, Restarted, Waiting
from memlogd.logconfig import configure_logging
from memlogd.protocol import Cursor
from memlogd.termio import Output, OutputClosedError, quiet_exit, watch_closed

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
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
    action: str  # "entries", "stats" or "sources"
    extended: bool  # ask the extended query first (else upstream's base modes)
    request: proto.QueryRequest  # what memlogd selects: sources, since, tail
    two_phase: bool  # the dump (its tail kept here), then a follow from its end
    grep: re.Pattern[str] | None
    until_ns: int | None
    local_tail: int | None  # -n applied here (with -g or --until)
    reverse: bool
    output: str
    color: bool
    escape: bool  # control characters escaped (a terminal, without -a)
    retry: bool
    source_globs: tuple[str, ...]  # the -s globs, for the hint after "-- No entries --"


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
        loss = self.report.gap(gap.seq, gap.count, trio.current_time())
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
        return Selector(grep=opts.grep, until_ns=opts.until_ns, tail=tail, reverse=reverse)

    async def pump(self, subscription: Subscription, selector: Selector) -> proto.Header | None:
        """Show what ``subscription`` delivers through ``selector``, and say what the
        user must know.  Returns the last header memlogd sent (None: upstream's)."""
        header: proto.Header | None = None
        async with subscription:
            async for event in subscription:
                if isinstance(event, Entries):
                    await self.show(selector.feed(event.entries))
                    if selector.done:  # past --until
                        break
                elif isinstance(event, Gap):
                    self.losses.gap(event)
                elif isinstance(event, Restarted):
                    say("memlogd restarted (new instance); printing its whole ring")
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
                elif isinstance(event, Disconnected):
                    pass
        return header

    def subscription(
        self, request: proto.QueryRequest, *, upstream: bool, cursor: Cursor | None = None
    ) -> Subscription:
        return Subscription(
            self.opts.socket, request, cursor=cursor, retry=self.opts.retry, upstream=upstream
        )

    async def entries(self) -> None:
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
        names = [name for name, _ in source_counts(stats)]
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
                if opts.action == "stats":
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


# ---------------------------------------------------------------------- command line

NO_PRIORITY = (
    "memlogd entries carry no priority, so -p/--priority cannot select them; "
    "match words in the message instead, e.g. -g 'error|warn' -i"
)


@dataclass(frozen=True)
class Flags:
    """The command line as given (before it is checked)."""

    socket: str = DEFAULT_QUERY_SOCKET
    follow: bool = False
    dump_follow: bool = False
    sources: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    grep: str | None = None
    ignore_case: bool = False
    tail: int | None = None
    since: str | None = None
    until: str | None = None
    reverse: bool = False
    output: str | None = None
    all: bool = False
    color: str = "auto"
    list_sources: bool = False
    stats: bool = False
    retry: bool = False
    priority: str | None = None


def _when(text: str | None, now_ns: int, name: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_when(text, now_ns)
    except WhenError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{name}'") from None


def _regex(flags: Flags) -> re.Pattern[str] | None:
    if flags.grep is None:
        if flags.ignore_case:
            raise click.UsageError("-i/--ignore-case applies to -g/--grep: give -g REGEX too")
        return None
    try:
        return re.compile(flags.grep, re.IGNORECASE if flags.ignore_case else 0)
    except re.error as exc:
        raise click.BadParameter(
            f"{flags.grep!r} is not a regular expression: {exc}", param_hint="'-g' / '--grep'"
        ) from None


def build_options(flags: Flags, *, now_ns: int, tty: bool, no_color: bool) -> Options:
    """Check the flags together and decide what to ask memlogd and what to do here.
    Raises click's usage errors (exit 2)."""
    if flags.priority is not None:
        raise click.UsageError(NO_PRIORITY)
    follow_any = flags.follow or flags.dump_follow
    selecting = (
        follow_any
        or flags.sources
        or flags.units
        or flags.grep is not None
        or flags.tail is not None
        or flags.since is not None
        or flags.until is not None
        or flags.reverse
        or flags.retry
    )
    if flags.stats and flags.list_sources:
        raise click.UsageError("--stats and --list-sources cannot be combined")
    for wanted, name in ((flags.stats, "--stats"), (flags.list_sources, "--list-sources")):
        if wanted and selecting:
            raise click.UsageError(
                f"{name} cannot be combined with -f, -F, -s, -u, -g, -n, --since, --until, "
                "-r or --retry"
            )
    if flags.reverse and follow_any:
        raise click.UsageError("-r/--reverse shows a dump newest first: not with -f or -F")
    grep = _regex(flags)
    since_ns = _when(flags.since, now_ns, "--since")
    until_ns = _when(flags.until, now_ns, "--until")
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise click.UsageError("--since is later than --until: nothing could match")

    output = flags.output or "short"
    sources = tuple(dict.fromkeys((*flags.sources, *unit_globs(flags.units))))
    local = grep is not None or until_ns is not None
    # -n with -g/--until: the last N of what is shown, so logread keeps them itself
    server_tail = None if local else flags.tail
    local_tail = flags.tail if local else None
    # -n with -f shows the last N entries, then follows (as tail -n N -f does)
    dump = flags.dump_follow or not flags.follow or flags.tail is not None
    # following asks the extended query first (so losses are reported), falling
    # back to upstream's modes; a plain dump is lossless either way (mode 0)
    extended = bool(
        follow_any
        or sources
        or server_tail is not None
        or since_ns is not None
        or output in ("json", "json-pretty")
        or flags.retry
        or flags.stats
        or flags.list_sources
    )
    color = flags.color == "always" or (flags.color == "auto" and tty and not no_color)
    request = proto.QueryRequest(
        dump=dump, follow=follow_any, sources=sources, tail=server_tail, since_ns=since_ns
    )
    action = "stats" if flags.stats else "sources" if flags.list_sources else "entries"
    return Options(
        socket=flags.socket,
        action=action,
        extended=extended,
        request=request,
        two_phase=follow_any and dump and local_tail is not None,
        grep=grep,
        until_ns=until_ns,
        local_tail=local_tail,
        reverse=flags.reverse,
        output=output,
        color=color and output in ("short", "short-iso"),
        escape=tty and not flags.all,
        retry=flags.retry,
        source_globs=flags.sources,
    )


EPILOG = """\b
Examples:
  logread -F -u web                 # service web (stderr and stdout), then follow
  logread -n 50 -g 'error|fail' -i  # the last 50 lines that mention an error
  logread --since '10 min ago' -o json | jq .msg
"""


@go_command("logread", epilog=EPILOG)
@query_socket_option()
@click.option("-f", "follow", is_flag=True, help="Follow: print new entries as they arrive.")
@click.option("-F", "dump_follow", is_flag=True, help="Print what is held, then follow.")
@source_option("Only sources matching this shell glob (repeatable; OR-ed with -s and -u).")
@go_option(
    "-u",
    "--unit",
    "units",
    multiple=True,
    metavar="NAME",
    help="Only the service NAME: its stderr (NAME) and stdout (NAME.out) (repeatable).",
)
@go_option(
    "-g", "--grep", metavar="REGEX", help="Only entries whose message matches REGEX (Python re)."
)
@go_option("-i", "--ignore-case", is_flag=True, help="-g ignores case.")
@go_option(
    "-n",
    "--tail",
    "--lines",
    "tail",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Only the last N entries shown (then follow, with -f/-F).",
)
@go_option(
    "--since",
    metavar="WHEN",
    help="Only entries from WHEN on: 10m, 2h, '5 min ago', yesterday, today, now, "
    "or a time (2026-11-29 10:00, RFC 3339; no zone = UTC).",
)
@go_option(
    "--until",
    metavar="WHEN",
    help="Only entries up to WHEN (as --since); when following, the first later one ends logread.",
)
@go_option("-r", "--reverse", is_flag=True, help="Newest first (a dump only).")
@go_option(
    "-o",
    "--output",
    type=click.Choice(OUTPUTS),
    default=None,
    help="short = TIME;SOURCE;MSG (default), short-iso = the same with journalctl's time, "
    "json = objects with seq, json-pretty = indented, raw or cat = the message.",
)
@go_option(
    "-a",
    "--all",
    "all_",
    is_flag=True,
    help="On a terminal, print control characters as they are (default: escaped, \\x1b).",
)
@go_option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour sources (auto: when stdout is a terminal and NO_COLOR is unset).",
)
@go_option("--list-sources", is_flag=True, help="List the sources with the entries held of each.")
@go_option("--stats", is_flag=True, help="Show memlogd's statistics (a table; JSON with -o json).")
@go_option(
    "--retry",
    is_flag=True,
    help="Wait for memlogd, and follow across its restarts (resuming where it stopped).",
)
@go_option(
    "-p",
    "--priority",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="LEVEL",
    help="Not available: memlogd entries carry no priority (use -g).",
)
def command(
    socket: str,
    follow: bool,
    dump_follow: bool,
    sources: tuple[str, ...],
    units: tuple[str, ...],
    grep: str | None,
    ignore_case: bool,
    tail: int | None,
    since: str | None,
    until: str | None,
    reverse: bool,
    output: str | None,
    all_: bool,
    color: str,
    list_sources: bool,
    stats: bool,
    retry: bool,
    priority: str | None,
) -> None:
    """Show the log lines memlogd holds (and follow them with -f/-F)."""
    flags = Flags(
        socket=socket,
        follow=follow,
        dump_follow=dump_follow,
        sources=sources,
        units=units,
        grep=grep,
        ignore_case=ignore_case,
        tail=tail,
        since=since,
        until=until,
        reverse=reverse,
        output=output,
        all=all_,
        color=color,
        list_sources=list_sources,
        stats=stats,
        retry=retry,
        priority=priority,
    )
    opts = build_options(
        flags,
        now_ns=time.time_ns(),
        tty=os.isatty(1),
        no_color=bool(os.environ.get("NO_COLOR")),
    )
    configure_logging("logread", level="warning")
    try:
        code = trio.run(run, opts)
    except BaseException as exc:
        if not _is_interrupt(exc):
            raise
        code = EXIT_INTERRUPTED
    quiet_exit(code)


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(KeyboardInterrupt)
        return rest is None
    return False


def main() -> None:
    try:
        result = command.main(prog_name="logread", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        quiet_exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        quiet_exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):  # Ctrl-C before trio took over SIGINT
        quiet_exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        quiet_exit(0)
    quiet_exit(result if isinstance(result, int) else 0)
