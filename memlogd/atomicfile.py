"""Replacing a small file atomically: the one way every program saves its state
(logwrite's cursor, logship's and kmsg's state files). I/O.

The data goes to ``NAME.tmp`` beside it, is fsynced when asked, and the
temporary file is renamed over ``NAME``: a process killed at any point leaves
the old file or the new one, never half of either.  A power loss needs the
file's fsync (``sync``) and, for the rename, the directory's (the caller's
choice of how often).
"""

from __future__ import annotations

import contextlib
import errno
import os

TMP_SUFFIX = ".tmp"


def replace_file(
    name: str, data: bytes, *, dir_fd: int | None = None, sync: bool = True, mode: int = 0o644
) -> None:
    """Make ``name`` (relative to ``dir_fd`` when given) hold exactly ``data``.
    OSError on failure, the old file staying in place and no temporary left."""
    tmp = name + TMP_SUFFIX
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode, dir_fd=dir_fd)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(errno.ENOSPC, f"short write of {tmp}")
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
