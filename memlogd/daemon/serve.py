"""The daemon assembled: sockets, tasks, and shutdown in phases.

:func:`serve` builds the parts (state, intake, readers, query service,
console), runs their tasks, calls ``task_status.started(daemon)`` once both
sockets serve, and on :meth:`Daemon.begin_shutdown` stops taking fds and
connections, lets followers receive what the ring holds (at most
``GRACE_S``), then closes them (docs/memlogd.md, "Signals").
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio

from memlogd.config import DROP_REPORT_S, FD_DATAGRAMS_PER_PASS, GRACE_S, HOLD_S, DaemonConfig
from memlogd.daemon.console import Console
from memlogd.daemon.host import Role, RoleHost, run_roles
from memlogd.daemon.intake import Intake
from memlogd.daemon.keeperlink import KeeperLink
from memlogd.daemon.readers import IntakeHold, QueryService, Readers
from memlogd.daemon.ring import Ring
from memlogd.daemon.state import LogState
from memlogd.logconfig import set_event_sink
from memlogd.sockets import Sockets, open_sockets, unlink_quietly
from memlogd.wire import handover
from memlogd.wire import protocol as proto
from memlogd.wire.fdmsg import ANCBUF_SIZE, parse_fd_datagram
from memlogd.wire.handover import Partial

log = structlog.get_logger("memlogd")


@dataclass(frozen=True)
class Keeping:
    """What a worker knows of its keeper (None without one: ``--no-keeper``)."""

    keeper_pid: int
    worker_starts: int  # this worker's number: 1 + the restarts before it
    previous: str | None  # how the worker before this one ended, when it crashed
    upgraded: bool  # this worker took over from an upgraded one


class Daemon:
    """The running daemon's parts, wired together; each knows only what it uses."""

    def __init__(
        self,
        config: DaemonConfig,
        console_fd: int | None = None,
        *,
        state: LogState | None = None,
        keeping: Keeping | None = None,
    ) -> None:
        self.config = config
        self.state = state if state is not None else LogState(config, str(uuid.uuid4()))
        self.keeping = keeping
        self.link: KeeperLink | None = None
        self.hold = IntakeHold()
        self.readers = Readers(self.state.ring, self.hold)
        self.intake = Intake(self.state, self.hold)
        self.handover = False  # stopping for an upgrade: the next worker takes over
        self.roles: dict[str, Callable[[], dict[str, Any]]] = {}  # role -> its status
        self.queries = QueryService(
            config, self.readers, self.state.warnings, self.header, self.stats
        )
        if console_fd is not None:
            self.state.console = Console(console_fd)
        self.state.on_append = self.readers.push_all
        self.state.protect = self.readers.protect
        self.state.protected = self.readers.protected
        self.readers.make_room = self.state.make_room
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
            "keeper_pid": self.keeping.keeper_pid if self.keeping else None,
            "worker_starts": self.keeping.worker_starts if self.keeping else 1,
            "journal_squeezed": self.state.journal.squeezed if self.state.journal else 0,
            "roles": {name: status() for name, status in self.roles.items()},
        }

    def attach_keeper(self, sock: socket.socket) -> KeeperLink:
        """Take sources from the keeper through ``sock`` instead of the log socket."""
        link = KeeperLink(
            sock,
            self.intake.accept,
            self._refused_by_keeper,
            self._stop_requested,
        )
        self.intake.on_released = link.release
        self.link = link
        return link

    def _refused_by_keeper(self, refused: handover.Refused) -> None:
        self.state.warnings.warning(
            "fds_refused",
            source=refused.name,
            fds=refused.fds,
            reason=refused.problem,
            pid=refused.pid,
            uid=refused.uid,
        )

    def _stop_requested(self, stop: handover.Stop) -> None:
        if self.readers.closing:  # stopping already (the keeper closes its end after a handover)
            return
        if stop.signal:  # memlogd was told to stop: the keeper received it
            log.info("signal_received", signal=signal.Signals(stop.signal).name)
        self.handover = stop.handover
        self.begin_shutdown()

    def begin_shutdown(self) -> None:
        self.readers.closing = True
        self._closing.set()
        self.hold.release_all()
        self.queries.begin_shutdown(handover=self.handover)

    async def wait_closing(self) -> None:
        await self._closing.wait()

    async def receive_fds(self, sock: socket.socket) -> None:
        """Datagrams of the log socket: each one's fds become sources."""
        while True:
            await trio.lowlevel.wait_readable(sock)
            # every datagram waiting (a bounded number): many writers registering at once
            # must not each wait for a whole pass of the intake
            for _ in range(FD_DATAGRAMS_PER_PASS):
                try:
                    data, anc, flags, _ = sock.recvmsg(
                        proto.MAX_NAME_BYTES + 1, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
                    )
                except BlockingIOError:
                    break
                except OSError as exc:
                    self.state.warnings.warning("log_socket_error", error=exc.strerror)
                    await trio.sleep(0.1)
                    break
                self.intake.accept(parse_fd_datagram(data, anc, flags))

    async def report(self) -> None:
        """Periodic summaries of what was dropped, so no loss goes unlogged."""
        console_reported = holds_reported = reader_reported = 0
        while True:
            await trio.sleep(DROP_REPORT_S)
            release_free_memory()
            self.state.warnings.report_held()
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
    roles: Sequence[Role] = (),
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon on its own (``--no-keeper``, and tests) until cancelled or
    until ``begin_shutdown()``; ``task_status.started(daemon)`` once both sockets
    serve.  ``sockets`` are those of :func:`open_sockets` when the caller opened them.
    """
    log_sock, query_sock, owned = sockets if sockets is not None else open_sockets(config)
    daemon = Daemon(config, console_fd if config.console else None)
    try:
        await run(daemon, query_sock, log_sock, roles=roles, task_status=task_status)
    finally:
        for sock in (log_sock, query_sock):
            trio.lowlevel.notify_closing(sock)
            sock.close()
        for path in owned:
            unlink_quietly(path)


async def run(
    daemon: Daemon,
    query_sock: socket.socket,
    log_sock: socket.socket | None,
    *,
    roles: Sequence[Role] = (),
    on_handover: Callable[[list[Partial]], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The daemon's tasks, from serving to the end of a phased shutdown.

    Sources come from ``log_sock``, or (a worker) from its keeper link.
    ``roles`` run with a :class:`RoleHost` (memlogd.daemon.host).  At a
    stop for an upgrade the intake stops without ending its sources' last
    lines, and ``on_handover`` gets them, while dumps finish (``GRACE_S``)."""
    state = daemon.state
    set_event_sink(state.append_event)
    _announce(daemon)  # the first line of the ring, before any source's
    try:
        async with trio.open_nursery() as outer:
            if state.console is not None:
                outer.start_soon(state.console.run)
            outer.start_soon(daemon.report)
            outer.start_soon(daemon.hold.expire)
            if daemon.link is not None:
                outer.start_soon(daemon.link.run)
                outer.start_soon(daemon.link.send_releases)
            async with trio.open_nursery() as readers_roles:
                async with trio.open_nursery() as queries:
                    daemon.queries.attach(queries)
                    async with trio.open_nursery() as intake:
                        await intake.start(daemon.intake.run)
                        if log_sock is not None:
                            intake.start_soon(daemon.receive_fds, log_sock)
                        intake.start_soon(daemon.queries.accept_loop, query_sock)
                        host = RoleHost(state, daemon.queries)
                        daemon.roles.update({r.name: partial(r.status, host) for r in roles})
                        if sources := [role for role in roles if role.kind == "source"]:
                            intake.start_soon(run_roles, sources, host)  # stop with the intake
                        if readers := [role for role in roles if role.kind == "reader"]:
                            readers_roles.start_soon(run_roles, readers, host)
                        release_free_memory()  # what the imports left behind
                        task_status.started(daemon)
                        if daemon.link is not None:
                            await daemon.link.send(handover.Ready())
                        await daemon.wait_closing()
                        daemon.intake.handing_over = daemon.handover
                        intake.cancel_scope.cancel()
                    if daemon.link is not None and daemon.link.gone:
                        # an orphan: let the next memlogd have the path now, not after the grace
                        query_sock.close()
                    if daemon.handover and on_handover is not None:
                        state.frozen = True  # the journal is the next worker's now
                        set_event_sink(None)
                        await on_handover(daemon.intake.partials)
                    ending = "upgrade_handed_over" if daemon.handover else "shutdown_started"
                    log.info(ending, readers=len(daemon.readers.active))
                    daemon.readers.push_all()
                    queries.cancel_scope.deadline = trio.current_time() + GRACE_S
                readers_roles.cancel_scope.cancel()  # they had the ring's end
            outer.cancel_scope.cancel()
    finally:
        set_event_sink(None)


def _announce(daemon: Daemon) -> None:
    """The first line of a daemon (as upstream's), or of a worker taking over."""
    state, keeping = daemon.state, daemon.keeping
    limits = daemon.config.limits()
    if keeping is None or keeping.worker_starts == 1:
        log.info("memlogd started", instance=state.instance, pid=os.getpid(), **limits)
    elif keeping.upgraded:
        log.info("worker_upgraded", pid=os.getpid(), worker_starts=keeping.worker_starts)
    else:
        log.warning(
            "worker_restarted",
            previous=keeping.previous,
            pid=os.getpid(),
            worker_starts=keeping.worker_starts,
        )
