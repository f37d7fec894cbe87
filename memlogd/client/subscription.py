"""The client side of both sockets (docs/protocol.md): the ONLY client code.

Log socket (for an init, memlogd-exec, kmsg)::

    send_fds(path, "myservice.out", [fd])          # hand over read ends
    stream = open_log_stream(path, "myservice")    # a socket to write lines to

Query socket (for logread, logwrite, logship, memlogd's in-process roles)::

    async with Subscription(path, QueryRequest(follow=True), retry=True) as sub:
        async for event in sub:
            ...  # Connected, Entries, Gap, Restarted, Disconnected, Waiting, Malformed
    stats = await fetch_stats(path)

:class:`Subscription` owns everything between a consumer and memlogd's
answers: connecting, the request, the one answer parser
(:class:`memlogd.wire.answerparser.AnswerParser`), the ``(instance, seq)`` cursor,
resuming after a lost connection, the instance-change rule, the fallback to
upstream's base modes and retrying with backoff.  A consumer only renders or
stores what it is given.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

import trio

from memlogd.client.config import (
    DEFAULT_HEADER_TIMEOUT_S,
    RECONNECT_MAX_S,
    RECONNECT_MIN_S,
    RECV_CHUNK,
)
from memlogd.client.reasons import connect_reason
from memlogd.errors import (
    ConnectError,
    NotExtendedError,
    ProtocolError,
    RequestRefusedError,
)
from memlogd.wire import protocol as proto
from memlogd.wire.answerparser import AnswerParser, stats_in
from memlogd.wire.events import (
    Connected,
    Disconnected,
    Entries,
    Event,
    Gap,
    Restarted,
    Waiting,
)
from memlogd.wire.fdmsg import fd_ancdata
from memlogd.wire.filters import ClientFilter
from memlogd.wire.protocol import Cursor

Connector = Callable[[], Awaitable[trio.abc.Stream]]
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


# ------------------------------------------------------------------ log socket


def send_fds(path: str, name: str, fds: Sequence[int], *, wait: bool = True) -> None:
    """Hand ``fds`` (read ends) to memlogd as sources called ``name``.

    The fds stay open here: the caller closes its copies.  Only a few
    datagrams wait in memlogd's queue; when it is full the send waits, or
    with ``wait=False`` fails at once with a ConnectError (memlogd is busy).
    """
    payload = name.encode("utf-8", "replace")
    flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | (0 if wait else socket.SOCK_NONBLOCK)
    with socket.socket(socket.AF_UNIX, flags) as sock:
        try:
            sock.connect(path)
            sock.sendmsg([payload], fd_ancdata(fds))
        except OSError as exc:
            raise ConnectError(path, connect_reason(path, exc, socket.SOCK_DGRAM)) from None


def open_log_stream(path: str, name: str) -> socket.socket:
    """A connected socket whose writes become lines of source ``name``.

    The other end is handed to memlogd at once; the returned socket is
    blocking and close-on-exec, and only writes (its read side is shut).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        send_fds(path, name, [theirs.fileno()])
        ours.shutdown(socket.SHUT_RD)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ours


# ------------------------------------------------------------------ query socket


async def connect_query(path: str) -> trio.abc.Stream:
    """A connection to the query socket at ``path`` (ConnectError if none)."""
    try:
        return await trio.open_unix_socket(path)
    except OSError as exc:
        raise ConnectError(path, connect_reason(path, exc)) from None


class Subscription:
    """One consumer's view of memlogd's log, across connections.

    ``request`` says what to get (dump, follow, filters).  With ``cursor``
    (a saved ``(instance, seq)``) it resumes after that entry when the daemon
    is still that instance.  With ``retry`` a lost connection is resumed from
    the cursor, and an unreachable memlogd is waited for (backoff doubling up
    to ``retry_max_s``).  ``upstream`` asks in base mode from the start (what
    upstream's clients do).  With ``fallback``, a daemon that does not answer
    the extended query within ``header_timeout_s`` is upstream's: the
    subscription uses base mode 0, 1 or 2 and applies the source and time
    filters itself.  Iterate it (within ``async with``) for :data:`Event`\\ s;
    it ends after a dump, or after a follow's connection ended without
    ``retry``.
    """

    def __init__(
        self,
        target: str | Connector,
        request: proto.QueryRequest,
        *,
        cursor: Cursor | None = None,
        retry: bool = False,
        fallback: bool = True,
        upstream: bool = False,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        retry_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        if request.stats:
            raise ValueError("a subscription is for entries: use fetch_stats()")
        self.path = target if isinstance(target, str) else None
        self._connect: Connector = (
            (lambda: connect_query(target)) if isinstance(target, str) else target
        )
        self.request = request
        self.cursor = cursor
        self.retry = retry
        self.fallback = fallback
        self.header_timeout_s = header_timeout_s
        self.retry_max_s = retry_max_s
        self.upstream = upstream  # base modes only: asked, or memlogd ignored mode 3
        self._filter = ClientFilter(request)
        self._pending: deque[Event] = deque()
        self._stream: trio.abc.Stream | None = None
        self._parser = AnswerParser(extended=True)
        self._expect: str | None = None  # the instance the sent after_seq refers to
        self._after_seq: int | None = None  # the sent after_seq
        self._answered = False  # the current connection's answer started
        self._ever_answered = False
        self._delay = 0.0  # to wait before the next connection attempt
        self._backoff = RECONNECT_MIN_S
        self._outage = False
        self._restarted = False
        self._done = False

    # -------------------------------------------------------------- iteration

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._done = True
        await self._drop_stream()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            if self._stream is None:
                await self._open()
            else:
                await self._receive()
        return self._pending.popleft()

    # -------------------------------------------------------------- connecting

    def _next_request(self) -> proto.QueryRequest:
        """The original request, or the resumption after the cursor."""
        self._after_seq = None
        if self.cursor is None:
            self._expect = None
            if self._restarted:  # a new daemon: its whole ring (filtered) and its holes
                return replace(self.request, dump=True, tail=None, after_seq=0)
            return self.request
        self._expect = self.cursor.instance
        self._after_seq = self.cursor.seq
        return replace(self.request, dump=True, tail=None, after_seq=self.cursor.seq)

    async def _open(self) -> None:
        if self._delay:
            await trio.sleep(self._delay)
            self._delay = 0.0
        try:
            stream = await self._connect()
        except ConnectError as exc:
            if not self.retry:
                raise
            self._pending.append(Waiting(exc, first=not self._outage))
            self._outage = True
            self._wait_before_retry()
            return
        extended = not self.upstream
        if extended:
            data = proto.encode_request(self._next_request())
        else:
            data = bytes([proto.QueryMode.base(dump=self.request.dump, follow=self.request.follow)])
        try:
            await stream.send_all(data)
        except _BROKEN:
            with contextlib.suppress(*_BROKEN):
                await stream.aclose()
            self._lost("the connection broke before the request was sent")
            return
        self._stream = stream
        self._parser = AnswerParser(extended=extended)
        self._answered = False
        if not extended:
            self._filter.reset()
            self._answer_started(None)

    def _answer_started(self, header: proto.Header | None) -> None:
        self._answered = self._ever_answered = True
        self._outage = False
        self._backoff = RECONNECT_MIN_S
        self._pending.append(Connected(header, self._after_seq))

    def _wait_before_retry(self) -> None:
        self._delay = self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)

    async def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(*_BROKEN):
                await stream.aclose()

    # -------------------------------------------------------------- receiving

    async def _receive(self) -> None:
        assert self._stream is not None
        reason = "memlogd closed the connection"
        try:
            if self._parser.extended and self._parser.header is None and not self._ever_answered:
                data = await self._first_answer(self._stream)
            else:
                data = bytes(await self._stream.receive_some(RECV_CHUNK))
        except _BROKEN as exc:
            reason = f"the connection broke: {exc}"
            data = b""
        parser = self._parser  # base mode, if upstream's memlogd answered
        if data:
            await self._take(parser.feed(data))
            return
        parser.close()  # a line cut short by a daemon that died while sending it
        await self._drop_stream()
        if parser.extended and parser.header is None and not self._ever_answered:
            await self._to_upstream("memlogd closed the extended query without answering")
            return
        if not self.request.follow:
            self._pending.extend(self._filter.finish())
            self._done = True
            return
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        """A connection ended: report it, then reconnect (retry) or stop."""
        self._pending.append(Disconnected(reason))
        if not self.retry:
            self._done = True
        elif not self._answered:
            self._wait_before_retry()  # it answered nothing: do not spin

    async def _first_answer(self, extended: trio.abc.Stream) -> bytes:
        """The first bytes of the answer to the extended query.  When none come
        within ``header_timeout_s``, a base-mode query is made too, and the first
        connection to answer says what this daemon is: upstream's never answers
        the extended query; ours (still starting, or busy) answers the first
        connection first, since it accepts connections in order."""
        with trio.move_on_after(self.header_timeout_s):
            return bytes(await extended.receive_some(RECV_CHUNK))
        if not self.fallback:
            raise NotExtendedError("no answer to the extended query (upstream's memlogd?)")
        mode = proto.QueryMode.base(dump=self.request.dump, follow=self.request.follow)
        try:
            base = await self._connect()
        except ConnectError:  # gone meanwhile: the first connection says how it ends
            return bytes(await extended.receive_some(RECV_CHUNK))
        winner: tuple[trio.abc.Stream, bytes] | None = None

        async def first(stream: trio.abc.Stream, nursery: trio.Nursery) -> None:
            nonlocal winner
            try:
                if stream is base:
                    await base.send_all(bytes([mode]))
                data = bytes(await stream.receive_some(RECV_CHUNK))
            except _BROKEN:
                data = b""
            if stream is extended and not data:
                return  # closed without a word (older upstream): the base query answers
            winner = (stream, data)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first, extended, nursery)
            nursery.start_soon(first, base, nursery)
        assert winner is not None
        stream, data = winner
        loser = base if stream is extended else extended
        with contextlib.suppress(*_BROKEN):
            await loser.aclose()
        if stream is base:
            self._stream = base
            self._parser = AnswerParser(extended=False)
            self.upstream = True
            self.cursor = self._after_seq = None
            self._filter.reset()
            self._answer_started(None)
        return data

    async def _to_upstream(self, reason: str) -> None:
        await self._drop_stream()
        if not self.fallback:
            raise NotExtendedError(
                f"{reason}: this memlogd does not speak the extended query (upstream's?)"
            )
        self.upstream = True
        self.cursor = self._after_seq = None

    async def _take(self, answers: list[proto.Answer]) -> None:
        """Turn one chunk's replies into events, keeping the cursor."""
        entries: list[proto.LogEntry] = []
        pending = self._pending
        keep = self._filter
        dropped: list[proto.Dropped] = []  # the chunk's runs of missing seqs: one Gap
        for reply in answers:
            if isinstance(reply, proto.LogEntry):
                if reply.seq is not None or keep(reply):
                    entries.append(reply)
                continue
            if isinstance(reply, proto.Dropped):
                dropped.append(reply)
                continue
            if entries:
                self._emit(entries)
                entries = []
            self._emit_gap(dropped)
            if isinstance(reply, proto.Header):
                if self._expect is not None and reply.instance != self._expect:
                    pending.append(Restarted(self._expect, reply.instance))
                    self.cursor = None
                    self._restarted = True
                    await self._drop_stream()  # at once: its answer is for a stale cursor
                    return
                if self.cursor is None or self.cursor.instance != reply.instance:
                    # nothing read from this instance yet: the answer starts at the
                    # ring's first entry (a dump) or at its end (a follow)
                    dump = self.request.dump or self._restarted
                    start = (reply.first_seq if dump else reply.next_seq) - 1
                    self.cursor = Cursor(reply.instance, start)
                self._answer_started(reply)
            elif isinstance(reply, proto.ErrorReply):
                await self._drop_stream()
                self._done = True
                raise RequestRefusedError(reply.message)
            elif isinstance(reply, proto.Malformed):
                pending.append(reply)
            # a Stats reply is not asked for by a subscription: ignored
        if entries:
            self._emit(entries)
        self._emit_gap(dropped)

    def _emit_gap(self, dropped: list[proto.Dropped]) -> None:
        """One gap for the runs of missing seqs of a chunk, after its entries."""
        if not dropped:
            return
        first, last = dropped[0], dropped[-1]
        count = sum(d.count for d in dropped)
        gap = Gap(first.seq, count, last.seq + last.count - 1 if len(dropped) > 1 else 0)
        dropped.clear()
        self._pending.append(gap)
        self._advance(gap.last)

    def _emit(self, entries: list[proto.LogEntry]) -> None:
        last = entries[-1].seq
        if last is not None:
            self._advance(last)
            self._pending.append(Entries(entries))
        else:
            self._pending.extend(self._filter.batch(entries))

    def _advance(self, seq: int) -> None:
        cursor = self.cursor
        if cursor is not None and seq > cursor.seq:
            self.cursor = Cursor(cursor.instance, seq)


async def fetch_stats(
    target: str | Connector, timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
) -> dict[str, Any]:
    """memlogd's statistics (the ``stats`` object of docs/protocol.md)."""
    connect: Connector = (lambda: connect_query(target)) if isinstance(target, str) else target
    stream = await connect()
    parser = AnswerParser(extended=True)
    async with stream:
        try:
            await stream.send_all(proto.encode_request(proto.QueryRequest(stats=True)))
            answers: list[proto.Answer] = []
            while True:
                with trio.move_on_after(timeout_s) as scope:
                    data = bytes(await stream.receive_some(RECV_CHUNK))
                if scope.cancelled_caught:
                    raise NotExtendedError(
                        "no answer to the statistics query (upstream's memlogd?)"
                    )
                if not data:
                    break
                answers += parser.feed(data)
        except _BROKEN as exc:
            raise ProtocolError(f"the connection broke: {exc}") from None
    return stats_in(answers)
