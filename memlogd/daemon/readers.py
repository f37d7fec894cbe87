"""Query connections (*readers*) and the intake hold (docs/memlogd.md).

After each append every reader that is keeping up is *pushed* the new entries
at once, with a non-blocking ``send`` of one joined buffer from the appending
task.  A reader whose socket is full is marked blocked and its own task waits
until it can write again, then carries on from its cursor (a ``seq``); if the
ring moved more than a whole ring past it meanwhile, the entries it lost are
counted (and reported as ``dropped`` in extended mode).  A reader that is
still reading but would lose an entry at the next eviction (the next entry
the ring's policy drops is one it has not read), or is half a ring behind,
holds the intake (:class:`IntakeHold`) for at most ``HOLD_S`` per episode.
So writers never wait long for readers, a reader that keeps reading loses
nothing, and memory is bounded by the ring plus at most one batch in flight
per reader.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

import structlog
import trio

from memlogd.config import FOLLOW_BATCH, FOLLOWER_SNDBUF, HOLD_S, DaemonConfig, uid_share
from memlogd.daemon import answers
from memlogd.daemon.ring import Ring
from memlogd.errors import ProtocolError
from memlogd.ratelimit import LimitedLog
from memlogd.wire import protocol as proto
from memlogd.wire.filters import RequestFilter

log = structlog.get_logger("memlogd")

_PEER_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class IntakeHold:
    """Followers half a ring behind hold the intake, each until its deadline
    (at most ``HOLD_S`` per episode); intake tasks park while one does."""

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()
        self._deadlines: dict[object, float] = {}
        self._started = trio.Event()
        self.episodes = 0  # for stats and the periodic summary

    @property
    def active(self) -> bool:
        return bool(self._deadlines)

    @property
    def waiting(self) -> int:
        """Intake tasks parked now."""
        return len(self._lot)

    def holding(self, who: object) -> bool:
        return who in self._deadlines

    def start(self, who: object) -> None:
        self._deadlines[who] = trio.current_time() + HOLD_S
        self.episodes += 1
        self._started.set()

    def end(self, who: object) -> None:
        if self._deadlines.pop(who, None) is not None and not self._deadlines:
            self._lot.unpark_all()

    def release_all(self) -> None:
        """Shutting down: nobody holds the intake any more."""
        self._deadlines.clear()
        self._lot.unpark_all()

    async def wait(self) -> None:
        """Wait while a follower holds the intake."""
        while self._deadlines:
            await self._lot.park()

    async def expire(self) -> None:
        """End each hold at its deadline, so a follower that does not read
        costs the writers at most HOLD_S per episode."""
        while True:
            if not self._deadlines:
                await self._started.wait()
                self._started = trio.Event()
                continue
            await trio.sleep_until(min(self._deadlines.values()))
            now = trio.current_time()
            for who, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    self.end(who)


class Readers:
    """Every answering reader, and what they share: the ring, the hold, the
    count of entries dropped for being a ring behind, and shutdown."""

    def __init__(self, ring: Ring, hold: IntakeHold) -> None:
        self.ring = ring
        self.hold = hold
        self.active: set[Reader] = set()
        self.blocked: set[Reader] = set()  # those of them whose socket is full
        self.dropped = 0
        self.closing = False
        self.make_room: Callable[[], None] = _nothing  # the ring over its limits

    def push_all(self) -> None:
        for reader in self.active:  # push never adds or removes readers
            reader.push()

    def protect(self) -> int | None:
        """The first seq a blocked follower has not been handed: the ring keeps
        it (over its limits) until the follower reads it or its hold of the
        intake ends (SPEC 14)."""
        if not self.blocked:  # (mostly: asked twice a batch)
            return None
        hold = self.hold
        cursors = [
            r.cursor
            for r in self.blocked
            if r.cursor is not None and (not r.lagging or hold.holding(r))
        ]
        return min(cursors, default=None)

    def protected(self) -> None:
        """The ring kept entries a blocked follower has not read: it holds the intake."""
        for reader in self.blocked:
            reader.check_lag()


class Reader:
    """One query connection: a dump part (lazy chunks), then maybe a follow part."""

    def __init__(
        self,
        readers: Readers,
        sock: socket.socket,
        chunks: Iterator[bytes] | None,
        follow_from: int | None,
        render: answers.Render,
    ) -> None:
        self.readers = readers
        self.sock = sock
        self._chunks = chunks
        self.cursor = follow_from
        self._render = render
        self._pending: memoryview | None = None
        self.done = False
        self.dropped = 0
        self._kick = trio.Event()
        self.lagging = False  # more than half a ring behind since it last blocked

    @property
    def blocked(self) -> bool:
        """Whether its socket is full (it is in ``Readers.blocked``)."""
        return self in self.readers.blocked

    def push(self) -> None:
        """Send what there is without ever blocking: called by appenders."""
        if self.blocked:
            self.check_lag()
            return
        if self.done:
            return
        try:
            while True:
                pending = self._pending
                if pending is not None:
                    sent = self.sock.send(pending)
                    if sent < len(pending):
                        self._pending = pending[sent:]
                        self._block()
                        return
                    self._pending = None
                chunk = self._next_chunk()
                if chunk is None:
                    return
                self._pending = memoryview(chunk)
        except BlockingIOError:
            self._block()
        except OSError:
            self.finish()

    def _next_chunk(self) -> bytes | None:
        while self._chunks is not None:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._chunks = None
            elif chunk:
                return chunk
        if self.cursor is None:
            self.finish()  # a dump that is complete
            return None
        ring = self.readers.ring
        while self.cursor < ring.next_seq:
            piece = ring.read(self.cursor, FOLLOW_BATCH)
            if piece.missed:
                self.dropped += piece.missed
                self.readers.dropped += piece.missed
            self.cursor = piece.next_seq
            data = self._render(piece)
            if data:
                return data
        if self.readers.closing:
            self.finish()
        return None

    def _block(self) -> None:
        self.readers.blocked.add(self)
        self._kick.set()
        self.check_lag()

    def _behind(self) -> bool:
        """Whether the ring's next eviction may take an entry it has not read
        (SPEC 14), or it is half a ring behind."""
        ring, cursor = self.readers.ring, self.cursor
        if cursor is None:
            return False
        if ring.next_seq - cursor > ring.capacity // 2:
            return True
        if 2 * len(ring) < ring.capacity:  # no eviction near
            return False
        victim = ring.next_victim()
        return victim is not None and victim >= cursor

    def check_lag(self) -> None:
        if not self.lagging and not self.done and self._behind():
            self.lagging = True
            self.readers.hold.start(self)

    def _caught_up(self) -> None:
        if self.lagging and (self.done or not self._behind()):
            self.lagging = False
            self.readers.hold.end(self)

    def finish(self) -> None:
        self.done = True
        self._kick.set()

    async def run(self) -> None:
        """Write whatever push could not: wait for room, then push again."""
        self.push()
        while not self.done:
            await self._kick.wait()
            self._kick = trio.Event()
            while self.blocked and not self.done:
                await trio.lowlevel.wait_writable(self.sock)
                self.readers.blocked.discard(self)
                self.push()
                self._caught_up()
                self.readers.make_room()


class QueryService:
    """The query socket: accepts connections, reads each one's request within
    the time limit, and answers it with a :class:`Reader`."""

    def __init__(
        self,
        config: DaemonConfig,
        readers: Readers,
        warnings: LimitedLog,
        header: Callable[[], proto.Header],
        stats: Callable[[], dict[str, Any]],
    ) -> None:
        self.config = config
        self.readers = readers
        self.warnings = warnings
        self._header = header
        self._stats = stats
        self.clients = 0
        self._uid_clients: dict[int | None, int] = {}  # per peer uid (SPEC 19)
        self.handing_over = False
        self._awaiting_request: set[trio.CancelScope] = set()
        self._nursery: trio.Nursery | None = None

    def attach(self, nursery: trio.Nursery) -> None:
        """Run connection handlers in ``nursery`` (the server's query nursery,
        which shutdown gives its grace period)."""
        self._nursery = nursery

    def adopt(self, conn: socket.socket) -> bool:
        """Serve a connection made elsewhere (an in-process client's socket
        pair); False (and closed) when over ``-max-clients`` or shutting down."""
        if self._nursery is None or (self.readers.closing and not self.handing_over):
            conn.close()
            return False
        if self.clients >= self.config.max_clients:
            conn.close()
            self.warnings.warning(
                "client_refused", reason="over -max-clients", max_clients=self.config.max_clients
            )
            return False
        uid = _peer_uid(conn)
        share = uid_share(self.config.max_clients, uid)
        if self._uid_clients.get(uid, 0) >= share:
            conn.close()
            self.warnings.warning(
                "client_refused", reason=f"over uid {uid}'s share of -max-clients ({share})"
            )
            return False
        conn.setblocking(False)
        self.clients += 1
        self._uid_clients[uid] = self._uid_clients.get(uid, 0) + 1
        self._nursery.start_soon(self._handle, conn, uid)
        return True

    async def accept_loop(self, listener: socket.socket) -> None:
        """Accept connections from ``listener`` until cancelled."""
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in _ACCEPT_TRANSIENT:
                    self.warnings.warning("accept_failed", error=exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            self.adopt(conn)

    def begin_shutdown(self, *, handover: bool = False) -> None:
        """Connections that sent no request yet are closed at once; at a handover
        to the next worker they are still answered (from the ring as it is)."""
        self.handing_over = handover
        if not handover:
            for scope in self._awaiting_request:
                scope.cancel()

    async def _recv_request(self, conn: socket.socket) -> tuple[int, bytes] | None:
        """The mode byte, and for mode 3 the request line, within the time limit."""
        buf = b""
        with trio.move_on_after(self.config.mode_timeout_s):
            while True:
                await trio.lowlevel.wait_readable(conn)
                try:
                    data = conn.recv(proto.MAX_REQUEST_BYTES + 2 - len(buf))
                except BlockingIOError:
                    continue
                if not data:
                    if buf:
                        self.warnings.warning("query_malformed", reason="closed before the request")
                    return None
                buf += data
                if buf[0] != proto.QueryMode.EXTENDED:
                    return buf[0], b""
                nl = buf.find(b"\n")
                if nl >= 0:
                    return buf[0], buf[1:nl]
                if len(buf) > proto.MAX_REQUEST_BYTES + 1:
                    return buf[0], buf[1:]  # parse_request rejects it as too long
        self.warnings.warning(
            "query_timeout",
            reason="no request within the time limit",
            seconds=self.config.mode_timeout_s,
        )
        return None

    async def _handle(self, conn: socket.socket, uid: int | None = None) -> None:
        readers = self.readers
        reader: Reader | None = None
        try:
            request = None
            with trio.CancelScope() as waiting:  # cancelled at shutdown: nothing to finish
                if readers.closing and not self.handing_over:
                    return
                self._awaiting_request.add(waiting)
                try:
                    request = await self._recv_request(conn)
                finally:
                    self._awaiting_request.discard(waiting)
            if request is None:
                return
            reader = self._make_reader(conn, *request)
            if reader is None:
                return
            readers.active.add(reader)
            if reader.cursor is None:  # a dump ends by itself
                await reader.run()
            else:
                _widen_send_buffer(conn)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_hangup, conn, reader)
                    await reader.run()
                    nursery.cancel_scope.cancel()
        except _PEER_GONE:
            pass
        finally:
            if reader is not None:
                readers.active.discard(reader)
                readers.blocked.discard(reader)
                readers.hold.end(reader)
                if reader.dropped and reader.cursor is not None:
                    log.warning("reader_dropped", count=reader.dropped)
            trio.lowlevel.notify_closing(conn)
            conn.close()
            self.clients -= 1
            if self._uid_clients.get(uid, 0) > 1:
                self._uid_clients[uid] -= 1
            else:
                self._uid_clients.pop(uid, None)

    def _make_reader(self, conn: socket.socket, mode: int, line: bytes) -> Reader | None:
        readers, ring = self.readers, self.readers.ring
        if mode in (proto.QueryMode.DUMP, proto.QueryMode.DUMP_FOLLOW):
            snap = ring.snapshot()
            follow = snap.next_seq if mode == proto.QueryMode.DUMP_FOLLOW else None
            return Reader(readers, conn, answers.base_dump(snap), follow, answers.render_base)
        if mode == proto.QueryMode.FOLLOW:
            return Reader(readers, conn, None, ring.next_seq, answers.render_base)
        if mode != proto.QueryMode.EXTENDED:
            self.warnings.warning("query_bad_mode", mode=mode)
            return None
        try:
            request = proto.parse_request(line)
        except ProtocolError as exc:
            self.warnings.warning("query_malformed", reason=str(exc))
            with contextlib.suppress(OSError):
                conn.send(proto.encode_error(str(exc)))
            return None
        header = proto.encode_header(self._header())
        if request.stats:
            chunks = iter([header, proto.encode_stats(self._stats())])
            return Reader(readers, conn, chunks, None, answers.render_base)
        keep = RequestFilter(request)
        parts = [iter([header])]
        if request.dump:
            parts.append(answers.extended_dump(ring, request, keep))
        follow = answers.follow_start(ring, request)
        render = answers.extended_renderer(keep)
        return Reader(readers, conn, _chain(parts), follow, render)


_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end (SO_PEERCRED), None if unknown."""
    try:
        _pid, uid, _gid = _PEERCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        )
        return int(uid)
    except (OSError, struct.error):
        return None


_ACCEPT_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _chain(parts: list[Iterator[bytes]]) -> Iterator[bytes]:
    for part in parts:
        yield from part


def _widen_send_buffer(conn: socket.socket) -> None:
    """A follower gets a larger socket buffer (FOLLOWER_SNDBUF): each scheduler
    pass hands it more entries, so it is less often a half ring behind."""
    with contextlib.suppress(OSError):
        if conn.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < FOLLOWER_SNDBUF:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, FOLLOWER_SNDBUF)


async def _watch_hangup(conn: socket.socket, reader: Reader) -> None:
    """Notice a follower that went away while nothing was sent to it, so it does
    not hold a client slot until the next entry.  A client that only shut down
    its writing side (``printf '\\1' | socat ...``) keeps being served."""
    while True:
        await trio.lowlevel.wait_readable(conn)
        try:
            data = conn.recv(4096)  # anything a follower sends is ignored
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            poller = select.poll()
            poller.register(conn, select.POLLHUP)
            if poller.poll(0):
                reader.finish()
            return


def _nothing() -> None:
    pass
