"""The ``--state-file``: where a restarted logship resumes (docs/logship.md, "State file"). I/O.

It holds the cursor ``(instance, seq)`` of the last entry delivered together
with every entry before it, in the clients' cursor file encoding
(``{"instance": "...", "seq": N}`` and a newline, :mod:`memlogd.wire.cursorfile`).

Each :meth:`StateFile.save` writes a temporary file beside it and renames it
over the old one, so a killed logship leaves the old state or the new one,
never half of either.  fsync (of the file, then of its directory for the
rename) happens at most once per :data:`SYNC_PERIOD_S`: in :meth:`save` when
the last one is that old, otherwise in :meth:`sync`, which the shipper calls
every period, and in :meth:`close`.  So a power loss costs at most about a
second of progress (entries sent again, never lost).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable

from memlogd.atomicfile import (
    READ_FLAGS,
    TMP_SUFFIX,
    UntrustedFileError,
    create_tmp,
    read_state,
    replace_file,
)
from memlogd.errors import MemlogdError
from memlogd.wire.cursorfile import CursorError, decode_cursor, encode_cursor
from memlogd.wire.protocol import Cursor

SYNC_PERIOD_S = 1.0  # fsync at most this often (and at exit)
MAX_STATE_BYTES = 4096  # more than that is not a state file

__all__ = ["SYNC_PERIOD_S", "CursorError", "StateError", "StateFile"]


class StateError(MemlogdError):
    """The state file cannot be used (checked at start); the message names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot use state file {path}: {reason}")
        self.path = path
        self.reason = reason


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class StateFile:
    """The state file at ``path`` (its directory must exist)."""

    def __init__(
        self,
        path: str,
        *,
        sync_period_s: float = SYNC_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.path.abspath(path)
        self.tmp_path = self.path + TMP_SUFFIX
        self.directory = os.path.dirname(self.path)
        self.sync_period_s = sync_period_s
        self._clock = clock
        self._last_sync = -float("inf")
        self.saved: Cursor | None = None  # what the file holds (as far as we know)
        self.dirty = False  # renamed into place but not fsynced yet
        self.saves = 0
        self.syncs = 0

    # ------------------------------------------------------------------ start

    def load(self) -> Cursor | None:
        """The saved cursor (None without a file).  Raises :class:`StateError`
        when the file or its directory cannot be used, and
        :class:`~memlogd.wire.cursorfile.CursorError` when its content is not a state
        (the caller warns and starts afresh: the file is replaced at the first
        save).  Also checks that a new state can be written there."""
        try:
            data = read_state(self.path, MAX_STATE_BYTES + 1)
        except UntrustedFileError as exc:
            raise StateError(self.path, exc.reason) from None
        self._probe()
        if data is None:
            return None
        if len(data) > MAX_STATE_BYTES:
            raise CursorError(f"state file is longer than {MAX_STATE_BYTES} bytes")
        cursor, _pending = decode_cursor(data)  # "pending" is logwrite's; never written here
        self.saved = cursor
        return cursor

    def _probe(self) -> None:
        """Fail now, with the reason, if the temporary file cannot be made."""
        try:
            fd = self._open_tmp()
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise StateError(self.path, f"no directory {self.directory}") from None
            raise StateError(self.path, _reason(exc)) from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self.tmp_path)

    def _open_tmp(self) -> int:
        return create_tmp(self.tmp_path)

    # ------------------------------------------------------------------ saving

    def save(self, cursor: Cursor, *, sync: bool = False) -> None:
        """Replace the state with ``cursor`` (write, rename; fsync when
        ``sync`` or when the last fsync is a period old).  OSError on failure,
        the old state staying in place."""
        if cursor == self.saved and not (sync and self.dirty):
            return
        now = self._clock()
        durable = sync or now - self._last_sync >= self.sync_period_s
        replace_file(self.path, encode_cursor(cursor), sync=durable)
        self.saved = cursor
        self.saves += 1
        if durable:
            self._sync_dir()
            self._last_sync = now
            self.dirty = False
            self.syncs += 1
        else:
            self.dirty = True

    def sync_due(self) -> bool:
        return self.dirty and self._clock() - self._last_sync >= self.sync_period_s

    def sync(self, *, force: bool = False) -> None:
        """fsync what was saved since the last fsync, if it is due (or ``force``)."""
        if not self.dirty or not (force or self.sync_due()):
            return
        fd = os.open(self.path, READ_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._sync_dir()
        self._last_sync = self._clock()
        self.dirty = False
        self.syncs += 1

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self, cursor: Cursor | None) -> None:
        """At exit: save ``cursor`` (if any) and fsync.  OSError on failure."""
        if cursor is not None:
            self.save(cursor, sync=True)
        self.sync(force=True)
