"""The client side of both sockets (SPEC sections 2 and 7): the only client code.

Log socket (for an init, memlogd-exec, kmsg)::

    send_fds(path, "myservice.out", [fd])          # hand over read ends
    stream = open_log_stream(path, "myservice")    # a socket to write lines to

Query socket (for logread, logwrite, tests)::

    async with open_query(path, QueryMode.DUMP) as query:
        async for entry in query:                  # LogEntry
            ...
    async with open_query(path, QueryRequest(follow=True, after_seq=n)) as query:
        async for reply in query:                  # Header | LogEntry | Dropped | ...
            ...
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from memlogd import protocol as proto
from memlogd.fdmsg import fd_ancdata

RECV_CHUNK = 256 * 1024


class ConnectError(proto.MemlogdError):
    """memlogd cannot be reached at a path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot connect to memlogd at {path}: {reason}")
        self.path = path
        self.reason = reason


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


# ------------------------------------------------------------------ log socket


def send_fds(path: str, name: str, fds: Sequence[int]) -> None:
    """Hand ``fds`` (read ends) to memlogd as sources called ``name``.

    The fds stay open here: the caller closes its copies.  A datagram send
    on a Unix socket does not wait for the daemon.
    """
    payload = name.encode("utf-8", "replace")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(path)
            sock.sendmsg([payload], fd_ancdata(fds))
        except OSError as exc:
            raise ConnectError(path, _reason(exc)) from None


async def register_fd(path: str, name: str, fds: Sequence[int]) -> None:
    """``send_fds`` for trio code."""
    payload = name.encode("utf-8", "replace")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sock:
        try:
            await sock.connect(path)
            await sock.sendmsg([payload], fd_ancdata(fds))
        except OSError as exc:
            raise ConnectError(path, _reason(exc)) from None


def open_log_stream(path: str, name: str) -> socket.socket:
    """A connected socket whose writes become lines of source ``name``.

    The other end is handed to memlogd at once; the returned socket is
    blocking and close-on-exec, and only writes (its read side is shut).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        send_fds(path, name, [theirs.fileno()])
        ours.shutdown(socket.SHUT_RD)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ours


# ------------------------------------------------------------------ query socket


class Query:
    """An open query: iterate to get decoded lines (LogEntry in base modes, any
    :data:`memlogd.protocol.Reply` in extended mode)."""

    def __init__(self, stream: trio.SocketStream, extended: bool) -> None:
        self.stream = stream
        self.extended = extended

    async def raw_lines(self) -> AsyncIterator[bytes]:
        """The answer's lines as bytes, without newlines."""
        buf = b""
        while True:
            data = await self.stream.receive_some(RECV_CHUNK)
            if not data:
                if buf:
                    yield buf
                return
            buf += data
            if b"\n" not in data:
                continue
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line

    async def __aiter__(self) -> AsyncIterator[proto.Reply]:
        decode = proto.decode_reply if self.extended else proto.decode_entry
        async for line in self.raw_lines():
            if line:
                yield decode(line)


async def connect_query(path: str) -> trio.SocketStream:
    try:
        return await trio.open_unix_socket(path)
    except OSError as exc:
        raise ConnectError(path, _reason(exc)) from None


@asynccontextmanager
async def open_query(path: str, what: proto.QueryMode | proto.QueryRequest) -> AsyncIterator[Query]:
    """Connect to the query socket and send a base mode or an extended request."""
    stream = await connect_query(path)
    async with stream:
        if isinstance(what, proto.QueryRequest):
            await stream.send_all(proto.encode_request(what))
        else:
            await stream.send_all(bytes([what]))
        yield Query(stream, isinstance(what, proto.QueryRequest))
