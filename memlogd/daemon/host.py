"""The other programs' jobs inside the daemon (docs/memlogd.md, "Roles").

A *role* is a program's job run in the worker: logwrite's (``-persist-dir``),
kmsg's (``-kmsg``), logship's (``-ship-to``).  The daemon never imports a
program: each program offers a ``role(...)`` factory implementing
:class:`Role`, :mod:`memlogd.cli` builds the roles from the flags and hands
them to the daemon, and the daemon runs each one with a :class:`RoleHost`:
all a role may use of the daemon.

* a *source* role adds to the ring (kmsg): it runs beside the intake and
  stops with it, before the ring is handed over or closed;
* a *reader* role reads the ring through the one client
  (:class:`memlogd.client.Subscription`) over an in-process socket pair
  (:meth:`RoleHost.connect`): it stops after the other readers were given
  the ring's end.

A role that fails is logged (``role_failed``) and started again after
``ROLE_RETRY_S``: it never takes the daemon down.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol

import structlog
import trio

from memlogd.daemon.lines import Lines
from memlogd.daemon.readers import QueryService
from memlogd.daemon.state import LogState, SourceInfo
from memlogd.errors import ConnectError, MemlogdError
from memlogd.wire import protocol as proto

ROLE_RETRY_S = 5.0  # a role that failed is started again after this long
IN_PROCESS = "(in process)"  # the "path" in a role's connection errors

log = structlog.get_logger("memlogd")

RoleKind = Literal["source", "reader"]


class Role(Protocol):
    """A program's job in the daemon."""

    @property
    def name(self) -> str:
        """``persist``, ``kmsg``, ``ship``: the ``role`` key of its events."""
        ...

    @property
    def kind(self) -> RoleKind:
        """``source`` (adds to the ring) or ``reader`` (reads it)."""
        ...

    async def run(self, host: RoleHost) -> None:
        """Do the job until cancelled (or done); MemlogdError or OSError: it failed."""
        ...

    def status(self, host: RoleHost) -> dict[str, Any]:
        """Its state now, for the daemon's stats (``roles``)."""
        ...


class HostedSource:
    """A source the daemon's process writes itself (a role), counted in stats
    like any other: open while the role runs, with this process's pid and uid."""

    def __init__(self, state: LogState, name: str, info: SourceInfo) -> None:
        self._state = state
        self.name = name
        self._info = info

    def append(self, data: bytes) -> None:
        """Newline-ended lines, one batch, into the ring."""
        self._state.append(self.name, Lines.of(data.rstrip(b"\n").split(b"\n")), self._info)


class RoleHost:
    """What the daemon offers a role, and nothing else of its insides."""

    def __init__(self, state: LogState, queries: QueryService) -> None:
        self._state = state
        self._queries = queries

    async def connect(self) -> trio.abc.Stream:
        """A connection to this daemon's query service without a socket file (a
        :data:`memlogd.client.Connector`): a socket pair whose one end the query
        service adopts as a query connection."""
        ours, theirs = socket.socketpair()
        if not self._queries.adopt(theirs):
            ours.close()
            raise ConnectError(IN_PROCESS, "memlogd is stopping")
        ours.setblocking(False)
        return trio.SocketStream(trio.socket.from_stdlib_socket(ours))

    def header(self) -> proto.Header:
        """The ring now: its instance, first and next seq."""
        ring = self._state.ring
        return proto.Header(self._state.instance, ring.first_seq, ring.next_seq)

    def last_entry(self, source: str) -> proto.LogEntry | None:
        """The newest entry the ring holds of ``source``, if any."""
        raw = self._state.ring.last_of(source)
        return None if raw is None else proto.decode_entry(raw)

    @contextlib.contextmanager
    def source(self, name: str) -> Iterator[HostedSource]:
        """Write lines of source ``name``, counted open in stats meanwhile."""
        info = self._state.source_info(name)
        info.pid, info.uid = os.getpid(), os.getuid()
        info.open += 1
        try:
            yield HostedSource(self._state, name, info)
        finally:
            info.open -= 1


async def run_roles(roles: Sequence[Role], host: RoleHost) -> None:
    """Each role in its own task, until cancelled."""
    async with trio.open_nursery() as nursery:
        for role in roles:
            nursery.start_soon(_supervised, role, host)


async def _supervised(role: Role, host: RoleHost) -> None:
    structlog.contextvars.bind_contextvars(role=role.name)  # on the events of this task
    while True:
        try:
            await role.run(host)
            return
        except (MemlogdError, OSError) as exc:
            log.error("role_failed", role=role.name, error=str(exc), retry_in_s=ROLE_RETRY_S)
        await trio.sleep(ROLE_RETRY_S)
