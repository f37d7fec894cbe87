"""What memlogd's keeper holds, and how it outlives the keeper's own
re-execution on an upgrade (docs/memlogd.md, "The keeper", "Upgrading").

:class:`KeeperState` is the sockets, the journal and every source fd the
keeper holds; :func:`reexec` becomes the program on disk with all of them (and
the running worker), described in a small binary blob in a memfd, and
:func:`adopt_state` takes them back in the new program.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import NoReturn

from memlogd.wire import handover

KEEPER_OOM_SCORE = "-1000"  # the keeper is small and holds everything
OOM_SCORE_ADJ = "/proc/self/oom_score_adj"


@dataclass
class Held:
    """The keeper's copy of a source fd."""

    fd: int
    spec: handover.SourceSpec


@dataclass
class Worker:
    pid: int
    sock: socket.socket
    started: float
    ready_at: float | None = None
    killed: bool = False
    outbox: list[tuple[bytes, list[int]]] = field(default_factory=list)  # not sent yet


@dataclass
class KeeperState:
    """What the keeper holds; carried across its own re-execution as fds and
    a small binary description (:func:`encode_state`)."""

    argv: list[str]  # memlogd's arguments, for a re-execution
    log_sock: socket.socket
    query_sock: socket.socket
    owned: list[str]  # socket files to remove at exit
    journal_fd: int
    held: dict[int, Held] = field(default_factory=dict)
    next_key: int = 1
    worker_starts: int = 0
    oom_score: str | None = None


_STATE_HEAD = struct.Struct("<iiiiiQQi")  # log, query, journal, worker sock, pid, next, starts, n
_STATE_SOURCE = struct.Struct("<iQiiH")  # fd, key, pid, uid, name length


def reexec(state: KeeperState, worker: Worker) -> NoReturn:
    """Become the program on disk, keeping every fd and the worker (our child).
    The signals the keeper handles are blocked until the new program handles
    them (the mask survives ``execve``; ignored signals stay ignored): one
    sent meanwhile waits instead of killing the keeper."""
    signal.pthread_sigmask(
        signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGCHLD}
    )
    held = list(state.held.values())
    parts = [
        _STATE_HEAD.pack(
            state.log_sock.fileno(),
            state.query_sock.fileno(),
            state.journal_fd,
            worker.sock.fileno(),
            worker.pid,
            state.next_key,
            state.worker_starts,
            len(held),
        )
    ]
    for h in held:
        name = h.spec.name.encode("utf-8", "replace")
        pid = -1 if h.spec.pid is None else h.spec.pid
        uid = -1 if h.spec.uid is None else h.spec.uid
        parts.append(_STATE_SOURCE.pack(h.fd, h.spec.key, pid, uid, len(name)) + name)
    extra = "\0".join([state.oom_score or "", *state.owned]).encode()
    blob = b"".join(parts) + struct.pack("<I", len(extra)) + extra
    fd = os.memfd_create("memlogd-keeper-state", 0)
    os.write(fd, blob)
    for kept in [state.log_sock.fileno(), state.query_sock.fileno(), state.journal_fd]:
        os.set_inheritable(kept, True)
    os.set_inheritable(worker.sock.fileno(), True)
    for h in held:
        os.set_inheritable(h.fd, True)
    signal.set_wakeup_fd(-1)
    argv = [sys.executable, "-m", "memlogd", "--keeper-state", str(fd), *state.argv]
    os.execv(sys.executable, argv)


def adopt_state(fd: int, argv: list[str]) -> tuple[KeeperState, Worker]:
    """The state :func:`reexec` passed on (in the new program)."""
    data = b""
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    os.close(fd)
    log_fd, query_fd, journal_fd, worker_fd, pid, next_key, starts, count = _STATE_HEAD.unpack_from(
        data
    )
    at = _STATE_HEAD.size
    held: dict[int, Held] = {}
    for _ in range(count):
        sfd, key, spid, suid, length = _STATE_SOURCE.unpack_from(data, at)
        at += _STATE_SOURCE.size
        name = data[at : at + length].decode("utf-8", "replace")
        at += length
        spec = handover.SourceSpec(
            key, name, None if spid == -1 else spid, None if suid == -1 else suid
        )
        held[key] = Held(sfd, spec)
        os.set_inheritable(sfd, False)
    (length,) = struct.unpack_from("<I", data, at)
    oom, *owned = data[at + 4 : at + 4 + length].decode().split("\0")
    for kept in (log_fd, query_fd, journal_fd, worker_fd):
        os.set_inheritable(kept, False)
    log_sock = socket.socket(fileno=log_fd)
    query_sock = socket.socket(fileno=query_fd)
    worker_sock = socket.socket(fileno=worker_fd)
    worker_sock.setblocking(False)
    state = KeeperState(
        argv=argv,
        log_sock=log_sock,
        query_sock=query_sock,
        owned=owned,
        journal_fd=journal_fd,
        held=held,
        next_key=next_key,
        worker_starts=starts,
        oom_score=oom or None,
    )
    return state, Worker(pid, worker_sock, time.monotonic(), ready_at=time.monotonic())


def lower_oom_score() -> str | None:
    """Lower the keeper's OOM score where allowed; the old score, for the worker."""
    try:
        with open(OOM_SCORE_ADJ) as f:
            old = f.read().strip()
        with open(OOM_SCORE_ADJ, "w") as f:
            f.write(KEEPER_OOM_SCORE)
    except OSError:
        return None
    return old


def raise_fd_limit() -> None:
    """Every source fd is held twice (keeper and worker): use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
