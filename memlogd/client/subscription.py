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
import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
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
from memlogd.client.session import Phase, SubscriptionSession
from memlogd.errors import ConnectError, NotExtendedError, ProtocolError
from memlogd.wire import protocol as proto
from memlogd.wire.answerparser import AnswerParser, stats_in
from memlogd.wire.events import Event
from memlogd.wire.fdmsg import fd_ancdata
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
            reason = connect_reason(path, exc, socket.SOCK_DGRAM)
            raise ConnectError(path, reason, busy=exc.errno == errno.EAGAIN) from None


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

    What to do when is decided by a :class:`~memlogd.client.session.SubscriptionSession`
    (sans I/O); this class only does the I/O it asks for.
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
        self.session = SubscriptionSession(
            request,
            cursor=cursor,
            retry=retry,
            fallback=fallback,
            upstream=upstream,
            header_timeout_s=header_timeout_s,
            retry_min_s=RECONNECT_MIN_S,
            retry_max_s=retry_max_s,
        )
        self.path = target if isinstance(target, str) else None
        self._connect: Connector = (
            (lambda: connect_query(target)) if isinstance(target, str) else target
        )
        self._stream: trio.abc.Stream | None = None

    @property
    def request(self) -> proto.QueryRequest:
        return self.session.request

    @property
    def cursor(self) -> Cursor | None:
        """The last entry (or gap) handed out: ``(instance, seq)``."""
        return self.session.cursor

    @property
    def retry(self) -> bool:
        """Whether a lost connection is resumed (asked for with ``retry``)."""
        return self.session.retry

    @property
    def upstream(self) -> bool:
        """Base modes only: asked for, or memlogd ignored the extended query."""
        return self.session.upstream

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
        self.session.close()
        await self._drop_stream()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        session = self.session
        events = session.events
        while not events:
            phase = session.phase
            try:
                if phase is Phase.DONE:
                    raise StopAsyncIteration
                if phase is Phase.CONNECT:
                    await self._open()
                elif phase is Phase.PROBE:
                    await self._probe()
                else:
                    await self._receive()
            finally:
                if session.phase is Phase.CONNECT or session.phase is Phase.DONE:
                    await self._drop_stream()
        return events.popleft()

    # -------------------------------------------------------------- the I/O asked for

    async def _open(self) -> None:
        session = self.session
        if session.delay:
            await trio.sleep(session.delay)
            session.waited()
        try:
            stream = await self._connect()
        except ConnectError as exc:
            session.connect_failed(exc)  # raises it again without retry
            return
        data = session.connected()
        try:
            await stream.send_all(data)
        except _BROKEN:
            with contextlib.suppress(*_BROKEN):
                await stream.aclose()
            session.send_failed()
            return
        self._stream = stream
        session.sent()

    async def _receive(self) -> None:
        stream = self._stream
        assert stream is not None
        reason = "memlogd closed the connection"
        try:
            timeout = self.session.answer_timeout_s
            if timeout is None:
                data = bytes(await stream.receive_some(RECV_CHUNK))
            else:
                with trio.move_on_after(timeout):
                    data = bytes(await stream.receive_some(RECV_CHUNK))
                    self._feed(data, reason)
                    return
                self.session.answer_timed_out()  # NotExtendedError without fallback
                return
        except _BROKEN as exc:
            reason = f"the connection broke: {exc}"
            data = b""
        self._feed(data, reason)

    def _feed(self, data: bytes, reason: str) -> None:
        if data:
            self.session.received(data)
        else:
            self.session.ended(reason)

    async def _probe(self) -> None:
        """A base-mode query beside the unanswered extended one; the first
        connection to answer says what this daemon is: upstream's never answers
        the extended query; ours (still starting, or busy) answers the first
        connection first, since it accepts connections in order, but the two
        answers may come in one poll: the extended one is taken if it comes
        within the session's ``probe_grace_s`` of the base-mode one."""
        session = self.session
        extended = self._stream
        assert extended is not None
        try:
            base = await self._connect()
        except ConnectError:  # gone meanwhile: the first connection says how it ends
            session.probe_failed()
            return
        request = session.base_request
        grace = session.probe_grace_s
        winner: tuple[trio.abc.Stream, bytes] | None = None

        async def first(stream: trio.abc.Stream, nursery: trio.Nursery) -> None:
            nonlocal winner
            try:
                if stream is base:
                    await base.send_all(request)
                data = bytes(await stream.receive_some(RECV_CHUNK))
            except _BROKEN:
                data = b""
            if stream is extended and not data:
                return  # closed without a word (older upstream): the base query answers
            if stream is base:  # (cancelled if the extended query answers meanwhile)
                await trio.sleep(grace)
                if winner is not None:  # it did, as the grace ended
                    return
            winner = (stream, data)
            nursery.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first, extended, nursery)
                nursery.start_soon(first, base, nursery)
        except BaseException:
            with contextlib.suppress(*_BROKEN):
                await base.aclose()
            raise
        assert winner is not None
        stream, data = winner
        loser = base if stream is extended else extended
        with contextlib.suppress(*_BROKEN):
            await loser.aclose()
        self._stream = stream
        session.probe_answered(base=stream is base)
        self._feed(data, "memlogd closed the connection")

    async def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(*_BROKEN):
                await stream.aclose()


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
