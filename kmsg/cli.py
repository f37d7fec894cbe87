"""``kmsg``: stream the kernel log (docs/kmsg.md). Thin: flags -> KmsgConfig -> run_kmsg."""

from __future__ import annotations

import signal
import sys

import click
import trio

from kmsg.reader import (
    DEFAULT_NAME,
    DEFAULT_PATH,
    KmsgConfig,
    KmsgOpenError,
    KmsgReadError,
    run_kmsg,
)
from memlogd.errors import ConnectError
from memlogd.logconfig import configure_logging, log_format_option
from memlogd.termio import OutputClosedError

EXIT_SIGINT = 130


@click.command(context_settings={"help_option_names": ["-h", "-help", "--help"]})
@click.option(
    "-path", "--path", default=DEFAULT_PATH, show_default=True, help="Kernel log device to read."
)
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep waiting for new records, or stop at the end of the log.",
)
@click.option(
    "--from-start/--from-end",
    default=True,
    show_default=True,
    help="Start with the oldest record the kernel holds, or only with new ones.",
)
@click.option(
    "-socket-log",
    "--socket-log",
    default=None,
    metavar="PATH",
    help="Hand the output to memlogd through this log socket instead of writing to stderr.",
)
@click.option(
    "-name",
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    help="Source name of the output in memlogd (with --socket-log).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: (SEQ) - TIME: TEXT; json: one object with every field.",
)
@click.option(
    "--state-file",
    default=None,
    metavar="PATH",
    help="Remember the last record written here; a restart continues after it.",
)
@log_format_option("kmsg")
def main(
    path: str,
    follow: bool,
    from_start: bool,
    socket_log: str | None,
    name: str,
    output: str,
    state_file: str | None,
    log_format: str,
) -> None:
    """kmsg: copy the kernel log (/dev/kmsg) to stderr or into memlogd."""
    config = KmsgConfig(
        path=path,
        follow=follow,
        from_end=not from_start,
        json=output == "json",
        socket_log=socket_log,
        name=name,
        state_file=state_file,
    )
    configure_logging("kmsg", log_format)
    try:
        status = trio.run(run_until_signal, config)
    except KeyboardInterrupt:  # before or after trio's signal handling
        status = EXIT_SIGINT
    sys.exit(status)


async def run_until_signal(config: KmsgConfig) -> int:
    """Run kmsg; SIGTERM ends it with status 0, SIGINT with 130 (state saved either way).

    An expected failure is one line on stderr and status 1.
    """
    status = 0
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                nonlocal status
                async for signum in signals:
                    status = EXIT_SIGINT if signum == signal.SIGINT else 0
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch_signals)
            try:
                await run_kmsg(config)
            except (KmsgOpenError, KmsgReadError, ConnectError) as exc:
                click.echo(f"kmsg: {exc}", err=True)
                status = 1
            except OutputClosedError:
                status = 0  # stderr is gone: nobody to tell
            nursery.cancel_scope.cancel()
    return status
