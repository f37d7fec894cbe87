"""What a :class:`memlogd.client.Subscription` decides, sans I/O. PURE: no trio.

:class:`SubscriptionSession` is the whole logic between a consumer and
memlogd's answers (docs/protocol.md, "Reading answers"): the request to send on
each connection, the ``(instance, seq)`` cursor, resuming after a lost
connection, the instance-change rule, the fallback to upstream's base modes,
and the backoff between attempts.  It does no I/O and keeps no clock: the
driver (:class:`memlogd.client.Subscription`, trio) looks at :attr:`phase`,
does what it says, and reports back what happened; the session then has
:attr:`events` for the consumer.  As h11 is for HTTP, so it is tested without
a socket (tests/unit/test_subscription_session.py).

The phases and what moves between them::

    CONNECT --connected()/sent()--> ANSWER --header--> STREAM
       ^  \\--connect_failed() (retry: Waiting, backoff)
       |                           ANSWER --answer_timed_out()--> PROBE
       |                           PROBE  --probe_answered(base)--> STREAM (upstream)
       |                           PROBE  --probe_answered(extended)/probe_failed()--> ANSWER
       +-- ended()/send_failed(): Disconnected (retry), Restarted, or to upstream
       +-- ended() of a very first query without a header, once: asked again
    any --close(), end of a dump, no retry, a refusal--> DONE

The driver's part in each phase:

* CONNECT: wait :attr:`delay` seconds (then :meth:`waited`), connect; on
  failure :meth:`connect_failed`, else send :meth:`connected`'s bytes and
  call :meth:`sent` (or :meth:`send_failed`);
* ANSWER and STREAM: receive; :meth:`received` with the bytes, or
  :meth:`ended` at the end of stream (or a broken connection).  In ANSWER,
  when :attr:`answer_timeout_s` is set, a receive that gets nothing within it
  is :meth:`answer_timed_out`.  A very first query whose connection ends
  without a header is asked again once: a worker of ours killed as it took
  it (or sent the header) ends it so; upstream's memlogd when it closes mode
  3 does so every time, and ended so twice without a word, the daemon is
  taken for upstream's;
* PROBE: open a second connection, send :attr:`base_request` on it, and race
  the two for the first bytes: :meth:`probe_answered` says which won (the
  driver keeps that connection and closes the other), :meth:`probe_failed`
  that the second connection could not be made;
* DONE: the iteration ends.

Whenever the phase goes back to CONNECT (or to DONE), the driver drops its
connection.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import replace
from operator import attrgetter

from memlogd.client.config import PROBE_GRACE_S
from memlogd.errors import ConnectError, NotExtendedError, RequestRefusedError
from memlogd.wire import protocol as proto
from memlogd.wire.answerparser import AnswerParser
from memlogd.wire.events import (
    Connected,
    Disconnected,
    Entries,
    Event,
    Gap,
    Restarted,
    Waiting,
)
from memlogd.wire.filters import ClientFilter
from memlogd.wire.protocol import Cursor

__all__ = ["Phase", "SubscriptionSession"]


_SEQ = attrgetter("seq")


def _all_entries_with_seq(answers: list[proto.Answer]) -> bool:
    """Whether every reply is an entry with a seq (checked in C, not per reply)."""
    return set(map(type, answers)) == {proto.LogEntry} and None not in map(_SEQ, answers)


class Phase(enum.Enum):
    CONNECT = "connect"  # no connection: make one, after `delay`
    ANSWER = "answer"  # the request sent, the answer not started (no header yet)
    PROBE = "probe"  # the extended query unanswered: a base-mode query races it
    STREAM = "stream"  # the answer started: reading entries
    DONE = "done"  # nothing more: the iteration ends


class SubscriptionSession:
    """One consumer's view of memlogd's log, across connections, sans I/O.

    The arguments are :class:`memlogd.client.Subscription`'s (which see);
    ``retry_min_s`` is the first delay after a failed attempt, doubled after
    each further one up to ``retry_max_s``, and back to ``retry_min_s`` once an
    answer starts.
    """

    def __init__(
        self,
        request: proto.QueryRequest,
        *,
        cursor: Cursor | None,
        retry: bool,
        fallback: bool,
        upstream: bool,
        header_timeout_s: float,
        retry_min_s: float,
        retry_max_s: float,
    ) -> None:
        if request.stats:
            raise ValueError("a subscription is for entries: use fetch_stats()")
        self.request = request
        self.cursor = cursor
        self.retry = retry
        self.fallback = fallback
        self.upstream = upstream  # base modes only: asked, or memlogd ignored mode 3
        self.header_timeout_s = header_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.phase = Phase.CONNECT
        self.events: deque[Event] = deque()  # for the consumer, in order
        self.delay = 0.0  # to wait before the next connection attempt
        self._backoff = retry_min_s
        self._filter = ClientFilter(request)
        self._parser = AnswerParser(extended=True)
        self._expect: str | None = None  # the instance the sent after_seq refers to
        self._after_seq: int | None = None  # the sent after_seq
        self._answered = False  # the current connection's answer started
        self._ever_answered = False
        self._closed_unanswered = 0  # very first extended queries that ended without a header
        self._heard = False  # the current connection's answer sent bytes
        self._outage = False  # connection attempts are failing
        self._restarted = False  # a new instance: its whole ring is asked for
        self._unbounded = False  # the next receive in ANSWER waits without a bound

    # -------------------------------------------------------------- what to do

    @property
    def answer_timeout_s(self) -> float | None:
        """In ANSWER: how long the next receive may wait before
        :meth:`answer_timed_out` (None: no bound).  Only the very first extended
        query is bounded: a memlogd that answered once is this project's."""
        if self.phase is not Phase.ANSWER or self._ever_answered or self._unbounded:
            return None
        return self.header_timeout_s - self.probe_grace_s

    @property
    def probe_grace_s(self) -> float:
        """In PROBE, how long the extended query may still answer after the
        base-mode one did (it is then taken): ours answers the extended query
        first, since it accepts connections in order, but the two answers of
        a memlogd slow to start may come in one poll, where either may be
        read first.  The probe is sent that much before the header timeout,
        so that against upstream's the fallback still takes that timeout."""
        return min(PROBE_GRACE_S, self.header_timeout_s / 5)

    @property
    def base_request(self) -> bytes:
        """The base-mode query (one mode byte) for this request."""
        return bytes([proto.QueryMode.base(dump=self.request.dump, follow=self.request.follow)])

    # -------------------------------------------------------------- CONNECT

    def waited(self) -> None:
        """The driver waited :attr:`delay`."""
        self.delay = 0.0

    def connect_failed(self, error: ConnectError) -> None:
        """memlogd could not be reached: ``error`` is raised again without
        ``retry``; with it, a :class:`Waiting` event and the backoff."""
        self._expect_phase(Phase.CONNECT)
        if not self.retry:
            self.phase = Phase.DONE
            raise error
        self.events.append(Waiting(error, first=not self._outage))
        self._outage = True
        self._back_off()

    def connected(self) -> bytes:
        """A connection is made: the bytes to send on it (the extended request,
        resuming after the cursor, or a base mode)."""
        self._expect_phase(Phase.CONNECT)
        self._after_seq = None
        self._expect = None
        if self.upstream:
            return self.base_request
        return proto.encode_request(self._next_request())

    def _next_request(self) -> proto.QueryRequest:
        """The original request, or the resumption after the cursor."""
        if self.cursor is None:
            if self._restarted:  # a new daemon: its whole ring (filtered) and its holes
                return replace(self.request, dump=True, tail=None, after_seq=0)
            return self.request
        self._expect = self.cursor.instance
        self._after_seq = self.cursor.seq
        return replace(self.request, dump=True, tail=None, after_seq=self.cursor.seq)

    def sent(self) -> None:
        """The request went out: read the answer."""
        self._expect_phase(Phase.CONNECT)
        extended = not self.upstream
        self._parser = AnswerParser(extended=extended)
        self._answered = False
        self._heard = False
        self._unbounded = False
        if extended:
            self.phase = Phase.ANSWER
        else:
            self._filter.reset()
            self._answer_started(None)

    def send_failed(self) -> None:
        """The connection broke before the request was sent."""
        self._expect_phase(Phase.CONNECT)
        self._lost("the connection broke before the request was sent")

    # -------------------------------------------------------------- ANSWER, STREAM

    def received(self, data: bytes) -> None:
        """Bytes of the answer (not empty: the end is :meth:`ended`)."""
        self._expect_phase(Phase.ANSWER, Phase.STREAM)
        self._unbounded = False
        self._heard = True
        self._take(self._parser.feed(data))

    def ended(self, reason: str) -> None:
        """The connection ended (end of stream, or broken: ``reason``)."""
        self._expect_phase(Phase.ANSWER, Phase.STREAM)
        self._unbounded = False
        parser = self._parser
        parser.close()  # a line cut short by a daemon that died while sending it
        if parser.extended and parser.header is None and not self._ever_answered:
            self._closed_unanswered += 1
            if self._closed_unanswered == 1:
                # ours closes it so only when its worker was killed as it took the
                # query (or sent the header): asked again, the next worker answers
                self.phase = Phase.CONNECT
                return
            if not self._heard:  # twice without a word: upstream's, which closes on mode 3
                self._to_upstream("memlogd closed the extended query without answering")
                return
        if not self.request.follow:
            self.events.extend(self._filter.finish())
            self.phase = Phase.DONE
            return
        self._lost(reason)

    def answer_timed_out(self) -> None:
        """No answer to the first extended query within :attr:`answer_timeout_s`:
        without ``fallback`` a :class:`NotExtendedError`; with it, PROBE."""
        self._expect_phase(Phase.ANSWER)
        if not self.fallback:
            self.phase = Phase.DONE
            raise NotExtendedError("no answer to the extended query (upstream's memlogd?)")
        self.phase = Phase.PROBE

    # -------------------------------------------------------------- PROBE

    def probe_failed(self) -> None:
        """The base-mode connection could not be made (memlogd gone meanwhile):
        the extended one says how it ends (one receive without a bound)."""
        self._expect_phase(Phase.PROBE)
        self.phase = Phase.ANSWER
        self._unbounded = True

    def probe_answered(self, base: bool) -> None:
        """The first bytes came on the base-mode connection (``base``: this is
        upstream's memlogd) or on the extended one (ours, just slow).  The
        driver then hands the bytes to :meth:`received` (or :meth:`ended`)."""
        self._expect_phase(Phase.PROBE)
        if not base:
            self.phase = Phase.ANSWER
            self._unbounded = True
            return
        self.upstream = True
        self.cursor = self._after_seq = None
        self._parser = AnswerParser(extended=False)
        self._filter.reset()
        self._answer_started(None)

    # -------------------------------------------------------------- any phase

    def close(self) -> None:
        """The consumer is done."""
        self.phase = Phase.DONE

    # -------------------------------------------------------------- inside

    def _expect_phase(self, *phases: Phase) -> None:
        if self.phase not in phases:
            names = " or ".join(p.name for p in phases)
            raise RuntimeError(f"subscription is in {self.phase.name}, not {names}")

    def _answer_started(self, header: proto.Header | None) -> None:
        self.phase = Phase.STREAM
        self._answered = self._ever_answered = True
        self._outage = False
        self._backoff = self.retry_min_s
        self.events.append(Connected(header, self._after_seq))

    def _back_off(self) -> None:
        self.delay = self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)

    def _lost(self, reason: str) -> None:
        """A connection ended: report it, then reconnect (retry) or stop."""
        self.events.append(Disconnected(reason))
        if not self.retry:
            self.phase = Phase.DONE
            return
        self.phase = Phase.CONNECT
        if not self._answered:
            self._back_off()  # it answered nothing: do not spin

    def _to_upstream(self, reason: str) -> None:
        if not self.fallback:
            self.phase = Phase.DONE
            raise NotExtendedError(
                f"{reason}: this memlogd does not speak the extended query (upstream's?)"
            )
        self.phase = Phase.CONNECT
        self.upstream = True
        self.cursor = self._after_seq = None

    def _take(self, answers: list[proto.Answer]) -> None:
        """Turn one chunk's replies into events, keeping the cursor."""
        if answers and _all_entries_with_seq(answers):  # the bulk of a follow: one batch
            self._emit(answers)  # type: ignore[arg-type]
            return
        entries: list[proto.LogEntry] = []
        events = self.events
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
                beyond = reply.instance == self._expect and (self._after_seq or 0) >= reply.next_seq
                if self._expect is not None and (reply.instance != self._expect or beyond):
                    if beyond:  # a cursor this instance never gave: not obeyed (SPEC 19)
                        events.append(
                            Restarted(self._expect, reply.instance, self._after_seq, reply.next_seq)
                        )
                    else:
                        events.append(Restarted(self._expect, reply.instance))
                    self.cursor = None
                    self._restarted = True
                    self.phase = Phase.CONNECT  # at once: its answer is for a stale cursor
                    return
                if self.cursor is None or self.cursor.instance != reply.instance:
                    # nothing read from this instance yet: the answer starts at the
                    # ring's first entry (a dump) or at its end (a follow)
                    dump = self.request.dump or self._restarted
                    start = (reply.first_seq if dump else reply.next_seq) - 1
                    self.cursor = Cursor(reply.instance, start)
                self._answer_started(reply)
            elif isinstance(reply, proto.ErrorReply):
                self.phase = Phase.DONE
                raise RequestRefusedError(reply.message)
            elif isinstance(reply, proto.Malformed):
                events.append(reply)
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
        self.events.append(gap)
        self._advance(gap.last)

    def _emit(self, entries: list[proto.LogEntry]) -> None:
        last = entries[-1].seq
        if last is not None:
            self._advance(last)
            self.events.append(Entries(entries))
        else:
            self.events.extend(self._filter.batch(entries))

    def _advance(self, seq: int) -> None:
        cursor = self.cursor
        if cursor is not None and seq > cursor.seq:
            self.cursor = Cursor(cursor.instance, seq)
