"""The one writer of every program's data output (stdout, the console), on trio.

* :meth:`Output.write` waits for room (logread, kmsg): a reader that does not
  read slows the writer down, nothing is lost.
* :meth:`Output.write_nowait` never waits (memlogd's console echo): what does
  not fit in a bounded queue is dropped and counted, and :meth:`Output.run`
  drains the queue in the background.

A pipe or socket is made non-blocking (and restored by :meth:`Output.close`)
so that a program stays responsive to signals while nobody reads.  A terminal
is shared with the shell, so it is made non-blocking only for ``write_nowait``
users, who must never stall.  :func:`watch_closed` notices a reader that went
away (``| head``) even while nothing is written, and :func:`quiet_exit` ends a
program without Python's final flush failing on a closed pipe (README,
"Exit status").
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import sys
from collections import deque
from typing import NoReturn

import trio

from memlogd.errors import MemlogdError


class OutputClosedError(MemlogdError):
    """Nobody reads the output any more (EPIPE): nobody to tell."""


class OutputFailedError(MemlogdError):
    """Writing the output failed otherwise (``/dev/full``, an I/O error): an
    error to report (SPEC 19), ``cannot write to stdout: REASON``."""


_FD_NAMES = {1: "stdout", 2: "stderr"}


class Output:
    def __init__(self, fd: int, *, limit: int = 0) -> None:
        """``limit``: bytes ``write_nowait`` may queue (0: it is not used)."""
        self.fd = fd
        self.limit = limit
        self.dropped = 0  # lines write_nowait dropped
        self._queue: deque[memoryview] = deque()
        self._queued = 0
        self._wake = trio.Event()
        self._restore: bool | None = None
        with contextlib.suppress(OSError):
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (limit and stat.S_ISCHR(mode)):
                self._restore = os.get_blocking(fd)
                os.set_blocking(fd, False)

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for room; OutputClosedError when the
        reader is gone, OutputFailedError when writing failed otherwise."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.fd)
            except BrokenPipeError:
                raise OutputClosedError("output closed") from None
            except OSError as exc:
                name = _FD_NAMES.get(self.fd, f"fd {self.fd}")
                raise OutputFailedError(f"cannot write to {name}: {exc.strerror}") from None

    def write_nowait(self, data: bytes, lines: int) -> None:
        """Write or queue ``data`` (``lines`` lines) without waiting; drop it
        (counted) when the queue is full or the output failed."""
        view = memoryview(data)
        if not self._queue:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.dropped += lines
                return
            if sent == len(view):
                return
            view = view[sent:]
            self._wake.set()
        elif self._queued + len(view) > self.limit:
            self.dropped += lines
            return
        self._queue.append(view)
        self._queued += len(view)

    async def run(self) -> None:
        """Drain what ``write_nowait`` queued, for ever (cancel to stop)."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                await trio.lowlevel.wait_writable(self.fd)
                head = self._queue[0]
                try:
                    sent = os.write(self.fd, head)
                except BlockingIOError:
                    continue
                except OSError:
                    self._queue.clear()
                    self._queued = 0
                    break
                self._queued -= sent
                if sent == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[sent:]

    def close(self) -> None:
        """Restore the fd's blocking mode (the fd itself stays open)."""
        if self._restore is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(self.fd, self._restore)
            self._restore = None


async def watch_closed(fd: int) -> None:
    """Return once the reader of ``fd`` has gone away (a closed pipe), even
    when nothing is being written: an epoll set with no events still reports
    the write end's error/hang-up, and is itself readable then.  Never returns
    for a regular file or /dev/null."""
    with select.epoll() as ep:
        try:
            ep.register(fd, 0)
        except OSError:
            await trio.sleep_forever()
        while not ep.poll(0):
            await trio.lowlevel.wait_readable(ep.fileno())


def quiet_exit(code: int) -> NoReturn:
    """Exit without Python's final flush of stdout failing on a closed pipe."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()  # what click printed (help, usage)
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    sys.exit(code)
