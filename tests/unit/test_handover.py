"""What the keeper and its worker tell each other (memlogd.wire.handover), and when the
keeper starts a worker again (memlogd.keeper.restart.RestartPolicy)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.errors import ProtocolError
from memlogd.keeper.restart import MAX_BACKOFF_S, MAX_FAILED_STARTS, MIN_BACKOFF_S, RestartPolicy
from memlogd.wire import handover

pytestmark = pytest.mark.unit

ids = st.none() | st.integers(0, 2**31 - 1)
names = st.text(max_size=600)
keys = st.integers(0, 2**64 - 1)

messages = st.one_of(
    st.builds(
        handover.Sources,
        names.map(lambda n: n.encode("utf-8", "replace").decode("utf-8")),
        ids,
        ids,
        st.lists(keys, min_size=1, max_size=253).map(tuple),
    ),
    st.builds(
        handover.Refused,
        names.map(lambda n: n.encode("utf-8", "replace").decode("utf-8")),
        ids,
        ids,
        st.integers(0, 253),
        st.text(max_size=80).map(lambda n: n.encode("utf-8", "replace").decode("utf-8")),
    ),
    st.builds(handover.Stop, st.booleans(), st.integers(0, 64)),
    st.just(handover.Ready()),
    st.builds(handover.Release, st.lists(keys, max_size=50).map(tuple)),
    st.just(handover.HandedOver()),
)


@given(messages)
def test_every_message_round_trips(message: handover.Message) -> None:
    packet = handover.encode(message)
    assert len(packet) <= handover.MAX_PACKET
    assert handover.decode(packet) == message


def test_golden_packets() -> None:
    assert handover.encode(handover.Stop(handover=True, signal=0)) == b"\x03\x01\x00"
    assert handover.encode(handover.Ready()) == b"\x04"
    assert handover.encode(handover.Release((1, 2))) == (
        b"\x05\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"
    )
    assert handover.encode(handover.Sources("web", 7, None, (9,))) == (
        b"\x01\x07\x00\x00\x00\xff\xff\xff\xff\x03\x00web\x09\x00\x00\x00\x00\x00\x00\x00"
    )


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_a_protocol_error(packet: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        handover.decode(packet)


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x09",
        b"\x03",
        b"\x03\x01",
        b"\x04x",
        b"\x05\x01",
        b"\x01\x00\x00",
        b"\x01" + bytes(10),
    ],
)
def test_malformed_packets_are_refused(packet: bytes) -> None:
    with pytest.raises(ProtocolError):
        handover.decode(packet)


partials = st.builds(
    handover.Partial,
    keys,
    st.binary(max_size=2048),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)


@given(st.lists(partials, max_size=20, unique_by=lambda p: p.key))
def test_partial_lines_round_trip(parts: list[handover.Partial]) -> None:
    decoded = handover.decode_partials(handover.encode_partials(parts))
    assert decoded == {p.key: p for p in parts}


def test_cut_partial_lines_are_refused() -> None:
    data = handover.encode_partials([handover.Partial(1, b"abc", False, False, 0)])
    with pytest.raises(ProtocolError):
        handover.decode_partials(data[:-1])


# ---------------------------------------------------------------------- restarts


def test_a_worker_that_served_a_while_is_restarted_at_once() -> None:
    policy = RestartPolicy()
    assert policy.ended(now=100.0, ready_at=10.0) == 0.0
    assert policy.ended(now=200.0, ready_at=150.0) == 0.0


def test_a_crash_loop_backs_off_doubling_up_to_the_maximum() -> None:
    policy = RestartPolicy()
    delays = []
    for i in range(8):
        policy.ready()  # ready, then dead at once: not a failed start, but a loop
        delays.append(policy.ended(now=float(i), ready_at=float(i)))
    assert delays[0] == MIN_BACKOFF_S
    assert delays == [min(MIN_BACKOFF_S * 2**i, MAX_BACKOFF_S) for i in range(8)]


def test_ten_failed_starts_in_a_row_give_up_and_a_ready_worker_resets_the_count() -> None:
    policy = RestartPolicy()
    for _ in range(MAX_FAILED_STARTS - 1):
        assert policy.ended(now=0.0, ready_at=None) is not None
    policy.ready()
    for _ in range(MAX_FAILED_STARTS - 1):
        assert policy.ended(now=0.0, ready_at=None) is not None
    assert policy.ended(now=0.0, ready_at=None) is None
