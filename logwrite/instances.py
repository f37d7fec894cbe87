"""``DIR/instances``: the memlogd instances (boots) whose entries logwrite wrote
into DIR, for ``logread -D DIR --list-boots`` and ``-b`` (docs/logwrite.md). I/O.

One line ``INSTANCE FIRST_TIME`` per instance (the format is
:mod:`memlogd.wire.logdir`'s), FIRST_TIME being the time of that instance's
first entry written, as the log lines write times.  Not a ``.log`` file, so it
is never rotated and no source's file can be named like it.  Replaced
atomically (:func:`memlogd.atomicfile.replace_file`); an instance already
listed (logwrite or memlogd's worker restarted on the same instance) is not
added again; the last :data:`memlogd.wire.logdir.MAX_INSTANCES` are kept.
"""

from __future__ import annotations

import errno
import os
import stat

from memlogd.atomicfile import replace_file
from memlogd.wire.logdir import (
    INSTANCES_NAME,
    MAX_INSTANCES,
    Boot,
    add_instance,
    decode_instances,
    encode_instances,
)

MAX_INSTANCES_BYTES = MAX_INSTANCES * 1024  # far more than 100 lines of a uuid and a time
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def load_instances(dir_fd: int) -> list[Boot]:
    """The instances listed in DIR (none when the file is missing). OSError when
    it cannot be read (also when it is not a regular file)."""
    try:
        fd = os.open(
            INSTANCES_NAME,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            dir_fd=dir_fd,
        )
    except FileNotFoundError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", INSTANCES_NAME)
        data = os.read(fd, MAX_INSTANCES_BYTES)
    finally:
        os.close(fd)
    return decode_instances(data)[0]


def note_instance(dir_fd: int, instance: str, first_time: str) -> bool:
    """List ``instance`` (its first entry written at ``first_time``) in DIR unless
    it is there; whether it was added.  OSError when the file cannot be written."""
    boots = add_instance(load_instances(dir_fd), instance, first_time)
    if boots is None:
        return False
    replace_file(INSTANCES_NAME, encode_instances(boots), dir_fd=dir_fd, mode=0o640)
    return True
