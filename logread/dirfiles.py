"""``logread -D DIR``: opening and reading logwrite's files (docs/logread.md). I/O.

What the bytes mean is :mod:`logread.directory` (pure); this module only
gets them, safely:

* every log file is opened before any is read, so a rotation meanwhile moves
  names, not the files held; after opening, each name is checked to still
  name the file opened (and no log to have appeared), else everything is
  opened again (a rotation happened between listing and opening);
* files are opened relative to DIR's fd with ``O_NOFOLLOW | O_NONBLOCK``, and
  only a regular file is opened at all (checked with ``lstat`` before, and
  ``fstat`` after): a symlink, FIFO, socket or device among the names is
  skipped with a warning (a root admin reading a directory others can write
  must not be shown ``/etc/shadow``, nor hang on a FIFO);
* files are read a piece of whole lines at a time (:meth:`LogDir.chunks`), a
  ``.gz`` rotation decompressed as it is read; a file that cannot be read is
  skipped with a warning (the rest of it, when the error comes midway);
* with ``--since``/``--until``, a file's first and last lines are read first
  (two ``pread``) and a file wholly outside is never read.

Reading is plain blocking I/O on local files: logread's trio task calls it
between its own checkpoints (a piece at a time).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import resource
import stat
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from logread.directory import SourceFiles, outside, plan_directory, time_range
from memlogd.errors import MemlogdError
from memlogd.wire.logdir import INSTANCES_NAME, Boot, decode_instances, stem_source

__all__ = ["DirectoryError", "LogDir", "LogFile", "open_log_dir"]

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
OPEN_ATTEMPTS = 5  # listings that changed while opened, before going on as it is
EDGE_BYTES = 64 * 1024  # read to find a file's first or last line
CHUNK_BYTES = 1 << 20  # read at once (logread.fromdir gives less with many sources)
MAX_INSTANCES_BYTES = 1 << 20


class DirectoryError(MemlogdError):
    """DIR cannot be read: ``cannot read log directory DIR: REASON`` (exit 1)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read log directory {path}: {reason}")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


@dataclass
class LogFile:
    """One log file, open (``fd``) until read."""

    name: str
    fd: int
    ino: int
    size: int

    @property
    def gz(self) -> bool:
        return self.name.endswith(".gz")


@dataclass
class Stem:
    """A stem's files, open, in the order they were written."""

    stem: str
    source: str | None  # None: a cut name, known from its lines once read
    files: list[LogFile]


class LogDir:
    """DIR with its log files open (:func:`open_log_dir`); a context manager
    that closes what was not read.  ``warnings`` lists what was skipped."""

    def __init__(self, path: str, dir_fd: int) -> None:
        self.path = path
        self.dir_fd = dir_fd
        self.stems: list[Stem] = []
        self.warnings: list[str] = []

    def __enter__(self) -> LogDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for stem in self.stems:
            for f in stem.files:
                _close(f)
        self.stems = []
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    # ------------------------------------------------------------------ reading

    def chunks(self, f: LogFile, size: int = CHUNK_BYTES) -> Generator[str, None, None]:
        """The text of ``f`` in pieces of whole lines, about ``size`` bytes each
        (only the last piece may end without a newline); ``f`` is closed at the
        end.  A file that cannot be read ends with a warning (``skipped``, or
        ``skipped the rest of`` when pieces of it were given)."""
        given = False
        try:
            for piece in _whole_lines(_gunzip(f.fd, size) if f.gz else _raw(f.fd, size)):
                given = True
                yield piece
        except (OSError, EOFError, zlib.error) as exc:
            what = "the rest of " if given else ""
            self.warnings.append(f"skipped {what}{self.path}/{f.name}: {_reason(exc)}")
        finally:
            _close(f)

    def read(self, f: LogFile) -> str | None:
        """The whole text of ``f`` (closed after), or None with a warning."""
        warned = len(self.warnings)
        text = "".join(self.chunks(f))
        return None if len(self.warnings) > warned else text

    def skip(self, f: LogFile) -> None:
        _close(f)

    def outside(self, f: LogFile, since_ns: int | None, until_ns: int | None) -> bool:
        """Whether ``f``'s lines all lie outside ``[since_ns, until_ns]``, by its
        first and last lines (a ``.gz`` file is always read)."""
        if (since_ns is None and until_ns is None) or f.gz or f.size == 0:
            return False
        try:
            head = os.pread(f.fd, min(EDGE_BYTES, f.size), 0)
            tail = head if f.size <= EDGE_BYTES else os.pread(f.fd, EDGE_BYTES, f.size - EDGE_BYTES)
        except OSError:
            return False  # read() will say what is wrong
        end = head.find(b"\n")
        if end < 0 or not tail.endswith(b"\n"):
            return False
        start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
        if start == 0 and f.size > EDGE_BYTES:
            return False  # a last line longer than we looked at
        first = head[:end].decode("utf-8", "replace")
        last = tail[start:-1].decode("utf-8", "replace")
        return outside(time_range(first, last), since_ns, until_ns)

    def boots(self) -> list[Boot]:
        """The boots in ``DIR/instances`` (none when it is missing); a line that
        is not ``INSTANCE FIRST_TIME`` is skipped with a warning."""
        try:
            fd = os.open(INSTANCES_NAME, OPEN_FLAGS, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warnings.append(f"cannot read {self.path}/{INSTANCES_NAME}: {_reason(exc)}")
            return []
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                self.warnings.append(f"skipped {self.path}/{INSTANCES_NAME}: {_kind(mode)}")
                return []
            data = os.read(fd, MAX_INSTANCES_BYTES)
        except OSError as exc:
            self.warnings.append(f"cannot read {self.path}/{INSTANCES_NAME}: {_reason(exc)}")
            return []
        finally:
            os.close(fd)
        boots, bad = decode_instances(data)
        if bad:
            self.warnings.append(
                f"{self.path}/{INSTANCES_NAME}: {bad} line{'' if bad == 1 else 's'} "
                "not 'INSTANCE FIRST_TIME' (skipped)"
            )
        return boots


def open_log_dir(path: str, wanted: Callable[[str], bool] | None = None) -> LogDir:
    """DIR with every log file open (of the sources ``wanted`` says yes to, and
    of every cut name, whose source is known only once read).  Raises
    :class:`DirectoryError` when DIR cannot be read."""
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise DirectoryError(path, _reason(exc)) from None
    log_dir = LogDir(path, dir_fd)
    try:
        for attempt in range(OPEN_ATTEMPTS):
            log_dir.warnings = []
            plan = plan_directory(_listing(path, dir_fd))
            _raise_nofile(sum(len(sf.names) for sf in plan))
            log_dir.stems = [_open_stem(log_dir, sf, wanted) for sf in plan]
            if _unchanged(log_dir, plan) or attempt == OPEN_ATTEMPTS - 1:
                break
            for stem in log_dir.stems:  # rotated meanwhile: open again
                for f in stem.files:
                    _close(f)
        return log_dir
    except BaseException:
        log_dir.close()
        raise


def _listing(path: str, dir_fd: int) -> list[str]:
    try:
        return os.listdir(dir_fd)
    except OSError as exc:
        raise DirectoryError(path, _reason(exc)) from None


def _open_stem(log_dir: LogDir, sf: SourceFiles, wanted: Callable[[str], bool] | None) -> Stem:
    source = stem_source(sf.stem)
    if wanted is not None and source is not None and not wanted(source):
        return Stem(sf.stem, source, [])
    files = []
    for name in sf.names:
        f = _open_file(log_dir, name)
        if f is not None:
            files.append(f)
    return Stem(sf.stem, source, files)


def _open_file(log_dir: LogDir, name: str) -> LogFile | None:
    where = f"{log_dir.path}/{name}"
    try:
        st = os.stat(name, dir_fd=log_dir.dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            log_dir.warnings.append(f"skipped {where}: {_kind(st.st_mode)}")
            return None
        fd = os.open(name, OPEN_FLAGS, dir_fd=log_dir.dir_fd)
    except FileNotFoundError:
        return None  # rotated away meanwhile: the check after opening sees it
    except OSError as exc:
        log_dir.warnings.append(f"skipped {where}: {_reason(exc)}")
        return None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        log_dir.warnings.append(f"skipped {where}: {_reason(exc)}")
        return None
    if not stat.S_ISREG(st.st_mode):  # replaced between lstat and open
        os.close(fd)
        log_dir.warnings.append(f"skipped {where}: {_kind(st.st_mode)}")
        return None
    return LogFile(name, fd, st.st_ino, st.st_size)


def _unchanged(log_dir: LogDir, plan: list[SourceFiles]) -> bool:
    """Every opened name still names its file, and the logs listed are the same."""
    if plan_directory(_listing(log_dir.path, log_dir.dir_fd)) != plan:
        return False
    for stem in log_dir.stems:
        for f in stem.files:
            try:
                st = os.stat(f.name, dir_fd=log_dir.dir_fd, follow_symlinks=False)
            except OSError:
                return False
            if st.st_ino != f.ino:
                return False
    return True


def _raise_nofile(needed: int) -> None:
    """Room for ``needed`` open files more (every file is open at once)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _raw(fd: int, size: int) -> Iterator[bytes]:
    while chunk := os.read(fd, size):
        yield chunk


def _gunzip(fd: int, size: int) -> Iterator[bytes]:
    with (
        open(fd, "rb", buffering=0, closefd=False) as raw,
        gzip.GzipFile(fileobj=raw, mode="rb") as unzipped,
    ):
        while chunk := unzipped.read(size):
            yield chunk


def _whole_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """``chunks`` cut after their last newline, decoded (a newline is never in
    a UTF-8 sequence, so each piece decodes as it would in the whole text)."""
    rest: list[bytes] = []
    for chunk in chunks:
        end = chunk.rfind(b"\n") + 1
        if not end:
            rest.append(chunk)
            continue
        rest.append(chunk[:end])
        yield b"".join(rest).decode("utf-8", "replace")
        rest = [chunk[end:]] if end < len(chunk) else []
    if rest:
        yield b"".join(rest).decode("utf-8", "replace")


def _close(f: LogFile) -> None:
    if f.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(f.fd)
        f.fd = -1


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile):
        if exc.errno == errno.ELOOP:
            return "a symbolic link"
        return exc.strerror or str(exc)
    return f"not a valid gzip file ({exc})"


def files_in_order(log_dir: LogDir) -> Iterator[tuple[Stem, LogFile]]:
    """Every open file, stem by stem, each stem's in the order written."""
    for stem in log_dir.stems:
        for f in stem.files:
            yield stem, f
