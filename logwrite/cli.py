"""``logwrite``: the command line (docs/logwrite.md). Thin: flags -> Config -> trio.run."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator

import click
import structlog
import trio

from logwrite.files import LogFiles
from logwrite.lines import TimeFormat
from logwrite.persister import Config, IncompleteError, Persister, follow, report_held_errors
from logwrite.report import Reporter
from memlogd.config import DEFAULT_QUERY_SOCKET
from memlogd.errors import MemlogdError
from memlogd.logconfig import configure_logging, log_format_option

log = structlog.get_logger("logwrite")


@click.command(context_settings={"help_option_names": ["-h", "-help", "--help"]})
@click.option(
    "-socket",
    "--socket",
    default=DEFAULT_QUERY_SOCKET,
    show_default=True,
    help="memlogd's query socket.",
)
@click.option(
    "-log-dir",
    "--log-dir",
    default="/var/log",
    show_default=True,
    help="Directory of the log files (created if missing).",
)
@click.option(
    "-max-log-files",
    "--max-log-files",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Rotated files kept per source: SOURCE.log.0 (newest) .. .log.(N-1).",
)
@click.option(
    "-max-log-size",
    "--max-log-size",
    type=click.IntRange(min=1),
    default=1048576,
    show_default=True,
    help="Bytes after which SOURCE.log is rotated.",
)
@click.option(
    "-time-format",
    "--time-format",
    type=click.Choice([f.value for f in TimeFormat]),
    default=TimeFormat.RFC3339.value,
    show_default=True,
    help="Time at the start of each line: RFC 3339 in seconds or nanoseconds (UTC).",
)
@click.option(
    "-skip-source",
    "--skip-source",
    multiple=True,
    default=("logwrite*",),
    show_default=True,
    help="Do not persist sources matching this shell glob (repeatable; replaces the default).",
)
@click.option(
    "-max-open-files",
    "--max-open-files",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Log files open at once (least recently used closed first).",
)
@click.option(
    "-once",
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
    """logwrite: persist every memlogd source to LOG_DIR/SOURCE.log, with rotation."""
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


async def run_logwrite(config: Config) -> int:
    reporter = Reporter()
    try:
        os.makedirs(config.log_dir, exist_ok=True)
        files = LogFiles(
            config.log_dir,
            max_files=config.max_files,
            max_size=config.max_size,
            max_open=config.max_open,
            reporter=reporter,
        )
    except OSError as exc:
        click.echo(f"logwrite: cannot use log directory {config.log_dir}: {exc.strerror}", err=True)
        return 1
    persister = Persister(config, files, reporter)
    persister.load_cursor()
    failure: list[str] = []
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_signals, signals, nursery.cancel_scope, files)
                nursery.start_soon(report_held_errors, reporter)
                nursery.start_soon(
                    _follow, config, persister, reporter, nursery.cancel_scope, failure
                )
    finally:
        persister.finish()
        log.info("stopped", lines_written=persister.written, entries_lost=persister.dropped)
    if failure:
        click.echo(f"logwrite: {failure[0]}", err=True)
        return 1
    return 0


async def _follow(
    config: Config,
    persister: Persister,
    reporter: Reporter,
    scope: trio.CancelScope,
    failure: list[str],
) -> None:
    try:
        await follow(config, persister, reporter)
    except (MemlogdError, IncompleteError) as exc:
        failure.append(str(exc))
    finally:
        scope.cancel()


async def _watch_signals(
    signals: AsyncIterator[int], scope: trio.CancelScope, files: LogFiles
) -> None:
    async for signum in signals:
        if signum == signal.SIGHUP:
            files.reopen()
            log.info("files_reopened")
            continue
        log.info("signal_received", signal=signal.Signals(signum).name)
        scope.cancel()
        return
