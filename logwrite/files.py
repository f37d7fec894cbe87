"""The log directory: append handles, rotation, disk-full relief (docs/logwrite.md). I/O.

Everything is done relative to one directory fd, and no file is opened
through a symlink (``O_NOFOLLOW``), nor one that is not a plain regular file
with a single link, so a source name or a planted file can never make
logwrite write outside the directory.  At most ``max_open`` handles are open
(least recently used closed first).

:meth:`LogFiles.write` takes a batch of lines in order and writes each file's
lines with as few ``write`` calls as rotation allows (rotation is decided per
entry, see :func:`logwrite.rotation.plan_segments`).  A *transient* error
(disk full, I/O error, read-only file system) stops the batch: what was not
written is handed back, in order, for the caller to retry.  A *refusal*
(a symlink or a directory where a log should be) drops that file's lines,
logged, and the rest of the batch goes on.

:func:`ensure_log_dir` checks the directory once at start and says, as a
:class:`LogDirError`, what is wrong with it (``it is not a directory``, ...).

The directory is resolved by its path whenever it is attached
(:meth:`LogFiles.attach`), and held (with an advisory lock, ``flock``) only
while it can be written: :meth:`LogFiles.release` closes every fd in it, so
that it can be unmounted, and :func:`dir_identity` tells whether the path
still names the directory held (a disk mounted over it names another).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from logwrite.rotation import (
    Remove,
    choose_victim,
    log_file_name,
    plan_segments,
    rotation_plan,
    undo_plan,
)
from memlogd.errors import MemlogdError
from memlogd.ratelimit import LimitedLog
from memlogd.wire.cursorfile import Pending

log = structlog.get_logger("logwrite")

FILE_MODE = 0o640
OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# Errors that concern one file, not the disk: that file's lines are dropped.
REFUSED_ERRNOS = frozenset(
    {errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENAMETOOLONG, errno.EINVAL, errno.EFBIG}
)


@dataclass(frozen=True, slots=True)
class Item:
    """One line to append to ``<stem>.log``; ``seq`` is the entry it came from."""

    seq: int | None
    stem: str
    data: bytes


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    remaining: list[Item]  # not written (in batch order); empty when all went well
    error: OSError | None  # the transient error that stopped the batch
    refused: int  # lines dropped because their file was refused


class LogDirError(MemlogdError):
    """The log directory cannot be used: ``cannot use log directory DIR: REASON``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot use log directory {path}: {reason}")
        self.path = path
        self.reason = reason


class LogDirLockedError(OSError):
    """Another persister (a logwrite, or a memlogd's ``-persist-dir``) holds the directory."""


DirIdentity = tuple[int, int]  # st_dev, st_ino


def dir_identity(path: str) -> DirIdentity | None:
    """The directory ``path`` names now (None when it names none)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def ensure_log_dir(path: str) -> None:
    """Create ``path`` (and missing parents) unless it exists; raise LogDirError
    saying what is wrong when it is no directory logwrite can write in.

    A directory on a read-only file system passes: that is a condition to wait
    out (the file system may be remounted read-write), not a mistake."""
    if not path:
        raise LogDirError(path, "the name is empty")
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:  # something that is not a directory has the name
        raise LogDirError(path, _not_a_directory(path)) from None
    except NotADirectoryError:
        raise LogDirError(path, f"{_file_ancestor(path)} is not a directory") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        failed = exc.filename if isinstance(exc.filename, str) else path
        if os.path.normpath(failed) != os.path.normpath(path):
            reason = f"cannot create {failed}: {reason}"
        elif not os.path.lexists(path):
            reason = f"cannot create it: {reason}"
        raise LogDirError(path, reason) from None
    if not os.access(path, os.W_OK | os.X_OK, effective_ids=True) and not _read_only_fs(path):
        raise LogDirError(path, os.strerror(errno.EACCES))


def _not_a_directory(path: str) -> str:
    if os.path.islink(path) and not os.path.exists(path):
        return f"it is a symbolic link to {os.readlink(path)}, which does not exist"
    return "it is not a directory"


def _file_ancestor(path: str) -> str:
    """The first ancestor of ``path`` that exists and is not a directory."""
    parts = os.path.normpath(path).split(os.sep)
    for i in range(1, len(parts)):
        ancestor = os.sep.join(parts[:i]) or os.sep
        if os.path.lexists(ancestor) and not os.path.isdir(ancestor):
            return ancestor
    return os.path.dirname(os.path.normpath(path)) or "."


def _read_only_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


class NotRegularFileError(OSError):
    """A log path that is not a regular file with one link."""


class _Stopped(Exception):
    def __init__(self, done: int, partial: int, exc: OSError) -> None:
        self.done = done  # items fully written
        self.partial = partial  # bytes of the next item written
        self.exc = exc


@dataclass
class _Open:
    fd: int
    size: int
    dirty: bool = False


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "") or type(exc).__name__


class LogFiles:
    def __init__(
        self,
        log_dir: str,
        *,
        max_files: int,
        max_size: int,
        max_open: int,
        reporter: LimitedLog,
    ) -> None:
        self.log_dir = log_dir
        self.max_files = max_files
        self.max_size = max_size
        self.max_open = max_open
        self.reporter = reporter
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._unsynced: set[str] = set()  # closed while dirty: fsynced at exit
        self.dir_fd = -1  # the directory held (locked), -1 when none is
        self.identity: DirIdentity | None = None  # of the directory held

    # ------------------------------------------------------------------ directory

    @property
    def held(self) -> bool:
        return self.dir_fd >= 0

    def attach(self) -> DirIdentity:
        """Hold the directory the path names now, locked (``flock``), when it can
        be written: its identity.  OSError when it cannot be used now (EROFS for
        a read-only file system), LogDirLockedError when another persister holds it."""
        self.release()
        fd = os.open(self.log_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LogDirLockedError(
                    errno.EWOULDBLOCK, "another logwrite or memlogd writes into it"
                ) from None
            if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self.dir_fd = fd
        self.identity = (st.st_dev, st.st_ino)
        return self.identity

    def release(self) -> None:
        """Close every file (fsynced) and the directory (its lock goes with it)."""
        if not self.held:
            return
        if os.fstat(self.dir_fd).st_nlink:  # (not a directory that was removed)
            self.sync()
        self.close_files()
        self._unsynced.clear()
        os.close(self.dir_fd)
        self.dir_fd = -1
        self.identity = None

    # ------------------------------------------------------------------ handles

    def _get(self, stem: str) -> _Open:
        handle = self._open.get(stem)
        if handle is not None:
            self._open.move_to_end(stem)
            return handle
        fd = self.open_file(log_file_name(stem))
        handle = _Open(fd, os.fstat(fd).st_size)
        if stem in self._unsynced:
            self._unsynced.discard(stem)
            handle.dirty = True
        self._open[stem] = handle
        while len(self._open) > self.max_open:
            old_stem, old = self._open.popitem(last=False)
            if old.dirty:
                self._unsynced.add(old_stem)
            os.close(old.fd)
        return handle

    def open_file(self, name: str) -> int:
        """Open ``DIR/name`` to append, never through a symlink, and only a
        regular file with one link (else NotRegularFileError)."""
        fd = os.open(name, OPEN_FLAGS, FILE_MODE, dir_fd=self.dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise NotRegularFileError(
                    errno.EINVAL, "not a regular file with a single link", name
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _close(self, stem: str, sync: bool) -> None:
        handle = self._open.pop(stem, None)
        if handle is None:
            return
        try:
            if sync and handle.dirty:
                os.fsync(handle.fd)
        finally:
            os.close(handle.fd)

    # ------------------------------------------------------------------ writing

    def write(self, items: Sequence[Item]) -> WriteOutcome:
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.stem, []).append(i)
        remaining: list[tuple[int, Item]] = []
        error: OSError | None = None
        refused = 0
        for stem, indexes in groups.items():
            if error is not None:
                remaining.extend((i, items[i]) for i in indexes)
                continue
            try:
                self._write_file(stem, [items[i] for i in indexes])
            except _Stopped as stop:
                rest = indexes[stop.done :]
                if self._is_refusal(stop.exc):
                    refused += len(rest)
                    self.reporter.error(
                        "log_file_refused",
                        kind=errno_name(stop.exc),
                        file=log_file_name(stem),
                        error=stop.exc.strerror,
                        lines_dropped=len(rest),
                    )
                    self._close(stem, sync=False)
                    continue
                error = stop.exc
                first = items[rest[0]]
                remaining.append((rest[0], replace(first, data=first.data[stop.partial :])))
                remaining.extend((i, items[i]) for i in rest[1:])
        remaining.sort(key=lambda pair: pair[0])
        return WriteOutcome([item for _, item in remaining], error, refused)

    def _is_refusal(self, exc: OSError) -> bool:
        if isinstance(exc, NotRegularFileError) or exc.errno in REFUSED_ERRNOS:
            return True
        if exc.errno in (errno.EACCES, errno.EPERM):
            # a file we may not write is refused; a directory we may not write
            # to is a condition to wait out (as a read-only file system is)
            return os.access(self.log_dir, os.W_OK)
        return False

    def _write_file(self, stem: str, items: list[Item]) -> None:
        """Append ``items`` to ``stem``'s file, rotating where needed; raises
        _Stopped with how far it got."""
        done = 0
        try:
            handle = self._get(stem)
            if os.fstat(handle.fd).st_nlink == 0:  # deleted under us (or its directory)
                self._close(stem, sync=False)
                handle = self._get(stem)
        except OSError as exc:
            raise _Stopped(0, 0, exc) from None
        segments = plan_segments(handle.size, [len(item.data) for item in items], self.max_size)
        for segment in segments:
            chunk = items[segment.start : segment.stop]
            data = b"".join(item.data for item in chunk)
            written = 0
            try:
                handle = self._get(stem)
                view = memoryview(data)
                while written < len(data):
                    n = os.write(handle.fd, view[written:])
                    written += n
                    handle.size += n
                    handle.dirty = True
            except OSError as exc:
                for item in chunk:
                    if written < len(item.data):
                        break
                    written -= len(item.data)
                    done += 1
                raise _Stopped(done, written, exc) from None
            done += len(chunk)
            if segment.rotate_after:
                self.rotate(stem)

    # ------------------------------------------------------------------ rotation

    def rotate(self, stem: str) -> None:
        """fsync and close ``stem.log``, then shift the files.  A failure is
        logged: the file then grows past the limit until a later rotation works."""
        try:
            self._close(stem, sync=True)
        except OSError as exc:
            self.reporter.error("fsync_failed", kind=errno_name(exc), error=exc.strerror)
        self._unsynced.discard(stem)
        for step in rotation_plan(stem, self.max_files):
            try:
                if isinstance(step, Remove):
                    os.unlink(step.path, dir_fd=self.dir_fd)
                else:
                    os.rename(step.src, step.dst, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.reporter.error(
                    "rotate_failed",
                    kind=errno_name(exc),
                    file=log_file_name(stem),
                    error=exc.strerror,
                )
                return

    # ------------------------------------------------------------------ undo

    def snapshot(self, stems: set[str]) -> Pending:
        """Each stem's files as they are now (inodes, and the live file's size):
        what :meth:`undo` puts back if the batch about to be written is cut."""
        out: Pending = {}
        for stem in stems:
            names = self._inodes(stem)
            handle = self._open.get(stem)
            if handle is not None:
                size = handle.size
            else:
                live = log_file_name(stem)
                size = self._stat_size(live) if live in names else 0
            out[stem] = (names, size)
        return out

    def undo(self, pending: Pending) -> list[str]:
        """Put the files of an unfinished batch back as they were; the names of
        the rotated files that cannot come back (a rotation dropped them)."""
        self.close_files()
        gone: list[str] = []
        for stem, (names, size) in pending.items():
            steps, lost = undo_plan(stem, names, self._inodes(stem))
            gone += lost
            for step in steps:
                if isinstance(step, Remove):
                    os.unlink(step.path, dir_fd=self.dir_fd)
                else:
                    os.rename(step.src, step.dst, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            live = log_file_name(stem)
            if live in names and live not in lost:
                flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # SPEC 19
                fd = os.open(live, flags, dir_fd=self.dir_fd)
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                        raise NotRegularFileError(errno.EINVAL, "not a regular file", live)
                    os.ftruncate(fd, size)
                finally:
                    os.close(fd)
        return gone

    def _inodes(self, stem: str) -> dict[str, int]:
        names: dict[str, int] = {}
        for index in (None, *range(self.max_files + 1)):
            name = log_file_name(stem, index)
            try:
                names[name] = os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False).st_ino
            except FileNotFoundError:
                continue
        return names

    def _stat_size(self, name: str) -> int:
        return os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False).st_size

    # ------------------------------------------------------------------ faults

    def free_space(self) -> str | None:
        """Delete the oldest rotated file of the largest log; its name, or None."""
        sizes: dict[str, int] = {}
        try:
            with os.scandir(self.dir_fd) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode):
                            sizes[entry.name] = st.st_blocks * 512
            victim = choose_victim(sizes)
            if victim is not None:
                os.unlink(victim, dir_fd=self.dir_fd)
        except OSError as exc:
            self.reporter.error("free_space_failed", kind=errno_name(exc), error=exc.strerror)
            return None
        if victim is not None:
            self.reporter.warning("rotated_file_deleted", file=victim, reason="disk full")
        return victim

    # ------------------------------------------------------------------ lifecycle

    def sync(self) -> None:
        """fsync every file written since its last fsync (also closed ones)."""
        for handle in self._open.values():
            if handle.dirty:
                try:
                    os.fsync(handle.fd)
                    handle.dirty = False
                except OSError as exc:
                    self.reporter.error("fsync_failed", kind=errno_name(exc), error=exc.strerror)
        for stem in list(self._unsynced):
            try:
                fd = self.open_file(log_file_name(stem))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.reporter.error("fsync_failed", kind=errno_name(exc), error=exc.strerror)
            self._unsynced.discard(stem)
        with contextlib.suppress(OSError):
            os.fsync(self.dir_fd)

    def close_files(self) -> None:
        """Close every handle (after fsync); they reopen on the next write."""
        for stem in list(self._open):
            try:
                self._close(stem, sync=True)
            except OSError as exc:
                self.reporter.error("fsync_failed", kind=errno_name(exc), error=exc.strerror)

    def close(self) -> None:
        self.release()
