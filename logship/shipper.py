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
  :class:`~logship.outbox.Outbox` (pure: at most ``OUTBOX_MAX`` messages
  waiting, plus one batch; the window; the cursor; when to save the state);
* the *link* keeps a session with the receiver: it connects with backoff
  (one warning per outage) and runs one session of its transport
  (:class:`~logship.transport.RelpTransport` or
  :class:`~logship.transport.TcpTransport`) per connection, which sends what
  the outbox has room for and tells it what was delivered; the state is saved
  when the outbox says it is due;
* the *syncer* fsyncs the state file at most once a second.

Every message carries its *item*, ``(instance, seq, entries)``: the cursor it
completes and whether it is an entry (1) or a gap (0).  An item is delivered
when the receiver acknowledged it and everything before it (RELP); over TCP,
when ``window`` later messages were written after it, or the receiver closed
the connection after our end of stream.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from logship.messages import MessageFormatter
from logship.outbox import OUTBOX_MAX, Outbox
from logship.relp import DEFAULT_WINDOW, MAX_WINDOW
from logship.rfc5424 import DEFAULT_SD_ID, Rfc5424Error, validate_sd_id
from logship.state import CursorError, StateFile
from logship.target import Target, TargetError, parse_target
from logship.transport import RelpTransport, Session, TcpTransport, Transport, describe, guard
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
COUNT_TIMEOUT_S = 5.0  # --once, after its timeout: reading the rest of the dump to count it
WARN_PERIOD_S = 30.0  # one warning of a kind per period (outages of a flapping receiver)

__all__ = [
    "ACK_TIMEOUT_S",
    "ONCE_TIMEOUT_S",
    "OUTBOX_MAX",
    "ShipConfig",
    "ShipResult",
    "Shipper",
    "run_shipper",
]


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


class Shipper:
    """One run of logship (see the module docstring); :func:`run_shipper` runs it."""

    def __init__(self, config: ShipConfig, memlogd: str | Connector) -> None:
        self.config = config
        self.memlogd = memlogd
        self.url = str(config.receiver)
        self.ack_timeout_s = config.ack_timeout_s
        hostname = config.hostname if config.hostname is not None else socket.gethostname()
        self.formatter = MessageFormatter(hostname, config.sd_id)
        self.state = StateFile(config.state_file) if config.state_file else None
        relp = config.receiver.scheme == "relp"
        # RELP saves the state every half window delivered; TCP at every delivery
        self.outbox = Outbox(
            config.window, save_every=None if relp else 1, stateful=self.state is not None
        )
        self.transport: Transport = RelpTransport(self) if relp else TcpTransport(self)
        self.receiver_error: str | None = None
        # each kind at most once per WARN_PERIOD_S (outages of a flapping receiver)
        self._diag = LimitedLog(log, WARN_PERIOD_S)
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
        self.connected = False  # a session with the receiver is open
        self._outage_attempts = 0
        self._reader_scope = trio.CancelScope()
        self._ship_scope = trio.CancelScope()
        self._failure: MemlogdError | None = None
        self._started = False

    @property
    def cursor(self) -> Cursor | None:
        """Delivered up to here (with everything before)."""
        return self.outbox.cursor

    @property
    def delivered(self) -> int:
        return self.outbox.delivered

    @property
    def gaps(self) -> int:
        return self.outbox.gaps

    def status(self) -> dict[str, Any]:
        """The ship role's state in memlogd's stats (docs/memlogd.md, "Roles")."""
        outage = self._outage_start
        return {
            "to": self.url,
            "connected": self.connected,
            "acked_seq": None if self.cursor is None else self.cursor.seq,
            "outage_s": None if outage is None else round(time.monotonic() - outage, 1),
            "delivered": self.delivered,
            "sent_again": self.outbox.sent_again,
        }

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

    # the transport's view (logship.transport.Host)

    async def wait_change(self) -> None:
        """Until the outbox, the input or stop changed (:meth:`_wake`)."""
        await self._changed.park()

    def ending(self) -> bool:
        """No new message is to be sent in this session (stop, or the whole dump sent)."""
        return self._stopping or (self.config.once and self._input_done and not self.outbox.waiting)

    def taken(self) -> None:
        self._outbox_room.unpark_all()

    def delivered_now(self, session: Session) -> None:
        if self.outbox.save_due:
            self._save_state()
        self.session_good(session)
        self._wake()

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
        self.outbox.cursor = self._load_state()
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
        if self.config.once and not self._input_done:
            # the rest of the dump is counted (not after stop(): the reader is gone)
            counted = False if self._stopping else await self._count_rest()
        undelivered = self.outbox.undelivered() + self._uncounted
        # nothing left undelivered (after stop(): nothing read and not delivered)
        complete = complete and counted and undelivered == 0
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
        if self.outbox.in_flight:
            return False
        if self._stopping:
            return True
        return self.config.once and self._input_done and not self.outbox.waiting

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

    def _save_state(self) -> None:
        cursor = self.outbox.cursor
        assert cursor is not None
        self.outbox.saved()
        if self.state is None:
            return
        try:
            self.state.save(cursor)
        except OSError as exc:
            self._diag.emit(
                "warning", "state_save_failed", path=self.state.path, error=describe(exc)
            )

    async def _sync_state(self) -> None:
        state = self.state
        assert state is not None
        while True:
            await trio.sleep(state.sync_period_s)
            try:
                state.sync()
            except OSError as exc:
                self._diag.emit(
                    "warning", "state_sync_failed", path=state.path, error=describe(exc)
                )

    def _save_final(self) -> None:
        if self.state is None:
            return
        try:
            self.state.close(self.cursor)
        except OSError as exc:
            log.warning("state_save_failed", path=self.state.path, error=describe(exc))

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
        data = self.formatter.messages(instance, entries)  # every seq is set (extended)
        self.outbox.push(instance, [entry.seq for entry in entries], data)  # type: ignore[misc]
        self._wake()
        while self.outbox.full and not self._counting:
            await self._outbox_room.park()

    def _gap(self, seq: int, count: int, last: int) -> None:
        instance = self._instance
        assert instance is not None
        self._diag.emit("warning", "entries_lost", count=count, first_seq=seq, instance=instance)
        data = self.formatter.gap(time_ns=time.time_ns(), instance=instance, seq=seq, dropped=count)
        if not self._counting:
            self.outbox.push_gap(instance, last, data)  # the chunk's last missing seq
            self._wake()

    def _on_event(self, event: object) -> None:
        if isinstance(event, Gap):
            self._gap(event.seq, event.count, event.last)
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
        elif isinstance(event, Restarted) and event.next_seq is not None:
            self.outbox.cursor = None  # never saved again
            log.warning(
                "state_ignored",
                path=None if self.state is None else self.state.path,
                reason=f"its seq {event.cursor_seq} is beyond memlogd's next_seq {event.next_seq}",
                consequence="forwarding the ring from its first entry",
            )
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
            while not (self.outbox.waiting or self._input_done or self._stopping):
                await self.wait_change()
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

    def session_good(self, session: Session) -> None:
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

    async def _session(self) -> Session:
        session = Session()
        config = self.config
        with session.scope:
            try:
                with trio.fail_after(config.ack_timeout_s):
                    stream = await trio.open_tcp_stream(config.receiver.host, config.receiver.port)
            except trio.TooSlowError:
                session.fail(f"no connection within {config.ack_timeout_s:g} s")
                return session
            except OSError as exc:
                session.fail(describe(exc))
                return session
            session.stream = stream
            self.connected = True
            try:
                await guard(session, self.transport.session)
            finally:
                self.connected = False
                stream.socket.close()
        return session


async def run_shipper(
    config: ShipConfig,
    memlogd: str | Connector,
    *,
    task_status: trio.TaskStatus[Shipper] = trio.TASK_STATUS_IGNORED,
) -> ShipResult:
    """Run a :class:`Shipper` (``task_status.started`` gets it, for :meth:`Shipper.stop`)."""
    return await Shipper(config, memlogd).run(task_status=task_status)
