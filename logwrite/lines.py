"""What logwrite writes, as values and bytes (docs/logwrite.md). PURE: no I/O.

* the persisted line ``TIME SOURCE MSG\\n`` (upstream's format);
* the line recording a gap, ``TIME logwrite lost N entries (seq A-B)``;
* the cursor file's content, ``{"instance": ..., "seq": ...}``.
"""

from __future__ import annotations

import json
from enum import Enum

from memlogd.errors import MemlogdError
from memlogd.protocol import Cursor
from memlogd.timefmt import format_time, format_time_seconds

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

    def lost_line(self, time_ns: int, first_seq: int, count: int) -> bytes:
        last = first_seq + count - 1
        return self.line(time_ns, OWN_SOURCE, f"lost {count} entries (seq {first_seq}-{last})")


# --------------------------------------------------------------------------- cursor


class CursorError(MemlogdError):
    """A cursor file that cannot be understood."""


def encode_cursor(cursor: Cursor) -> bytes:
    return json.dumps({"instance": cursor.instance, "seq": cursor.seq}).encode() + b"\n"


def decode_cursor(data: bytes) -> Cursor:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise CursorError("cursor file is not JSON") from None
    if not isinstance(obj, dict):
        raise CursorError("cursor file is not a JSON object")
    instance, seq = obj.get("instance"), obj.get("seq")
    if not isinstance(instance, str) or not instance:
        raise CursorError("cursor 'instance' is not a non-empty string")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise CursorError("cursor 'seq' is not a non-negative integer")
    return Cursor(instance, seq)
