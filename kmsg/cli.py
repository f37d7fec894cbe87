"""``kmsg``: stream the kernel log (docs/kmsg.md). Thin: flags -> KmsgConfig -> run_kmsg.

Every ``--long`` option also works as ``-long`` (:mod:`memlogd.cliflags`).
Records go to stderr (text, as SPEC section 6 says), to stdout (``-o json``,
or text with ``--stdout``), or into memlogd (``--socket-log``).
"""

from __future__ import annotations

import signal

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
from memlogd.cliflags import go_command, go_option
from memlogd.errors import EXIT_INTERRUPTED, ConnectError
from memlogd.logconfig import configure_logging, log_format_option
from memlogd.termio import OutputClosedError, OutputFailedError, quiet_exit, watch_closed

HELP_EPILOG = """\b
Examples:
  kmsg -no-follow                  # what the kernel holds now, then stop
  kmsg -no-follow -o json | jq -c 'select(.level <= 3)'   # errors and worse
  kmsg -socket-log /var/run/linuxkit-external-logging.sock -state-file /run/kmsg.state"""


@go_command("kmsg", epilog=HELP_EPILOG)
@go_option("--path", default=DEFAULT_PATH, show_default=True, help="Kernel log device to read.")
@go_option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep waiting for new records, or stop at the end of the log.",
)
@go_option(
    "--from-start/--from-end",
    default=True,
    show_default=True,
    help="Start with the oldest record the kernel holds, or only with new ones.",
)
@go_option(
    "--socket-log",
    default=None,
    metavar="PATH",
    help="Hand the records to memlogd through this log socket.",
)
@go_option(
    "--name",
    default=DEFAULT_NAME,
    show_default=True,
    help="Source name of the records in memlogd (with --socket-log).",
)
@go_option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: <LEVEL>(SEQ) - TIME: TEXT, on stderr; json: one object with every field, "
    "on stdout.",
)
@go_option(
    "--upstream-format",
    is_flag=True,
    help="Text records exactly as upstream's kmsg writes them: (SEQ) - TIME: TEXT, "
    "without the level in front.",
)
@go_option(
    "--stdout",
    "to_stdout",
    is_flag=True,
    help="Write text records to stdout instead of stderr (json always goes there).",
)
@go_option(
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
    upstream_format: bool,
    to_stdout: bool,
    state_file: str | None,
    log_format: str,
) -> None:
    """kmsg: copy the kernel log (/dev/kmsg) to stderr, stdout or memlogd.

    One line per record: "<LEVEL>(SEQ) - TIME: TEXT" on stderr (upstream's
    format with the level in front, as dmesg -r prints it; -upstream-format
    drops it), or with -o json one JSON object per record on stdout. kmsg's own
    diagnostics always go to stderr.
    """
    config = KmsgConfig(
        path=path,
        follow=follow,
        from_end=not from_start,
        json=output == "json",
        to_stdout=to_stdout,
        socket_log=socket_log,
        name=name,
        state_file=state_file,
        upstream_format=upstream_format,
    )
    configure_logging("kmsg", log_format)
    try:
        status = trio.run(run_until_signal, config)
    except KeyboardInterrupt:  # before or after trio's signal handling
        status = EXIT_INTERRUPTED
    quiet_exit(status)


async def run_until_signal(config: KmsgConfig) -> int:
    """Run kmsg; SIGTERM ends it with status 0, SIGINT with 130 (state saved either way),
    and so does a reader of the output that went away (``| head``), with status 0.

    An expected failure is one line on stderr and status 1.
    """
    status = 0
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                nonlocal status
                async for signum in signals:
                    status = EXIT_INTERRUPTED if signum == signal.SIGINT else 0
                    nursery.cancel_scope.cancel()
                    return

            async def watch_reader() -> None:
                await watch_closed(config.records_fd)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            if config.socket_log is None:
                nursery.start_soon(watch_reader)
            try:
                await run_kmsg(config)
            except (KmsgOpenError, KmsgReadError, ConnectError, OutputFailedError) as exc:
                click.echo(f"kmsg: {exc}", err=True)
                status = 1
            except OutputClosedError:
                status = 0  # nobody reads the records any more: nobody to tell
            nursery.cancel_scope.cancel()
    return status
