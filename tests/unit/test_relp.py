"""logship.relp: frames, the response parser, transaction numbers, the ack window."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from logship.relp import (
    DEFAULT_MAX_DATA,
    DEFAULT_WINDOW,
    MAX_TXNR,
    AckError,
    AckWindow,
    Frame,
    FrameParser,
    RelpError,
    RelpFrameError,
    RelpOpenError,
    RelpUsageError,
    Response,
    ResponseParser,
    ServerClose,
    ServerEvent,
    SessionStart,
    TxnrCounter,
    check_open_reply,
    encode_frame,
    next_txnr,
    open_frame,
    open_offers,
    parse_offers,
    parse_response,
    syslog_frame,
    syslog_frames,
)
from memlogd.errors import ProtocolError

pytestmark = pytest.mark.unit

# What rsyslog's imrelp (librelp) answers to our open: "200 OK", LF, its offers.
LIBRELP_OPEN_DATA = (
    b"200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
    b"commands=syslog"
)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    chunks, start = [], 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.integers(0, len(data)), max_size=12).map(lambda cuts: split_at(data, cuts))


def run_responses(
    chunks: list[bytes], max_data: int = DEFAULT_MAX_DATA
) -> tuple[list[ServerEvent], str | None, int]:
    """(events, the error message or None, bytes pending), draining after each chunk."""
    parser = ResponseParser(max_data)
    events: list[ServerEvent] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            events.extend(parser.events())
    except RelpFrameError as exc:
        return events, str(exc), -1
    return events, None, parser.pending


def run_frames(chunks: list[bytes], max_data: int) -> tuple[list[Frame], str | None]:
    parser = FrameParser(max_data)
    frames: list[Frame] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (frame := parser.next_frame()) is not None:
                frames.append(frame)
    except RelpFrameError as exc:
        return frames, str(exc)
    return frames, None


# --------------------------------------------------------------------------- encoding


def test_golden_frames():
    assert encode_frame(1, "syslog", b"hi") == b"1 syslog 2 hi\n"
    assert encode_frame(3, "close", b"") == b"3 close 0\n"
    assert encode_frame(3, "close") == b"3 close 0\n"
    assert encode_frame(0, "serverclose") == b"0 serverclose 0\n"
    assert encode_frame(MAX_TXNR, "rsp", b"200 OK") == b"999999999 rsp 6 200 OK\n"
    assert syslog_frame(7, b"a\nb") == b"7 syslog 3 a\nb\n"
    assert syslog_frame(12, b"<14>1 x") == b"12 syslog 7 <14>1 x\n"


def test_golden_open():
    offers = b"relp_version=0\nrelp_software=logship\ncommands=syslog"
    assert open_offers() == offers
    assert open_frame() == b"1 open 52 " + offers + b"\n"
    assert len(offers) == 52
    assert open_offers(("logship", "0.1.0", "https://example.org/x")) == (
        b"relp_version=0\nrelp_software=logship,0.1.0,https://example.org/x\ncommands=syslog"
    )
    assert open_frame(b"relp_version=0", txnr=5) == b"5 open 14 relp_version=0\n"


@pytest.mark.parametrize(
    ("txnr", "command", "data"),
    [
        (-1, "syslog", b"x"),
        (MAX_TXNR + 1, "syslog", b"x"),
        (1, "", b"x"),
        (1, "sys log", b"x"),
        (1, "sys1", b"x"),
        (1, "é", b"x"),
        (1, "a" * 33, b"x"),
        (1, "syslog\n", b"x"),
    ],
)
def test_encode_frame_refuses_what_relp_cannot_carry(txnr: int, command: str, data: bytes):
    with pytest.raises(RelpUsageError):
        encode_frame(txnr, command, data)


@pytest.mark.parametrize("software", [(), ("",), ("a,b",), ("a\nb",), ("x" * 256,)])
def test_open_offers_refuses_bad_values(software: tuple[str, ...]):
    with pytest.raises(RelpUsageError):
        open_offers(software)


def test_errors_are_protocol_errors():
    for cls in (RelpError, RelpFrameError, RelpOpenError, AckError, RelpUsageError):
        assert issubclass(cls, ProtocolError)
    assert issubclass(RelpUsageError, ValueError)


# --------------------------------------------------------------------------- frames

frames = st.builds(
    Frame,
    txnr=st.integers(0, MAX_TXNR),
    command=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=32
    ),
    data=st.binary(max_size=300),
)


@given(st.lists(frames, max_size=8), st.data())
def test_frames_round_trip_under_any_chunking(sent: list[Frame], data: st.DataObject):
    stream = b"".join(encode_frame(f.txnr, f.command, f.data) for f in sent)
    chunks = data.draw(chunkings(stream))
    assert run_frames(chunks, 300) == (sent, None)


@given(st.binary(max_size=200), st.data())
def test_frame_parser_any_bytes_any_chunking_same_outcome(stream: bytes, data: st.DataObject):
    """Garbage included: the outcome (frames, error) never depends on the chunks,
    and the only exception ever raised is RelpFrameError."""
    whole = run_frames([stream], 50)
    assert run_frames(data.draw(chunkings(stream)), 50) == whole
    assert run_frames([stream[i : i + 1] for i in range(len(stream))], 50) == whole


def test_frame_parser_keeps_a_partial_frame():
    parser = FrameParser()
    parser.feed(b"1 syslog 5 hel")
    assert parser.next_frame() is None
    assert parser.pending == 14
    parser.feed(b"lo\n2 close 0")
    assert parser.next_frame() == Frame(1, "syslog", b"hello")
    assert parser.next_frame() is None
    parser.feed(b"\n")
    assert parser.next_frame() == Frame(2, "close", b"")
    assert parser.pending == 0


def test_frame_parser_compacts_its_buffer():
    """Many frames consumed from one big feed: the buffer is cut from the front."""
    parser = FrameParser()
    body = b"x" * 1000
    stream = b"".join(encode_frame(i, "syslog", body) for i in range(1, 201)) + b"5 sys"
    parser.feed(stream)
    got = []
    while (frame := parser.next_frame()) is not None:
        got.append(frame)
    assert [f.txnr for f in got] == list(range(1, 201))
    assert all(f.data == body for f in got)
    assert parser.pending == 5
    parser.feed(b"log 0\n")
    assert parser.next_frame() == Frame(5, "syslog", b"")


# --------------------------------------------------------------------------- responses


def test_librelp_session_golden():
    stream = (
        b"1 rsp 93 " + LIBRELP_OPEN_DATA + b"\n"
        b"2 rsp 6 200 OK\n"
        b"3 rsp 20 500 command disabled\n"
        b"4 rsp 0\n"
        b"0 serverclose 0\n"
    )
    assert len(LIBRELP_OPEN_DATA) == 93
    events, error, pending = run_responses([stream])
    assert (error, pending) == (None, 0)
    assert events == [
        Response(
            1,
            200,
            "OK",
            b"relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
            b"commands=syslog",
        ),
        Response(2, 200, "OK", b""),
        Response(3, 500, "command disabled", b""),
        Response(4, None, "", b""),
        ServerClose(),
    ]
    first = events[0]
    assert isinstance(first, Response)
    assert check_open_reply(first) == {
        "relp_version": ("0",),
        "relp_software": ("librelp", "1.11.0", "http://librelp.adiscon.com"),
        "commands": ("syslog",),
    }
    assert [isinstance(e, Response) and e.ok for e in events] == [True, True, False, False, False]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", Response(9, None, "", b"")),
        (b"200 OK", Response(9, 200, "OK", b"")),
        (b"200 OK\n", Response(9, 200, "OK", b"")),
        (b"200 OK\nabc\ndef", Response(9, 200, "OK", b"abc\ndef")),
        (b"200", Response(9, 200, "", b"")),
        (b"200\nabc", Response(9, 200, "", b"abc")),
        (b"200 ", Response(9, 200, "", b"")),
        (b"500 error 7 on connect", Response(9, 500, "error 7 on connect", b"")),
        (b"200 \xff\n", Response(9, 200, "\ufffd", b"")),
    ],
)
def test_parse_response(data: bytes, expected: Response):
    assert parse_response(9, data) == expected


@pytest.mark.parametrize("data", [b"OK", b"20", b"2000", b"20x OK", b"200x", b" 200 OK", b"\n"])
def test_parse_response_refuses_a_missing_code(data: bytes):
    with pytest.raises(RelpFrameError, match="3-digit code"):
        parse_response(1, data)


rsp_frames = st.one_of(
    st.builds(
        lambda txnr, code, text, rest: encode_frame(
            txnr, "rsp", b"%03d %s" % (code, text) + (b"\n" + rest if rest else b"")
        ),
        st.integers(1, MAX_TXNR),
        st.integers(0, 999),
        st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")),
        st.binary(max_size=40),
    ),
    st.integers(1, MAX_TXNR).map(lambda t: encode_frame(t, "rsp")),
    st.just(b"0 serverclose 0\n"),
)
junk = st.sampled_from(
    [b"1 syslog 2 hi\n", b"x", b"0 rsp 0\n", b"5 serverclose 0\n", b"1 rsp 3 abc\n", b"\n", b" "]
)


@given(st.lists(st.one_of(rsp_frames, rsp_frames, rsp_frames, junk), max_size=8), st.data())
def test_response_parser_same_result_under_any_chunking(pieces: list[bytes], data: st.DataObject):
    stream = b"".join(pieces)
    whole = run_responses([stream])
    assert run_responses(data.draw(chunkings(stream))) == whole
    assert run_responses([stream[i : i + 1] for i in range(len(stream))]) == whole


@given(st.lists(rsp_frames, max_size=8), st.data())
def test_valid_responses_all_arrive(pieces: list[bytes], data: st.DataObject):
    events, error, pending = run_responses(data.draw(chunkings(b"".join(pieces))))
    assert (error, pending) == (None, 0)
    assert len(events) == len(pieces)
    for piece, event in zip(pieces, events, strict=True):
        if piece.startswith(b"0 serverclose"):
            assert event == ServerClose()
        else:
            assert isinstance(event, Response)
            assert event.txnr == int(piece.split(b" ", 1)[0])


@given(st.binary(max_size=300), st.data())
def test_response_parser_fuzz_raises_only_the_typed_error(stream: bytes, data: st.DataObject):
    whole = run_responses([stream], max_data=64)  # any other exception fails the test
    assert run_responses(data.draw(chunkings(stream)), max_data=64) == whole
    if whole[1] is not None:
        assert "\n" not in whole[1]


@given(st.binary(min_size=1, max_size=100))
def test_response_parser_fuzz_after_a_valid_frame(tail: bytes):
    events, error, _ = run_responses([b"1 rsp 6 200 OK\n" + tail], max_data=64)
    assert events[:1] == [Response(1, 200, "OK", b"")]
    assert error is None or "\n" not in error


MALFORMED = [
    (b"x rsp 0\n", "expected a transaction number"),
    (b" 1 rsp 0\n", "expected a transaction number"),
    (b"-1 rsp 0\n", "expected a transaction number"),
    (b"1234567890 rsp 0\n", "transaction number longer than 9 digits"),
    (b"12\trsp 0\n", "not a space"),
    (b"1  rsp 0\n", "expected a command"),
    (b"1 r_p 0\n", "command followed by"),
    (b"1 " + b"r" * 33 + b" 0\n", "command longer than 32"),
    (b"1 rsp x\n", "expected a data length"),
    (b"1 rsp -1\n", "expected a data length"),
    (b"1 rsp 1x\n", "data length followed by"),
    (b"1 rsp 1234567890 ", "data length longer than 9 digits"),
    (b"1 rsp 0 \n", "data length 0 followed by a space"),
    (b"1 rsp 6\n200 OK\n", "data length 6 but no data"),
    (b"1 rsp 6 200 OKX", "trailer"),
    (b"1 rsp 6 200 OK \n", "trailer"),
    (b"1 rsp 2 200 OK\n", "trailer"),
    (b"1 rsp 999999999 ", "over the maximum"),
    (b"1 rsp 131073 ", "over the maximum 131072"),
    (b"1 syslog 2 hi\n", "unexpected command 'syslog'"),
    (b"1 RSP 0\n", "unexpected command 'RSP'"),
    (b"1 open 0\n", "unexpected command 'open'"),
    (b"0 rsp 6 200 OK\n", "rsp with transaction number 0"),
    (b"3 serverclose 0\n", "serverclose with txnr 3"),
    (b"1 rsp 2 OK\n", "3-digit code"),
    (b"\n", "expected a transaction number"),
]


@pytest.mark.parametrize(("stream", "message"), MALFORMED)
def test_malformed_input_raises_a_one_line_typed_error(stream: bytes, message: str):
    parser = ResponseParser()
    parser.feed(stream)
    with pytest.raises(RelpFrameError, match=message) as info:
        parser.next_event()
    assert "\n" not in str(info.value)
    # The error is sticky: the stream is not trusted again.
    with pytest.raises(RelpFrameError, match=message):
        parser.next_event()
    with pytest.raises(RelpFrameError, match=message):
        parser.feed(b"1 rsp 0\n")


@pytest.mark.parametrize(("stream", "message"), MALFORMED)
def test_malformed_input_byte_by_byte(stream: bytes, message: str):
    events, error, _ = run_responses([stream[i : i + 1] for i in range(len(stream))])
    assert events == []
    assert error is not None and message in error


def test_a_bad_header_is_reported_before_more_bytes_arrive():
    parser = ResponseParser()
    parser.feed(b"1 rsp 6 200 OK\n2 r#")
    assert parser.next_event() == Response(1, 200, "OK", b"")
    with pytest.raises(RelpFrameError, match="command followed by b'#'"):
        parser.next_event()


def test_too_long_data_is_refused_before_it_arrives():
    parser = ResponseParser(max_data=10)
    parser.feed(b"1 rsp 11 ")
    with pytest.raises(RelpFrameError, match="data length 11 is over the maximum 10"):
        parser.next_event()
    parser = ResponseParser(max_data=10)
    parser.feed(b"1 rsp 10 200 OK 345\n")
    assert parser.next_event() == Response(1, 200, "OK 345", b"")
    with pytest.raises(RelpUsageError):
        FrameParser(max_data=-1)


def test_events_yields_what_came_before_an_error():
    parser = ResponseParser()
    parser.feed(b"1 rsp 6 200 OK\n2 rsp 6 200 OK\n!")
    got = []
    with pytest.raises(RelpFrameError):
        for event in parser.events():
            got.append(event)
    assert got == [Response(1, 200, "OK", b""), Response(2, 200, "OK", b"")]


# --------------------------------------------------------------------------- offers


def test_parse_offers():
    assert parse_offers(b"") == {}
    assert parse_offers(b"relp_version=0\n\ncommands=syslog,eventlog\nflag\nx=,a,,b,") == {
        "relp_version": ("0",),
        "commands": ("syslog", "eventlog"),
        "flag": (),
        "x": ("a", "b"),
    }
    assert parse_offers(b"a=1\na=2") == {"a": ("2",)}
    with pytest.raises(RelpOpenError, match="name"):
        parse_offers(b"=1")
    with pytest.raises(RelpOpenError, match="name"):
        parse_offers(b"x" * 33 + b"=1")


@given(st.binary(max_size=200))
def test_parse_offers_fuzz(data: bytes):
    try:
        offers = parse_offers(data)
    except RelpOpenError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(v, tuple) for v in offers.values())


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (Response(1, 500, "error 7 on connect", b""), "refused the session: 500 error 7"),
        (Response(1, None, "", b""), "refused the session: no code"),
        (Response(1, 200, "OK", b"commands=syslog"), "no valid relp_version"),
        (Response(1, 200, "OK", b"relp_version\ncommands=syslog"), "no valid relp_version"),
        (Response(1, 200, "OK", b"relp_version=x\ncommands=syslog"), "no valid relp_version"),
        (Response(1, 200, "OK", b"relp_version=0,1\ncommands=syslog"), "no valid relp_version"),
        (Response(1, 200, "OK", b"relp_version=1\ncommands=syslog"), "speaks version 1"),
        (Response(1, 200, "OK", b"relp_version=0\ncommands="), "syslog command"),
        (Response(1, 200, "OK", b"relp_version=0\ncommands=eventlog"), "syslog command"),
        (Response(1, 200, "OK", b"relp_version=0"), "syslog command"),
    ],
)
def test_check_open_reply_refuses(response: Response, message: str):
    with pytest.raises(RelpOpenError, match=message):
        check_open_reply(response)


def test_check_open_reply_accepts_extra_offers():
    reply = Response(1, 200, "OK", b"relp_version=0\ncommands=eventlog,syslog\nfuture=1")
    assert check_open_reply(reply)["commands"] == ("eventlog", "syslog")


# --------------------------------------------------------------------------- numbering


def test_txnr_wraps_after_999_999_999():
    assert MAX_TXNR == 999_999_999
    assert next_txnr(1) == 2
    assert next_txnr(999_999_998) == 999_999_999
    assert next_txnr(999_999_999) == 1
    counter = TxnrCounter(999_999_997)
    assert [counter.take() for _ in range(5)] == [999_999_997, 999_999_998, 999_999_999, 1, 2]
    assert counter.peek == 3


@given(st.integers(1, MAX_TXNR))
def test_next_txnr_is_one_more_or_wraps_to_one(txnr: int):
    after = next_txnr(txnr)
    assert 1 <= after <= MAX_TXNR
    assert after == (1 if txnr == MAX_TXNR else txnr + 1)


@given(st.integers(1, MAX_TXNR), st.integers(0, 50))
def test_counter_takes_consecutive_numbers(start: int, count: int):
    counter = TxnrCounter(start)
    remaining = counter.remaining
    taken = [counter.take() for _ in range(count)]
    expected = [(start - 1 + i) % MAX_TXNR + 1 for i in range(count)]
    assert taken == expected
    assert remaining == MAX_TXNR - start + 1
    counter.reset()
    assert counter.peek == 1
    assert counter.remaining == MAX_TXNR


@pytest.mark.parametrize("start", [0, -1, MAX_TXNR + 1])
def test_counter_refuses_a_bad_start(start: int):
    with pytest.raises(RelpUsageError):
        TxnrCounter(start)


# --------------------------------------------------------------------------- the window


def test_window_example_with_out_of_order_acks():
    window: AckWindow[str] = AckWindow(3)
    assert window.capacity == 3
    assert window.reconnect() == SessionStart(1, open_frame(), ())
    assert [window.add(x, x.encode()) for x in "abc"] == [2, 3, 4]
    assert window.full and len(window) == 3 and window.held == 3
    assert window.first_unacked() == "a"
    assert window.ack(4) == "c"
    assert window.pop_acked() == []
    assert window.full  # "c" still waits behind "a" and "b"
    assert window.ack(2) == "a"
    assert window.pop_acked() == ["a"]
    assert not window.full and len(window) == 1 and window.held == 2
    assert window.unacked() == ["b"]
    assert window.first_unacked() == "b"
    assert 3 in window and 2 not in window and 4 not in window
    with pytest.raises(AckError, match="transaction number 2, which is not outstanding"):
        window.ack(2)  # a duplicate
    with pytest.raises(AckError, match="transaction number 99"):
        window.ack(99)  # never sent
    assert window.ack(3) == "b"
    assert window.pop_acked() == ["b", "c"]
    assert window.held == 0 and window.first_unacked() is None
    assert window.command("close") == (5, b"5 close 0\n")


def test_window_reconnect_renumbers_in_send_order():
    window: AckWindow[tuple[str, int]] = AckWindow()
    assert window.capacity == DEFAULT_WINDOW
    window.reconnect()
    for seq in range(1, 6):
        window.add(("inst", seq), b"m%d" % seq)
    window.ack(3)  # seq 2
    window.ack(5)  # seq 4
    start = window.reconnect()
    assert start.open_txnr == 1
    assert start.open_frame == open_frame()
    assert start.resend == (b"2 syslog 2 m1\n", b"3 syslog 2 m3\n", b"4 syslog 2 m5\n")
    assert window.unacked() == [("inst", 1), ("inst", 3), ("inst", 5)]
    assert window.add(("inst", 6), b"m6") == 5
    assert window.ack(3) == ("inst", 3)
    with pytest.raises(AckError):
        window.ack(6)  # an old number, from before the reconnect
    assert window.ack(2) == ("inst", 1)
    assert window.pop_acked() == [("inst", 1), ("inst", 2), ("inst", 3), ("inst", 4)]


def test_window_reconnect_with_own_offers():
    window: AckWindow[int] = AckWindow(1)
    start = window.reconnect(b"relp_version=0\ncommands=syslog")
    assert start.open_frame == b"1 open 30 relp_version=0\ncommands=syslog\n"


def test_window_refuses_misuse_without_taking_a_number():
    window: AckWindow[int] = AckWindow(1)
    window.add(1, b"x")
    with pytest.raises(RelpUsageError, match="full"):
        window.add(2, b"y")
    with pytest.raises(RelpUsageError):
        window.command("no such")
    assert window.counter.peek == 2
    for capacity in (0, -1, 10**9):
        with pytest.raises(RelpUsageError):
            AckWindow(capacity)


def test_window_wraps_transaction_numbers():
    window: AckWindow[int] = AckWindow(4)
    window.counter = TxnrCounter(MAX_TXNR - 1)
    assert [window.add(i, b"x") for i in range(3)] == [MAX_TXNR - 1, MAX_TXNR, 1]
    assert window.ack(1) == 2
    assert window.ack(MAX_TXNR - 1) == 0
    assert window.pop_acked() == [0]
    assert window.unacked() == [1]


@dataclass
class Sent:
    """The model's record of one message in the window."""

    item: int
    data: bytes
    txnr: int
    acked: bool = False


class WindowModel(RuleBasedStateMachine):
    """AckWindow against a plain list of Sent, in send order."""

    window: AckWindow[int]

    @initialize(capacity=st.integers(1, 6))
    def start(self, capacity: int) -> None:
        self.window = AckWindow(capacity)
        self.capacity = capacity
        self.model: list[Sent] = []
        self.next_txnr = 1
        self.next_item = 0
        self.delivered: list[int] = []

    def outstanding(self) -> list[Sent]:
        return [sent for sent in self.model if not sent.acked]

    def take(self) -> int:
        txnr = self.next_txnr
        self.next_txnr = next_txnr(txnr)
        return txnr

    @precondition(lambda self: len(self.model) < self.capacity)
    @rule(data=st.binary(max_size=5))
    def add(self, data: bytes) -> None:
        item = self.next_item
        self.next_item += 1
        txnr = self.window.add(item, data)
        assert txnr == self.take()
        self.model.append(Sent(item, data, txnr))

    @precondition(lambda self: len(self.model) >= self.capacity)
    @rule()
    def add_when_full(self) -> None:
        with pytest.raises(RelpUsageError):
            self.window.add(-1, b"")

    @precondition(lambda self: any(not sent.acked for sent in self.model))
    @rule(index=st.integers(0, 100))
    def ack(self, index: int) -> None:
        outstanding = self.outstanding()
        sent = outstanding[index % len(outstanding)]
        assert self.window.ack(sent.txnr) == sent.item
        sent.acked = True

    @rule(txnr=st.integers(-5, MAX_TXNR + 5))
    def ack_unknown(self, txnr: int) -> None:
        if any(sent.txnr == txnr for sent in self.outstanding()):
            return
        with pytest.raises(AckError):
            self.window.ack(txnr)

    @precondition(lambda self: any(sent.acked for sent in self.model))
    @rule(index=st.integers(0, 100))
    def ack_again(self, index: int) -> None:
        acked = [sent for sent in self.model if sent.acked]
        sent = acked[index % len(acked)]
        if any(other.txnr == sent.txnr for other in self.outstanding()):
            return  # its number was given to another message by a reconnect
        with pytest.raises(AckError):
            self.window.ack(sent.txnr)

    @rule()
    def pop_acked(self) -> None:
        done = []
        while self.model and self.model[0].acked:
            done.append(self.model.pop(0).item)
        assert self.window.pop_acked() == done
        self.delivered.extend(done)

    @rule()
    def reconnect(self) -> None:
        start = self.window.reconnect()
        self.next_txnr = 1
        assert start.open_txnr == self.take() == 1
        assert start.open_frame == open_frame()
        expected = []
        for sent in self.outstanding():
            sent.txnr = self.take()
            expected.append(syslog_frame(sent.txnr, sent.data))
        assert start.resend == tuple(expected)

    @rule()
    def close(self) -> None:
        txnr = self.take()
        assert self.window.command("close") == (txnr, b"%d close 0\n" % txnr)

    @invariant()
    def matches_model(self) -> None:
        outstanding = self.outstanding()
        assert self.window.unacked() == [sent.item for sent in outstanding]
        assert len(self.window) == len(outstanding)
        assert self.window.held == len(self.model) <= self.capacity
        assert self.window.full == (len(self.model) >= self.capacity)
        assert self.window.first_unacked() == (outstanding[0].item if outstanding else None)
        assert all(sent.txnr in self.window for sent in outstanding)
        assert self.window.counter.peek == self.next_txnr
        # Delivered items come out in send order, each exactly once.
        assert self.delivered == list(range(len(self.delivered)))


TestWindowModel = WindowModel.TestCase


@given(st.integers(0, MAX_TXNR), st.binary(max_size=40))
def test_syslog_frame_is_encode_frame(txnr: int, message: bytes) -> None:
    assert syslog_frame(txnr, message) == encode_frame(txnr, "syslog", message)


def test_take_run_takes_consecutive_numbers_without_a_wrap() -> None:
    counter = TxnrCounter()
    assert counter.take_run(3) == 1 and counter.peek == 4
    assert counter.take_run(0) == 4 and counter.peek == 4
    counter = TxnrCounter(MAX_TXNR - 1)
    assert counter.take_run(2) == MAX_TXNR - 1 and counter.peek == 1
    counter = TxnrCounter(MAX_TXNR - 1)
    with pytest.raises(RelpUsageError, match="would wrap"):
        counter.take_run(3)


@given(st.integers(0, MAX_TXNR + 3), st.lists(st.binary(max_size=20), max_size=5))
def test_syslog_frames_are_syslog_frame_joined(first: int, messages: list[bytes]) -> None:
    try:
        one = b"".join(syslog_frame(first + i, m) for i, m in enumerate(messages))
    except RelpUsageError:
        with pytest.raises(RelpUsageError):
            syslog_frames(first, messages)
        return
    assert syslog_frames(first, messages) == one
