"""memlogd's flags, declared once, and a parser fast enough for a boot. PURE: no I/O.

memlogd is the first process of a VM: it must have bound its sockets within
milliseconds of its start (docs/memlogd.md, "Boot").  Importing click alone
takes longer than that, so the command line is read by :func:`parse`, with
the exact meaning click gives the same flags (a property test holds the two
to it); click, built from the same :data:`FLAGS` (memlogd.cli), is imported
only to show ``-help`` or to report a usage error.

Go-style, as every program here: ``-name value``, ``-name=value``, and the
same with two dashes; a boolean flag takes no value.
"""

from __future__ import annotations

from collections.abc import Sequence

from memlogd import config as cfg
from memlogd.record import TYPE_CHECKING, record
from memlogd.roleconfig import DEFAULT_PERSIST_TIME_FORMAT, RoleConfig, state_dir_for
from memlogd.wire.paths import DEFAULT_LOG_SOCKET, DEFAULT_QUERY_SOCKET

if TYPE_CHECKING:
    from typing import Any


class FlagError(Exception):
    """Not a command line :func:`parse` accepts (click then says why, or shows help)."""


@record
class Flag:
    name: str  # without dashes: "max-lines"
    kind: str  # "str", "int", "octal", "bool", "choice" or "multi" (repeatable str)
    default: Any
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    hidden: bool = False

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


FLAGS: tuple[Flag, ...] = (
    Flag(
        "socket-log",
        "str",
        DEFAULT_LOG_SOCKET,
        "Unix datagram socket where fds are handed over.",
        "PATH",
    ),
    Flag("socket-query", "str", DEFAULT_QUERY_SOCKET, "Unix stream socket of queries.", "PATH"),
    Flag("fd-log", "int", None, "Inherited, bound datagram socket to use instead.", "N"),
    Flag("fd-query", "int", None, "Inherited, listening stream socket to use instead.", "N"),
    Flag("max-lines", "int", cfg.DEFAULT_MAX_LINES, "Entries the ring holds.", "N"),
    Flag(
        "max-line-len",
        "int",
        cfg.DEFAULT_MAX_LINE_LEN,
        "Bytes kept of a line; the rest of a longer line is cut.",
        "N",
    ),
    Flag("max-bytes", "int", 0, "Message bytes the ring holds (0: bounded by lines only).", "N"),
    Flag(
        "evict",
        "choice",
        "fair",
        "Which entries go when the ring is full: fair (the oldest of the source that"
        " holds the most) or oldest (upstream's order).",
        choices=("fair", "oldest"),
    ),
    Flag(
        "max-sources",
        "int",
        cfg.DEFAULT_MAX_SOURCES,
        "Source fds open at once; more are refused.",
        "N",
    ),
    Flag(
        "max-clients",
        "int",
        cfg.DEFAULT_MAX_CLIENTS,
        "Query connections at once; more are refused.",
        "N",
    ),
    Flag("socket-mode", "octal", "0600", "Permissions of both socket files (octal).", "OCTAL"),
    Flag("daemonize", "bool", False, "Bind, run in the background, exit 0 once bound."),
    Flag("no-console", "bool", False, "Do not echo entries to stdout as TIME;SOURCE;MSG."),
    Flag("ready-fd", "int", None, "Write a newline to this fd once both sockets are bound.", "N"),
    Flag("pid-file", "str", None, "Write the keeper's pid to PATH (removed at exit).", "PATH"),
    Flag(
        "no-keeper",
        "bool",
        False,
        "One process, without the keeper that survives the worker's crash (for debugging).",
    ),
    Flag(
        "log-format",
        "choice",
        "text",
        "memlogd's own diagnostics on stderr: text (memlogd: event key=value) or JSON.",
        choices=("text", "json"),
    ),
    Flag(
        "persist-dir",
        "str",
        None,
        "logwrite's job in memlogd: every source to DIR/SOURCE.log, once DIR exists.",
        "DIR",
    ),
    Flag("persist-max-log-files", "int", 10, "Rotated files kept per source (-persist-dir).", "N"),
    Flag(
        "persist-max-log-size",
        "int",
        1048576,
        "Bytes after which a log rotates (-persist-dir).",
        "N",
    ),
    Flag(
        "persist-time-format",
        "choice",
        DEFAULT_PERSIST_TIME_FORMAT,
        "Time at the start of each persisted line (nanoseconds, so that logread -D "
        "orders sources exactly; rfc3339: whole seconds, as upstream's logwrite).",
        choices=("rfc3339", "rfc3339nano"),
    ),
    Flag(
        "persist-skip-source",
        "multi",
        ("logwrite*",),
        "Sources not persisted (a glob; repeatable; replaces the default).",
        "GLOB",
    ),
    Flag("kmsg", "bool", False, "kmsg's job in memlogd: the kernel log as source kmsg."),
    Flag("kmsg-path", "str", "/dev/kmsg", "The kernel log device (-kmsg).", "PATH"),
    Flag(
        "ship-to",
        "str",
        None,
        "logship's job in memlogd: every entry to relp://HOST:PORT or tcp://HOST:PORT.",
        "URL",
    ),
    Flag("ship-window", "int", 128, "Messages sent and not acknowledged at most (-ship-to).", "N"),
    Flag("ship-hostname", "str", None, "HOSTNAME of the shipped messages (default: ours).", "NAME"),
    Flag("ship-sd-id", "str", None, "SD-ID of the shipped messages (default memlogd@32473).", "ID"),
    Flag("ship-source", "multi", (), "Only sources matching this glob are shipped.", "GLOB"),
    Flag(
        "state-dir",
        "str",
        None,
        "Where the roles keep their state (default: memlogd.d beside the query socket).",
        "DIR",
    ),
    Flag("unlink-inherited", "bool", False, "", hidden=True),
    Flag("keeper-state", "int", None, "", "FD", hidden=True),
    Flag("check", "bool", False, "", hidden=True),
)


def parse(argv: Sequence[str], flags: Sequence[Flag] = FLAGS) -> dict[str, Any]:
    """Every flag's value by ``dest``; FlagError for anything else (help included)."""
    known = {flag.name: flag for flag in flags}
    values: dict[str, Any] = {flag.dest: flag.default for flag in flags}
    given: set[str] = set()  # repeatable flags given at least once
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--" and i == len(words):  # the end of the flags, and nothing after
            break
        dashes = 2 if word.startswith("--") else 1 if word.startswith("-") else 0
        if not dashes or word == "--":
            raise FlagError(f"unexpected argument {word!r}")
        name, eq, value = word[dashes:].partition("=")
        flag = known.get(name)
        if flag is None or (dashes == 1 and len(name) == 1):
            raise FlagError(f"no such flag {word!r}")
        if flag.kind == "bool":
            if eq:
                raise FlagError(f"{word!r} takes no value")
            values[flag.dest] = True
            continue
        if not eq:
            if i == len(words):
                raise FlagError(f"{word!r} needs a value")
            value = words[i]
            i += 1
        if flag.kind == "multi":
            if flag.dest not in given:
                given.add(flag.dest)
                values[flag.dest] = ()
            values[flag.dest] += (value,)
        else:
            values[flag.dest] = value
    for flag in flags:  # converted at the end, as click does: the last value counts
        if isinstance(values[flag.dest], str) and flag.kind != "str":
            values[flag.dest] = _convert(flag, values[flag.dest])
    return values


def _convert(flag: Flag, value: str) -> Any:
    if flag.kind in ("int", "octal"):
        try:
            return int(value, 8) if flag.kind == "octal" else int(value)
        except ValueError:
            raise FlagError(f"{value!r} is not a valid number for -{flag.name}") from None
    if flag.kind == "choice" and value not in flag.choices:
        raise FlagError(f"{value!r} is not one of {flag.choices} for -{flag.name}")
    return value


def role_config(values: dict[str, Any]) -> RoleConfig:
    """The in-process roles' configuration (ConfigError if invalid)."""
    return RoleConfig(
        persist_dir=values["persist_dir"],
        persist_max_files=values["persist_max_log_files"],
        persist_max_size=values["persist_max_log_size"],
        persist_time_format=values["persist_time_format"],
        persist_skip_sources=tuple(values["persist_skip_source"]),
        kmsg=values["kmsg"],
        kmsg_path=values["kmsg_path"],
        ship_to=values["ship_to"],
        ship_window=values["ship_window"],
        ship_hostname=values["ship_hostname"],
        ship_sd_id=values["ship_sd_id"],
        ship_sources=tuple(values["ship_source"]),
        state_dir=state_dir_for(
            None if values["fd_query"] is not None else values["socket_query"], values["state_dir"]
        ),
    )


def daemon_config(values: dict[str, Any]) -> cfg.DaemonConfig:
    """The daemon's configuration from parsed flags (ConfigError if invalid)."""
    return cfg.DaemonConfig(
        socket_log=values["socket_log"],
        socket_query=values["socket_query"],
        fd_log=values["fd_log"],
        fd_query=values["fd_query"],
        max_lines=values["max_lines"],
        max_line_len=values["max_line_len"],
        max_bytes=values["max_bytes"],
        evict=values["evict"],
        max_sources=values["max_sources"],
        max_clients=values["max_clients"],
        socket_mode=values["socket_mode"],
        console=not values["no_console"],
        unlink_inherited=values["unlink_inherited"],
    )
