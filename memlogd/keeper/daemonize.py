"""``memlogd -daemonize``: the parent binds both sockets, re-executes memlogd
with them as fds 3 and 4 (and a readiness pipe as fd 5) in a new session, and
exits 0 only once the child has taken them over (1 if it failed to start): the
child is the keeper (or the daemon, with ``--no-keeper``), which says it is
ready as soon as it holds both sockets (docs/memlogd.md, "Boot")."""

from __future__ import annotations

import fcntl
import os
import select
import sys

from memlogd.config import DAEMONIZE_READY_TIMEOUT_S
from memlogd.sockets import Sockets, unlink_quietly

_FIRST_FREE_FD = 10


def child_argv(args: list[str]) -> list[str]:
    """The child's command line: the same flags, without -daemonize, with the
    inherited sockets and readiness pipe at fixed fds."""
    kept = [a for a in args if a.split("=", 1)[0] not in ("-daemonize", "--daemonize")]
    return [
        sys.executable,
        "-m",
        "memlogd",
        *kept,
        "-fd-log",
        "3",
        "-fd-query",
        "4",
        "--ready-fd",
        "5",
        "--unlink-inherited",
    ]


def spawn_daemon(args: list[str], sockets: Sockets) -> int:
    log_sock, query_sock, paths = sockets
    read_end, write_end = os.pipe()
    moved = [
        fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _FIRST_FREE_FD)
        for fd in (log_sock.fileno(), query_sock.fileno(), write_end)
    ]
    os.close(write_end)
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
    ]
    actions += [
        (os.POSIX_SPAWN_DUP2, fd, target) for fd, target in zip(moved, (3, 4, 5), strict=True)
    ]
    try:
        pid = os.posix_spawn(
            sys.executable, child_argv(args), os.environ, file_actions=actions, setsid=True
        )
    finally:
        for fd in moved:
            os.close(fd)
        log_sock.close()
        query_sock.close()
    ready = _wait_ready(read_end)
    if ready:
        return 0
    try:
        _, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        status = 0
    code = os.waitstatus_to_exitcode(status) if status else 1
    print(f"memlogd: the daemon failed to start (status {code})", file=sys.stderr)
    for path in paths:  # the child never served: the files are ours to remove
        unlink_quietly(path)
    return 1


def _wait_ready(fd: int) -> bool:
    try:
        readable, _, _ = select.select([fd], [], [], DAEMONIZE_READY_TIMEOUT_S)
        return bool(readable) and os.read(fd, 1) == b"\n"
    finally:
        os.close(fd)
