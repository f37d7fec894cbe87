"""The daemon: moves bytes between fds, the ring and query sockets (SPEC section 3).

Shape of the hot path: all source fds sit in one epoll set served by one
task (:class:`Intake`); each pass reads once, up to 64 KiB, from every ready
fd.  A read is split into lines, encoded to JSON and appended to the ring as
one batch; then every reader that is keeping up is *pushed* the new entries
at once, with a non-blocking ``send`` of one joined buffer from the intake
task.  A reader whose socket is full is marked blocked and its own task waits
until it can write again, then carries on from its cursor; if the ring moved
more than a whole ring past it meanwhile, the entries it lost are counted (and
reported as ``dropped`` in extended mode).  A reader that is still reading but
half a ring behind may hold the intake for at most ``HOLD_S`` per episode.  So
writers never wait long for readers, a reader that keeps reading loses
nothing, and memory is bounded by the ring plus at most one batch in flight
per reader.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
import socket
import stat
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from memlogd import protocol as proto
from memlogd.config import (
    CONSOLE_BUFFER,
    DROP_REPORT_S,
    FOLLOW_BATCH,
    FOLLOWER_SNDBUF,
    READ_CHUNK,
    DaemonConfig,
)
from memlogd.fdmsg import ANCBUF_SIZE, FdGrant, parse_fd_datagram
from memlogd.framing import LineSplitter
from memlogd.logconfig import set_event_sink
from memlogd.ring import Batch, Ring, Slice
from memlogd.sockets import adopt_fd, bind_unix, socket_path, unlink_quietly

log = structlog.get_logger("memlogd")

HOLD_S = 0.1  # intake waits at most this long, per episode, for a follower a half ring behind
GRACE_S = 2.0  # on shutdown, followers get this long to receive what the ring holds
WARN_BURST = 5  # warnings of one kind let through per DROP_REPORT_S; the rest are counted
_PEER_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


@dataclass
class SourceInfo:
    """Per source name, for stats."""

    received: int = 0
    open: int = 0
    pid: int | None = None
    uid: int | None = None


class Console:
    """The ``TIME;SOURCE;MSG`` echo to stdout, which never stalls the daemon:
    bytes that do not fit in a bounded buffer are dropped and counted."""

    def __init__(self, fd: int, limit: int = CONSOLE_BUFFER) -> None:
        self.fd = fd
        self.limit = limit
        self.dropped = 0  # lines
        self._queue: deque[memoryview] = deque()
        self._queued = 0
        self._wake = trio.Event()
        self._restore_blocking: bool | None = None
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            self._restore_blocking = os.get_blocking(fd)
            os.set_blocking(fd, False)

    def write(self, data: bytes, lines: int) -> None:
        view = memoryview(data)
        if not self._queue:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.dropped += lines
                return
            if sent == len(view):
                return
            view = view[sent:]
            self._wake.set()
        elif self._queued + len(view) > self.limit:
            self.dropped += lines
            return
        self._queue.append(view)
        self._queued += len(view)

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    await trio.lowlevel.wait_writable(self.fd)
                    head = self._queue[0]
                    try:
                        sent = os.write(self.fd, head)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._queue.clear()
                        self._queued = 0
                        break
                    self._queued -= sent
                    if sent == len(head):
                        self._queue.popleft()
                    else:
                        self._queue[0] = head[sent:]
        finally:
            if self._restore_blocking is not None:
                with contextlib.suppress(OSError):
                    os.set_blocking(self.fd, self._restore_blocking)


class Reader:
    """One query connection: a dump part (lazy chunks), then maybe a follow part."""

    def __init__(
        self,
        daemon: Daemon,
        sock: socket.socket,
        chunks: Iterator[bytes] | None,
        follow_from: int | None,
        render: Callable[[Slice], bytes],
    ) -> None:
        self.daemon = daemon
        self.sock = sock
        self._chunks = chunks
        self.cursor = follow_from
        self._render = render
        self._pending: memoryview | None = None
        self.blocked = False
        self.done = False
        self.dropped = 0
        self._kick = trio.Event()
        self.lagging = False  # more than half a ring behind since it last blocked

    def push(self) -> None:
        """Send what there is without ever blocking: called by appenders."""
        if self.blocked:
            self._check_lag()
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
        ring = self.daemon.ring
        while self.cursor < ring.next_seq:
            piece = ring.read(self.cursor, FOLLOW_BATCH)
            if piece.missed:
                self.dropped += piece.missed
                self.daemon.reader_dropped += piece.missed
            self.cursor = piece.next_seq
            data = self._render(piece)
            if data:
                return data
        if self.daemon.closing:
            self.finish()
        return None

    def _block(self) -> None:
        self.blocked = True
        self._kick.set()
        self._check_lag()

    def _check_lag(self) -> None:
        if self.cursor is not None and not self.lagging and not self.done:
            ring = self.daemon.ring
            if ring.next_seq - self.cursor > ring.capacity // 2:
                self.lagging = True
                self.daemon.start_hold(self)

    def _caught_up(self) -> None:
        if self.lagging:
            ring = self.daemon.ring
            if (
                self.done
                or self.cursor is None
                or ring.next_seq - self.cursor <= ring.capacity // 2
            ):
                self.lagging = False
                self.daemon.end_hold(self)

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
                self.blocked = False
                self.push()
                self._caught_up()


class RateLimitedWarnings:
    """Warnings a hostile peer can trigger: a few per period, then a count, so a
    flood never pushes real log lines out of the ring."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def warn(self, event: str, **kw: Any) -> None:
        count = self._seen.get(event, 0) + 1
        self._seen[event] = count
        if count <= WARN_BURST:
            log.warning(event, **kw)

    def report(self) -> None:
        for event, count in self._seen.items():
            if count > WARN_BURST:
                log.warning("warnings_suppressed", kind=event, count=count - WARN_BURST)
        self._seen.clear()


class ReadState(enum.Enum):
    DATA = 1  # read something; there may be more
    AGAIN = 2  # nothing to read now
    DONE = 3  # end of file, or an error (warned): close it


class Source:
    """One source fd and its line splitter; owns the fd until ``close()``."""

    __slots__ = ("daemon", "fd", "info", "name", "splitter")

    def __init__(self, daemon: Daemon, fd: int, name: str, info: SourceInfo) -> None:
        self.daemon = daemon
        self.fd = fd
        self.name = name
        self.info = info
        self.splitter = LineSplitter(daemon.config.max_line_len)

    def read_once(self) -> ReadState:
        """One read of up to READ_CHUNK bytes; its complete lines become one batch."""
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return ReadState.AGAIN
        except OSError as exc:
            if exc.errno != errno.ECONNRESET:
                self.warn_unreadable(exc)
            return ReadState.DONE
        if not chunk:
            return ReadState.DONE
        lines = self.splitter.feed(chunk)
        if lines:
            self.daemon.append(self.name, lines, self.info)
        return ReadState.DATA

    def warn_unreadable(self, exc: OSError) -> None:
        self.daemon.warnings.warn(
            "source_unreadable", source=self.name, error=exc.strerror or str(exc)
        )

    def close(self) -> None:
        """At its end: the last partial line, the truncation count, the fd."""
        daemon, splitter = self.daemon, self.splitter
        tail = splitter.close()
        if tail is not None:
            daemon.append(self.name, [tail], self.info)
        if splitter.truncated:
            log.info(
                "lines_truncated",
                source=self.name,
                count=splitter.truncated,
                max_line_len=daemon.config.max_line_len,
            )
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.info.open -= 1
        daemon.open_fds -= 1


class Intake:
    """Every pollable source in one epoll set, served by one task: each pass reads
    once from every ready fd (fair, and no task switch or epoll registration per
    source and wait: with hundreds of sources this halves the CPU per line)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._epoll = select.epoll()
        self._sources: dict[int, Source] = {}

    def add(self, source: Source) -> bool:
        """Take ``source`` (and read what it has); False if epoll refuses its fd."""
        try:
            self._epoll.register(source.fd, select.EPOLLIN)
        except (OSError, ValueError):  # EPERM: not pollable; ValueError: shutting down
            return False
        self._sources[source.fd] = source
        if source.read_once() is ReadState.DONE:  # e.g. a write-only pipe: EBADF
            self._close(source)
        return True

    def _close(self, source: Source) -> None:
        del self._sources[source.fd]
        with contextlib.suppress(OSError):
            self._epoll.unregister(source.fd)
        source.close()

    async def run(self) -> None:
        daemon = self.daemon
        try:
            while True:
                ready = self._epoll.poll(0)
                if not ready:  # only now ask trio to watch the epoll fd
                    await trio.lowlevel.wait_readable(self._epoll.fileno())
                    continue
                for fd, _events in ready:
                    source = self._sources.get(fd)
                    if source is None:
                        continue
                    if daemon.holding:
                        await daemon.wait_for_followers()
                    if source.read_once() is ReadState.DONE:
                        self._close(source)
                await trio.lowlevel.checkpoint()  # followers, the console, new fds
        finally:
            for source in list(self._sources.values()):
                self._close(source)
            self._epoll.close()


class Daemon:
    def __init__(self, config: DaemonConfig, console_fd: int | None = None) -> None:
        self.config = config
        self.ring = Ring(config.max_lines, config.max_bytes)
        self.instance = str(uuid.uuid4())
        self.started = time.monotonic()
        self.sources: dict[str, SourceInfo] = {}
        self.open_fds = 0
        self.received = 0
        self.reader_dropped = 0
        self._reported_dropped = 0
        self.readers: set[Reader] = set()
        self.clients = 0
        self.closing = False
        self.console = Console(console_fd) if console_fd is not None else None
        self.warnings = RateLimitedWarnings()
        self._closing_event = trio.Event()
        # Followers half a ring behind hold the intake, each until its deadline.
        self.holding: dict[Reader, float] = {}
        self.holds = 0  # episodes, for stats and the periodic summary
        self._awaiting_request: set[trio.CancelScope] = set()  # connections before their mode
        self._gate: list[trio.Event] = []  # intake tasks waiting for the hold to end
        self._hold_started = trio.Event()
        self.sources[proto.INTERNAL_SOURCE] = SourceInfo(pid=os.getpid(), uid=os.getuid())
        self.intake = Intake(self)

    # ------------------------------------------------------------------ intake

    def append(self, source: str, lines: list[bytes], info: SourceInfo | None = None) -> None:
        """One batch of lines from one source into the ring, then to readers."""
        now = time.time_ns()
        self.ring.extend(
            Batch(source, now), proto.encode_batch(now, source, lines), map(len, lines)
        )
        n = len(lines)
        self.received += n
        if info is None:
            info = self.sources.get(source)
        if info is not None:
            info.received += n
        if self.console is not None:
            prefix = f"{proto.format_time(now)};{source};".encode("utf-8", "replace")
            self.console.write(prefix + (b"\n" + prefix).join(lines) + b"\n", n)
        for reader in self.readers:  # push never adds or removes readers
            reader.push()

    def start_hold(self, reader: Reader) -> None:
        """``reader`` fell half a ring behind: intake waits for it, at most HOLD_S."""
        self.holding[reader] = trio.current_time() + HOLD_S
        self.holds += 1
        self._hold_started.set()

    def end_hold(self, reader: Reader) -> None:
        if self.holding.pop(reader, None) is not None and not self.holding:
            self._release()

    def _release(self) -> None:
        """The hold ended: every waiting intake task goes on (and waits again,
        cheaply, if a new hold starts before its turn)."""
        gate, self._gate = self._gate, []
        for event in gate:
            event.set()

    async def expire_holds(self) -> None:
        """End each hold at its deadline, so a follower that does not read
        costs the writers at most HOLD_S per episode."""
        while True:
            if not self.holding:
                await self._hold_started.wait()
                self._hold_started = trio.Event()
                continue
            await trio.sleep_until(min(self.holding.values()))
            now = trio.current_time()
            for reader, deadline in list(self.holding.items()):
                if deadline <= now:
                    self.end_hold(reader)

    async def wait_for_followers(self) -> None:
        """Wait while a follower holds the intake."""
        while self.holding and not self.closing:
            event = trio.Event()
            self._gate.append(event)
            try:
                await event.wait()
            except BaseException:
                if not event.is_set():
                    self._gate.remove(event)
                raise

    def append_event(self, text: str) -> None:
        """The daemon's own structlog events, as lines of source ``memlogd``."""
        self.append(proto.INTERNAL_SOURCE, [text.encode("utf-8", "replace")])

    def _source_info(self, name: str) -> SourceInfo:
        info = self.sources.get(name)
        if info is None:
            if len(self.sources) >= 4 * self.config.max_sources:
                self._forget_idle_sources()
            info = self.sources[name] = SourceInfo()
        return info

    def _forget_idle_sources(self) -> None:
        held = self.ring.held_by_source()
        for name in [n for n, i in self.sources.items() if i.open == 0 and not held[n]]:
            del self.sources[name]

    async def receive_fds(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data, anc, flags, _ = sock.recvmsg(
                    proto.MAX_NAME_BYTES + 1, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                continue
            except OSError as exc:
                self.warnings.warn("log_socket_error", error=exc.strerror)
                await trio.sleep(0.1)
                continue
            grant = parse_fd_datagram(data, anc, flags)
            self._accept_grant(grant, nursery)

    def _accept_grant(self, grant: FdGrant, nursery: trio.Nursery) -> None:
        refusal = grant.problem
        if refusal is None and self.open_fds + len(grant.fds) > self.config.max_sources:
            refusal = f"over -max-sources {self.config.max_sources}"
        if refusal is not None:
            for fd in grant.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.warnings.warn(
                "fds_refused",
                source=grant.name,
                fds=len(grant.fds),
                reason=refusal,
                pid=grant.pid,
                uid=grant.uid,
            )
            return
        info = self._source_info(grant.name)
        info.pid, info.uid = grant.pid, grant.uid
        info.open += len(grant.fds)
        self.open_fds += len(grant.fds)
        log.info(
            "fd_registered", source=grant.name, fds=len(grant.fds), pid=grant.pid, uid=grant.uid
        )
        for fd in grant.fds:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, False)
            source = Source(self, fd, grant.name, info)
            if not self.intake.add(source):
                nursery.start_soon(self.read_unpollable, source)

    async def read_unpollable(self, source: Source) -> None:
        """A source epoll refuses (a regular file): read it to its end, batch by batch."""
        try:
            while (state := source.read_once()) is not ReadState.DONE:
                if state is ReadState.AGAIN:
                    try:  # not expected of a file: wait if trio can, else give up
                        await trio.lowlevel.wait_readable(source.fd)
                    except OSError as exc:
                        source.warn_unreadable(exc)
                        return
                if self.holding:
                    await self.wait_for_followers()
                await trio.lowlevel.checkpoint()
        finally:
            source.close()

    # ------------------------------------------------------------------ queries

    async def accept_queries(self, listener: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(listener)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.warnings.warn("accept_failed", error=exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            if self.clients >= self.config.max_clients:
                conn.close()
                self.warnings.warn(
                    "client_refused",
                    reason="over -max-clients",
                    max_clients=self.config.max_clients,
                )
                continue
            conn.setblocking(False)
            self.clients += 1
            nursery.start_soon(self.handle_query, conn)

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
                        self.warnings.warn("query_malformed", reason="closed before the request")
                    return None
                buf += data
                if buf[0] != proto.QueryMode.EXTENDED:
                    return buf[0], b""
                nl = buf.find(b"\n")
                if nl >= 0:
                    return buf[0], buf[1:nl]
                if len(buf) > proto.MAX_REQUEST_BYTES + 1:
                    return buf[0], buf[1:]  # parse_request rejects it as too long
        self.warnings.warn(
            "query_timeout",
            reason="no request within the time limit",
            seconds=self.config.mode_timeout_s,
        )
        return None

    async def handle_query(self, conn: socket.socket) -> None:
        reader: Reader | None = None
        try:
            request = None
            with trio.CancelScope() as waiting:  # cancelled at shutdown: nothing to finish
                if self.closing:
                    return
                self._awaiting_request.add(waiting)
                try:
                    request = await self._recv_request(conn)
                finally:
                    self._awaiting_request.discard(waiting)
            if request is None:
                return
            mode, line = request
            reader = self._make_reader(conn, mode, line)
            if reader is None:
                return
            self.readers.add(reader)
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
                self.readers.discard(reader)
                self.end_hold(reader)
                if reader.dropped and reader.cursor is not None:
                    log.warning("reader_dropped", count=reader.dropped)
            trio.lowlevel.notify_closing(conn)
            conn.close()
            self.clients -= 1

    def _make_reader(self, conn: socket.socket, mode: int, line: bytes) -> Reader | None:
        ring = self.ring
        if mode == proto.QueryMode.DUMP:
            return Reader(self, conn, _base_chunks(ring.snapshot()), None, _render_base)
        if mode == proto.QueryMode.FOLLOW:
            return Reader(self, conn, None, ring.next_seq, _render_base)
        if mode == proto.QueryMode.DUMP_FOLLOW:
            snap = ring.snapshot()
            return Reader(self, conn, _base_chunks(snap), snap.next_seq, _render_base)
        if mode == proto.QueryMode.EXTENDED:
            try:
                request = proto.parse_request(line)
            except proto.ProtocolError as exc:
                self.warnings.warn("query_malformed", reason=str(exc))
                with contextlib.suppress(OSError):
                    conn.send(proto.encode_error(str(exc)))
                return None
            return self._make_extended_reader(conn, request)
        self.warnings.warn("query_bad_mode", mode=mode)
        return None

    def _make_extended_reader(self, conn: socket.socket, req: proto.QueryRequest) -> Reader:
        ring = self.ring
        header = proto.encode_header(proto.Header(self.instance, ring.first_seq, ring.next_seq))
        if req.stats:
            return Reader(
                self, conn, iter([header, proto.encode_stats(self.stats())]), None, _render_base
            )
        render = _extended_renderer(ring, req)
        chunks: list[Iterator[bytes]] = [iter([header])]
        follow_from: int | None = None
        if req.dump:
            chunks.append(_extended_dump(ring, req))
            if req.follow:
                follow_from = ring.next_seq
        elif req.follow:
            # a cursor beyond the ring's end (another instance's) follows from now
            after = req.after_seq
            follow_from = ring.next_seq if after is None else min(after + 1, ring.next_seq)
        return Reader(self, conn, _chain(chunks), follow_from, render)

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, Any]:
        ring = self.ring.statistics()
        held = self.ring.held_by_source()
        return {
            "entries": ring.entries,
            "bytes": ring.bytes,
            "received": self.received,
            "overwritten": ring.overwritten,
            "console_dropped": self.console.dropped if self.console else 0,
            "reader_dropped": self.reader_dropped,
            "intake_holds": self.holds,
            "readers": len(self.readers),  # answering now, not counting the asker
            "clients": self.clients,  # query connections, including those not yet answered
            "open_fds": self.open_fds,
            "first_seq": ring.first_seq,
            "next_seq": ring.next_seq,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "limits": self.config.limits(),
            "sources": {
                name: {
                    "entries": held[name],
                    "received": info.received,
                    "open": info.open,
                    "pid": info.pid,
                    "uid": info.uid,
                }
                for name, info in self.sources.items()
            },
        }

    async def report_drops(self) -> None:
        """Periodic summaries of what was dropped, so no loss goes unlogged."""
        console_reported = holds_reported = 0
        while True:
            await trio.sleep(DROP_REPORT_S)
            release_free_memory()
            self.warnings.report()
            if self.holds > holds_reported:
                log.info(
                    "intake_held",
                    count=self.holds - holds_reported,
                    total=self.holds,
                    max_s_each=HOLD_S,
                )
                holds_reported = self.holds
            if self.reader_dropped > self._reported_dropped:
                log.warning(
                    "readers_dropped",
                    count=self.reader_dropped - self._reported_dropped,
                    total=self.reader_dropped,
                )
                self._reported_dropped = self.reader_dropped
            if self.console is not None and self.console.dropped > console_reported:
                log.warning(
                    "console_dropped",
                    count=self.console.dropped - console_reported,
                    total=self.console.dropped,
                )
                console_reported = self.console.dropped

    def begin_shutdown(self) -> None:
        self.closing = True
        self._closing_event.set()
        self._release()
        for scope in self._awaiting_request:
            scope.cancel()

    async def wait_closing(self) -> None:
        await self._closing_event.wait()


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


# ---------------------------------------------------------------------- rendering


def _render_base(piece: Slice) -> bytes:
    return proto.join_lines(piece.data)


def _base_chunks(snap: Slice) -> Iterator[bytes]:
    data = snap.data
    for i in range(0, len(data), FOLLOW_BATCH):
        yield proto.join_lines(data[i : i + FOLLOW_BATCH])


def _chain(parts: list[Iterator[bytes]]) -> Iterator[bytes]:
    for part in parts:
        yield from part


def _matching(ring: Ring, req: proto.QueryRequest, start: int, data: list[bytes]) -> list[int]:
    """Offsets into ``data`` (entries from seq ``start``) that pass the request's filters."""
    if not req.sources and req.since_ns is None:
        return list(range(len(data)))
    since = req.since_ns
    return [
        i
        for i, batch in enumerate(ring.batches(start, len(data)))
        if req.matches_source(batch.source) and (since is None or batch.time_ns >= since)
    ]


def _extended_renderer(ring: Ring, req: proto.QueryRequest) -> Callable[[Slice], bytes]:
    def render(piece: Slice) -> bytes:
        out = []
        if piece.missed:
            out.append(proto.encode_dropped(piece.start - piece.missed, piece.missed))
        data = piece.data
        if data:
            lines = [
                proto.add_seq(data[i], piece.start + i)
                for i in _matching(ring, req, piece.start, data)
            ]
            out.append(proto.join_lines(lines))
        return b"".join(out)

    return render


def _extended_dump(ring: Ring, req: proto.QueryRequest) -> Iterator[bytes]:
    """The dump part of an extended answer: a snapshot of references, taken now
    (the follow part starts where it ends), sent in lazily encoded chunks."""
    snap = ring.snapshot()
    start, data = snap.start, snap.data
    missed = 0
    if req.after_seq is not None:
        skip = max(0, req.after_seq + 1 - start)
        missed = max(0, start - req.after_seq - 1)
        start, data = start + skip, data[skip:]
    keep = _matching(ring, req, start, data)
    if req.tail is not None:
        keep = keep[len(keep) - req.tail :] if req.tail else []
    first = [proto.encode_dropped(start - missed, missed)] if missed else []

    def chunks() -> Iterator[bytes]:
        yield from first
        for i in range(0, len(keep), FOLLOW_BATCH):
            yield proto.join_lines(
                [proto.add_seq(data[k], start + k) for k in keep[i : i + FOLLOW_BATCH]]
            )

    return chunks()


# ---------------------------------------------------------------------- serve


def open_sockets(config: DaemonConfig) -> tuple[socket.socket, socket.socket, list[str]]:
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
    sockets: tuple[socket.socket, socket.socket, list[str]] | None = None,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until cancelled or until ``begin_shutdown()``.

    ``task_status.started(daemon)`` is called once both sockets serve.
    ``sockets`` are those of :func:`open_sockets` when the caller opened them.
    Shutdown is phased: stop taking fds and connections, let followers
    receive what the ring holds (at most ``GRACE_S``), then close them.
    """
    log_sock, query_sock, owned = sockets if sockets is not None else open_sockets(config)
    daemon = Daemon(config, console_fd if config.console else None)
    set_event_sink(daemon.append_event)
    try:
        async with trio.open_nursery() as outer:
            if daemon.console is not None:
                outer.start_soon(daemon.console.run)
            outer.start_soon(daemon.report_drops)
            outer.start_soon(daemon.expire_holds)
            async with trio.open_nursery() as queries:
                async with trio.open_nursery() as intake:
                    intake.start_soon(daemon.intake.run)
                    intake.start_soon(daemon.receive_fds, log_sock, intake)
                    intake.start_soon(daemon.accept_queries, query_sock, queries)
                    log.info(
                        "memlogd started",
                        instance=daemon.instance,
                        pid=os.getpid(),
                        **config.limits(),
                    )
                    release_free_memory()  # what the imports left behind
                    task_status.started(daemon)
                    await daemon.wait_closing()
                    intake.cancel_scope.cancel()
                log.info("shutdown_started", readers=len(daemon.readers))
                for reader in daemon.readers:
                    reader.push()
                queries.cancel_scope.deadline = trio.current_time() + GRACE_S
            outer.cancel_scope.cancel()
    finally:
        set_event_sink(None)
        for sock in (log_sock, query_sock):
            trio.lowlevel.notify_closing(sock)
            sock.close()
        for path in owned:
            unlink_quietly(path)
