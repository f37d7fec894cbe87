"""``memlogd``: the command line and the boot (docs/memlogd.md).

The order matters, because memlogd is the first process of a VM:

1. the flags are read by :mod:`memlogd.flags` (no click: it is imported only
   for ``-help`` and usage errors, from the same declarations) and the
   configuration is validated, so a process that said "ready" cannot then
   fail on its arguments;
2. both sockets are bound (or adopted) and ``--ready-fd`` is written: the init
   may go on; what arrives meanwhile waits in the kernel's queues;
3. only then is anything heavy imported: the worker's modules (trio,
   structlog, the daemon) and the roles' (each program's ``role()``
   factory, built here from the flags), before the keeper forks the worker,
   which serves; with ``--no-keeper`` the daemon runs in this process.

This is the one module that knows every part: it builds the roles
(logwrite, kmsg, logship) for the daemon, and hands the keeper the worker's
entry function and a logger, so that neither the daemon nor the keeper
imports a program, and the keeper imports no trio, click or structlog.
"""

from __future__ import annotations

import os
import signal
import sys

from memlogd.errors import ConfigError, SocketError
from memlogd.flags import FLAGS, FlagError, daemon_config, parse, role_config
from memlogd.procname import KEEPER_NAME, set_process_name, write_pid_file
from memlogd.record import TYPE_CHECKING
from memlogd.sockets import Sockets, open_sockets, unlink_quietly

if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, NoReturn

    from memlogd.config import DaemonConfig
    from memlogd.daemon.host import Role
    from memlogd.keeper.keeper import Log, WorkerEntry
    from memlogd.roleconfig import RoleConfig
    from memlogd.wire.handover import WorkerStart

HELP_EPILOG = """\b
Examples:
  memlogd -socket-log /run/l.sock -socket-query /run/q.sock -ready-fd 3
  memlogd -fd-log 3 -fd-query 4 -max-lines 5000 -max-line-len 1024
  kill -USR2 $(pidof -s memlogd)    # upgrade to the program on disk, losing nothing"""

_early_signals: list[int] = []  # SIGTERM/SIGINT before the daemon took over


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    try:
        values = parse(args)
        config = daemon_config(values)
        roles = role_config(values)
    except (FlagError, ConfigError):
        click_main(args)  # help, or click's own usage error (exit 2)
    if values["check"]:  # the keeper's check of the program on disk before an upgrade
        import memlogd.daemon.worker  # noqa: F401  (everything a worker needs imports)

        build_roles(roles)
        sys.exit(0)
    if values["keeper_state"] is not None:
        _resume_keeper(values, config, roles, args)
    if values["daemonize"]:
        from memlogd.keeper.daemonize import spawn_daemon

        sys.exit(spawn_daemon(args, _bind(config)))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _remember)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # an upgrade asked for before the keeper runs
    sockets = _bind(config)
    if values["pid_file"] is not None:
        _write_pid_file(values["pid_file"], sockets)
    if values["ready_fd"] is not None:
        _signal_ready(values["ready_fd"])
    set_process_name(KEEPER_NAME, args)  # after "ready": ctypes is not on the boot path
    if values["no_keeper"]:
        _run_alone(config, roles, sockets, values["log_format"])
    _run_keeper(config, roles, sockets, values["log_format"], args)


def _remember(signum: int, _frame: FrameType | None) -> None:
    _early_signals.append(signum)


def _bind(config: Any) -> Sockets:
    try:
        return open_sockets(config)
    except SocketError as exc:
        sys.stderr.write(f"memlogd: {exc}\n")
        sys.exit(1)


def _write_pid_file(path: str, sockets: Sockets) -> None:
    """The keeper's pid, in a file removed at exit (with the socket files)."""
    try:
        sockets[2].append(write_pid_file(path))
    except OSError as exc:
        sys.stderr.write(f"memlogd: cannot write -pid-file {path}: {exc.strerror}\n")
        for sock in sockets[:2]:
            sock.close()
        for owned in sockets[2]:
            unlink_quietly(owned)
        sys.exit(1)


def _signal_ready(fd: int) -> None:
    try:
        os.write(fd, b"\n")
        os.close(fd)
    except OSError as exc:
        sys.stderr.write(f"memlogd: ready_fd_failed fd={fd} error={exc.strerror!r}\n")


def _run_alone(config: Any, roles: Any, sockets: Sockets, log_format: str) -> NoReturn:
    """``--no-keeper``: the daemon in this one process (upstream's shape)."""
    import trio

    from memlogd.logconfig import configure_logging

    configure_logging("memlogd", log_format)
    trio.run(_serve_alone, config, build_roles(roles), sockets)
    sys.exit(0)


async def _serve_alone(config: Any, roles: tuple[Role, ...], sockets: Sockets) -> None:
    from functools import partial

    import structlog
    import trio

    from memlogd.daemon.serve import serve

    log = structlog.get_logger("memlogd")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(
                partial(serve, config, console_fd=sys.stdout.fileno(), sockets=sockets, roles=roles)
            )
            if not _early_signals:
                async for signum in signals:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    break
            daemon.begin_shutdown()


def _run_keeper(
    config: DaemonConfig, roles: RoleConfig, sockets: Sockets, log_format: str, args: list[str]
) -> NoReturn:
    from memlogd.keeper.keeper import Keeper
    from memlogd.keeper.keeperstate import KeeperState, lower_oom_score, raise_fd_limit

    log_sock, query_sock, owned = sockets
    raise_fd_limit()
    run_worker, log = _import_worker(config, roles, log_format)
    from memlogd.daemon.worker import create_journal  # imported by _import_worker

    state = KeeperState(
        argv=_kept_args(args),
        log_sock=log_sock,
        query_sock=query_sock,
        owned=owned,
        journal_fd=create_journal(config),
        oom_score=lower_oom_score(),
    )
    if _early_signals:
        Keeper(state, run_worker, log).exit(0)
    Keeper(state, run_worker, log).run()


def _resume_keeper(
    values: dict[str, Any], config: DaemonConfig, roles: RoleConfig, args: list[str]
) -> NoReturn:
    """The keeper after it re-executed itself for an upgrade (SIGUSR2)."""
    from memlogd.keeper.keeper import Keeper
    from memlogd.keeper.keeperstate import adopt_state

    state, worker = adopt_state(values["keeper_state"], _kept_args(args))
    set_process_name(KEEPER_NAME, _kept_args(args))  # (the exec named it python3 again)
    run_worker, log = _import_worker(config, roles, values["log_format"])
    Keeper(state, run_worker, log).run(handing_over_from=worker)


def _import_worker(
    config: DaemonConfig, roles: RoleConfig, log_format: str
) -> tuple[WorkerEntry, Log]:
    """What a forked worker runs (the daemon and the roles), imported here so
    that every worker starts at once and shares these pages with the keeper;
    the worker's entry function and the keeper's logger."""
    import structlog

    from memlogd.daemon.serve import release_free_memory
    from memlogd.daemon.worker import run_worker
    from memlogd.logconfig import configure_logging

    built = build_roles(roles)
    configure_logging("memlogd", log_format)
    release_free_memory()

    def entry(start: WorkerStart) -> int:
        return run_worker(start, config, built, roles.state_dir)

    log: Log = structlog.get_logger("memlogd")  # stderr only: the keeper has no ring
    return entry, log


def build_roles(roles: RoleConfig) -> tuple[Role, ...]:
    """The roles the flags ask for, from each program's ``role()`` factory."""
    built: list[Role] = []
    if roles.persist_dir is not None:
        from logwrite import role as logwrite_role

        built.append(
            logwrite_role.role(
                roles.persist_dir,
                max_files=roles.persist_max_files,
                max_size=roles.persist_max_size,
                time_format=roles.persist_time_format,
                skip_sources=roles.persist_skip_sources,
            )
        )
    if roles.kmsg:
        from kmsg import role as kmsg_role

        built.append(kmsg_role.role(roles.kmsg_path, state_dir=roles.state_dir))
    if roles.ship_to is not None:
        from logship import role as logship_role

        built.append(
            logship_role.role(
                roles.ship_to,
                state_dir=roles.state_dir,
                window=roles.ship_window,
                hostname=roles.ship_hostname,
                sd_id=roles.ship_sd_id,
                sources=roles.ship_sources,
            )
        )
    return tuple(built)


def _kept_args(args: list[str]) -> list[str]:
    """memlogd's arguments for a re-execution: not the ones of this start only."""
    once = {"ready-fd", "keeper-state", "daemonize"}
    out: list[str] = []
    skip = False
    for word in args:
        if skip:
            skip = False
            continue
        name, eq, _ = word.lstrip("-").partition("=")
        if word.startswith("-") and name in once:
            skip = not eq and name != "daemonize"
            continue
        out.append(word)
    return out


# ---------------------------------------------------------------------- click


def click_main(args: list[str]) -> NoReturn:
    """The same flags through click: ``-help``, and usage errors (exit 2)."""
    command = build_command()
    command.main(args, prog_name="memlogd")
    sys.exit(2)  # click accepted what memlogd.flags refused: never (a test says so)


def build_command() -> Any:
    """memlogd's click command, built from :data:`memlogd.flags.FLAGS`."""
    import click

    from memlogd.cliflags import go_command, go_option

    def callback(**values: Any) -> None:
        try:
            daemon_config(values)
            role_config(values)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None

    def octal(_ctx: Any, _param: Any, value: str) -> int:
        try:
            return int(value, 8)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an octal mode such as 0600") from None

    command = callback
    for flag in reversed(FLAGS):
        attrs: dict[str, Any] = {"help": flag.help, "hidden": flag.hidden}
        if flag.kind == "bool":
            attrs["is_flag"] = True
        else:
            attrs["default"] = flag.default
            attrs["metavar"] = flag.metavar
            attrs["show_default"] = flag.default is not None
        if flag.kind == "int":
            attrs["type"] = int
        elif flag.kind == "octal":
            attrs["callback"] = octal
        elif flag.kind == "choice":
            attrs["type"] = click.Choice(flag.choices)
        elif flag.kind == "multi":
            attrs["multiple"] = True
        command = go_option("--" + flag.name, flag.dest, **attrs)(command)
    return go_command(
        "memlogd",
        help="memlogd: keep every line of every container's output in a bounded ring.",
        epilog=HELP_EPILOG,
    )(command)
