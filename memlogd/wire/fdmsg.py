"""The ancillary side of the log socket (docs/protocol.md). PURE: no I/O.

A datagram on the log socket is a source name plus ``SCM_RIGHTS`` fds (and,
with ``SO_PASSCRED``, the sender's ``SCM_CREDENTIALS``).  This module turns
what ``recvmsg`` returned into an :class:`FdGrant`, and never loses an fd:
every fd that arrived is in the grant, even when the datagram is refused, so
the caller can close them.
"""

from __future__ import annotations

import array
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memlogd.wire.protocol import INTERNAL_SOURCE, MAX_FDS_PER_DATAGRAM, decode_name

_CREDS = struct.Struct("iII")  # struct ucred: pid, uid, gid
RESERVED_PREFIX = b"user:"  # before a writer's name that begins with "memlogd" (SPEC 19)
_FD_SIZE = array.array("i").itemsize

# Room for the most fds Linux passes in one message, plus the credentials.
ANCBUF_SIZE = socket.CMSG_SPACE(MAX_FDS_PER_DATAGRAM * _FD_SIZE) + socket.CMSG_SPACE(_CREDS.size)


@dataclass(frozen=True, slots=True)
class FdGrant:
    """What one log-socket datagram carried.

    ``problem`` is None for a usable grant; otherwise it says why the
    datagram is refused, and every fd in ``fds`` must be closed.
    """

    name: str
    fds: tuple[int, ...]
    pid: int | None = None
    uid: int | None = None
    problem: str | None = None


def fds_of(ancdata: Iterable[tuple[int, int, bytes]]) -> list[int]:
    """Every fd that arrived in ``SCM_RIGHTS`` (the caller owns them all)."""
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            whole = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:whole]))
    return fds


def parse_fd_datagram(
    data: bytes, ancdata: Iterable[tuple[int, int, bytes]], flags: int
) -> FdGrant:
    ancdata = list(ancdata)
    fds = fds_of(ancdata)
    pid = uid = None
    for level, kind, payload in ancdata:
        credentials = level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        if credentials and len(payload) >= _CREDS.size:
            pid, uid, _gid = _CREDS.unpack_from(payload)
    if data.startswith(INTERNAL_SOURCE.encode()):  # reserved for memlogd's own events
        data = RESERVED_PREFIX + data
    name = decode_name(data)
    problem = None
    if flags & socket.MSG_CTRUNC:
        problem = "control message truncated (too many fds?)"
    elif not fds:
        problem = "datagram carried no fd"
    return FdGrant(name=name, fds=tuple(fds), pid=pid, uid=uid, problem=problem)


def fd_ancdata(fds: Sequence[int]) -> list[tuple[int, int, bytes]]:
    """The ancillary data that sends ``fds`` with ``sendmsg``."""
    if not fds:
        raise ValueError("at least one fd must be sent")
    if len(fds) > MAX_FDS_PER_DATAGRAM:
        raise ValueError(f"at most {MAX_FDS_PER_DATAGRAM} fds fit in one datagram")
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
