"""What logwrite writes, as values and bytes (SPEC section 5). PURE: no I/O.

* the persisted line ``TIME SOURCE MSG\\n`` (upstream's format);
* the line recording a gap, ``TIME logwrite lost N entries (seq A-B)``;
* the cursor file's content, ``{"instance": ..., "seq": ...}``;
* the rate limiter for logwrite's own error events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum

from memlogd import protocol as proto

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
            self._text = (
                proto.format_time(time_ns) if self.nano else proto.format_time_seconds(time_ns)
            )
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


@dataclass(frozen=True, slots=True)
class Cursor:
    """Every entry of daemon ``instance`` up to ``seq`` has been handled."""

    instance: str
    seq: int


class CursorError(proto.MemlogdError):
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


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """One event per kind per ``period_s``; the ones held back are counted and
    the count is reported with the next event let through."""

    def __init__(self, period_s: float = ERROR_PERIOD_S) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str, now: float) -> int | None:
        """None: hold this event back.  Otherwise let it through; the value is
        how many events of this kind were held back since the last one."""
        last = self._last.get(kind)
        if last is not None and now - last < self.period_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._held.pop(kind, 0)

    def due(self, now: float) -> list[tuple[str, int]]:
        """Held-back counts whose period is over, to report now (each report
        counts as that kind's line for the next period)."""
        out = []
        for kind, count in list(self._held.items()):
            if now - self._last[kind] >= self.period_s:
                out.append((kind, count))
                self._last[kind] = now
                del self._held[kind]
        return out
