"""``memlogd-exec``: the init side for one command (docs/memlogd.md, "memlogd-exec").

Runs CMD with its stdout and stderr going through this process, which copies
each to its own stdout/stderr (the console) and to memlogd, as sources
``NAME.out`` and ``NAME``.  If memlogd is not there, or goes away, CMD's output
still reaches the console and CMD never sees SIGPIPE because of it.  Exits
with CMD's status (128 + N when CMD was killed by signal N).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys

import click
import structlog
import trio

from memlogd import protocol as proto
from memlogd.client import send_fds
from memlogd.config import DEFAULT_LOG_SOCKET
from memlogd.errors import ConnectError
from memlogd.logconfig import configure_logging

log = structlog.get_logger("memlogd-exec")

CHUNK = 64 * 1024
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def connect_sources(path: str, name: str) -> tuple[socket.socket | None, socket.socket | None]:
    """Two sockets whose other ends memlogd now reads as ``NAME.out`` and ``NAME``,
    or (None, None) when memlogd cannot be reached."""
    out_ours, out_theirs = socket.socketpair()
    err_ours, err_theirs = socket.socketpair()
    try:
        send_fds(path, f"{name}.out", [out_theirs.fileno()])
        send_fds(path, name, [err_theirs.fileno()])
    except ConnectError as exc:
        log.warning(
            "memlogd_unavailable",
            path=path,
            reason=exc.reason,
            consequence="output goes to the console only",
        )
        out_ours.close()
        err_ours.close()
        return None, None
    finally:
        out_theirs.close()
        err_theirs.close()
    for sock in (out_ours, err_ours):
        sock.shutdown(socket.SHUT_RD)
        sock.setblocking(False)
    return out_ours, err_ours


async def tee(
    source: trio.abc.ReceiveStream, console_fd: int, to_memlogd: socket.socket | None
) -> None:
    """Copy everything from ``source`` to the console and to memlogd."""
    console: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(os.dup(console_fd))
    memlogd = trio.SocketStream(trio.socket.from_stdlib_socket(to_memlogd)) if to_memlogd else None
    try:
        while data := await source.receive_some(CHUNK):
            if console is not None:
                try:
                    await console.send_all(data)
                except (trio.BrokenResourceError, OSError):
                    console = None  # the console is gone: memlogd still gets the lines
            if memlogd is not None:
                try:
                    await memlogd.send_all(data)
                except (trio.BrokenResourceError, OSError):
                    log.warning("memlogd_gone", consequence="output goes to the console only")
                    await memlogd.aclose()
                    memlogd = None
    finally:
        for stream in (console, memlogd):
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()


async def run_command(argv: list[str], path: str, name: str) -> int:
    out_sock, err_sock = connect_sources(path, name)
    try:
        proc = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        for sock in (out_sock, err_sock):
            if sock is not None:
                sock.close()
        click.echo(f"memlogd-exec: cannot run {argv[0]}: {exc.strerror}", err=True)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    assert proc.stdout is not None and proc.stderr is not None
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def forward() -> None:
                async for signum in signals:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signum)

            nursery.start_soon(forward)
            async with trio.open_nursery() as pipes:
                pipes.start_soon(tee, proc.stdout, sys.stdout.fileno(), out_sock)
                pipes.start_soon(tee, proc.stderr, sys.stderr.fileno(), err_sock)
            status = await proc.wait()
            nursery.cancel_scope.cancel()
    return 128 - status if status < 0 else status


@click.command("memlogd-exec", context_settings={"help_option_names": ["-h", "-help", "--help"]})
@click.option(
    "-socket",
    "--socket",
    "socket_path",
    default=DEFAULT_LOG_SOCKET,
    show_default=True,
    help="memlogd's log socket.",
)
@click.option("-n", "--name", default=None, help="Source name (default: the command's name).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def main(socket_path: str, name: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND with its stdout and stderr kept by memlogd (as NAME.out and NAME)."""
    configure_logging("memlogd-exec")
    source = name or os.path.basename(command[0]) or proto.UNNAMED_SOURCE
    sys.exit(trio.run(run_command, list(command), socket_path, source))


if __name__ == "__main__":
    main()
