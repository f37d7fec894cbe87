"""The cursor file ``DIR/logwrite.cursor``: where a restarted logwrite resumes. I/O.

Saved atomically (a temporary file written, fsynced, then renamed over the
old one) and only after the data it covers has been written, so after a
crash it never claims more than the files hold.
"""

from __future__ import annotations

import os

from logwrite.rotation import is_log_stem, parse_log_file_name
from memlogd.atomicfile import TMP_SUFFIX, UntrustedFileError, read_state, replace_file
from memlogd.wire.cursorfile import CursorError, Pending, decode_cursor, encode_cursor
from memlogd.wire.protocol import Cursor

CURSOR_NAME = "logwrite.cursor"
CURSOR_TMP = CURSOR_NAME + TMP_SUFFIX
MAX_CURSOR_BYTES = 1 << 20  # a pending batch lists its files


def load_cursor(dir_fd: int) -> tuple[Cursor, Pending | None] | None:
    """The saved cursor (and the batch it was being written with, if unfinished),
    or None when there is none.  Raises CursorError for a file that cannot be
    used (the caller logs it and starts afresh): not a regular file of ours
    that only we may write (a FIFO, a symlink, one another user planted), not
    a cursor, or one whose batch names a file logwrite would never write."""
    try:
        data = read_state(CURSOR_NAME, MAX_CURSOR_BYTES, dir_fd=dir_fd)
    except UntrustedFileError as exc:
        raise CursorError(f"{CURSOR_NAME} is not used: {exc.reason}") from None
    if data is None:
        return None
    cursor, pending = decode_cursor(data)
    if pending:
        check_pending(pending)
    return cursor, pending


def check_pending(pending: Pending) -> None:
    """CursorError unless every file a pending batch names is one that logwrite
    itself writes in DIR (``STEM.log``, ``STEM.log.K`` for a stem that some
    source name gives): never a path, ``..``, or another file."""
    for stem, (names, _size) in pending.items():
        if not is_log_stem(stem):
            raise CursorError(f"{CURSOR_NAME} names a file logwrite never writes: {stem!r}")
        for name in names:
            parsed = parse_log_file_name(name)
            if parsed is None or parsed[0] != stem:
                raise CursorError(f"{CURSOR_NAME} names a file logwrite never writes: {name!r}")


def save_cursor(
    dir_fd: int,
    cursor: Cursor,
    pending: Pending | None = None,
    *,
    sync: bool = True,
    sync_dir: bool = False,
) -> None:
    """Write the cursor atomically (and the files of a batch about to be written,
    ``pending``); OSError on failure (the old one stays).  ``sync``: fsync it
    (a kill of the process alone needs only the rename)."""
    replace_file(CURSOR_NAME, encode_cursor(cursor, pending), dir_fd=dir_fd, sync=sync, mode=0o640)
    if sync_dir:
        os.fsync(dir_fd)
