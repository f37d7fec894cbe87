"""Times as the wire writes them: Go's ``RFC3339Nano`` in UTC. PURE: no I/O.

docs/protocol.md: ``2019-02-22T16:04:23.123456789Z``, trailing zeros of the
fraction removed, no fraction at all when it is zero.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from memlogd.errors import ProtocolError

NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,  # Unicode digits such as "٢٠١٩" are not RFC 3339
)


@functools.lru_cache(maxsize=4)  # the batches of one second share it
def format_seconds(secs: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC; the year always has four digits, as in Go
    (``strftime("%Y")`` does not pad years before 1000 on glibc)."""
    d = _EPOCH + timedelta(seconds=secs)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"


@functools.lru_cache(maxsize=8)  # a batch's time is formatted for its JSON and its echo
def format_time(time_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction removed,
    no fraction at all when it is zero."""
    secs, frac = divmod(time_ns, NS_PER_S)
    text = format_seconds(secs)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def format_time_seconds(time_ns: int) -> str:
    """Go's ``time.RFC3339`` in UTC (whole seconds)."""
    return format_seconds(time_ns // NS_PER_S) + "Z"


def format_time_micros(time_ns: int) -> str:
    """RFC 3339 in UTC with exactly six fractional digits (truncated), as
    RFC 5424 allows no more (docs/logship.md)."""
    secs, frac = divmod(time_ns, NS_PER_S)
    return f"{format_seconds(secs)}.{frac // 1000:06d}Z"


@functools.lru_cache(maxsize=256)  # the lines of one batch share their time text
def parse_time(text: str) -> int:
    """An RFC 3339 time (any offset) -> ns since the epoch.

    As Go does, digits of the fraction beyond nanoseconds are ignored, and a
    leap second ``:60`` is accepted (it is the next minute's ``:00``).
    """
    m = _TIME_RE.match(text)
    if m is None:
        raise ProtocolError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    offset = 0
    if m.group(9):
        off_h, off_m = int(m.group(10)), int(m.group(11))
        offset = off_h * 3600 + off_m * 60
        if m.group(9) == "-":
            offset = -offset
        if off_h > 23 or off_m > 59:
            raise ProtocolError(f"not an RFC 3339 time (offset out of range): {text!r}")
    if second > 60:
        raise ProtocolError(f"not an RFC 3339 time (second out of range): {text!r}")
    leap = second - 59 if second == 60 else 0
    try:
        dt = datetime(year, month, day, hour, minute, second - leap, tzinfo=UTC)
    except ValueError:
        raise ProtocolError(f"not an RFC 3339 time: {text!r}") from None
    secs = (dt - _EPOCH) // timedelta(seconds=1) + leap - offset
    frac = int((m.group(7) or "0")[:9].ljust(9, "0"))
    return secs * NS_PER_S + frac
