"""What memlogd's processes are called, and its pid file (docs/memlogd.md,
"Process names and the pid file").

The keeper is ``memlogd`` and the worker ``memlogd: worker``, so that ``pidof
memlogd``, ``pgrep -x memlogd`` and ``kill -USR2 $(pidof -s memlogd)`` find the
keeper (a Python program is otherwise ``python3``).  ``/proc/PID/comm`` (what
pgrep, ps -o comm and busybox's pidof read) is set with ``prctl(PR_SET_NAME)``
through libc; the command line's first word (what sysvinit's and procps's
pidof read) is rewritten in place, as setproctitle does, through
``/proc/self/mem``: ``memlogd -socket-log ...`` instead of ``python3 -m
memlogd -socket-log ...``.  Both are best effort: a kernel that refuses
leaves the old names.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from memlogd.atomicfile import replace_file

PR_SET_NAME = 15  # <linux/prctl.h>
COMM_BYTES = 15  # /proc/PID/comm holds at most this (16 with the NUL)
KEEPER_NAME = "memlogd"
WORKER_NAME = "memlogd: worker"


def set_process_name(name: str, args: Sequence[str] | None = None) -> bool:
    """Name this process ``name`` (comm: its first 15 bytes), and make its
    command line ``name ARGS...`` (without ``args``: the arguments it shows now,
    as a forked worker keeps its keeper's).  False when the comm could not be set."""
    import ctypes  # (not on the boot path: named once ready)

    with contextlib.suppress(OSError, ValueError, IndexError):
        if args is None:
            with open("/proc/self/cmdline", "rb") as f:
                args = [os.fsdecode(word) for word in f.read().rstrip(b"\0").split(b"\0")[1:]]
        _set_command_line([name, *args])
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_NAME, name.encode()[:COMM_BYTES], 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _set_command_line(words: Sequence[str]) -> None:
    """Overwrite the memory ``/proc/self/cmdline`` shows (never made longer)."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: stat fields 48, 49
    new = b"".join(os.fsencode(word) + b"\0" for word in words)
    if not 0 < len(new) <= end - start:
        return
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        mem.write(new.ljust(end - start, b"\0"))


def write_pid_file(path: str) -> str:
    """Write this process's pid to ``path`` (atomically); its absolute path.
    OSError when it cannot be written."""
    path = os.path.abspath(path)
    replace_file(path, f"{os.getpid()}\n".encode(), sync=False)
    return path
