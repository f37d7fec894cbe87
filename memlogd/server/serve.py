"""The daemon's composition root: sockets, tasks, and shutdown in phases.

:func:`serve` builds the parts (state, intake, readers, query service,
console), runs their tasks, calls ``task_status.started(daemon)`` once both
sockets serve, and on :meth:`Daemon.begin_shutdown` stops taking fds and
connections, lets followers receive what the ring holds (at most
``GRACE_S``), then closes them (docs/memlogd.md, "Signals").
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import structlog
import trio

from memlogd import protocol as proto
from memlogd.config import DROP_REPORT_S, GRACE_S, HOLD_S, DaemonConfig
from memlogd.fdmsg import ANCBUF_SIZE, parse_fd_datagram
from memlogd.logconfig import set_event_sink
from memlogd.ring import Ring
from memlogd.server.console import Console
from memlogd.server.daemon import LogState
from memlogd.server.intake import Intake
from memlogd.server.readers import IntakeHold, QueryService, Readers
from memlogd.sockets import adopt_fd, bind_unix, socket_path, unlink_quietly

log = structlog.get_logger("memlogd")

Sockets = tuple[socket.socket, socket.socket, list[str]]


class Daemon:
    """The running daemon's parts, wired together; each knows only what it uses."""

    def __init__(self, config: DaemonConfig, console_fd: int | None = None) -> None:
        self.config = config
        self.state = LogState(config, str(uuid.uuid4()))
        self.hold = IntakeHold()
        self.readers = Readers(self.state.ring, self.hold)
        self.intake = Intake(self.state, self.hold)
        self.queries = QueryService(
            config, self.readers, self.state.warnings, self.header, self.stats
        )
        if console_fd is not None:
            self.state.console = Console(console_fd)
        self.state.on_append = self.readers.push_all
        self.state.extra_stats.append(self._serving_stats)
        self._closing = trio.Event()

    @property
    def ring(self) -> Ring:
        return self.state.ring

    def header(self) -> proto.Header:
        ring = self.state.ring
        return proto.Header(self.state.instance, ring.first_seq, ring.next_seq)

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def _serving_stats(self) -> dict[str, Any]:
        return {
            "reader_dropped": self.readers.dropped,
            "intake_holds": self.hold.episodes,
            "readers": len(self.readers.active),  # answering now, not counting the asker
            "clients": self.queries.clients,  # query connections, also those not answered yet
            "open_fds": self.intake.open_fds,
            "pid": os.getpid(),
            "keeper_pid": None,
            "worker_starts": 1,
        }

    def begin_shutdown(self) -> None:
        self.readers.closing = True
        self._closing.set()
        self.hold.release_all()
        self.queries.begin_shutdown()

    async def wait_closing(self) -> None:
        await self._closing.wait()

    async def receive_fds(self, sock: socket.socket) -> None:
        """Datagrams of the log socket: each one's fds become sources."""
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data, anc, flags, _ = sock.recvmsg(
                    proto.MAX_NAME_BYTES + 1, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                continue
            except OSError as exc:
                self.state.warnings.warn("log_socket_error", error=exc.strerror)
                await trio.sleep(0.1)
                continue
            self.intake.accept(parse_fd_datagram(data, anc, flags))

    async def report(self) -> None:
        """Periodic summaries of what was dropped, so no loss goes unlogged."""
        console_reported = holds_reported = reader_reported = 0
        while True:
            await trio.sleep(DROP_REPORT_S)
            release_free_memory()
            self.state.warnings.report()
            holds = self.hold.episodes
            if holds > holds_reported:
                log.info(
                    "intake_held", count=holds - holds_reported, total=holds, max_s_each=HOLD_S
                )
                holds_reported = holds
            dropped = self.readers.dropped
            if dropped > reader_reported:
                log.warning("readers_dropped", count=dropped - reader_reported, total=dropped)
                reader_reported = dropped
            console = self.state.console
            if console is not None and console.dropped > console_reported:
                log.warning(
                    "console_dropped",
                    count=console.dropped - console_reported,
                    total=console.dropped,
                )
                console_reported = console.dropped


def open_sockets(config: DaemonConfig) -> Sockets:
    """Bind (or adopt) both sockets; returns them and the paths to remove at exit."""
    owned: list[str] = []
    log_sock = query_sock = None
    try:
        if config.fd_log is not None:
            log_sock = adopt_fd(config.fd_log, socket.SOCK_DGRAM, "-fd-log")
            if config.unlink_inherited and (path := socket_path(log_sock)):
                owned.append(path)
        else:
            log_sock = bind_unix(config.socket_log, socket.SOCK_DGRAM, config.socket_mode)
            owned.append(config.socket_log)
        if config.fd_query is not None:
            query_sock = adopt_fd(config.fd_query, socket.SOCK_STREAM, "-fd-query")
            if config.unlink_inherited and (path := socket_path(query_sock)):
                owned.append(path)
        else:
            query_sock = bind_unix(config.socket_query, socket.SOCK_STREAM, config.socket_mode)
            owned.append(config.socket_query)
    except BaseException:
        for sock in (log_sock, query_sock):
            if sock is not None:
                sock.close()
        for path in owned:
            unlink_quietly(path)
        raise
    log_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    log_sock.setblocking(False)
    query_sock.setblocking(False)
    return log_sock, query_sock, owned


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS: what start-up (imports) and
    bursts of traffic freed.  glibc only; elsewhere (musl) a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


async def serve(
    config: DaemonConfig,
    *,
    console_fd: int | None = None,
    sockets: Sockets | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled or until ``begin_shutdown()``.

    ``task_status.started(daemon)`` is called once both sockets serve.
    ``sockets`` are those of :func:`open_sockets` when the caller opened them.
    """
    log_sock, query_sock, owned = sockets if sockets is not None else open_sockets(config)
    daemon = Daemon(config, console_fd if config.console else None)
    state = daemon.state
    set_event_sink(state.append_event)
    try:
        async with trio.open_nursery() as outer:
            if state.console is not None:
                outer.start_soon(state.console.run)
            outer.start_soon(daemon.report)
            outer.start_soon(daemon.hold.expire)
            async with trio.open_nursery() as queries:
                daemon.queries.attach(queries)
                async with trio.open_nursery() as intake:
                    await intake.start(daemon.intake.run)
                    intake.start_soon(daemon.receive_fds, log_sock)
                    intake.start_soon(daemon.queries.accept_loop, query_sock)
                    log.info(
                        "memlogd started",
                        instance=state.instance,
                        pid=os.getpid(),
                        **config.limits(),
                    )
                    release_free_memory()  # what the imports left behind
                    task_status.started(daemon)
                    await daemon.wait_closing()
                    intake.cancel_scope.cancel()
                log.info("shutdown_started", readers=len(daemon.readers.active))
                daemon.readers.push_all()
                queries.cancel_scope.deadline = trio.current_time() + GRACE_S
            outer.cancel_scope.cancel()
    finally:
        set_event_sink(None)
        for sock in (log_sock, query_sock):
            trio.lowlevel.notify_closing(sock)
            sock.close()
        for path in owned:
            unlink_quietly(path)
