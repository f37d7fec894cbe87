"""Asking the daemon under test over its query socket: the first answer to a
dump (boot) and memlogd's statistics (extended query, SPEC 2).

Blocking sockets with deadlines; the answer parser is pure.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from memlogd.errors import NotExtendedError, ProtocolError, RequestRefusedError
from memlogd.wire.answerparser import AnswerParser, stats_in

DUMP = b"\x00"  # query mode 0: dump the ring, then close
STATS_REQUEST = b'\x03{"stats":true}\n'


class QueryError(RuntimeError):
    """No usable answer (the message says why)."""


def parse_stats_answer(data: bytes) -> dict[str, Any]:
    """The statistics from an extended query's whole answer, read by memlogd's
    one answer parser (anything but a header and ``{"stats": {...}}`` is a
    QueryError)."""
    try:
        return stats_in(AnswerParser(extended=True).feed(data))
    except RequestRefusedError as exc:
        raise QueryError(f"memlogd answered an error: {exc}") from None
    except ProtocolError as exc:
        raise QueryError(f"not JSON, or not memlogd's answer: {exc}") from None
    except NotExtendedError:
        raise QueryError(f"no stats in the answer: {data[:120]!r}") from None


def _connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(max(0.001, timeout))
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    parts: list[bytes] = []
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def stats(path: str, timeout: float = 10.0) -> dict[str, Any]:
    """memlogd's statistics (QueryError or OSError when there is no answer)."""
    deadline = time.monotonic() + timeout
    with _connect(path, timeout) as sock:
        sock.sendall(STATS_REQUEST)
        return parse_stats_answer(_read_all(sock, deadline))


def try_stats(path: str, timeout: float = 10.0) -> dict[str, Any] | None:
    try:
        return stats(path, timeout)
    except (OSError, QueryError):
        return None


def first_answer(sock: socket.socket, start: float, deadline: float) -> float:
    """Send a dump request on the connected ``sock`` and wait for its first
    byte (or end of file: the answer to a dump of an empty ring); returns the
    ``perf_counter`` seconds since ``start``.  The rest is read and dropped."""
    sock.sendall(DUMP)
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    first = sock.recv(65536)
    answered = time.perf_counter() - start
    if first:
        _read_all(sock, deadline)
    return answered


def answer_after_connect(path: str, start: float, timeout: float) -> float:
    """Connect (the socket is known to be bound), then :func:`first_answer`."""
    deadline = time.monotonic() + timeout
    with _connect(path, timeout) as sock:
        return first_answer(sock, start, deadline)
