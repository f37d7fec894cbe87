"""What logwrite writes, as values and bytes (docs/logwrite.md). PURE: no I/O.

* the persisted line ``TIME SOURCE MSG\\n`` (upstream's format);
* the line recording a gap, ``TIME logwrite lost N entries (seq A-B)``.

The cursor file's content is :mod:`memlogd.wire.cursorfile` (logship keeps
the same).
"""

from __future__ import annotations

from enum import Enum

from memlogd.wire.logdir import source_field
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
        """``TIME SOURCE MSG\\n``; the control characters of SOURCE but tab are
        written as ``\\xNN`` (as logread writes them), a newline inside MSG as
        ``\\n`` (backslash, n), so that one entry is always one line
        (:func:`memlogd.wire.logdir.source_field`: logread -D reads it back)."""
        if source.isprintable() and "\n" not in msg:  # the common case
            return (self.time_text(time_ns) + " " + source + " " + msg + "\n").encode(
                "utf-8", "replace"
            )
        time_text = self.time_text(time_ns)
        text = time_text + " " + source_field(source) + " " + msg.replace("\n", "\\n")
        return (text + "\n").encode("utf-8", "replace")

    def lost_line(self, time_ns: int, first_seq: int, count: int, last: int = 0) -> bytes:
        """``count`` entries lost from seq ``first_seq`` to ``last`` (by default
        the run of ``count``; the fair ring's holes: a chunk's runs together)."""
        last = last or first_seq + count - 1
        return self.line(time_ns, OWN_SOURCE, f"lost {count} entries (seq {first_seq}-{last})")
