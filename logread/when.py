"""``--since`` / ``--until`` values, as journalctl takes them (docs/logread.md). PURE: no I/O.

:func:`parse_when` turns one value into ns since the epoch, relative to a ``now``
that the caller passes in (nothing here reads a clock).  Accepted forms:

* ``now``, ``today``, ``yesterday``, ``tomorrow`` (the last three: a midnight UTC);
* a bare duration ago, without spaces: ``30s``, ``10m``, ``2h``, ``1d``, ``1w``,
  ``500ms``, combined ``1h30m``, fractions ``1.5h``;
* a time span followed by ``ago`` (``5 min ago``, ``2 hours ago``, ``1h 30min ago``)
  or preceded by a sign (``-5m`` = 5 minutes ago, ``+5m`` = in 5 minutes), with
  journalctl's units (``usec us μs msec ms seconds second sec s minutes minute min m
  hours hour hr h days day d weeks week w months month M years year y``);
* an RFC 3339 time, ``T`` or one space between date and time, seconds and fraction
  optional, zone optional (no zone = UTC): ``2026-11-30T08:25:00Z``,
  ``2026-11-30 08:25``, ``2026-11-30 08:25:07.5+01:00``;
* a date alone, ``2026-11-30`` = its midnight UTC.

A span alone with spaces (``5 min``) is refused, as journalctl refuses it: it says
neither "ago" nor a sign.
"""

from __future__ import annotations

import re

from memlogd.errors import ProtocolError
from memlogd.wire.timefmt import parse_time

__all__ = ["ACCEPTED_FORMS", "WhenError", "parse_when"]

NS_PER_SEC = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SEC

ACCEPTED_FORMS = (
    "now, today, yesterday, tomorrow, a duration ago (10m, 2h, 1d, 1h30m, 1.5h), "
    "'5 min ago', -5m or +5m, a date (2026-11-30) or an RFC 3339 time "
    "(2026-11-30T08:25:00Z, '2026-11-30 08:25'; no zone = UTC)"
)

# journalctl's time span units (systemd.time(7)); months and years as systemd counts them
_MINUTE = 60 * NS_PER_SEC
_UNITS: dict[str, int] = {
    **dict.fromkeys(("usec", "us", "μs", "µs"), 1_000),
    **dict.fromkeys(("msec", "ms"), 1_000_000),
    **dict.fromkeys(("seconds", "second", "sec", "s"), NS_PER_SEC),
    **dict.fromkeys(("minutes", "minute", "min", "m"), _MINUTE),
    **dict.fromkeys(("hours", "hour", "hr", "h"), 60 * _MINUTE),
    **dict.fromkeys(("days", "day", "d"), NS_PER_DAY),
    **dict.fromkeys(("weeks", "week", "w"), 7 * NS_PER_DAY),
    **dict.fromkeys(("months", "month", "M"), 2_629_800 * NS_PER_SEC),  # 30.44 days
    **dict.fromkeys(("years", "year", "y"), 31_557_600 * NS_PER_SEC),  # 365.25 days
}

_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# the bare form (a duration ago) keeps exactly the compact syntax logread always took
_BARE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d|w))+")
# one component of a span: a number, optional spaces, a unit (letters only)
_COMPONENT = re.compile(rf"({_NUMBER}) *([^\W\d_]+)")
_SPAN = re.compile(rf"{_NUMBER} *[^\W\d_]+(?: *{_NUMBER} *[^\W\d_]+)*")
_AGO = re.compile(rf"({_SPAN.pattern}) +ago")
_SIGNED = re.compile(rf"([+-])({_SPAN.pattern})")
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"  # date
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"  # time, seconds optional
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?)?"  # zone optional (only after a time)
)
_DAYS = {"today": 0, "yesterday": -1, "tomorrow": 1}


class WhenError(ValueError):
    """A ``--since`` / ``--until`` value in none of the accepted forms."""


def parse_when(text: str, now_ns: int) -> int:
    """``text`` -> ns since the epoch; ``now_ns`` is "now" for the relative forms.

    Raises :class:`WhenError` (one line, listing the accepted forms)."""
    value = " ".join(text.split())  # runs of blanks count as one space
    keyword = value.lower()
    if keyword == "now":
        return now_ns
    if keyword in _DAYS:
        return (now_ns // NS_PER_DAY + _DAYS[keyword]) * NS_PER_DAY
    if _BARE.fullmatch(value):
        return now_ns - _span_ns(value, text)
    if m := _AGO.fullmatch(value):
        return now_ns - _span_ns(m.group(1), text)
    if m := _SIGNED.fullmatch(value):
        span = _span_ns(m.group(2), text)
        return now_ns - span if m.group(1) == "-" else now_ns + span
    if m := _DATETIME.fullmatch(value):
        result = _datetime_ns(m)
        if result is None:
            raise WhenError(f"{text!r} is not a valid date or time; use {ACCEPTED_FORMS}")
        return result
    raise WhenError(f"{text!r} is not a time; use {ACCEPTED_FORMS}")


def _datetime_ns(m: re.Match[str]) -> int | None:
    """The instant a :data:`_DATETIME` match names (None when a field is out of
    range): completed to a strict RFC 3339 time and read by memlogd's one time
    parser (Go's rules: digits past the nanosecond ignored, ``:60`` a leap second)."""
    year, month, day, hour, minute, second, fraction = m.group(1, 2, 3, 4, 5, 6, 7)
    zone = "Z" if m.group(8) or not m.group(9) else m.group(9) + m.group(10) + ":" + m.group(11)
    text = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
    if fraction:
        text += "." + fraction
    try:
        return parse_time(text + zone)
    except ProtocolError:
        return None


def _span_ns(span: str, text: str) -> int:
    """A time span (``1h30m``, ``1 hour 30 minutes``, ``1.5h``) in ns, exact for the
    digits given (a fraction of a unit is cut at the nanosecond)."""
    total = 0
    for number, unit in _COMPONENT.findall(span):
        scale = _UNITS.get(unit)
        if scale is None:
            raise WhenError(f"{text!r}: unknown time unit {unit!r}; use {ACCEPTED_FORMS}")
        whole, _, frac = number.partition(".")
        total += int(whole) * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
    return total
