"""Why connecting to one of memlogd's sockets failed, in words (docs/logread.md, "Errors").

For every client: the text of a :class:`memlogd.errors.ConnectError`.
"""

from __future__ import annotations

import errno
import os
import socket
import stat


def query_socket_beside(log_path: str) -> str | None:
    """A listening stream socket in the log socket's directory whose name says it
    may be memlogd's query socket (``memlogd``/``query`` in it, or ``...q.sock``):
    the one a user who gave the log socket meant.  None when there is none."""
    log_path = os.path.abspath(log_path)
    directory = os.path.dirname(log_path)
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None
    for name in names:
        path = os.path.join(directory, name)
        likely = "memlogd" in name or "query" in name or name.endswith("q.sock")
        if not likely or path == log_path:
            continue
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                continue
        except OSError:
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as probe:
            try:
                probe.connect(path)
            except BlockingIOError:
                pass  # listening, its backlog full
            except OSError:
                continue
        return path
    return None


def connect_reason(path: str, exc: OSError, kind: int = socket.SOCK_STREAM) -> str:
    """Why connecting to ``path`` failed, in words that say what the path is
    when it is not the socket that was meant (docs/logread.md, "Errors")."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such socket (is memlogd running?)"
    except OSError as stat_exc:
        return stat_exc.strerror or str(stat_exc)
    if not stat.S_ISSOCK(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a file"
        return f"{path} is {what}, not a socket"
    if exc.errno == errno.EPROTOTYPE:
        if kind == socket.SOCK_STREAM:
            beside = query_socket_beside(path)
            if beside is not None:
                return (
                    "that is memlogd's log socket, not its query socket "
                    f"(the query socket beside it: -socket {beside})"
                )
            return (
                "that is memlogd's log socket, not its query socket "
                "(the query socket is usually /var/run/memlogdq.sock)"
            )
        return "that is memlogd's query socket, not its log socket"
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused (a socket file without a memlogd behind it)"
    if exc.errno == errno.EAGAIN:
        return "memlogd is busy (its queue of handed-over fds is full)"
    return exc.strerror or str(exc)
