"""The cursor file every client keeps: where it resumes (docs/logwrite.md,
"Continuity"; docs/logship.md, "State file"). PURE: no I/O.

``{"instance": "...", "seq": N}`` and a newline: the ``(instance, seq)`` of
the last entry handled.  logwrite's ``DIR/logwrite.cursor`` may also hold
``"pending"``: the files of a batch being written (see :data:`Pending`);
logship's ``--state-file`` and memlogd's roles use the same encoding.
"""

from __future__ import annotations

import json

from memlogd.errors import MemlogdError
from memlogd.wire.protocol import Cursor


class CursorError(MemlogdError):
    """A cursor file that cannot be understood."""


# A batch being written: per file stem, the inode of each of its files (the
# live one and the rotated ones) and the size of the live one, as they were
# before; a restart puts them back so (docs/logwrite.md, "Cursor").
Pending = dict[str, tuple[dict[str, int], int]]


def encode_cursor(cursor: Cursor, pending: Pending | None = None) -> bytes:
    obj: dict[str, object] = {"instance": cursor.instance, "seq": cursor.seq}
    if pending:
        obj["pending"] = {stem: [names, size] for stem, (names, size) in pending.items()}
    return json.dumps(obj).encode() + b"\n"


def decode_pending(obj: object) -> Pending:
    if not isinstance(obj, dict):
        raise CursorError("cursor 'pending' is not an object")
    out: Pending = {}
    for stem, value in obj.items():
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], dict)):
            raise CursorError("cursor 'pending' entries are [names, size]")
        names, size = value
        if not all(isinstance(n, str) and _count(i) for n, i in names.items()) or not _count(size):
            raise CursorError("cursor 'pending' holds names with inodes, and a size")
        out[stem] = (names, size)
    return out


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_cursor(data: bytes) -> tuple[Cursor, Pending | None]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CursorError("cursor file is not JSON") from None
    if not isinstance(obj, dict):
        raise CursorError("cursor file is not a JSON object")
    instance, seq = obj.get("instance"), obj.get("seq")
    if not isinstance(instance, str) or not instance:
        raise CursorError("cursor 'instance' is not a non-empty string")
    if not isinstance(seq, int) or not _count(seq):
        raise CursorError("cursor 'seq' is not a non-negative integer")
    pending = decode_pending(obj["pending"]) if "pending" in obj else None
    return Cursor(instance, seq), pending
