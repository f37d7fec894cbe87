"""Binding and adopting the daemon's two sockets (docs/memlogd.md, "Sockets").

Plain (non-blocking) system calls, made once at start-up by the boot
(memlogd.cli), before the keeper or the daemon runs; the keeper holds the
sockets, the daemon waits on them with trio's lowlevel wait_readable, and
whoever owns them at the end removes the files.  No trio here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time

from memlogd.config import LISTEN_BACKLOG, DaemonConfig
from memlogd.errors import MemlogdError, SocketError

Sockets = tuple[socket.socket, socket.socket, list[str]]  # log, query, files to remove at exit

LIVE_CHECK_S = 5.0  # a query socket is checked this long for a memlogd behind it (SPEC 17)
PROBE_S = 1.0  # one question's wait for its answer (a loaded machine answers late)
PROBE_PAUSE_S = 0.05  # between two rounds of questions
UPSTREAM_ROUNDS = 2  # a dump answered but no stats, this many rounds in a row: upstream's


class _NoAnswer(Exception):
    """A connection accepted (or queued) but not answered: no proof of life."""


class _Refused(Exception):
    """Nobody listens at the path: a stale file."""


def _ask(path: str, question: bytes, timeout: float, *, whole: bool) -> bytes:
    """Ask the query socket at ``path``: the first bytes of the answer (or all of
    it, ``whole``); ``b""`` when it was closed at once.  _Refused when nobody
    listens, _NoAnswer when nothing came within ``timeout`` (or the connection
    was reset), OSError (EACCES...) when it is someone's socket we may not use."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            raise _Refused from None
        except (BlockingIOError, TimeoutError):
            raise _NoAnswer from None  # a full backlog: a stopped process, or a busy one
        answer = b""
        try:
            probe.sendall(question)
            while chunk := probe.recv(1 << 16):
                answer += chunk
                if not whole:
                    break
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            if not answer:
                raise _NoAnswer from None
        return answer


def _keeper_alive(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    state = data[data.rfind(b")") + 2 : data.rfind(b")") + 3]
    return state not in (b"Z", b"X", b"x")


def _answers_as_memlogd(path: str, timeout: float) -> bool | None:
    """One round of questions: True when a memlogd serves at ``path`` (a dump is
    answered, and where a stats query is answered too, its keeper is alive);
    False when nobody does (nobody listens, or a worker whose keeper died);
    None when it cannot be told yet (nothing answered, or a dump but no stats:
    upstream's memlogd, or a worker closing its socket).  _Refused, OSError."""
    from memlogd.wire import protocol as proto
    from memlogd.wire.answerparser import AnswerParser, stats_in

    _ask(path, bytes([proto.QueryMode.DUMP]), timeout, whole=False)
    stats_query = proto.encode_request(proto.QueryRequest(stats=True))
    try:
        answer = _ask(path, stats_query, timeout, whole=True)
    except (_NoAnswer, _Refused):
        return None
    try:
        values = stats_in(AnswerParser(extended=True).feed(answer))
    except MemlogdError:
        return None  # no statistics: upstream's (confirmed by the next round)
    keeper_pid = values.get("keeper_pid")
    if not isinstance(keeper_pid, int) or isinstance(keeper_pid, bool):
        return True  # ours, without a keeper (-no-keeper)
    return _keeper_alive(keeper_pid)


def query_socket_live(path: str, check_s: float = LIVE_CHECK_S) -> bool:
    """Does a memlogd serve at the query socket ``path``?  Asked for up to
    ``check_s``: a worker whose keeper was just killed may still hold the socket
    (exiting, or stopped) without answering; after that, no."""
    deadline = time.monotonic() + check_s
    upstream = 0  # rounds in a row with a dump but no stats
    while True:
        left = deadline - time.monotonic()
        try:
            verdict = _answers_as_memlogd(path, max(0.01, min(PROBE_S, left)))
        except _Refused:
            return False
        except _NoAnswer:
            upstream = 0
        except OSError:
            return True  # someone's socket, not ours to remove
        else:
            if verdict is not None:
                return verdict
            upstream += 1
            if upstream >= UPSTREAM_ROUNDS:
                return True
        if left <= 0:
            return False
        time.sleep(PROBE_PAUSE_S)


def _is_live(path: str, kind: int) -> bool:
    """Does something answer at the Unix socket ``path``?"""
    if kind == socket.SOCK_STREAM:
        return query_socket_live(path)
    probe = socket.socket(socket.AF_UNIX, kind)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except BlockingIOError:
        return True  # a listener with a full backlog is still alive
    except OSError as exc:
        # EACCES and friends: someone's socket, not ours to remove
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    else:
        return True
    finally:
        probe.close()


def prepare_path(path: str, kind: int) -> None:
    """Remove a stale socket file at ``path``; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SocketError(f"cannot use socket path {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketError(f"cannot use socket path {path}: it exists and is not a socket")
    if _is_live(path, kind):
        raise SocketError(f"a memlogd is already serving at {path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def bind_unix(path: str, kind: int, mode: int) -> socket.socket:
    """A new socket of ``kind`` bound at ``path`` with permissions ``mode``."""
    prepare_path(path, kind)
    sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise SocketError(f"cannot bind socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    return sock


def adopt_fd(fd: int, kind: int, what: str) -> socket.socket:
    """An inherited, already bound socket (``-fd-log`` / ``-fd-query``)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise SocketError(f"{what} fd {fd} is not a usable socket: {exc.strerror}") from None
    if sock.family != socket.AF_UNIX or sock.type != kind:
        sock.detach()
        raise SocketError(f"{what} fd {fd} is not a Unix socket of the right type")
    os.set_inheritable(fd, False)
    if kind == socket.SOCK_STREAM:
        try:
            sock.listen(LISTEN_BACKLOG)
        except OSError as exc:
            sock.detach()
            raise SocketError(f"{what} fd {fd} cannot listen: {exc.strerror}") from None
    return sock


def socket_path(sock: socket.socket) -> str | None:
    name = sock.getsockname()
    return name if isinstance(name, str) and name else None


def unlink_quietly(path: str | None) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def open_sockets(config: DaemonConfig) -> Sockets:
    """Bind (or adopt) both sockets; returns them and the paths to remove at exit."""
    owned: list[str] = []
    log_sock = query_sock = None

    def one(fd: int | None, flag: str, path: str, kind: int) -> socket.socket:
        """The inherited ``fd`` (given as ``flag``), else ``path`` bound."""
        if fd is not None:
            sock = adopt_fd(fd, kind, flag)
            if config.unlink_inherited and (inherited := socket_path(sock)):
                owned.append(inherited)
            return sock
        sock = bind_unix(path, kind, config.socket_mode)
        owned.append(path)
        return sock

    try:
        log_sock = one(config.fd_log, "-fd-log", config.socket_log, socket.SOCK_DGRAM)
        query_sock = one(config.fd_query, "-fd-query", config.socket_query, socket.SOCK_STREAM)
    except BaseException:
        for sock in (log_sock, query_sock):
            if sock is not None:
                sock.close()
        for path in owned:
            unlink_quietly(path)
        raise
    log_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    log_sock.setblocking(False)
    query_sock.setblocking(False)
    return log_sock, query_sock, owned
