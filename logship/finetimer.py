"""Waiting a fraction of a millisecond in trio: a Linux timerfd. I/O (trio).

trio's timeouts go through ``epoll_wait``, whose timeout is in whole
milliseconds (Python rounds ``trio.sleep(0.0002)`` up to 1 ms).
:class:`logship.transport.RelpTransport` paces its reads of a fast receiver's
responses by 0.3 ms (docs/logship.md, "Pacing"), for which a millisecond is
far too long: a :class:`FineTimer` is a ``timerfd`` (monotonic clock,
nanoseconds) that trio waits on as on a socket.  Python 3.11 has no
``os.timerfd_create``; the two calls are made through ``ctypes`` (the C
library the interpreter runs on, glibc or musl).  Where that is not possible
(not Linux, no ctypes, a 32-bit ``long``) :func:`open_fine_timer` gives None
and the caller does without.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import trio

__all__ = ["FineTimer", "open_fine_timer"]

_CLOCK_MONOTONIC = 1  # linux/time.h
_NS_PER_S = 1_000_000_000


class FineTimer:
    """One timerfd; :meth:`sleep` as often as wanted (one task at a time),
    then :meth:`close`."""

    def __init__(self, fd: int, settime: Any, spec: Any) -> None:
        self._fd = fd
        self._settime = settime  # timerfd_settime(fd, flags, new, old)
        self._spec = spec  # the struct itimerspec handed to it, reused

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (> 0; microseconds count) on the monotonic clock.
        A checkpoint: cancellable as :func:`trio.sleep` is."""
        ns = max(1, round(seconds * _NS_PER_S))
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(ns, _NS_PER_S)
        if self._settime(self._fd, 0, self._spec, None) != 0:  # re-arming drops an old expiry
            await trio.sleep(seconds)  # not expected: the timer was made, the values are valid
            return
        await trio.lowlevel.wait_readable(self._fd)
        with contextlib.suppress(BlockingIOError):  # woken with nothing to read: done anyway
            os.read(self._fd, 8)  # the count of expiries: readable again only when re-armed

    def close(self) -> None:
        if self._fd >= 0:
            trio.lowlevel.notify_closing(self._fd)
            os.close(self._fd)
            self._fd = -1


def open_fine_timer() -> FineTimer | None:
    """A new :class:`FineTimer`, or None where there is none to be had."""
    try:
        import ctypes  # here: only a RELP session needs it (about 3 ms of a start)
    except ImportError:  # pragma: no cover - a Python built without ctypes
        return None
    if not hasattr(os, "O_NONBLOCK") or ctypes.sizeof(ctypes.c_long) != 8:
        return None  # pragma: no cover - time_t and long differ on 32-bit systems

    class Timespec(ctypes.Structure):
        _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

    class Itimerspec(ctypes.Structure):
        _fields_ = (("it_interval", Timespec), ("it_value", Timespec))

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    create.argtypes = (ctypes.c_int, ctypes.c_int)
    create.restype = ctypes.c_int
    settime.argtypes = (
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(Itimerspec),
        ctypes.POINTER(Itimerspec),
    )
    settime.restype = ctypes.c_int
    fd = create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)  # TFD_NONBLOCK | TFD_CLOEXEC
    if fd < 0:  # pragma: no cover - out of file descriptors
        return None
    return FineTimer(fd, settime, Itimerspec())
