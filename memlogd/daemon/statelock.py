"""One owner per role state file (docs/memlogd.md, "Roles"; SPEC 17). I/O (trio).

A worker whose keeper died may still be running its roles while the next
memlogd starts its own: both would read and write ``kmsg.state`` or
``logship.state``.  Each role therefore holds an advisory lock (``flock``) on
``STATE.lock`` beside its state file for as long as it runs; a second one
waits for it, and says so when the wait is not a moment's (a worker handing
over lets go within its grace period).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
import trio

from memlogd.atomicfile import UntrustedFileError, check_state_dir
from memlogd.errors import MemlogdError

log = structlog.get_logger("memlogd")

LOCK_SUFFIX = ".lock"
RETRY_S = 0.5  # how often a lock held by another is tried again
QUIET_S = 3.0  # waited this long: a warning (once)


def ensure_state_dir(path: str) -> None:
    """The state directory (``-state-dir``, ``memlogd.d``), made if missing;
    refused (MemlogdError: the role fails, and is retried) when it is a symlink
    or another user's (SPEC 19)."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    try:
        check_state_dir(path)
    except UntrustedFileError as exc:
        raise MemlogdError(f"cannot use state directory {path}: {exc.reason}") from None


@asynccontextmanager
async def owning(state_file: str | None) -> AsyncIterator[None]:
    """Hold the lock beside ``state_file`` while the body runs (waiting for it)."""
    if state_file is None:  # nothing to own
        yield
        return
    path = state_file + LOCK_SUFFIX
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # SPEC 19
    fd = os.open(path, flags, 0o600)
    try:
        waited = 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if waited < QUIET_S <= waited + RETRY_S:
                log.warning(
                    "state_file_locked",
                    file=state_file,
                    reason="another memlogd (a worker whose keeper died?) uses it",
                    consequence="waiting for it",
                )
            waited += RETRY_S
            await trio.sleep(RETRY_S)
        yield
    finally:
        os.close(fd)
