"""Log-socket datagrams (memlogd.wire.fdmsg): parsing ancillary data, and a real round trip."""

from __future__ import annotations

import array
import os
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.wire.fdmsg import ANCBUF_SIZE, FdGrant, fd_ancdata, parse_fd_datagram
from memlogd.wire.protocol import MAX_FDS_PER_DATAGRAM

pytestmark = pytest.mark.unit

SOL = socket.SOL_SOCKET
RIGHTS = socket.SCM_RIGHTS
CREDS = socket.SCM_CREDENTIALS


def fd_bytes(*fds: int) -> bytes:
    return array.array("i", fds).tobytes()


def creds(pid: int, uid: int, gid: int) -> bytes:
    return struct.pack("iII", pid, uid, gid)


def test_no_ancdata_is_refused_with_no_fd():
    grant = parse_fd_datagram(b"docker", [], 0)
    assert grant == FdGrant("docker", (), problem="datagram carried no fd")


def test_one_message_with_fds():
    grant = parse_fd_datagram(b"svc.out", [(SOL, RIGHTS, fd_bytes(7, 8))], 0)
    assert grant == FdGrant("svc.out", (7, 8))


def test_several_rights_messages_give_every_fd_in_order():
    anc = [(SOL, RIGHTS, fd_bytes(5)), (SOL, RIGHTS, fd_bytes(9, 3)), (SOL, RIGHTS, b"")]
    grant = parse_fd_datagram(b"x", anc, 0)
    assert grant.fds == (5, 9, 3)
    assert grant.problem is None


def test_other_cmsg_types_are_ignored():
    anc = [
        (socket.IPPROTO_IP, RIGHTS, fd_bytes(11)),  # SCM_RIGHTS number, other level
        (SOL, socket.SCM_RIGHTS + 100, fd_bytes(12)),
        (socket.IPPROTO_IPV6, 50, b"\x00" * 16),
        (SOL, RIGHTS, fd_bytes(13)),
    ]
    assert parse_fd_datagram(b"x", anc, 0).fds == (13,)
    only_other = parse_fd_datagram(b"x", anc[:3], 0)
    assert only_other.fds == ()
    assert only_other.problem == "datagram carried no fd"


def test_credentials_give_pid_and_uid():
    anc = [(SOL, CREDS, creds(1234, 1000, 100)), (SOL, RIGHTS, fd_bytes(4))]
    grant = parse_fd_datagram(b"n", anc, 0)
    assert (grant.pid, grant.uid, grant.fds, grant.problem) == (1234, 1000, (4,), None)
    short = parse_fd_datagram(b"n", [(SOL, CREDS, b"\x01\x02"), (SOL, RIGHTS, fd_bytes(4))], 0)
    assert (short.pid, short.uid) == (None, None)


def test_credentials_without_fds_are_refused():
    grant = parse_fd_datagram(b"n", [(SOL, CREDS, creds(1, 0, 0))], 0)
    assert grant.problem == "datagram carried no fd"
    assert grant.pid == 1


def test_ctrunc_is_refused_and_returns_every_fd():
    anc = [(SOL, RIGHTS, fd_bytes(20, 21, 22))]
    grant = parse_fd_datagram(b"many", anc, socket.MSG_CTRUNC)
    assert grant.fds == (20, 21, 22)  # so that the caller closes them
    assert grant.problem is not None
    assert "truncated" in grant.problem
    assert parse_fd_datagram(b"", [], socket.MSG_CTRUNC).problem == grant.problem


def test_partial_fd_bytes_are_ignored():
    anc = [(SOL, RIGHTS, fd_bytes(6, 7) + b"\x08\x00")]
    assert parse_fd_datagram(b"x", anc, socket.MSG_CTRUNC).fds == (6, 7)
    assert parse_fd_datagram(b"x", [(SOL, RIGHTS, b"\x01\x00\x00")], 0).fds == ()


def test_name_is_decoded_as_memlogd_keeps_it():
    anc = [(SOL, RIGHTS, fd_bytes(3))]
    assert parse_fd_datagram(b"", anc, 0).name == "unnamed"
    assert parse_fd_datagram(b"a\xffb", anc, 0).name == "a\ufffdb"
    assert parse_fd_datagram(b"n" * 600, anc, 0).name == "n" * 512


@given(st.binary(max_size=600))
def test_names_beginning_with_memlogd_are_never_a_writers(raw: bytes) -> None:
    """SPEC 19: memlogd's own events are the only entries of such a source."""
    anc = [(SOL, RIGHTS, fd_bytes(3))]
    name = parse_fd_datagram(b"memlogd" + raw, anc, 0).name
    assert name.startswith("user:memlogd") and len(name.encode()) <= 512
    other = parse_fd_datagram(raw, anc, 0).name
    assert not other.startswith("memlogd")


cmsgs = st.lists(
    st.one_of(
        st.tuples(
            st.just(SOL), st.just(RIGHTS), st.lists(st.integers(0, 2**31 - 1), max_size=5)
        ).map(lambda t: (t[0], t[1], fd_bytes(*t[2]) + b"\x01" * (len(t[2]) % 3))),
        st.tuples(
            st.sampled_from([SOL, socket.IPPROTO_IP, socket.IPPROTO_TCP]),
            st.integers(0, 100).filter(lambda k: k != RIGHTS),
            st.binary(max_size=16),
        ),
        st.tuples(st.just(SOL), st.just(CREDS), st.binary(max_size=14)),
    ),
    max_size=5,
)


@given(st.binary(max_size=600), cmsgs, st.sampled_from([0, socket.MSG_CTRUNC, socket.MSG_TRUNC]))
def test_every_whole_fd_is_returned_whatever_the_ancdata(
    name: bytes, anc: list[tuple[int, int, bytes]], flags: int
):
    grant = parse_fd_datagram(name, anc, flags)
    expected: list[int] = []
    for level, kind, payload in anc:
        if level == SOL and kind == RIGHTS:
            expected.extend(array.array("i", payload[: len(payload) - len(payload) % 4]))
    assert grant.fds == tuple(expected)
    usable = bool(expected) and not flags & socket.MSG_CTRUNC
    assert (grant.problem is None) is usable


def test_fd_ancdata_refuses_no_fds_and_too_many():
    with pytest.raises(ValueError, match="at least one"):
        fd_ancdata([])
    with pytest.raises(ValueError, match="at most 253"):
        fd_ancdata([0] * (MAX_FDS_PER_DATAGRAM + 1))
    assert fd_ancdata([3, 4]) == [(SOL, RIGHTS, fd_bytes(3, 4))]


@pytest.fixture(name="dgram_pair")
def fixture_dgram_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver:
        yield sender, receiver


def receive(receiver: socket.socket, ancbufsize: int = ANCBUF_SIZE) -> FdGrant:
    data, anc, flags, _ = receiver.recvmsg(513, ancbufsize, socket.MSG_CMSG_CLOEXEC)
    return parse_fd_datagram(data, anc, flags)


def close_all(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


def test_fd_ancdata_round_trips_through_a_real_socketpair(dgram_pair):
    sender, receiver = dgram_pair
    receiver.setsockopt(SOL, socket.SO_PASSCRED, 1)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        sender.sendmsg([b"svc.out"], fd_ancdata([r1, r2]))
        grant = receive(receiver)
        try:
            assert grant.name == "svc.out"
            assert grant.problem is None
            assert (grant.pid, grant.uid) == (os.getpid(), os.getuid())
            assert len(grant.fds) == 2
            assert not set(grant.fds) & {r1, r2, w1, w2}  # new descriptors
            assert all(not os.get_inheritable(fd) for fd in grant.fds)  # MSG_CMSG_CLOEXEC
            os.write(w1, b"one\n")
            os.write(w2, b"two\n")
            assert os.read(grant.fds[0], 100) == b"one\n"
            assert os.read(grant.fds[1], 100) == b"two\n"
        finally:
            close_all(grant.fds)
    finally:
        close_all((r1, w1, r2, w2))


def test_most_fds_linux_passes_fit_in_ancbuf_with_credentials(dgram_pair):
    sender, receiver = dgram_pair
    receiver.setsockopt(SOL, socket.SO_PASSCRED, 1)
    r, w = os.pipe()
    try:
        sender.sendmsg([b"many"], fd_ancdata([r] * MAX_FDS_PER_DATAGRAM))
        grant = receive(receiver)
        try:
            assert grant.problem is None
            assert len(grant.fds) == MAX_FDS_PER_DATAGRAM
            assert grant.pid == os.getpid()
        finally:
            close_all(grant.fds)
    finally:
        close_all((r, w))


def test_real_ctrunc_is_refused_and_the_fds_that_arrived_are_returned(dgram_pair):
    sender, receiver = dgram_pair
    r, w = os.pipe()
    try:
        sender.sendmsg([b"cut"], fd_ancdata([r, r, r]))
        grant = receive(receiver, socket.CMSG_SPACE(4))  # room for one fd
        try:
            assert grant.problem is not None
            assert "truncated" in grant.problem
            assert 1 <= len(grant.fds) <= 3
            for fd in grant.fds:
                os.fstat(fd)  # each returned fd is open, for the caller to close
        finally:
            close_all(grant.fds)
    finally:
        close_all((r, w))
