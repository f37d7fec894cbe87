"""One session with the receiver, over RELP or plain TCP. I/O (trio).

docs/logship.md.  :class:`logship.shipper.Shipper` keeps reconnecting; for each
connection it runs its transport's :meth:`Transport.session`, which moves
bytes between the connection and the shipper's :class:`~logship.outbox.Outbox`
(pure) and says what was delivered:

* :class:`RelpTransport`: ``open``, the messages still in flight sent again,
  then ``syslog`` frames (:func:`logship.relp.syslog_frames`) while the window
  has room, the acknowledgements read by a second task, and ``close``;
  delivered = acknowledged with everything before;
* :class:`TcpTransport`: RFC 6587 octet-counted messages; delivered = followed
  by ``window`` later messages, or the receiver closed the connection after
  our end of stream.  The last ``window`` are sent again after a reconnect.

Whatever ends a session (an error of the connection, the receiver's refusal,
a timeout) is a :class:`LinkLost` whose message says why.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from logship.finetimer import FineTimer, open_fine_timer
from logship.outbox import Outbox, OutboxError
from logship.relp import (
    RelpError,
    ResponseParser,
    ServerClose,
    TxnrCounter,
    check_open_reply,
    encode_frame,
    open_frame,
    syslog_frames,
)
from logship.rfc5424 import frame_octet_counted

STABLE_S = 1.0  # a session up this long without an error ends an outage (or an ack does)
CLOSE_TIMEOUT_S = 2.0  # waiting for the answer to close (RELP) or the end of stream (TCP)
TCP_BATCH = 1024  # messages written at once over TCP
RECV_BYTES = 64 * 1024  # bytes read from the receiver at once
PACE_S = 0.0003  # RELP: a fast receiver's responses are read at most twice per this (see _acks)

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class LinkLost(Exception):
    """The session with the receiver ended; the message says why."""


class Host(Protocol):
    """What a transport needs of the shipper."""

    outbox: Outbox
    ack_timeout_s: float

    def ending(self) -> bool:
        """No new message is to be sent in this session."""

    async def wait_change(self) -> None:
        """Until the outbox, the input or stop changed."""

    def taken(self) -> None:
        """Messages left the queue (memlogd's reader may go on)."""

    def delivered_now(self, session: Session) -> None:
        """The outbox delivered messages (the state may be due)."""

    def session_good(self, session: Session) -> None:
        """The session delivered, or stayed up :data:`STABLE_S`."""


class Session:
    """One connection to the receiver, and what its tasks share."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.stream: trio.SocketStream | None = None
        self.lost: str | None = None  # why it ended, None for a clean end
        self.good = False  # delivered, or stayed up STABLE_S
        self.heard_at = 0.0  # trio time of the last bytes received (or of the first sent)
        self.closed = trio.Event()  # RELP: close answered; TCP: end of stream after ours
        self.closing = False
        self.software = ""

    def fail(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
        self.scope.cancel()

    async def send(self, data: bytes) -> None:
        assert self.stream is not None
        await self.stream.send_all(data)

    async def recv(self) -> bytes:
        assert self.stream is not None
        sock = self.stream.socket
        data = await sock.recv(RECV_BYTES)
        if _QUICKACK is not None:
            # Linux leaves quick-ACK mode after a while; re-armed at every read, our
            # ACK goes out at once, and a receiver whose writes wait for it (Nagle:
            # librelp writes each rsp on its own) is not held 40 ms per window.
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return data


def describe(exc: BaseException) -> str:
    """An error of the connection in words (``connection refused``)."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    cause = exc.__cause__
    if isinstance(cause, ExceptionGroup) and cause.exceptions:
        return describe(cause.exceptions[0])
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        text = os.strerror(exc.errno) if exc.errno else str(exc.strerror)
        return text[:1].lower() + text[1:]
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return describe(exc.__cause__)
    return str(exc) or type(exc).__name__


async def guard(session: Session, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run a task of ``session``; whatever ends the session ends it (session.fail)."""
    try:
        await fn(session, *args)
    except LinkLost as exc:
        session.fail(str(exc))
    except RelpError as exc:
        session.fail(str(exc))
    except _BROKEN as exc:
        session.fail(describe(exc))


class Transport:
    """A way to deliver the outbox's messages over one connection."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.outbox = host.outbox

    async def session(self, session: Session) -> None:
        """Run ``session`` (its stream connected) until it ends cleanly or fails."""
        raise NotImplementedError

    async def stable(self, session: Session) -> None:
        await trio.sleep(STABLE_S)
        self.host.session_good(session)


class RelpTransport(Transport):
    """RELP (docs/logship.md, "RELP"): acknowledged delivery."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.counter = TxnrCounter()
        self.close_txnr: int | None = None  # our close was sent with it
        self.offset = 0  # txnr - position of the messages sent new in this session
        self.resent: dict[int, int] = {}  # txnr -> position of those sent again
        self.low = 1  # the sender waits for this much room (with more waiting); set per session

    async def session(self, session: Session) -> None:
        counter = self.counter
        counter.reset()
        self.close_txnr = None
        parser = ResponseParser()
        open_txnr = counter.take()
        await session.send(open_frame(None, open_txnr))
        reply = await self._open_reply(session, parser, open_txnr)
        offers = check_open_reply(reply)
        session.heard_at = trio.current_time()
        session.software = ",".join(offers.get("relp_software", ()))
        again = self.outbox.resend()
        self.resent = {counter.take(): pos for pos, _ in again}
        self.offset = counter.peek - self.outbox.next_position
        if again:
            first = counter.peek - len(again)
            await session.send(syslog_frames(first, [data for _, data in again]))
        timer = open_fine_timer()
        # paced (see _acks), the sender waits for more room: fewer, bigger sends
        self.low = max(1, self.outbox.window // (4 if timer is None else 2))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(guard, session, self._acks, parser, timer)
                nursery.start_soon(guard, session, self._watchdog)
                nursery.start_soon(self.stable, session)
                await guard(session, self._send)
                nursery.cancel_scope.cancel()
        finally:
            if timer is not None:
                timer.close()

    async def _open_reply(self, session: Session, parser: ResponseParser, txnr: int) -> Any:
        timeout = self.host.ack_timeout_s
        with trio.move_on_after(timeout):
            while True:
                data = await session.recv()
                if not data:
                    raise LinkLost("the receiver closed the connection before answering open")
                parser.feed(data)
                for event in parser.events():
                    if isinstance(event, ServerClose):
                        raise LinkLost("the receiver closed the session (serverclose) at open")
                    if event.txnr == txnr:
                        return event
                    raise LinkLost(f"the receiver answered transaction {event.txnr} before open")
        raise LinkLost(f"no answer to open within {timeout:g} s")

    async def _send(self, session: Session) -> None:
        """Send what the outbox holds while the window has room; then close."""
        host = self.host
        outbox = self.outbox
        counter = self.counter
        capacity = outbox.window
        low = self.low  # with more waiting, send no fewer at once
        while True:
            renew = counter.remaining <= capacity + 1  # keep the close's number below the wrap
            if host.ending() or renew:
                if not outbox.in_flight:
                    break
                await host.wait_change()
                continue
            room = outbox.room()
            held = outbox.in_flight
            waiting = outbox.waiting
            if not waiting or room <= 0 or (held and room < min(low, waiting)):
                await host.wait_change()
                continue
            if not outbox.unacked:  # the first outstanding: the ack timeout runs from now
                session.heard_at = trio.current_time()
            datas = outbox.take(room)
            first = counter.take_run(len(datas))
            host.taken()
            await session.send(syslog_frames(first, datas))
        self.close_txnr = txnr = counter.take()
        session.heard_at = trio.current_time()
        session.closing = True
        await session.send(encode_frame(txnr, "close"))
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await session.closed.wait()

    async def _acks(
        self, session: Session, parser: ResponseParser, timer: FineTimer | None
    ) -> None:
        """Read the responses.  Paced (docs/logship.md, "Pacing"): librelp writes
        each response on its own, and Nagle's algorithm holds the next ones
        back until the segment sent last is acknowledged, which our reading it
        does.  Read at once, a fast receiver's responses come a few at a time
        (4-5 a read at 100k messages/s), and their reads are most of logship's
        work.  So when a read comes within PACE_S of the one before and leaves
        the sender waiting for room, the next read waits PACE_S: the responses
        of that time gather at the receiver behind an unacknowledged segment;
        the read after the pause acknowledges it, and the next one, at once,
        takes them all.  A slow or distant receiver, whose responses come
        further apart, is never made to wait."""
        last = -PACE_S
        paused = False
        while True:
            data = await session.recv()
            if not data:
                raise LinkLost("the receiver closed the connection")
            now = session.heard_at = trio.current_time()
            if self._take_acks(session, parser, data):
                return
            if timer is not None and not paused and now - last < PACE_S and self._starved(session):
                await timer.sleep(PACE_S)
                paused = True
            else:
                paused = False
            last = now

    def _starved(self, session: Session) -> bool:
        """The sender waits for room in the window (see :meth:`_send`)."""
        outbox = self.outbox
        waiting = outbox.waiting
        return (
            not session.closing
            and waiting > 0
            and outbox.in_flight > 0
            and outbox.room() < min(self.low, waiting)
        )

    async def _watchdog(self, session: Session) -> None:
        """The read timeout on acknowledgements: a session with messages (or its
        close) outstanding and nothing received for ``ack_timeout_s`` is given up."""
        timeout = self.host.ack_timeout_s
        outbox = self.outbox
        while True:
            await trio.sleep(min(1.0, timeout / 4))
            waiting = outbox.unacked or session.closing
            if waiting and trio.current_time() - session.heard_at > timeout:
                raise LinkLost(f"no acknowledgement within {timeout:g} s")

    def _ack(self, txnrs: list[int]) -> int:
        resent = self.resent
        try:
            if resent:
                positions = [resent.pop(t) if t in resent else t - self.offset for t in txnrs]
                return self.outbox.ack(positions)
            return self.outbox.ack(txnrs, self.offset)
        except OutboxError as exc:
            txnr = exc.number if not resent else txnrs[0]
            raise LinkLost(
                f"RELP rsp for transaction number {txnr}, which is not outstanding"
            ) from None

    def _take_acks(self, session: Session, parser: ResponseParser, data: bytes) -> bool:
        """Account for the responses in ``data``; True when the close was answered."""
        parser.feed(data)
        lost: str | None = None
        done = 0
        close_txnr = self.close_txnr
        while True:
            oks = parser.take_oks()
            # librelp answers close with a bare rsp; another server may say 200 OK
            if session.closing and close_txnr in oks:
                oks.remove(close_txnr)
                session.closed.set()
            if oks:
                done += self._ack(oks)
            event = parser.next_event()
            if event is None:
                break
            if isinstance(event, ServerClose):
                lost = "the receiver closed the session (serverclose)"
                break
            if event.txnr == close_txnr:
                session.closed.set()
                break
            if not event.ok:
                code = "no code" if event.code is None else event.code
                lost = f"the receiver answered {code} {event.text}".rstrip()
                break
            done += self._ack([event.txnr])
        if done:
            self.host.delivered_now(session)
        if lost is not None:
            raise LinkLost(lost)
        return session.closed.is_set()


class TcpTransport(Transport):
    """Plain TCP, RFC 6587 octet counting (docs/logship.md, "TCP"): best effort."""

    async def session(self, session: Session) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(guard, session, self._watch)
            nursery.start_soon(self.stable, session)
            await guard(session, self._send)
            nursery.cancel_scope.cancel()

    async def _send(self, session: Session) -> None:
        host = self.host
        outbox = self.outbox
        window = outbox.window
        again = outbox.resend()
        if again:  # written before the last connection broke: maybe lost, so again
            await self._write(session, b"".join([frame_octet_counted(d) for _, d in again]))
        while not host.ending():
            if not outbox.waiting:
                await host.wait_change()
                continue
            datas = outbox.take(TCP_BATCH)
            host.taken()
            await self._write(session, b"".join([frame_octet_counted(d) for d in datas]))
            if outbox.deliver(outbox.in_flight - window):
                host.delivered_now(session)
        # the end: our end of stream, then the receiver's, after it read everything
        assert session.stream is not None
        session.closing = True
        await session.stream.send_eof()
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await session.closed.wait()
        if not session.closed.is_set():
            raise LinkLost(
                f"the receiver did not close the connection within {CLOSE_TIMEOUT_S:g} s"
            )
        if outbox.deliver(outbox.in_flight):
            host.delivered_now(session)

    async def _write(self, session: Session, data: bytes) -> None:
        timeout = self.host.ack_timeout_s
        with trio.move_on_after(timeout) as scope:
            await session.send(data)
        if scope.cancelled_caught:
            raise LinkLost(f"the receiver read nothing for {timeout:g} s")

    async def _watch(self, session: Session) -> None:
        """A TCP receiver sends nothing: what comes is its end of stream."""
        while await session.recv():
            pass
        if not session.closing:
            raise LinkLost("the receiver closed the connection")
        session.closed.set()
