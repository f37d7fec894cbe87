"""logread's command line (docs/logread.md): flags -> :class:`logread.program.Options`.

The program itself (subscriptions, selection, rendering, exits) is
:mod:`logread.program`; this module checks the flags and runs it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

import click
import trio

from logread.program import Options, run
from logread.render import OUTPUTS
from logread.selection import unit_globs
from logread.when import WhenError, parse_when
from memlogd.cliflags import (
    BareValueOption,
    go_command,
    go_option,
    query_socket_option,
    source_option,
)
from memlogd.errors import EXIT_INTERRUPTED
from memlogd.logconfig import configure_logging
from memlogd.termio import quiet_exit
from memlogd.wire import protocol as proto
from memlogd.wire.paths import DEFAULT_QUERY_SOCKET
from memlogd.wire.severity import PriorityError, parse_priority


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
    directory: str | None = None
    boot: str | None = None
    list_boots: bool = False


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


def _priority(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        return parse_priority(text)
    except PriorityError as exc:
        raise click.BadParameter(str(exc), param_hint="'-p' / '--priority'") from None


def build_options(flags: Flags, *, now_ns: int, tty: bool, no_color: bool) -> Options:
    """Check the flags together and decide what to ask memlogd and what to do here.
    Raises click's usage errors (exit 2)."""
    priority = _priority(flags.priority)
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
        or priority is not None
    )
    if flags.stats and flags.list_sources:
        raise click.UsageError("--stats and --list-sources cannot be combined")
    _check_directory(flags, selecting=bool(selecting))
    for wanted, name in ((flags.stats, "--stats"), (flags.list_sources, "--list-sources")):
        if wanted and selecting:
            raise click.UsageError(
                f"{name} cannot be combined with -f, -F, -s, -u, -g, -n, -p, --since, "
                "--until, -r or --retry"
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
        or priority is not None
        or output in ("json", "json-pretty")
        or flags.retry
        or flags.stats
        or flags.list_sources
    )
    color = flags.color == "always" or (flags.color == "auto" and tty and not no_color)
    request = proto.QueryRequest(
        dump=dump,
        follow=follow_any,
        sources=sources,
        tail=server_tail,
        since_ns=since_ns,
        priority=priority,
    )
    action = (
        "stats"
        if flags.stats
        else "sources"
        if flags.list_sources
        else "boots"
        if flags.list_boots
        else "entries"
    )
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
        directory=flags.directory,
        boot=flags.boot,
    )


def _check_directory(flags: Flags, *, selecting: bool) -> None:
    """-D reads files: a dump, never a follow; -b and --list-boots need it."""
    if flags.directory is None:
        for given, name in (
            (flags.boot is not None, "-b/--boot"),
            (flags.list_boots, "--list-boots"),
        ):
            if given:
                raise click.UsageError(f"{name} reads DIR/instances: give -D DIR too")
        return
    for given, name in (
        (flags.follow, "-f"),
        (flags.dump_follow, "-F"),
        (flags.retry, "--retry"),
        (flags.stats, "--stats"),
    ):
        if given:
            raise click.UsageError(
                f"{name} cannot be used with -D/--directory: the files are read once, "
                "nothing follows them"
            )
    if flags.list_boots and (selecting or flags.list_sources or flags.boot is not None):
        raise click.UsageError(
            "--list-boots cannot be combined with -s, -u, -p, -g, -n, --since, --until, -r, -b "
            "or --list-sources"
        )


EPILOG = """\b
Examples:
  logread -F -u web                 # service web (stderr and stdout), then follow
  logread -p err -n 20              # the last 20 errors (and worse)
  logread -n 50 -g 'error|fail' -i  # the last 50 lines that mention an error
  logread --since '10 min ago' -o json | jq .msg
  logread -D /var/log -b -1 -n 100  # the last 100 lines of the boot before this one
  logread -o json | python3 -m json.tool --json-lines   # JSON lines, indented
"""


@go_command("logread", epilog=EPILOG)
@query_socket_option()
@go_option(
    "-f", "--follow", "follow", is_flag=True, help="Follow: print new entries as they arrive."
)
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
    "json = JSON lines (one object per line, with seq), json-pretty = indented, "
    "raw or cat = the message.",
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
    default=None,
    metavar="LEVEL",
    help="Only entries at LEVEL or more severe (emerg, alert, crit, err, warning, notice, "
    "info, debug, or 0-7), or within a range FROM..TO; a line that says no level is info.",
)
@go_option(
    "-D",
    "--directory",
    metavar="DIR",
    help="Read logwrite's files in DIR (NAME.log and its rotations) instead of memlogd.",
)
@go_option(
    "-b",
    "--boot",
    cls=BareValueOption,
    bare_value="0",
    default=None,
    metavar="[OFFSET|ID]",
    help="With -D: only the lines of one boot (memlogd instance): 0 or none the last, "
    "-1 the one before, 1 the first, or its instance ID.",
)
@go_option(
    "--list-boots",
    is_flag=True,
    help="With -D: list the boots in DIR/instances (offset, instance, first and last time).",
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
    directory: str | None,
    boot: str | None,
    list_boots: bool,
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
        directory=directory,
        boot=boot,
        list_boots=list_boots,
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
