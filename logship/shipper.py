"""logship's loop: memlogd -> RFC 5424 messages -> a RELP or TCP receiver. I/O (trio).

docs/logship.md.  The core of the ``logship`` program and of memlogd's
``-ship-to`` role (SPEC 13); it parses no arguments, configures no logging,
handles no signal and never exits the process::

    config = ShipConfig("relp://logs.example:2514", state_file="/run/logship.state")
    async with trio.open_nursery() as nursery:
        shipper = await nursery.start(run_shipper, config, "/var/run/memlogdq.sock")
        ...
        shipper.stop()  # waits up to 5 s for acknowledgements, saves the state, returns

``memlogd`` is the query socket's path or a connector (an async callable
giving a connected stream), handed to :class:`memlogd.client.Subscription`,
the only code that talks to memlogd.  Cancelling :func:`run_shipper` stops it
at once, the state saved and fsynced.

Inside, three tasks share one :class:`Shipper`:

* the *reader* follows memlogd (dump then follow; with ``once``, the dump)
  after the saved cursor, and turns each batch it gets into messages in the
  *outbox* (at most :data:`OUTBOX_MAX` messages, plus one batch);
* the *link* keeps a session with the receiver: it connects with backoff
  (one warning per outage) and, per session, one task writes many frames at
  once while at most ``window`` are unacknowledged, another reads the
  acknowledgements and saves the state after each batch of them;
* the *syncer* fsyncs the state file at most once a second.

Every message carries its *item*, ``(instance, seq, entries)``: the cursor it
completes and whether it is an entry (1) or a gap (0).  An item is delivered
when the receiver acknowledged it and everything before it (RELP); over TCP,
when ``window`` later messages were written after it, or the receiver closed
the connection after our end of stream.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
import trio

from logship.messages import MessageFormatter
from logship.relp import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    AckWindow,
    RelpError,
    Response,
    ResponseParser,
    ServerClose,
    check_open_reply,
)
from logship.rfc5424 import DEFAULT_SD_ID, Rfc5424Error, validate_sd_id
from logship.state import CursorError, StateFile
from logship.target import Target, TargetError, parse_target
from memlogd.client import Connector, Subscription
from memlogd.errors import ConfigError, MemlogdError, NotExtendedError
from memlogd.ratelimit import LimitedLog
from memlogd.wire import protocol as proto
from memlogd.wire.events import Connected, Disconnected, Entries, Gap, Restarted, Waiting
from memlogd.wire.protocol import Cursor

log = structlog.get_logger("logship")

ACK_TIMEOUT_S = 30.0  # a receiver silent this long with messages outstanding is given up
RETRY_MIN_S = 0.1  # first reconnect delay (receiver); doubles up to retry_max_s
RETRY_MAX_S = 5.0  # longest reconnect delay, to the receiver and to memlogd
STOP_GRACE_S = 5.0  # stop() waits this long for outstanding acknowledgements
ONCE_TIMEOUT_S = 30.0  # --once gives up after this long
HEADER_TIMEOUT_S = 5.0  # memlogd that does not answer the extended query this long: upstream's
STABLE_S = 1.0  # a session up this long without an error ends an outage (or an ack does)
CLOSE_TIMEOUT_S = 2.0  # waiting for the answer to close (RELP) or the end of stream (TCP)
COUNT_TIMEOUT_S = 5.0  # --once, after its timeout: reading the rest of the dump to count it
OUTBOX_MAX = 4096  # formatted messages waiting for the window (plus one batch from memlogd)
TCP_BATCH = 1024  # messages written at once over TCP
RECV_BYTES = 64 * 1024  # bytes read from the receiver at once
WARN_PERIOD_S = 30.0  # one warning of a kind per period (outages of a flapping receiver)

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

Item = tuple[str, int, int]  # (instance, seq, entries): entries 1 for an entry, 0 for a gap
Message = tuple[Item, bytes]


@dataclass(frozen=True)
class ShipConfig:
    """Everything :func:`run_shipper` needs (docs/logship.md, "Flags").  ``target``
    may be given as a URL (``relp://HOST:PORT``), parsed here; any invalid
    value is a :class:`~memlogd.errors.ConfigError`."""

    target: Target | str  # --to; always a Target once constructed (see .receiver)
    state_file: str | None = None  # --state-file; None: start at the ring's first entry
    sources: tuple[str, ...] = ()  # -s globs; none: every source
    hostname: str | None = None  # HOSTNAME of the messages; None: socket.gethostname()
    window: int = DEFAULT_WINDOW  # messages sent and not yet acknowledged, at most
    sd_id: str = DEFAULT_SD_ID
    once: bool = False  # forward the dump, then return
    timeout_s: float = ONCE_TIMEOUT_S  # with once: give up after this long
    ack_timeout_s: float = ACK_TIMEOUT_S
    retry_max_s: float = RETRY_MAX_S
    stop_grace_s: float = STOP_GRACE_S

    def __post_init__(self) -> None:
        if isinstance(self.target, str):
            try:
                object.__setattr__(self, "target", parse_target(self.target))
            except TargetError as exc:
                raise ConfigError(str(exc)) from None
        if not 1 <= self.window <= MAX_WINDOW:
            raise ConfigError(f"the window must be within 1..{MAX_WINDOW}, not {self.window}")
        try:
            validate_sd_id(self.sd_id)
        except Rfc5424Error as exc:
            raise ConfigError(str(exc)) from None
        for name in ("timeout_s", "ack_timeout_s", "retry_max_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive")
        if self.stop_grace_s < 0:
            raise ConfigError("stop_grace_s must not be negative")

    @property
    def receiver(self) -> Target:
        """``target`` as a :class:`~logship.target.Target`."""
        assert isinstance(self.target, Target)
        return self.target


@dataclass(frozen=True)
class ShipResult:
    """How a run ended.  ``complete``: nothing read from memlogd is left
    undelivered (with ``once``: the whole dump was delivered).
    ``undelivered``: entries read (or, with ``once``, still to read) and not
    delivered; they are sent again by the next run with the same state file."""

    delivered: int  # entries delivered
    gaps: int  # gap messages delivered
    undelivered: int
    complete: bool
    counted: bool = True  # False: the rest of the dump could not be counted (at least)
    reason: str | None = None  # the receiver's last failure, if any
    cursor: Cursor | None = None  # the state at the end


class _LinkLost(Exception):
    """The session with the receiver ended; the message says why."""


class _Session:
    """One connection to the receiver, and what its tasks share."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.stream: trio.SocketStream | None = None
        self.lost: str | None = None  # why it ended, None for a clean end
        self.good = False  # delivered, or stayed up STABLE_S
        self.heard_at = 0.0  # trio time of the last bytes received (or of the first sent)
        self.close_txnr: int | None = None  # RELP: our close was sent with it
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


def _describe(exc: BaseException) -> str:
    """An error of the connection in words (``connection refused``)."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    cause = exc.__cause__
    if isinstance(cause, ExceptionGroup) and cause.exceptions:
        return _describe(cause.exceptions[0])
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        text = os.strerror(exc.errno) if exc.errno else str(exc.strerror)
        return text[:1].lower() + text[1:]
    if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ is not None:
        return _describe(exc.__cause__)
    return str(exc) or type(exc).__name__


class Shipper:
    """One run of logship (see the module docstring); :func:`run_shipper` runs it."""

    def __init__(self, config: ShipConfig, memlogd: str | Connector) -> None:
        self.config = config
        self.memlogd = memlogd
        self.url = str(config.receiver)
        self.relp = config.receiver.scheme == "relp"
        hostname = config.hostname if config.hostname is not None else socket.gethostname()
        self.formatter = MessageFormatter(hostname, config.sd_id)
        self.state = StateFile(config.state_file) if config.state_file else None
        self.cursor: Cursor | None = None  # delivered up to here (with everything before)
        self.delivered = 0
        self.gaps = 0
        self.receiver_error: str | None = None
        # each kind at most once per WARN_PERIOD_S (outages of a flapping receiver)
        self._diag = LimitedLog(log, WARN_PERIOD_S)
        self._window: AckWindow[Item] = AckWindow(config.window)
        self._sent: deque[Message] = deque()  # TCP: the last `window` messages written
        self._outbox: deque[Message] = deque()
        self._outbox_entries = 0  # entries (not gaps) among them
        self._unsaved = 0  # messages delivered since the last state save
        self._save_every = max(1, config.window // 2)
        self._changed = trio.lowlevel.ParkingLot()  # outbox, window, input or stop changed
        self._outbox_room = trio.lowlevel.ParkingLot()  # the outbox has room again
        self._stop_event = trio.Event()
        self._stopping = False
        self._input_done = False
        self._input_done_event = trio.Event()
        self._counting = False  # --once after its timeout: only count the rest of the dump
        self._uncounted = 0
        self._instance: str | None = None
        self._restarted = False
        self._memlogd_answered = False
        self._memlogd_outage = False
        self._receiver_ever_good = False
        self._outage_start: float | None = None
        self._outage_attempts = 0
        self._reader_scope = trio.CancelScope()
        self._ship_scope = trio.CancelScope()
        self._failure: MemlogdError | None = None
        self._started = False

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Stop gracefully: read nothing more from memlogd, wait up to
        ``stop_grace_s`` for the acknowledgements outstanding, close the
        session, save the state; :meth:`run` then returns.  Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_event.set()
        self._reader_scope.cancel()
        if self._started:
            deadline = trio.current_time() + self.config.stop_grace_s
            self._ship_scope.deadline = min(self._ship_scope.deadline, deadline)
        self._wake()

    def _wake(self) -> None:
        self._changed.unpark_all()

    async def _wait_change(self) -> None:
        await self._changed.park()

    # ------------------------------------------------------------------ the run

    async def run(
        self, *, task_status: trio.TaskStatus[Shipper] = trio.TASK_STATUS_IGNORED
    ) -> ShipResult:
        """Ship until :meth:`stop` (or, with ``once``, until the dump is
        delivered or the timeout passed).  Raises :class:`MemlogdError` for what
        retrying cannot mend: a state file that cannot be used
        (:class:`~logship.state.StateError`), memlogd that does not speak the
        extended query (:class:`NotExtendedError`) or refuses it, and, with
        ``once``, memlogd that cannot be reached (:class:`ConnectError`)."""
        if self._started:
            raise RuntimeError("a Shipper runs once")
        self._started = True
        config = self.config
        self.cursor = self._load_state()
        log.info(
            "started",
            to=self.url,
            memlogd=self.memlogd if isinstance(self.memlogd, str) else "in-process",
            window=config.window,
            once=config.once,
            resume_after=None
            if self.cursor is None
            else f"{self.cursor.instance}:{self.cursor.seq}",
        )
        result: ShipResult | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, nursery.cancel_scope)
                if self.state is not None:
                    nursery.start_soon(self._sync_state)
                if self._stopping:
                    self._ship_scope.deadline = trio.current_time() + config.stop_grace_s
                elif config.once:
                    self._ship_scope.deadline = trio.current_time() + config.timeout_s
                task_status.started(self)
                with self._ship_scope:
                    await self._link()
                result = await self._result()
                nursery.cancel_scope.cancel()
        finally:
            self._save_final()
        if self._failure is not None:
            raise self._failure
        assert result is not None
        log.info(
            "stopped",
            delivered=result.delivered,
            gaps=result.gaps,
            undelivered=result.undelivered,
            complete=result.complete,
        )
        return result

    async def _result(self) -> ShipResult:
        complete = self._finished()
        counted = True
        if self.config.once and not complete and not self._input_done:
            # the rest of the dump is counted (not after stop(): the reader is gone)
            counted = False if self._stopping else await self._count_rest()
        undelivered = self._outbox_entries + self._uncounted
        if self.relp:
            undelivered += sum(item[2] for item in self._window.unacked())
        else:
            undelivered += sum(item[2] for item, _ in self._sent)
        if self.config.once:
            complete = complete and self._input_done
        return ShipResult(
            delivered=self.delivered,
            gaps=self.gaps,
            undelivered=undelivered,
            complete=complete,
            counted=counted,
            reason=self.receiver_error,
            cursor=self.cursor,
        )

    async def _count_rest(self) -> bool:
        """After --once's timeout: read the rest of the dump only to count it."""
        self._counting = True
        self._outbox_room.unpark_all()
        with trio.move_on_after(COUNT_TIMEOUT_S):
            await self._input_done_event.wait()
        return self._input_done

    def _finished(self) -> bool:
        """Nothing is in flight, and nothing more is to be sent."""
        if self._window.held or self._sent:
            return False
        if self._stopping:
            return True
        return self.config.once and self._input_done and not self._outbox

    def _ending(self) -> bool:
        """No new message is to be sent in this session (stop, or the whole dump sent)."""
        return self._stopping or (self.config.once and self._input_done and not self._outbox)

    # ------------------------------------------------------------------ state

    def _load_state(self) -> Cursor | None:
        if self.state is None:
            return None
        try:
            return self.state.load()  # StateError: raised to the caller
        except CursorError as exc:
            log.warning(
                "state_ignored",
                path=self.state.path,
                reason=str(exc),
                consequence="starting at the ring's first entry",
            )
            return None

    def _delivered(self, items: Sequence[Item]) -> None:
        """``items`` (in order) are delivered, with everything before them.

        The state is saved once half a window of them waits (or when nothing
        is in flight); until then they keep their place in the window (see
        :meth:`_room`), so a killed logship sends again at most a window of
        what the receiver has: those in flight and those delivered unsaved."""
        last = items[-1]
        entries = 0
        for item in items:
            entries += item[2]
        self.delivered += entries
        self.gaps += len(items) - entries
        self.cursor = Cursor(last[0], last[1])
        if self.state is None:
            return
        self._unsaved += len(items)
        if self._unsaved >= self._save_every or not self._window.held:
            self._save_state()

    def _save_state(self) -> None:
        assert self.state is not None and self.cursor is not None
        self._unsaved = 0
        try:
            self.state.save(self.cursor)
        except OSError as exc:
            self._diag.emit(
                "warning", "state_save_failed", path=self.state.path, error=_describe(exc)
            )

    def _room(self) -> int:
        """Messages the RELP window can take now."""
        return self._window.capacity - self._window.held - self._unsaved

    async def _sync_state(self) -> None:
        state = self.state
        assert state is not None
        while True:
            await trio.sleep(state.sync_period_s)
            try:
                state.sync()
            except OSError as exc:
                self._diag.emit(
                    "warning", "state_sync_failed", path=state.path, error=_describe(exc)
                )

    def _save_final(self) -> None:
        if self.state is None:
            return
        try:
            self.state.close(self.cursor)
        except OSError as exc:
            log.warning("state_save_failed", path=self.state.path, error=_describe(exc))

    # ------------------------------------------------------------------ memlogd

    async def _read(self, run_scope: trio.CancelScope) -> None:
        config = self.config
        request = proto.QueryRequest(dump=True, follow=not config.once, sources=config.sources)
        subscription = Subscription(
            self.memlogd,
            request,
            cursor=self.cursor,
            retry=not config.once,
            fallback=False,
            header_timeout_s=HEADER_TIMEOUT_S,
            retry_max_s=config.retry_max_s,
        )
        try:
            with self._reader_scope:
                async with subscription:
                    async for event in subscription:
                        if isinstance(event, Entries):
                            await self._take(event.entries)
                        else:
                            self._on_event(event)
                self._input_done = True
                self._input_done_event.set()
        except NotExtendedError as exc:
            self._failure = NotExtendedError(
                f"{exc}; logship needs this project's memlogd: upstream's has no "
                "(instance, seq) to resume from"
            )
            run_scope.cancel()
        except MemlogdError as exc:
            self._failure = exc
            run_scope.cancel()
        finally:
            self._wake()

    async def _take(self, entries: list[proto.LogEntry]) -> None:
        if self._counting:
            self._uncounted += len(entries)
            return
        instance = self._instance
        assert instance is not None
        data = self.formatter.messages(instance, entries)
        self._outbox.extend(
            zip([(instance, cast(int, entry.seq), 1) for entry in entries], data, strict=True)
        )
        self._outbox_entries += len(entries)
        self._wake()
        while len(self._outbox) >= OUTBOX_MAX and not self._counting:
            await self._outbox_room.park()

    def _gap(self, seq: int, count: int) -> None:
        instance = self._instance
        assert instance is not None
        self._diag.emit("warning", "entries_lost", count=count, first_seq=seq, instance=instance)
        data = self.formatter.gap(time_ns=time.time_ns(), instance=instance, seq=seq, dropped=count)
        if not self._counting:
            self._outbox.append(((instance, seq + count - 1, 0), data))
            self._wake()

    def _on_event(self, event: object) -> None:
        if isinstance(event, Gap):
            self._gap(event.seq, event.count)
        elif isinstance(event, Connected):
            header = event.header
            if header is None:  # not with fallback=False; a guard
                raise NotExtendedError("memlogd answered in base mode")
            self._instance = header.instance
            if not self._memlogd_answered or self._restarted or self._memlogd_outage:
                log.info(
                    "memlogd_connected",
                    instance=header.instance,
                    after_seq=event.after_seq,
                    first_seq=header.first_seq,
                    next_seq=header.next_seq,
                )
            self._memlogd_answered = True
            self._memlogd_outage = False
            # a new instance is read from after_seq 0: memlogd tells of what it lost
            self._restarted = False
        elif isinstance(event, Restarted):
            self._restarted = True
            log.info(
                "memlogd_restarted",
                old_instance=event.old_instance,
                instance=event.instance,
                consequence="forwarding its ring from its first entry",
            )
        elif isinstance(event, Waiting):
            self._memlogd_outage = True
            if event.first:
                self._diag.emit(
                    "warning",
                    "memlogd_unreachable",
                    socket=event.error.path,
                    reason=event.error.reason,
                    consequence="retrying; the receiver connection is kept",
                )
        elif isinstance(event, Disconnected):
            self._diag.emit("info", "memlogd_disconnected", reason=event.reason)
        elif isinstance(event, proto.Malformed):
            self._diag.emit("warning", "bad_line_from_memlogd", error=event.reason)

    # ------------------------------------------------------------------ the receiver

    async def _link(self) -> None:
        """Sessions with the receiver, with backoff, until :meth:`_finished`."""
        delay = RETRY_MIN_S
        if self.config.once:  # nothing to send at all: no need of a receiver
            while not (self._outbox or self._input_done or self._stopping):
                await self._wait_change()
        while not self._finished():
            session = await self._session()
            if session.lost is None:  # a clean end: done, or a new session (txnr wrap)
                continue
            self.receiver_error = session.lost
            if session.good:
                self._diag.emit("info", "receiver_disconnected", to=self.url, reason=session.lost)
                delay = RETRY_MIN_S
            else:
                self._attempt_failed(session.lost, delay)
            with trio.move_on_after(delay):
                await self._stop_event.wait()
            delay = RETRY_MIN_S if session.good else min(delay * 2, self.config.retry_max_s)

    def _attempt_failed(self, reason: str, delay: float) -> None:
        if self._outage_start is None:
            self._outage_start = time.monotonic()
            self._outage_attempts = 1
            self._diag.emit(
                "warning",
                "receiver_unavailable",
                to=self.url,
                reason=reason,
                consequence=f"retrying with backoff (at most {self.config.retry_max_s:g} s)",
            )
        else:
            self._outage_attempts += 1
            log.debug(
                "receiver_retry",
                to=self.url,
                reason=reason,
                attempt=self._outage_attempts,
                delay_s=delay,
            )

    def _session_good(self, session: _Session) -> None:
        if session.good:
            return
        session.good = True
        self.receiver_error = None
        if self._outage_start is not None:
            log.info(
                "receiver_available",
                to=self.url,
                outage_s=round(time.monotonic() - self._outage_start, 3),
                attempts=self._outage_attempts,
            )
            self._outage_start = None
        elif not self._receiver_ever_good:
            log.info("receiver_connected", to=self.url, software=session.software or None)
        self._receiver_ever_good = True

    async def _session(self) -> _Session:
        session = _Session()
        config = self.config
        with session.scope:
            try:
                with trio.fail_after(config.ack_timeout_s):
                    stream = await trio.open_tcp_stream(config.receiver.host, config.receiver.port)
            except trio.TooSlowError:
                session.fail(f"no connection within {config.ack_timeout_s:g} s")
                return session
            except OSError as exc:
                session.fail(_describe(exc))
                return session
            session.stream = stream
            try:
                await _guard(session, self._relp_session if self.relp else self._tcp_session)
            finally:
                stream.socket.close()
        return session

    async def _stable(self, session: _Session) -> None:
        await trio.sleep(STABLE_S)
        self._session_good(session)

    # ------------------------------------------------------------------ RELP

    async def _relp_session(self, session: _Session) -> None:
        window = self._window
        start = window.reconnect()
        parser = ResponseParser()
        await session.send(start.open_frame)
        reply = await self._open_reply(session, parser, start.open_txnr)
        offers = check_open_reply(reply)
        session.heard_at = trio.current_time()
        session.software = ",".join(offers.get("relp_software", ()))
        if start.resend:
            await session.send(b"".join(start.resend))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_guard, session, self._relp_acks, parser)
            nursery.start_soon(_guard, session, self._relp_watchdog)
            nursery.start_soon(self._stable, session)
            await _guard(session, self._relp_send)
            nursery.cancel_scope.cancel()

    async def _open_reply(self, session: _Session, parser: ResponseParser, txnr: int) -> Response:
        with trio.move_on_after(self.config.ack_timeout_s):
            while True:
                data = await session.recv()
                if not data:
                    raise _LinkLost("the receiver closed the connection before answering open")
                parser.feed(data)
                for event in parser.events():
                    if isinstance(event, ServerClose):
                        raise _LinkLost("the receiver closed the session (serverclose) at open")
                    if event.txnr == txnr:
                        return event
                    raise _LinkLost(f"the receiver answered transaction {event.txnr} before open")
        raise _LinkLost(f"no answer to open within {self.config.ack_timeout_s:g} s")

    async def _relp_send(self, session: _Session) -> None:
        """Send what the outbox holds while the window has room; then close."""
        window = self._window
        outbox = self._outbox
        capacity = window.capacity
        low = max(1, capacity // 4)  # with more waiting, send no fewer at once
        counter = window.counter
        while True:
            renew = counter.remaining <= capacity + 1  # keep the close's number below the wrap
            if self._ending() or renew:
                if not window.held:
                    break
                await self._wait_change()
                continue
            room = self._room()
            if not outbox or room <= 0 or (window.held and room < min(low, len(outbox))):
                await self._wait_change()
                continue
            if not len(window):  # the first outstanding: the ack timeout runs from now
                session.heard_at = trio.current_time()
            parts: list[bytes] = []
            add = window.add
            popleft = outbox.popleft
            entries = 0
            for _ in range(min(room, len(outbox))):
                item, data = popleft()
                entries += item[2]
                parts.append(b"%d syslog %d " % (add(item, data), len(data)))
                parts.append(data)
                parts.append(b"\n")
            self._outbox_entries -= entries
            self._outbox_room.unpark_all()
            await session.send(b"".join(parts))
        txnr, frame = window.command("close")
        session.close_txnr = txnr
        session.heard_at = trio.current_time()
        session.closing = True
        await session.send(frame)
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await session.closed.wait()

    async def _relp_acks(self, session: _Session, parser: ResponseParser) -> None:
        while True:
            data = await session.recv()
            if not data:
                raise _LinkLost("the receiver closed the connection")
            session.heard_at = trio.current_time()
            if self._take_acks(session, parser, data):
                return

    async def _relp_watchdog(self, session: _Session) -> None:
        """The read timeout on acknowledgements: a session with messages (or its
        close) outstanding and nothing received for ``ack_timeout_s`` is given up."""
        timeout = self.config.ack_timeout_s
        window = self._window
        while True:
            await trio.sleep(min(1.0, timeout / 4))
            waiting = len(window) or session.closing
            if waiting and trio.current_time() - session.heard_at > timeout:
                raise _LinkLost(f"no acknowledgement within {timeout:g} s")

    def _take_acks(self, session: _Session, parser: ResponseParser, data: bytes) -> bool:
        """Account for the responses in ``data``; True when the close was answered."""
        window = self._window
        parser.feed(data)
        lost: str | None = None
        while True:
            oks = parser.take_oks()
            # librelp answers close with a bare rsp; another server may say 200 OK
            if session.closing and session.close_txnr in oks:
                oks.remove(session.close_txnr)
                session.closed.set()
            for txnr in oks:
                window.ack(txnr)
            event = parser.next_event()
            if event is None:
                break
            if isinstance(event, ServerClose):
                lost = "the receiver closed the session (serverclose)"
                break
            if event.txnr == session.close_txnr:
                session.closed.set()
                break
            if not event.ok:
                code = "no code" if event.code is None else event.code
                lost = f"the receiver answered {code} {event.text}".rstrip()
                break
            window.ack(event.txnr)
        done = window.pop_acked()
        if done:
            self._delivered(done)
            self._session_good(session)
            self._wake()
        if lost is not None:
            raise _LinkLost(lost)
        return session.closed.is_set()

    # ------------------------------------------------------------------ TCP

    async def _tcp_session(self, session: _Session) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_guard, session, self._tcp_watch)
            nursery.start_soon(self._stable, session)
            await _guard(session, self._tcp_send)
            nursery.cancel_scope.cancel()

    async def _tcp_send(self, session: _Session) -> None:
        outbox = self._outbox
        sent = self._sent
        window = self.config.window
        if sent:  # written before the last connection broke: maybe lost, so again
            await self._tcp_write(session, b"".join(b"%d %s" % (len(d), d) for _, d in sent))
        while not self._ending():
            if not outbox:
                await self._wait_change()
                continue
            parts: list[bytes] = []
            done: list[Item] = []
            entries = 0
            for _ in range(min(TCP_BATCH, len(outbox))):
                message = outbox.popleft()
                item, data = message
                entries += item[2]
                parts.append(b"%d " % len(data))
                parts.append(data)
                sent.append(message)
                if len(sent) > window:
                    done.append(sent.popleft()[0])
            self._outbox_entries -= entries
            self._outbox_room.unpark_all()
            await self._tcp_write(session, b"".join(parts))
            if done:
                self._delivered(done)  # saved at once: the RELP window is empty
        # the end: our end of stream, then the receiver's, after it read everything
        assert session.stream is not None
        session.closing = True
        await session.stream.send_eof()
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await session.closed.wait()
        if not session.closed.is_set():
            raise _LinkLost(
                f"the receiver did not close the connection within {CLOSE_TIMEOUT_S:g} s"
            )
        if sent:
            self._delivered([item for item, _ in sent])
            sent.clear()

    async def _tcp_write(self, session: _Session, data: bytes) -> None:
        with trio.move_on_after(self.config.ack_timeout_s) as scope:
            await session.send(data)
        if scope.cancelled_caught:
            raise _LinkLost(f"the receiver read nothing for {self.config.ack_timeout_s:g} s")

    async def _tcp_watch(self, session: _Session) -> None:
        """A TCP receiver sends nothing: what comes is its end of stream."""
        while await session.recv():
            pass
        if not session.closing:
            raise _LinkLost("the receiver closed the connection")
        session.closed.set()


async def _guard(session: _Session, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run a task of ``session``; whatever ends the session ends it (session.fail)."""
    try:
        await fn(session, *args)
    except _LinkLost as exc:
        session.fail(str(exc))
    except RelpError as exc:
        session.fail(str(exc))
    except _BROKEN as exc:
        session.fail(_describe(exc))


async def run_shipper(
    config: ShipConfig,
    memlogd: str | Connector,
    *,
    task_status: trio.TaskStatus[Shipper] = trio.TASK_STATUS_IGNORED,
) -> ShipResult:
    """Run a :class:`Shipper` (``task_status.started`` gets it, for :meth:`Shipper.stop`)."""
    return await Shipper(config, memlogd).run(task_status=task_status)
