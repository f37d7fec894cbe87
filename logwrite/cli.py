"""``logwrite``: the command line (docs/logwrite.md). Thin: flags -> Config -> trio.run."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

import click
import structlog
import trio

from logwrite.files import LogDirError, ensure_log_dir
from logwrite.lines import TimeFormat
from logwrite.persister import Config, IncompleteError, persist
from memlogd.client.reasons import connect_reason
from memlogd.cliflags import go_command, go_option, query_socket_option
from memlogd.errors import ConnectError, MemlogdError
from memlogd.logconfig import configure_logging, log_format_option

log = structlog.get_logger("logwrite")


HELP_EPILOG = """\b
Examples:
  logwrite -socket /run/memlogdq.sock -log-dir /var/log -max-log-files 5
  logwrite -once -log-dir /tmp/report       # what memlogd holds now, then exit
  logwrite -skip-source 'debug*' -skip-source 'logwrite*' -time-format rfc3339nano"""


@go_command("logwrite", epilog=HELP_EPILOG)
@query_socket_option()
@go_option(
    "--log-dir",
    default="/var/log",
    show_default=True,
    metavar="DIR",
    help="Directory of the log files (created if missing).",
)
@go_option(
    "--max-log-files",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    metavar="N",
    help="Rotated files kept per source: SOURCE.log.0 (newest) .. .log.(N-1).",
)
@go_option(
    "--max-log-size",
    type=click.IntRange(min=1),
    default=1048576,
    show_default=True,
    metavar="BYTES",
    help="Bytes after which SOURCE.log is rotated.",
)
@go_option(
    "--time-format",
    type=click.Choice([f.value for f in TimeFormat]),
    default=TimeFormat.RFC3339.value,
    show_default=True,
    help="Time at the start of each line: RFC 3339 in seconds or nanoseconds (UTC).",
)
@go_option(
    "--skip-source",
    multiple=True,
    default=("logwrite*",),
    show_default=True,
    metavar="GLOB",
    help="Do not persist sources matching this shell glob (repeatable; replaces the default).",
)
@go_option(
    "--max-open-files",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    metavar="N",
    help="Log files open at once (least recently used closed first).",
)
@go_option(
    "--once",
    is_flag=True,
    help="Write what memlogd holds now, then exit.",
)
@log_format_option("logwrite")
def main(
    socket: str,
    log_dir: str,
    max_log_files: int,
    max_log_size: int,
    time_format: str,
    skip_source: tuple[str, ...],
    max_open_files: int,
    once: bool,
    log_format: str,
) -> None:
    """logwrite: persist every memlogd source to LOG_DIR/SOURCE.log, with rotation.

    Each entry becomes a line "TIME SOURCE MSG". A restarted logwrite continues
    where it stopped (the cursor in LOG_DIR/logwrite.cursor); entries memlogd
    could not keep are recorded in LOG_DIR/logwrite.log.
    """
    config = Config(
        socket=socket,
        log_dir=log_dir,
        max_files=max_log_files,
        max_size=max_log_size,
        max_open=max_open_files,
        time_format=TimeFormat(time_format),
        skip_sources=tuple(skip_source),
        once=once,
    )
    configure_logging("logwrite", log_format)
    sys.exit(trio.run(run_logwrite, config))


def say(message: str) -> None:
    """One line for the user on stderr (not a log event)."""
    click.echo(f"logwrite: {message}", err=True)


async def run_logwrite(config: Config) -> int:
    """logwrite until SIGTERM/SIGINT (exit 0), or through the ring (``--once``);
    SIGHUP reopens the files.  An expected failure is one line, exit 1."""
    if config.once:  # before anything is made or said: DIR's problem, or memlogd's
        problem = _log_dir_problem(config.log_dir) or await _unreachable(config.socket)
        if problem is not None:
            say(problem)
            return 1
    failure: list[str] = []
    reopen_send, reopen_receive = trio.open_memory_channel[None](1)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        with contextlib.suppress(trio.WouldBlock):
                            reopen_send.send_nowait(None)
                        continue
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            async def work() -> None:
                try:
                    await persist(config, reopen=reopen_receive)
                except (MemlogdError, IncompleteError) as exc:
                    failure.append(str(exc))
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            nursery.start_soon(work)
    if failure:
        say(failure[0])
        return 1
    return 0


def _log_dir_problem(path: str) -> str | None:
    """What is wrong with the log directory, found without making it (``-once``
    makes it only once memlogd answered), or None."""
    existing = path
    while existing and not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if existing == path or not os.path.isdir(existing or "."):  # nothing would be made
        try:
            ensure_log_dir(path)
        except LogDirError as exc:
            return str(exc)
    return None


async def _unreachable(path: str) -> str | None:
    """Why memlogd cannot be reached at ``path`` (``-once`` asks it first), or None."""
    try:
        stream = await trio.open_unix_socket(path)
    except OSError as exc:
        return str(ConnectError(path, connect_reason(path, exc)))
    await stream.aclose()
    return None
