"""The cursor file ``DIR/logwrite.cursor``: where a restarted logwrite resumes. I/O.

Saved atomically (a temporary file written, fsynced, then renamed over the
old one) and only after the data it covers has been written, so after a
crash it never claims more than the files hold.
"""

from __future__ import annotations

import os

from memlogd.atomicfile import TMP_SUFFIX, replace_file
from memlogd.wire.cursorfile import CursorError, Pending, decode_cursor, encode_cursor
from memlogd.wire.protocol import Cursor

CURSOR_NAME = "logwrite.cursor"
CURSOR_TMP = CURSOR_NAME + TMP_SUFFIX
MAX_CURSOR_BYTES = 1 << 20  # a pending batch lists its files


def load_cursor(dir_fd: int) -> tuple[Cursor, Pending | None] | None:
    """The saved cursor (and the batch it was being written with, if unfinished),
    or None when there is none.  Raises CursorError for a file that cannot be
    used (the caller logs it and starts afresh)."""
    try:
        fd = os.open(CURSOR_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CursorError(f"cannot open {CURSOR_NAME}: {exc.strerror}") from None
    try:
        data = os.read(fd, MAX_CURSOR_BYTES)
    except OSError as exc:
        raise CursorError(f"cannot read {CURSOR_NAME}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return decode_cursor(data)


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
