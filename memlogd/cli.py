"""``memlogd``: the command line (docs/memlogd.md). Thin: flags -> DaemonConfig -> serve."""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from typing import Any

import click
import structlog
import trio

from memlogd import config as cfg
from memlogd.config import DaemonConfig
from memlogd.errors import ConfigError, SocketError
from memlogd.logconfig import configure_logging, log_format_option
from memlogd.server.serve import open_sockets, serve

log = structlog.get_logger("memlogd")


def _octal(_ctx: Any, _param: Any, value: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal mode such as 0600") from None


@click.command("memlogd", context_settings={"help_option_names": ["-h", "-help", "--help"]})
@click.option(
    "-socket-log",
    "--socket-log",
    default=cfg.DEFAULT_LOG_SOCKET,
    show_default=True,
    help="Unix datagram socket where fds are handed over.",
)
@click.option(
    "-socket-query",
    "--socket-query",
    default=cfg.DEFAULT_QUERY_SOCKET,
    show_default=True,
    help="Unix stream socket for log queries.",
)
@click.option(
    "-fd-log",
    "--fd-log",
    type=int,
    default=None,
    help="Inherited, bound datagram socket to use instead of -socket-log.",
)
@click.option(
    "-fd-query",
    "--fd-query",
    type=int,
    default=None,
    help="Inherited, bound stream socket to use instead of -socket-query.",
)
@click.option(
    "-max-lines",
    "--max-lines",
    type=int,
    default=cfg.DEFAULT_MAX_LINES,
    show_default=True,
    help="Entries the ring holds.",
)
@click.option(
    "-max-line-len",
    "--max-line-len",
    type=int,
    default=cfg.DEFAULT_MAX_LINE_LEN,
    show_default=True,
    help="Bytes kept of a line; the rest of a longer line is cut.",
)
@click.option(
    "-max-bytes",
    "--max-bytes",
    type=int,
    default=0,
    show_default=True,
    help="Message bytes the ring holds (0: bounded by lines only).",
)
@click.option(
    "-max-sources",
    "--max-sources",
    type=int,
    default=cfg.DEFAULT_MAX_SOURCES,
    show_default=True,
    help="Source fds open at once; more are refused.",
)
@click.option(
    "-max-clients",
    "--max-clients",
    type=int,
    default=cfg.DEFAULT_MAX_CLIENTS,
    show_default=True,
    help="Query connections at once; more are refused.",
)
@click.option(
    "-socket-mode",
    "--socket-mode",
    default="0600",
    show_default=True,
    callback=_octal,
    help="Permissions of both socket files (octal).",
)
@click.option(
    "-daemonize",
    "--daemonize",
    is_flag=True,
    help="Bind, run in the background, exit 0 once it serves.",
)
@click.option(
    "-no-console",
    "--no-console",
    "no_console",
    is_flag=True,
    help="Do not echo entries to stdout as TIME;SOURCE;MSG.",
)
@click.option(
    "-ready-fd",
    "--ready-fd",
    type=int,
    default=None,
    help="Write a newline to this fd once both sockets serve, then close it.",
)
@log_format_option("memlogd")
@click.option("--unlink-inherited", is_flag=True, hidden=True)
def main(
    socket_log: str,
    socket_query: str,
    fd_log: int | None,
    fd_query: int | None,
    max_lines: int,
    max_line_len: int,
    max_bytes: int,
    max_sources: int,
    max_clients: int,
    socket_mode: int,
    daemonize: bool,
    no_console: bool,
    ready_fd: int | None,
    log_format: str,
    unlink_inherited: bool,
) -> None:
    """memlogd: keep every line of every container's output in a bounded ring."""
    try:
        config = DaemonConfig(
            socket_log=socket_log,
            socket_query=socket_query,
            fd_log=fd_log,
            fd_query=fd_query,
            max_lines=max_lines,
            max_line_len=max_line_len,
            max_bytes=max_bytes,
            max_sources=max_sources,
            max_clients=max_clients,
            socket_mode=socket_mode,
            console=not no_console,
            unlink_inherited=unlink_inherited,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging("memlogd", log_format)
    try:
        sockets = open_sockets(config)
    except SocketError as exc:
        click.echo(f"memlogd: {exc}", err=True)
        sys.exit(1)
    if daemonize:
        from memlogd.daemonize import spawn_daemon

        sys.exit(spawn_daemon(sys.argv[1:], sockets))
    trio.run(run_daemon, config, sockets, ready_fd)


async def run_daemon(config: DaemonConfig, sockets: Any, ready_fd: int | None) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(
                partial(serve, config, console_fd=sys.stdout.fileno(), sockets=sockets)
            )
            if ready_fd is not None:
                _signal_ready(ready_fd)
            async for signum in signals:
                log.info("signal_received", signal=signal.Signals(signum).name)
                daemon.begin_shutdown()
                break


def _signal_ready(fd: int) -> None:
    try:
        os.write(fd, b"\n")
        os.close(fd)
    except OSError as exc:
        log.warning("ready_fd_failed", fd=fd, error=exc.strerror)
