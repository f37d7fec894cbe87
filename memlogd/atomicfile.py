"""Replacing a small file atomically, and reading it back without trusting it:
the one way every program keeps its state (logwrite's cursor, logship's and
kmsg's state files). I/O.

The data goes to ``NAME.tmp`` beside it, is fsynced when asked, and the
temporary file is renamed over ``NAME``: a process killed at any point leaves
the old file or the new one, never half of either.  A power loss needs the
file's fsync (``sync``) and, for the rename, the directory's (the caller's
choice of how often).

A state file's directory may be writable by others (docs/memlogd.md,
"Security"): nothing found there is opened through a symlink or in a way that
can block (``O_NOFOLLOW | O_NONBLOCK``), a FIFO or device is refused, and a
file that another user owns or may write is not trusted
(:class:`UntrustedFileError`).  The temporary file is always a new one
(``O_EXCL``, after removing whatever had its name).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from memlogd.errors import MemlogdError

TMP_SUFFIX = ".tmp"
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class UntrustedFileError(MemlogdError):
    """A state file (or directory) that is not used: the message says why
    (``it is a FIFO``, ``it is owned by uid 1000``, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def untrusted_reason(st: os.stat_result, *, directory: bool = False) -> str | None:
    """Why a file (or a directory) with this status is not to be trusted, or None:
    not the kind expected, not owned by this process's user, or (a file)
    writable by others."""
    want = stat.S_ISDIR if directory else stat.S_ISREG
    if not want(st.st_mode):
        return "it is " + _kind(st.st_mode)
    if st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}, not {os.geteuid()}"
    if not directory and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"it is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def read_state(name: str, limit: int, *, dir_fd: int | None = None) -> bytes | None:
    """The first ``limit`` bytes of the state file ``name`` (relative to
    ``dir_fd`` when given), or None when there is none.  UntrustedFileError
    when it is a symlink, a FIFO, a device, not ours or writable by others, or
    cannot be read."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFileError("it is a symbolic link") from None
        raise UntrustedFileError(f"cannot open it: {exc.strerror or exc}") from None
    try:
        reason = untrusted_reason(os.fstat(fd))
        if reason is not None:
            raise UntrustedFileError(reason)
        return os.read(fd, limit)
    except OSError as exc:
        raise UntrustedFileError(f"cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def check_state_dir(path: str) -> None:
    """UntrustedFileError unless ``path`` is a directory (not a symlink to one)
    owned by this process's user."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UntrustedFileError(f"cannot use it: {exc.strerror or exc}") from None
    reason = untrusted_reason(st, directory=True)
    if reason is not None:
        raise UntrustedFileError(reason)


def create_tmp(name: str, *, dir_fd: int | None = None, mode: int = 0o644) -> int:
    """A new, empty ``name`` open for writing: whatever had the name (a FIFO, a
    symlink, a file someone planted) is removed first, and the file is made
    with ``O_EXCL``.  OSError on failure."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)
    return os.open(name, TMP_FLAGS, mode, dir_fd=dir_fd)


def replace_file(
    name: str, data: bytes, *, dir_fd: int | None = None, sync: bool = True, mode: int = 0o644
) -> None:
    """Make ``name`` (relative to ``dir_fd`` when given) hold exactly ``data``.
    OSError on failure, the old file staying in place and no temporary left."""
    tmp = name + TMP_SUFFIX
    fd = create_tmp(tmp, dir_fd=dir_fd, mode=mode)
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
