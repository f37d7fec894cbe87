"""logread: show what memlogd holds, and follow it (docs/logread.md).

Options -> :class:`Options` -> a :class:`memlogd.client.Subscription` (which
does all the talking to memlogd) -> :mod:`logread.render` -> stdout through
:class:`memlogd.termio.Output`.  Closed stdout (``| head``) ends logread
quietly with status 0; Ctrl-C ends it quietly with status 130.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import click
import trio

from logread.render import (
    SinceError,
    parse_since,
    render_json,
    render_raw,
    render_stats,
    render_text,
)
from memlogd import protocol as proto
from memlogd.client import Subscription, fetch_stats
from memlogd.config import DEFAULT_QUERY_SOCKET
from memlogd.errors import MemlogdError
from memlogd.events import Connected, Disconnected, Entries, Gap, Restarted, Waiting
from memlogd.logconfig import configure_logging
from memlogd.termio import Output, OutputClosedError, quiet_exit, watch_closed

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

Renderer = Callable[[proto.LogEntry], str]


class Fatal(Exception):
    """An expected failure: one line on stderr, exit 1."""


@dataclass(frozen=True)
class Options:
    socket: str
    extended: bool
    request: proto.QueryRequest
    output: str
    color: bool
    retry: bool
    stats: bool


@dataclass
class Outcome:
    code: int = 0
    interrupted: bool = False
    stdout_closed: bool = False


def say(message: str) -> None:
    """One line for the user on stderr (not a log event)."""
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


def make_renderer(output: str, color: bool) -> Renderer:
    if output == "json":
        return render_json
    if output == "raw":
        return render_raw
    if color:
        return lambda entry: render_text(entry, color=True)
    return render_text


async def show_stats(opts: Options, out: Output) -> None:
    stats = await fetch_stats(opts.socket)
    if opts.output == "json":
        text = json.dumps(stats, separators=(",", ":")) + "\n"
    else:
        text = render_stats(stats)
    await out.write(text.encode("utf-8", "replace"))


async def show(opts: Options, out: Output, render: Renderer) -> None:
    """Print what the subscription delivers, and say what the user must know."""
    subscription = Subscription(
        opts.socket, opts.request, retry=opts.retry, upstream=not opts.extended
    )
    answered = False  # a connection answered: a later outage is a lost connection
    async with subscription:
        async for event in subscription:
            if isinstance(event, Entries):
                text = "".join(map(render, event.entries))
                await out.write(text.encode("utf-8", "replace"))
            elif isinstance(event, Gap):
                say(f"{event.count} entries lost (seq {event.seq}-{event.last})")
            elif isinstance(event, Restarted):
                say("memlogd restarted (new instance); printing its whole ring")
            elif isinstance(event, Waiting):
                # said once per outage, and only when reconnecting at once failed
                # (an upgrade of memlogd goes unnoticed)
                if event.first and answered:
                    say(f"lost connection to memlogd at {opts.socket}; reconnecting")
                elif event.first:
                    say(f"{event.error}; retrying")
            elif isinstance(event, proto.Malformed):
                raise Fatal(f"malformed reply from memlogd: {event.reason}")
            elif isinstance(event, Connected):
                answered = True
            elif isinstance(event, Disconnected):
                pass


async def run(opts: Options) -> int:
    outcome = Outcome()
    out = Output(1)
    render = make_renderer(opts.output, opts.color)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_sigint, outcome, nursery.cancel_scope)
            nursery.start_soon(watch_stdout, out.fd, outcome, nursery.cancel_scope)
            try:
                if opts.stats:
                    await show_stats(opts, out)
                else:
                    await show(opts, out, render)
            except (Fatal, MemlogdError) as exc:
                if isinstance(exc, OutputClosedError):
                    outcome.stdout_closed = True
                else:
                    say(str(exc))
                    outcome.code = 1
            nursery.cancel_scope.cancel()
    finally:
        out.close()
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.stdout_closed:
        return 0
    return outcome.code


# ---------------------------------------------------------------------- command line


def build_options(
    socket: str,
    follow: bool,
    dump_follow: bool,
    sources: tuple[str, ...],
    tail: int | None,
    since: str | None,
    output: str | None,
    stats: bool,
    retry: bool,
    color: str,
) -> Options:
    if stats and (follow or dump_follow or sources or tail is not None or since or retry):
        raise click.UsageError("--stats cannot be combined with -f, -F, -s, -n, --since or --retry")
    since_ns = None
    if since is not None:
        try:
            since_ns = parse_since(since, time.time_ns())
        except SinceError as exc:
            raise click.BadParameter(str(exc), param_hint="'--since'") from None
    output = output or "short"
    follow_any = follow or dump_follow
    # -n with -f shows the last N entries, then follows (as tail -n N -f does)
    dump = dump_follow or not follow or tail is not None
    # following asks the extended query first (so losses are reported), falling
    # back to upstream's modes; a plain dump is lossless either way (mode 0)
    extended = follow_any or bool(sources) or tail is not None or since is not None
    extended = extended or output == "json" or stats or retry
    use_color = color == "always" or (
        color == "auto"
        and output == "short"
        and sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
    )
    request = proto.QueryRequest(
        dump=dump, follow=follow_any, sources=sources, tail=tail, since_ns=since_ns
    )
    return Options(
        socket=socket,
        extended=extended,
        request=request,
        output=output,
        color=use_color and output == "short",
        retry=retry,
        stats=stats,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-socket",
    "--socket",
    "socket",
    default=DEFAULT_QUERY_SOCKET,
    show_default=True,
    metavar="PATH",
    help="memlogd's query socket.",
)
@click.option("-f", "follow", is_flag=True, help="Follow: print new entries as they arrive.")
@click.option("-F", "dump_follow", is_flag=True, help="Print what is held, then follow.")
@click.option(
    "-s",
    "--source",
    "sources",
    multiple=True,
    metavar="GLOB",
    help="Only sources matching this shell glob (repeatable; OR-ed).",
)
@click.option(
    "-n",
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Only the last N matching entries held (then follow, with -f/-F).",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only entries from WHEN on: a duration ago (30s, 10m, 2h, 1d) or an RFC 3339 time.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["short", "json", "raw"]),
    default=None,
    help="short = TIME;SOURCE;MSG (default), json = entry objects with seq, raw = messages.",
)
@click.option(
    "--stats", is_flag=True, help="Show memlogd's statistics (a table; JSON with -o json)."
)
@click.option(
    "--retry",
    is_flag=True,
    help="Wait for memlogd, and follow across its restarts (resuming where it stopped).",
)
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour sources (auto: when stdout is a terminal and NO_COLOR is unset).",
)
def command(
    socket: str,
    follow: bool,
    dump_follow: bool,
    sources: tuple[str, ...],
    tail: int | None,
    since: str | None,
    output: str | None,
    stats: bool,
    retry: bool,
    color: str,
) -> None:
    """Show the log lines memlogd holds (and follow them with -f/-F)."""
    opts = build_options(
        socket, follow, dump_follow, sources, tail, since, output, stats, retry, color
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
