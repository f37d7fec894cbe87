"""Subscription's logic sans I/O (memlogd.client.session): the phases, the
cursor, resuming, the instance-change rule, gaps, the upstream fallback and
the backoff, against a model of memlogd (restarts of the same instance or a
new one, entries overwritten before they were read, a memlogd that refuses
mode 3), with any chunking of the bytes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memlogd.client.session import Phase, SubscriptionSession
from memlogd.errors import ConnectError, NotExtendedError, RequestRefusedError
from memlogd.wire import protocol as proto
from memlogd.wire.events import Connected, Disconnected, Entries, Event, Gap, Restarted, Waiting
from memlogd.wire.protocol import Cursor, Header, LogEntry, QueryRequest
from tests.wire import encode_entry

pytestmark = pytest.mark.unit

MIN_S, MAX_S, HEADER_S = 0.05, 0.4, 0.5
FOLLOW = QueryRequest(dump=True, follow=True)


def new_session(request: QueryRequest = FOLLOW, **kw: object) -> SubscriptionSession:
    args: dict[str, object] = {
        "cursor": None,
        "retry": True,
        "fallback": True,
        "upstream": False,
        "header_timeout_s": HEADER_S,
        "retry_min_s": MIN_S,
        "retry_max_s": MAX_S,
    }
    args.update(kw)
    return SubscriptionSession(request, **args)  # type: ignore[arg-type]


def take(session: SubscriptionSession) -> list[Event]:
    out = list(session.events)
    session.events.clear()
    return out


def entry(seq: int | None, msg: str = "m", source: str = "svc") -> LogEntry:
    return LogEntry(1_700_000_000_000_000_000 + (seq or 0), source, msg, seq)


def answer(instance: str, first: int, next_: int, entries: list[LogEntry]) -> bytes:
    return proto.encode_header(Header(instance, first, next_)) + b"".join(
        encode_entry(e) for e in entries
    )


REFUSED = ConnectError("/q", "no such file")


# ------------------------------------------------------------------ single transitions


def test_backoff_doubles_up_to_the_maximum_and_waiting_says_first_once() -> None:
    session = new_session()
    delays, firsts = [], []
    for _ in range(6):
        assert session.phase is Phase.CONNECT
        session.waited()
        session.connect_failed(REFUSED)
        [waiting] = take(session)
        assert isinstance(waiting, Waiting) and waiting.error is REFUSED
        firsts.append(waiting.first)
        delays.append(session.delay)
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert firsts == [True, False, False, False, False, False]
    session.waited()
    session.connected()
    session.sent()
    session.received(answer("i-1", 1, 1, []))
    assert take(session) == [Connected(Header("i-1", 1, 1), None)]
    session.ended("memlogd closed the connection")
    assert take(session) == [Disconnected("memlogd closed the connection")]
    assert session.delay == 0.0  # it answered: reconnect at once
    session.connect_failed(REFUSED)
    assert take(session) == [Waiting(REFUSED, first=True)] and session.delay == MIN_S


def test_a_connection_that_ends_before_its_answer_backs_off() -> None:
    session = new_session()
    session.connected()
    session.sent()
    session.received(answer("i-1", 1, 1, []))
    session.ended("memlogd closed the connection")
    assert session.delay == 0.0
    for want in (0.05, 0.1, 0.2):
        session.connected()
        session.sent()
        session.received(b'{"memlogd":')  # a worker killed in the middle of the header
        session.ended("memlogd closed the connection")
        assert session.phase is Phase.CONNECT and session.delay == want
        session.waited()
    assert [type(e) for e in take(session)] == [Connected] + [Disconnected] * 4


def test_without_retry_a_connect_error_is_raised_and_the_session_ends() -> None:
    session = new_session(retry=False)
    with pytest.raises(ConnectError):
        session.connect_failed(REFUSED)
    assert session.phase is Phase.DONE


def test_the_request_resumes_after_the_cursor() -> None:
    session = new_session(QueryRequest(dump=False, follow=True, tail=5), cursor=Cursor("i-1", 7))
    data = session.connected()
    assert data[:1] == b"\x03"
    assert proto.parse_request(data[1:-1]) == QueryRequest(
        dump=True, follow=True, after_seq=7, tail=None
    )


def test_a_refusal_is_raised() -> None:
    session = new_session()
    session.connected()
    session.sent()
    with pytest.raises(RequestRefusedError, match="no"):
        session.received(proto.encode_error("no"))
    assert session.phase is Phase.DONE


def test_a_dump_ends_with_the_connection() -> None:
    session = new_session(QueryRequest(), retry=False)
    session.connected()
    session.sent()
    session.received(answer("i-1", 3, 5, [entry(3), entry(4)]))
    session.ended("memlogd closed the connection")
    assert take(session) == [Connected(Header("i-1", 3, 5)), Entries([entry(3), entry(4)])]
    assert session.phase is Phase.DONE and session.cursor == Cursor("i-1", 4)


def test_a_silent_memlogd_is_probed_in_base_mode_then_used_as_upstreams() -> None:
    session = new_session(QueryRequest(dump=True, follow=True, sources=("a*",)))
    session.connected()
    session.sent()
    assert session.answer_timeout_s == HEADER_S - session.probe_grace_s
    session.answer_timed_out()
    assert session.phase is Phase.PROBE and session.base_request == b"\x02"
    session.probe_answered(base=True)
    session.received(encode_entry(entry(None, source="abc")))
    session.received(encode_entry(entry(None, source="xyz")))
    assert take(session) == [Connected(None), Entries([entry(None, source="abc")])]
    assert session.upstream and session.cursor is None


def test_a_slow_memlogd_wins_the_probe_and_stays_extended() -> None:
    session = new_session()
    session.connected()
    session.sent()
    session.answer_timed_out()
    session.probe_answered(base=False)
    assert session.phase is Phase.ANSWER and session.answer_timeout_s is None
    session.received(answer("i-1", 1, 2, [entry(1)]))
    assert take(session) == [Connected(Header("i-1", 1, 2)), Entries([entry(1)])]
    assert not session.upstream and session.answer_timeout_s is None


def test_without_fallback_silence_is_not_extended() -> None:
    session = new_session(fallback=False)
    session.connected()
    session.sent()
    with pytest.raises(NotExtendedError, match="no answer to the extended query"):
        session.answer_timed_out()
    session = new_session(fallback=False)
    session.connected()
    session.sent()
    session.ended("memlogd closed the connection")  # once: asked again
    session.connected()
    session.sent()
    with pytest.raises(NotExtendedError, match="closed the extended query without answering"):
        session.ended("memlogd closed the connection")


def test_a_memlogd_that_closes_on_mode_3_is_asked_again_in_base_mode() -> None:
    """Twice in a row, as upstream's does every time (once is ours: the next test)."""
    session = new_session()
    for _ in range(2):
        assert session.connected()[:1] == b"\x03"
        session.sent()
        session.ended("memlogd closed the connection")
    assert session.phase is Phase.CONNECT and session.upstream and take(session) == []
    assert session.delay == 0.0
    assert session.connected() == b"\x02"


@pytest.mark.parametrize("said", [b"", b'{"memlogd":'], ids=["nothing", "half a header"])
def test_a_worker_killed_as_it_took_the_very_first_query_is_not_taken_for_upstreams(
    said: bytes,
) -> None:
    """Its connection ends without a header (and without a word, or in the middle
    of the header): the query is asked again, and the next worker's answer is
    followed in extended mode; so its cursor holds across the next kill, and the
    ring is not written again (the keeper test's logwrite wrote each line twice)."""
    session = new_session()
    session.connected()
    session.sent()
    if said:
        session.received(said)
    session.ended("memlogd closed the connection")
    assert session.phase is Phase.CONNECT and not session.upstream and take(session) == []
    assert session.delay == 0.0
    assert session.connected()[:1] == b"\x03"
    session.sent()
    session.received(answer("i-1", 1, 3, [entry(1), entry(2)]))
    assert take(session) == [Connected(Header("i-1", 1, 3)), Entries([entry(1), entry(2)])]
    session.ended("memlogd closed the connection")  # the next worker killed too
    assert take(session) == [Disconnected("memlogd closed the connection")]
    request = session.connected()
    assert proto.parse_request(request[1:-1]).after_seq == 2  # resumed, not the whole ring


def test_calls_out_of_phase_are_refused() -> None:
    session = new_session()
    with pytest.raises(RuntimeError, match="CONNECT, not ANSWER or STREAM"):
        session.received(b"x\n")


# ------------------------------------------------------------------ the model


@dataclass
class Memlogd:
    """The model: one daemon instance's ring, and whether it can be reached."""

    instance: str = "i-1"
    first_seq: int = 1
    next_seq: int = 1
    up: bool = True
    upstream: str | None = None  # "closes" or "silent" on mode 3
    entries: dict[tuple[str, int], LogEntry] = field(default_factory=dict)
    instances: int = 1

    def write(self, count: int) -> None:
        for _ in range(count):
            seq = self.next_seq
            self.entries[(self.instance, seq)] = entry(seq, f"{self.instance}/{seq}")
            self.next_seq += 1

    def entry(self, seq: int) -> LogEntry:
        return self.entries[(self.instance, seq)]


@dataclass
class Connection:
    """memlogd's side of one query connection."""

    instance: str
    extended: bool
    next_seq: int  # the next entry the server will queue
    out: bytes = b""  # queued, not yet received by the client
    closed: bool = False  # no more bytes after ``out``


class SubscriptionModel(RuleBasedStateMachine):
    """The session as a follower with retry (logship's, logwrite's), driven
    as its trio driver would drive it, against :class:`Memlogd`."""

    @initialize(
        upstream=st.sampled_from([None, None, None, "closes", "silent"]),
        cursor=st.booleans(),
        written=st.integers(0, 5),
        dump=st.booleans(),
    )
    def start(self, upstream: str | None, cursor: bool, written: int, dump: bool) -> None:
        self.memlogd = Memlogd(upstream=upstream)
        self.memlogd.write(written)
        start = Cursor("i-1", min(written, 2)) if cursor and upstream is None else None
        self.dump = dump
        self.restarted = False  # a new instance was seen: its whole ring is asked for
        self.holes: set[int] = set()  # seqs skipped by the entries of this chunk
        self.head_gap: int | None = None  # a new instance's overwritten head: its gap's last
        self.session = new_session(QueryRequest(dump=dump, follow=True), cursor=start)
        self.conn: Connection | None = None
        self.failures = 0  # connection attempts failed in a row
        self.instance: str | None = start.instance if start else None
        self.last: int | None = start.seq if start else None  # the consumer's last seq
        self.waiting = 0  # Waiting events in a row (an outage)
        self.failed = 0  # attempts in a row that got no answer: the backoff
        self.answered = False
        self.ended_unanswered = False  # a very first query ended without a header
        self.conn_answered = False  # the current connection's answer started

    # ---------------------------------------------------------------- memlogd's doing

    @rule(count=st.integers(1, 5))
    def write(self, count: int) -> None:
        self.memlogd.write(count)

    @rule(count=st.integers(1, 4))
    def overwrite(self, count: int) -> None:
        """The ring drops its oldest entries (a reader behind gets a gap)."""
        m = self.memlogd
        m.first_seq = min(m.next_seq, m.first_seq + count)

    @rule(count=st.integers(1, 5))
    def overrun(self, count: int) -> None:
        """A burst a whole ring long: a reader not sent it yet loses all but the last."""
        m = self.memlogd
        m.write(count + 1)
        m.first_seq = m.next_seq - 1

    @rule(count=st.integers(1, 4))
    def server_sends(self, count: int) -> None:
        conn = self.conn
        if conn is None or conn.closed:
            return
        m = self.memlogd
        if m.upstream is not None:
            return  # base mode: the dump at accept (a follow's later lines not modelled)
        if conn.next_seq < m.first_seq:  # what it asked for is gone
            conn.out += proto.encode_dropped(conn.next_seq, m.first_seq - conn.next_seq)
            conn.next_seq = m.first_seq
        stop = min(m.next_seq, conn.next_seq + count)
        conn.out += b"".join(encode_entry(m.entry(s)) for s in range(conn.next_seq, stop))
        conn.next_seq = stop

    @rule(keep=st.integers(0, 80), new_instance=st.booleans())
    def restart(self, keep: int, new_instance: bool) -> None:
        """The worker dies (a line may be cut short); the keeper keeps the
        instance, or memlogd starts afresh as a new one."""
        if not self.unanswered_ok():
            return
        if self.conn is not None:
            self.conn.out = self.conn.out[:keep]
            self.conn.closed = True
        m = self.memlogd
        if new_instance:
            m.instances += 1
            m.instance = f"i-{m.instances}"
            m.first_seq = m.next_seq = 1

    def unanswered_ok(self) -> bool:
        """Whether a connection may end now: a very first query that ends
        unanswered once (a worker killed as it took it) is asked again; twice,
        it is taken for upstream's memlogd (SPEC), which is not what this part
        of the model is about."""
        if self.answered or self.conn is None or self.memlogd.upstream is not None:
            return True
        if self.ended_unanswered:
            return False
        self.ended_unanswered = True
        return True

    @rule()
    def go_down(self) -> None:
        if not self.unanswered_ok():
            return
        self.memlogd.up = False
        if self.conn is not None:
            self.conn.closed = True

    @rule()
    def come_up(self) -> None:
        self.memlogd.up = True

    # ---------------------------------------------------------------- the driver

    @rule(cut=st.integers(1, 300))
    def drive(self, cut: int) -> None:
        """One step of the trio driver: what the phase asks for."""
        session, m = self.session, self.memlogd
        phase = session.phase
        if phase is Phase.CONNECT:
            if session.delay:
                session.waited()
            if not m.up:
                self.failures += 1
                session.connect_failed(REFUSED)
                return
            data = session.connected()
            self.accept(data)
            session.sent()
        elif phase is Phase.PROBE:
            assert m.upstream == "silent"
            if not m.up:
                session.probe_failed()
                return
            base = self.base_answer()
            session.probe_answered(base=True)
            self.conn = base
        elif phase in (Phase.ANSWER, Phase.STREAM):
            conn = self.conn
            assert conn is not None
            if conn.out:
                data, conn.out = conn.out[:cut], conn.out[cut:]
                session.received(data)
            elif conn.closed or (not conn.extended and m.upstream == "closes"):
                self.conn = None
                session.ended("memlogd closed the connection")
            elif phase is Phase.ANSWER and session.answer_timeout_s is not None:
                session.answer_timed_out()
        if session.phase is Phase.CONNECT:
            self.conn = None  # the driver drops its connection

    def accept(self, data: bytes) -> None:
        m = self.memlogd
        self.conn_answered = False
        if data[:1] != b"\x03":
            self.conn = self.base_answer()
            return
        if m.upstream == "closes":
            self.conn = Connection(m.instance, True, 0, closed=True)
            return
        if m.upstream == "silent":
            self.conn = Connection(m.instance, True, 0)
            return
        request = proto.parse_request(data[1:-1])
        header = proto.encode_header(Header(m.instance, m.first_seq, m.next_seq))
        if request.after_seq is not None:
            start = request.after_seq + 1
        else:
            start = m.first_seq if request.dump else m.next_seq
        self.conn = Connection(m.instance, True, start, out=header)

    def base_answer(self) -> Connection:
        m = self.memlogd
        dump = b"".join(
            encode_entry(m.entry(s)._replace(seq=None)) for s in range(m.first_seq, m.next_seq)
        )
        return Connection(m.instance, False, m.next_seq, out=dump)

    # ---------------------------------------------------------------- the consumer

    @invariant()
    def events_are_exact(self) -> None:
        for event in take(self.session):
            self.check(event)
        assert not self.holes  # every seq skipped is in a gap of the same chunk
        self.cursor_is_the_last_handed_out()

    def check(self, event: Event) -> None:
        m = self.memlogd
        if isinstance(event, Waiting):
            assert event.first == (self.waiting == 0)
            self.waiting += 1
            self.failed += 1
            assert self.session.delay == pytest.approx(min(MIN_S * 2 ** (self.failed - 1), MAX_S))
        elif isinstance(event, Disconnected):
            if self.conn_answered:  # reconnect at once
                assert self.session.delay == 0
            else:  # it answered nothing: back off
                self.failed += 1
                want = min(MIN_S * 2 ** (self.failed - 1), MAX_S)
                assert self.session.delay == pytest.approx(want)
        elif isinstance(event, Connected):
            self.waiting = self.failed = 0
            self.conn_answered = True
            self.answered = True
            if m.upstream is not None:
                assert event.header is None and self.session.upstream
                return
            assert event.header is not None
            assert not self.session.upstream
            if event.header.instance != self.instance:
                assert event.after_seq is None
                self.instance = event.header.instance
                whole = self.dump or self.restarted
                self.last = (event.header.first_seq if whole else event.header.next_seq) - 1
                if self.restarted and event.header.first_seq > 1:
                    # read from after_seq 0: told of the entries overwritten before
                    self.head_gap = event.header.first_seq - 1
            else:
                assert event.after_seq == self.last
        elif isinstance(event, Restarted):
            assert event.old_instance == self.instance
            self.instance = None
            self.restarted = True
        elif isinstance(event, Entries):
            if m.upstream is not None:
                assert all(e.seq is None for e in event.entries)
                return
            assert self.last is not None and self.instance is not None
            for e in event.entries:
                assert e.seq is not None and e.seq > self.last  # no duplicate
                self.holes |= set(range(self.last + 1, e.seq))  # a gap must follow
                assert e == m.entries[(self.instance, e.seq)]
                self.last = e.seq
        elif isinstance(event, Gap):
            if self.head_gap is not None and event.seq == 1:
                # at least what the header said was gone (more, if overwritten since)
                assert event.last >= self.head_gap
                assert self.holes <= set(range(1, event.last + 1))
                self.head_gap = None
                self.holes.clear()
                assert self.last is not None
                self.last = max(self.last, event.last)
                return
            assert self.last is not None
            # the runs of a chunk come as one gap after its entries: it covers
            # what they skipped, and goes on from the last of them
            assert self.holes <= set(range(event.seq, event.last + 1))
            assert event.seq == self.last + 1 or (self.holes and event.seq == min(self.holes))
            self.holes.clear()
            self.last = max(self.last, event.last)
        else:
            raise AssertionError(f"unexpected event {event!r}")

    def cursor_is_the_last_handed_out(self) -> None:
        session = self.session
        if self.memlogd.upstream is not None and session.upstream:
            assert session.cursor is None
        elif session.phase is Phase.STREAM and self.instance is not None:
            assert self.last is not None
            assert session.cursor == Cursor(self.instance, self.last)

    @precondition(lambda self: self.memlogd.upstream is None)
    @rule()
    def settle(self) -> None:
        """memlogd up and quiet: the driver catches up with every entry."""
        m = self.memlogd
        m.up = True
        for _ in range(200):
            self.drive(10_000)
            self.events_are_exact()
            self.server_sends(10_000)
            conn = self.conn
            if (
                self.session.phase is Phase.STREAM
                and conn is not None
                and not conn.out
                and not conn.closed
                and conn.instance == m.instance
                and conn.next_seq == m.next_seq
            ):
                break
        assert self.instance == m.instance
        assert self.last == m.next_seq - 1


TestSubscriptionModel = SubscriptionModel.TestCase
TestSubscriptionModel.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ------------------------------------------------------------------ chunking


@given(st.lists(st.integers(0, 10**6)), st.integers(0, 20))
def test_any_chunking_gives_the_same_events(cuts: list[int], count: int) -> None:
    data = answer("i-1", 1, count + 1, [entry(s) for s in range(1, count + 1)])

    def events(chunks: list[int]) -> list[LogEntry | Event]:
        session = new_session()
        session.connected()
        session.sent()
        start = 0
        for cut in sorted({c % (len(data) + 1) for c in chunks} | {len(data)}):
            if cut > start:
                session.received(data[start:cut])
            start = cut
        out: list[LogEntry | Event] = []
        for event in take(session):
            out += event.entries if isinstance(event, Entries) else [event]
        assert session.cursor == Cursor("i-1", count)
        return out

    assume(len(data) > 0)
    assert events(cuts) == events([])
