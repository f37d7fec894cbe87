"""``logship``: the command line (docs/logship.md). Thin: flags -> ShipConfig -> run_shipper.

Exit status (docs/logship.md, "Exit status"; SPEC 18): 0 after SIGTERM/SIGINT
when nothing was left undelivered (outstanding acknowledgements waited for up
to 5 s, the state saved), or when ``--once`` delivered everything; 128 + the
signal (130 for SIGINT, 143 for SIGTERM) when a signal left entries
undelivered, with their count on stderr; 1 with one line on stderr (``--once``
incomplete, memlogd unreachable with ``--once``, upstream's memlogd, an
unusable state file); 2 for a usage error.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import AsyncIterator

import click
import structlog
import trio

from logship.relp import DEFAULT_WINDOW, MAX_WINDOW
from logship.rfc5424 import DEFAULT_SD_ID, Rfc5424Error, validate_sd_id
from logship.shipper import (
    ACK_TIMEOUT_S,
    ONCE_TIMEOUT_S,
    ShipConfig,
    Shipper,
    ShipResult,
)
from logship.target import Target, TargetError, parse_target
from memlogd.cliflags import go_command, go_option, query_socket_option, source_option
from memlogd.errors import MemlogdError
from memlogd.logconfig import LEVELS, configure_logging, log_format_option

PROG = "logship"
GC_THRESHOLD = 50_000  # allocations between two young-generation collections
log = structlog.get_logger(PROG)


def say(message: str) -> None:
    """One line for the user on stderr (not a log event)."""
    click.echo(f"{PROG}: {message}", err=True)


def _target(ctx: click.Context, url: str) -> Target:
    """``--to``, checked here rather than in a callback, so that a probe of the
    other options (tests/oneflags.py) needs no valid URL; the error is click's
    usage error for the option all the same."""
    try:
        return parse_target(url)
    except TargetError as exc:
        param = next(p for p in ctx.command.params if p.name == "to")
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _sd_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return validate_sd_id(value)
    except Rfc5424Error as exc:
        raise click.BadParameter(str(exc)) from None


EPILOG = """\b
Examples:
  logship -to relp://logs.example:2514 -state-file /run/logship.state
  logship -to tcp://10.0.0.5:514 -s 'web*' -s kmsg   # best effort, two sources
  logship -to relp://127.0.0.1:2514 -once -timeout 60  # what memlogd holds, then exit
"""


@go_command(PROG, epilog=EPILOG)
@query_socket_option()
@go_option(
    "--to",
    required=True,
    metavar="URL",
    help="The receiver: relp://HOST:PORT (acknowledged) or tcp://HOST:PORT "
    "(RFC 5424, octet-counted, best effort). IPv6: relp://[::1]:2514.",
)
@go_option(
    "--state-file",
    metavar="PATH",
    help="Keep (instance, seq) of the last entry delivered here, and resume after it. "
    "Without it, logship starts at the first entry memlogd holds.",
)
@source_option("Only sources matching this shell glob (repeatable, OR-ed). Default: all.")
@go_option(
    "--hostname",
    metavar="NAME",
    help="HOSTNAME of the messages.  [default: this machine's host name]",
)
@go_option(
    "--window",
    type=click.IntRange(1, MAX_WINDOW),
    default=DEFAULT_WINDOW,
    show_default=True,
    metavar="N",
    help="Messages sent and not yet acknowledged, at most (tcp: messages sent again "
    "after a reconnect).",
)
@go_option(
    "--sd-id",
    default=DEFAULT_SD_ID,
    show_default=True,
    metavar="ID",
    callback=_sd_id,
    help="SD-ID of the structured data: NAME@ENTERPRISE-NUMBER.",
)
@go_option(
    "--once",
    is_flag=True,
    help="Forward what memlogd holds now; exit 0 once all of it is delivered, or 1 "
    "after --timeout with the number of entries not delivered.",
)
@go_option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=ONCE_TIMEOUT_S,
    show_default=True,
    metavar="S",
    help="With --once: give up after S seconds.",
)
@go_option(
    "--ack-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=ACK_TIMEOUT_S,
    hidden=True,
    help="Seconds without an acknowledgement before the receiver is given up (tests).",
)
@go_option(
    "--log-level",
    type=click.Choice(list(LEVELS)),
    default="info",
    hidden=True,
    help="Least level of logship's own diagnostics (debug shows every reconnect attempt).",
)
@log_format_option(PROG)
@click.pass_context
def command(
    ctx: click.Context,
    socket: str,
    to: str,
    state_file: str | None,
    sources: tuple[str, ...],
    hostname: str | None,
    window: int,
    sd_id: str,
    once: bool,
    timeout: float,
    ack_timeout: float,
    log_level: str,
    log_format: str,
) -> None:
    """logship: forward memlogd's log to a central receiver, over RELP or TCP.

    Each entry becomes an RFC 5424 message whose structured data carries
    memlogd's instance and seq (for deduplication) and the full source name.
    Over RELP an entry counts as delivered once acknowledged; with
    --state-file a restarted logship resumes after the last one delivered.
    Over TCP delivery is best effort (docs/logship.md).
    """
    config = ShipConfig(
        target=_target(ctx, to),
        state_file=state_file,
        sources=sources,
        hostname=hostname,
        window=window,
        sd_id=sd_id,
        once=once,
        timeout_s=timeout,
        ack_timeout_s=ack_timeout,
    )
    configure_logging(PROG, log_format, log_level)
    tune_gc()
    sys.exit(trio.run(run, config, socket))


def tune_gc() -> None:
    """Fewer cyclic collections: every entry allocates a few containers, and at the
    default threshold (700) collections cost logship 10-15% of its CPU at full
    speed (BENCHMARKS.md, "Forwarding").  What is imported is frozen: never scanned.
    A process-wide setting, so here and not in the shipper (memlogd's worker keeps
    its own)."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


async def run(config: ShipConfig, socket: str) -> int:
    """Run the shipper with signal handling; the exit status."""
    shipper = Shipper(config, socket)
    result: ShipResult | None = None
    failure: list[MemlogdError] = []
    signalled: list[int] = []
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, shipper, nursery.cancel_scope, signalled)
            try:
                result = await shipper.run()
            except MemlogdError as exc:
                failure.append(exc)
            nursery.cancel_scope.cancel()
    if failure:
        say(str(failure[0]))
        return 1
    if signalled:
        return _interrupted(config, shipper, result, signalled[0])
    assert result is not None
    if config.once and not result.complete:
        say(_incomplete(config, result))
        return 1
    return 0


def _interrupted(
    config: ShipConfig, shipper: Shipper, result: ShipResult | None, signum: int
) -> int:
    """After SIGTERM/SIGINT: 0 when nothing was left undelivered (with --once:
    the whole dump delivered), else 128 + the signal, with the count."""
    if result is None:  # a second signal: stopped at once (the state is saved)
        undelivered, counted = shipper.outbox.undelivered(), not config.once
        complete = False
    else:
        undelivered, counted, complete = result.undelivered, result.counted, result.complete
    if complete or (not config.once and undelivered == 0):
        return 0
    count = f"{undelivered}" if counted else f"at least {undelivered}"
    noun = "entry" if undelivered == 1 and counted else "entries"
    name = signal.Signals(signum).name
    say(f"{count} {noun} not delivered to {config.receiver} (stopped by {name})")
    return 128 + signum


def _incomplete(config: ShipConfig, result: ShipResult) -> str:
    count = f"{result.undelivered}" if result.counted else f"at least {result.undelivered}"
    noun = "entry" if result.undelivered == 1 and result.counted else "entries"
    reason = f": {result.reason}" if result.reason else ""
    return (
        f"{count} {noun} not delivered to {config.receiver} within {config.timeout_s:g} s{reason}"
    )


async def _watch_signals(
    signals: AsyncIterator[int],
    shipper: Shipper,
    scope: trio.CancelScope,
    signalled: list[int],
) -> None:
    async for signum in signals:
        log.info("signal_received", signal=signal.Signals(signum).name)
        if signalled:  # the second: stop now
            scope.cancel()
            return
        signalled.append(signum)
        log.info("stopping", grace_s=shipper.config.stop_grace_s)
        shipper.stop()


def main() -> None:
    command.main(prog_name=PROG)
