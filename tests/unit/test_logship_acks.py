"""ResponseParser.take_oks: the acknowledgements of a busy RELP session in one
pass, with exactly the outcome of taking every event with next_event."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logship.relp import (
    MAX_TXNR,
    FrameParser,
    RelpFrameError,
    Response,
    ResponseParser,
    ServerEvent,
    encode_frame,
)

pytestmark = pytest.mark.unit

oks = st.integers(0, MAX_TXNR).map(lambda t: b"%d rsp 6 200 OK\n" % t)
others = st.sampled_from(
    [
        b"0 serverclose 0\n",
        b"7 rsp 0\n",
        b"8 rsp 20 500 command disabled\n",
        b"9 rsp 6 200 Ok\n",  # not the plain form: next_event's
        b"0010 rsp 6 200 OK\n",  # leading zeros: the same as 10
        b"1 syslog 2 hi\n",  # refused
        b"1 rsp 6 200 OK",  # cut short
        b"x",
    ]
)
streams = st.lists(st.one_of(oks, oks, oks, others), max_size=10).map(b"".join)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    out, start = [], 0
    for point in points:
        out.append(data[start:point])
        start = point
    out.append(data[start:])
    return out


Outcome = tuple[list[ServerEvent], str | None, int]


def by_events(chunks: list[bytes]) -> Outcome:
    parser = ResponseParser()
    events: list[ServerEvent] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (event := parser.next_event()) is not None:
                events.append(event)
    except RelpFrameError as exc:
        return events, str(exc), 0
    return events, None, parser.pending


def by_oks(chunks: list[bytes]) -> Outcome:
    """As the shipper reads: take_oks, then next_event, until nothing is complete."""
    parser = ResponseParser()
    events: list[ServerEvent] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while True:
                events += [Response(t, 200, "OK", b"") for t in parser.take_oks()]
                event = parser.next_event()
                if event is None:
                    break
                events.append(event)
    except RelpFrameError as exc:
        return events, str(exc), 0
    return events, None, parser.pending


@given(streams, st.lists(st.integers(0, 400), max_size=8))
def test_take_oks_gives_what_next_event_gives(stream: bytes, cuts: list[int]):
    chunks = split(stream, cuts)
    assert by_oks(chunks) == by_events(chunks)
    assert by_oks([stream]) == by_events([stream])


def test_take_oks_golden():
    parser = ResponseParser()
    parser.feed(b"2 rsp 6 200 OK\n3 rsp 6 200 OK\n4 rsp 0\n5 rsp 6 200 OK\n6 rsp 6 2")
    assert parser.take_oks() == [2, 3]
    assert parser.next_event() == Response(4, None, "", b"")
    assert parser.take_oks() == [5]
    assert parser.take_oks() == []
    assert parser.next_event() is None
    parser.feed(b"00 OK\n0 rsp 6 200 OK\n")
    assert parser.take_oks() == [6]  # and not the TXNR 0, which next_event refuses
    with pytest.raises(RelpFrameError, match="transaction number 0"):
        parser.next_event()
    with pytest.raises(RelpFrameError):
        parser.take_oks()  # after an error, nothing more


def test_take_oks_respects_the_accepted_commands():
    frames = FrameParser(commands=("syslog",))
    frames.feed(encode_frame(1, "rsp", b"200 OK"))
    assert frames.take_oks() == []
    with pytest.raises(RelpFrameError, match="unexpected command"):
        frames.next_frame()
