"""Why connecting to one of memlogd's sockets failed, in words (docs/logread.md, "Errors").

For every client: the text of a :class:`memlogd.errors.ConnectError`.
"""

from __future__ import annotations

import errno
import os
import socket
import stat


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
