"""What logwrite writes, as values and bytes (docs/logwrite.md). PURE: no I/O.

* the persisted line ``TIME SOURCE MSG\\n`` (upstream's format);
* the line recording a gap, ``TIME logwrite lost N entries (seq A-B)``;
* the cursor file's content, ``{"instance": ..., "seq": ...}``.
"""

from __future__ import annotations

import json
from enum import Enum

from memlogd.errors import MemlogdError
from memlogd.wire.protocol import Cursor
from memlogd.wire.timefmt import format_time, format_time_seconds

OWN_SOURCE = "logwrite"  # gaps are written to DIR/logwrite.log
ERROR_PERIOD_S = 10.0  # one error line per kind per period


class TimeFormat(Enum):
    RFC3339 = "rfc3339"  # whole seconds, as upstream
    RFC3339NANO = "rfc3339nano"


class LineFormatter:
    """Formats entries as lines; the time text is cached per second/nanosecond
    value, since a batch of entries shares its timestamp."""

    def __init__(self, time_format: TimeFormat = TimeFormat.RFC3339) -> None:
        self.nano = time_format is TimeFormat.RFC3339NANO
        self._key = -1
        self._text = ""

    def time_text(self, time_ns: int) -> str:
        key = time_ns if self.nano else time_ns // 1_000_000_000
        if key != self._key:
            self._key = key
            self._text = format_time(time_ns) if self.nano else format_time_seconds(time_ns)
        return self._text

    def line(self, time_ns: int, source: str, msg: str) -> bytes:
        """``TIME SOURCE MSG\\n``; a newline inside SOURCE or MSG is written as
        ``\\n`` (backslash, n) so that one entry is always one line."""
        text = self.time_text(time_ns) + " " + source + " " + msg
        if "\n" in text:
            text = text.replace("\n", "\\n")
        return (text + "\n").encode("utf-8", "replace")

    def lost_line(self, time_ns: int, first_seq: int, count: int, last: int = 0) -> bytes:
        """``count`` entries lost from seq ``first_seq`` to ``last`` (by default
        the run of ``count``; the fair ring's holes: a chunk's runs together)."""
        last = last or first_seq + count - 1
        return self.line(time_ns, OWN_SOURCE, f"lost {count} entries (seq {first_seq}-{last})")


# --------------------------------------------------------------------------- cursor


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
