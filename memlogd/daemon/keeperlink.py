"""The worker's end of its keeper's socket pair (docs/memlogd.md, "The keeper").

The keeper receives every fd datagram itself and hands each one on here as
a :class:`memlogd.wire.handover.Sources` packet with the fds; this side answers
``Ready`` once serving, ``Release`` for sources that ended (so that the
keeper closes its copies within ``RELEASE_S``), and ``HandedOver`` at an
upgrade.  End of file means the keeper died: the worker stops, and closes its
listening socket first of all (a supervisor may start a new memlogd at once).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

import structlog
import trio

from memlogd.config import FD_DATAGRAMS_PER_PASS
from memlogd.errors import ProtocolError
from memlogd.wire import handover
from memlogd.wire.fdmsg import ANCBUF_SIZE, FdGrant, fd_ancdata, fds_of

log = structlog.get_logger("memlogd")

RELEASE_S = 0.05  # released keys are gathered this long into one packet (the spec says 0.1)


class KeeperLink:
    def __init__(
        self,
        sock: socket.socket,
        on_sources: Callable[[FdGrant, list[int]], object],
        on_refused: Callable[[handover.Refused], None],
        on_stop: Callable[[handover.Stop], None],
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._on_sources = on_sources
        self._on_refused = on_refused
        self._on_stop = on_stop
        self.handed_over = False  # the next worker took over: the keeper lets go of us
        self.gone = False  # the keeper died: the next memlogd may start at once
        self._released: list[int] = []
        self._release_due = trio.Event()

    async def run(self) -> None:
        """Take the keeper's packets until it is gone (then stop, for good)."""
        sock = self.sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            # every packet waiting (a bounded number), not one per pass of the intake
            for _ in range(FD_DATAGRAMS_PER_PASS):
                try:
                    data, anc, _flags, _ = sock.recvmsg(
                        handover.MAX_PACKET, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
                    )
                except BlockingIOError:
                    break
                except OSError:
                    data, anc = b"", []
                fds = fds_of(anc)
                if not data:
                    for fd in fds:
                        _close(fd)
                    if not self.handed_over:
                        self.gone = True
                        log.warning("keeper_gone", consequence="stopping")
                        self._on_stop(handover.Stop(handover=False))
                    return
                try:
                    message = handover.decode(data)
                except ProtocolError as exc:
                    for fd in fds:
                        _close(fd)
                    log.error("keeper_message_malformed", error=str(exc))
                    continue
                self._dispatch(message, fds)

    def _dispatch(self, message: handover.Message, fds: list[int]) -> None:
        if isinstance(message, handover.Sources) and len(message.keys) == len(fds):
            grant = FdGrant(name=message.name, fds=tuple(fds), pid=message.pid, uid=message.uid)
            self._on_sources(grant, list(message.keys))
            return
        for fd in fds:
            _close(fd)
        if isinstance(message, handover.Refused):
            self._on_refused(message)
        elif isinstance(message, handover.Stop):
            self._on_stop(message)
        else:
            log.error("keeper_message_unexpected", kind=type(message).__name__)

    # -------------------------------------------------------------- to the keeper

    def release(self, keys: list[int]) -> None:
        self._released += keys
        self._release_due.set()

    async def send_releases(self) -> None:
        """Gather released keys for a moment, then tell the keeper in one packet."""
        while True:
            await self._release_due.wait()
            await trio.sleep(RELEASE_S)
            self._release_due = trio.Event()
            keys, self._released = self._released, []
            step = handover.MAX_PACKET // 8 - 1
            for start in range(0, len(keys), step):
                await self.send(handover.Release(tuple(keys[start : start + step])))

    async def send(self, message: handover.Message, fds: list[int] | None = None) -> None:
        self.handed_over = self.handed_over or isinstance(message, handover.HandedOver)
        packet = handover.encode(message)
        anc = fd_ancdata(fds) if fds else []
        while True:
            try:
                self.sock.sendmsg([packet], anc)
                return
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.sock)
            except OSError:
                return  # the keeper is gone: run() stops the worker

    def close(self) -> None:
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
