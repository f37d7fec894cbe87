"""The other programs' jobs inside memlogd's worker (docs/memlogd.md, "Roles").

``-persist-dir DIR`` runs logwrite's job, ``-kmsg`` kmsg's and ``-ship-to URL``
logship's, with their own code: each role reads the ring through the one
client (:class:`memlogd.client.Subscription`) over an in-process socket pair,
or (kmsg) appends to the ring directly.  Each keeps its state so that a new
worker neither replays nor loses: logwrite's cursor in DIR, kmsg's and
logship's state files under ``-state-dir``.  One process instead of three
interpreters is most of the memory a VM saves (BENCHMARKS.md).

This module is light to import (the boot validates :class:`RoleConfig`
before memlogd says it is ready); the roles' code is imported by the worker.
"""

from __future__ import annotations

import os

from memlogd.errors import ConfigError
from memlogd.record import TYPE_CHECKING, record

if TYPE_CHECKING:
    from typing import Any

    from memlogd.client import Connector
    from memlogd.daemon.serve import Daemon

KMSG_SOURCE = "kmsg"
DIR_POLL_S = 1.0  # how often a persist directory that is not there yet is looked for
STATE_DIR_NAME = "memlogd.d"  # beside the query socket, when -state-dir is not given
DEFAULT_STATE_DIR = "/var/run/memlogd.d"  # with an inherited query socket
DEFAULT_SHIP_WINDOW = 128  # logship's -window default (docs/logship.md)


@record
class RoleConfig:
    persist_dir: str | None = None
    persist_max_files: int = 10
    persist_max_size: int = 1048576
    persist_time_format: str = "rfc3339"
    persist_skip_sources: tuple[str, ...] = ("logwrite*",)
    kmsg: bool = False
    kmsg_path: str = "/dev/kmsg"
    ship_to: str | None = None
    ship_window: int = DEFAULT_SHIP_WINDOW
    ship_hostname: str | None = None
    ship_sd_id: str | None = None
    ship_sources: tuple[str, ...] = ()
    state_dir: str = DEFAULT_STATE_DIR

    def __post_init__(self) -> None:
        if self.persist_max_files < 0:
            raise ConfigError("-persist-max-log-files must not be negative")
        if self.persist_max_size < 1:
            raise ConfigError("-persist-max-log-size must be at least 1")
        if self.ship_to is not None or self.ship_window != DEFAULT_SHIP_WINDOW:
            # logship's modules only when a -ship flag is given: not on the boot path
            from logship.relp import MAX_WINDOW

            if not 1 <= self.ship_window <= MAX_WINDOW:
                raise ConfigError(f"-ship-window must be within 1..{MAX_WINDOW}")
        if self.ship_to is not None:
            from logship.target import TargetError, parse_target

            try:
                parse_target(self.ship_to)
            except TargetError as exc:
                raise ConfigError(f"-ship-to: {exc}") from None
        if self.ship_sd_id is not None:
            from logship.rfc5424 import validate_sd_id

            try:
                validate_sd_id(self.ship_sd_id)
            except ValueError as exc:
                raise ConfigError(f"-ship-sd-id: {exc}") from None

    @property
    def any(self) -> bool:
        return self.persist_dir is not None or self.kmsg or self.ship_to is not None


def state_dir_for(query_path: str | None, given: str | None) -> str:
    """``-state-dir``, or a directory beside the query socket."""
    if given:
        return given
    if query_path:
        return os.path.join(os.path.dirname(os.path.abspath(query_path)), STATE_DIR_NAME)
    return DEFAULT_STATE_DIR


# ---------------------------------------------------------------------- in the worker


def in_process(daemon: Daemon) -> Connector:
    """A connector to this daemon's query service without a socket file: a
    socket pair whose one end the server adopts as a query connection."""
    import socket as socket_module

    import trio

    from memlogd.errors import ConnectError

    async def connect() -> trio.abc.Stream:
        ours, theirs = socket_module.socketpair()
        if not daemon.queries.adopt(theirs):
            ours.close()
            raise ConnectError("(in process)", "memlogd is stopping")
        ours.setblocking(False)
        return trio.SocketStream(trio.socket.from_stdlib_socket(ours))

    return connect


async def run_source_roles(daemon: Daemon, roles: RoleConfig) -> None:
    """The roles that add to the ring (kmsg), until cancelled: they stop with the
    intake, before the ring is handed over or closed."""
    if roles.kmsg:
        await _supervised("kmsg", _kmsg, roles, daemon)


async def run_reader_roles(daemon: Daemon, roles: RoleConfig) -> None:
    """The roles that read the ring (persist, ship), until cancelled: they stop
    after the other readers have been given the ring's end.  A role that fails
    is logged and started again after a while: it never takes the daemon down."""
    import trio

    connect = in_process(daemon)
    async with trio.open_nursery() as nursery:
        if roles.persist_dir is not None:
            nursery.start_soon(_supervised, "persist", _persist, roles, connect)
        if roles.ship_to is not None:
            nursery.start_soon(_supervised, "ship", _ship, roles, connect)


async def _supervised(name: str, job: Any, *args: Any) -> None:
    import structlog
    import trio

    from memlogd.errors import MemlogdError

    log = structlog.get_logger("memlogd")
    structlog.contextvars.bind_contextvars(role=name)  # on the events of this task and its own
    while True:
        try:
            await job(*args)
            return
        except (MemlogdError, OSError) as exc:
            log.error("role_failed", role=name, error=str(exc), retry_in_s=DIR_POLL_S * 5)
        await trio.sleep(DIR_POLL_S * 5)


async def _persist(roles: RoleConfig, connect: Connector) -> None:
    """logwrite's job, once the directory exists (a disk mounted later)."""
    import structlog
    import trio

    from logwrite.lines import TimeFormat
    from logwrite.persister import Config, persist

    directory = roles.persist_dir
    assert directory is not None
    if not os.path.isdir(directory):
        structlog.get_logger("memlogd").info("persist_waiting", dir=directory)
        while not os.path.isdir(directory):
            await trio.sleep(DIR_POLL_S)
    config = Config(
        socket="(in process)",
        log_dir=directory,
        max_files=roles.persist_max_files,
        max_size=roles.persist_max_size,
        time_format=TimeFormat(roles.persist_time_format),
        skip_sources=roles.persist_skip_sources,
    )
    await persist(config, connect)


class _RingSink:
    """kmsg's records, as lines of source ``kmsg`` in the ring."""

    def __init__(self, daemon: Daemon) -> None:
        self.state = daemon.state
        # counted in stats like any source: this process reads the kernel log
        self.info = self.state.source_info(KMSG_SOURCE)
        self.info.pid, self.info.uid = os.getpid(), os.getuid()

    async def write(self, data: bytes) -> None:
        from memlogd.daemon.lines import Lines  # loaded by the worker already

        self.state.append(KMSG_SOURCE, Lines.of(data.rstrip(b"\n").split(b"\n")), self.info)

    async def aclose(self) -> None:
        pass


async def _kmsg(roles: RoleConfig, daemon: Daemon) -> None:
    """kmsg's job: the kernel log as source ``kmsg``, from where the ring (or
    the state file) says the last worker stopped."""
    from kmsg.reader import KmsgConfig, run_kmsg
    from kmsg.record import text_seq
    from memlogd.daemon.statelock import owning
    from memlogd.wire.protocol import decode_entry

    os.makedirs(roles.state_dir, exist_ok=True)
    last = daemon.state.ring.last_of(KMSG_SOURCE)
    done = None if last is None else text_seq(decode_entry(last).msg)
    config = KmsgConfig(
        path=roles.kmsg_path,
        state_file=os.path.join(roles.state_dir, "kmsg.state"),
    )
    sink = _RingSink(daemon)
    sink.info.open += 1
    try:
        async with owning(config.state_file):  # not with an orphaned worker's at once
            await run_kmsg(config, sink=sink, done_seq=done)
    finally:
        sink.info.open -= 1


async def _ship(roles: RoleConfig, connect: Connector) -> None:
    """logship's job, with its state file under the state directory."""
    import socket as socket_module

    from logship.rfc5424 import DEFAULT_SD_ID
    from logship.shipper import ShipConfig, run_shipper
    from memlogd.daemon.statelock import owning

    assert roles.ship_to is not None
    os.makedirs(roles.state_dir, exist_ok=True)
    config = ShipConfig(
        target=roles.ship_to,
        state_file=os.path.join(roles.state_dir, "logship.state"),
        sources=roles.ship_sources,
        hostname=roles.ship_hostname or socket_module.gethostname(),
        window=roles.ship_window,
        sd_id=roles.ship_sd_id or DEFAULT_SD_ID,
    )
    async with owning(config.state_file):  # not with an orphaned worker's at once
        await run_shipper(config, connect)
