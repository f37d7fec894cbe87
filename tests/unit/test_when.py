"""logread.when: journalctl-style --since / --until values."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.when import WhenError, parse_when

pytestmark = pytest.mark.unit

NOW = 1_764_000_000_123_456_789  # 2025-11-24T16:00:00.123456789Z
MIDNIGHT = 1_763_942_400_000_000_000  # 2025-11-24T00:00:00Z
NS = 1
US = 1_000
MS = 1_000_000
SEC = 1_000_000_000
MIN = 60 * SEC
HOUR = 3600 * SEC
DAY = 86_400 * SEC
WEEK = 7 * DAY
T = 1_796_027_107_000_000_000  # 2026-11-30T08:25:07Z
T_DATE = 1_795_996_800_000_000_000  # 2026-11-30T00:00:00Z
T_MINUTE = 1_796_027_100_000_000_000  # 2026-11-30T08:25:00Z

ACCEPTED: list[tuple[str, int]] = [
    # keywords
    ("now", NOW),
    ("NOW", NOW),
    ("  now  ", NOW),
    ("today", MIDNIGHT),
    ("Today", MIDNIGHT),
    ("yesterday", MIDNIGHT - DAY),
    ("tomorrow", MIDNIGHT + DAY),
    # a bare duration ago (logread's compact form)
    ("10m", NOW - 10 * MIN),
    ("2h", NOW - 2 * HOUR),
    ("1d", NOW - DAY),
    ("30s", NOW - 30 * SEC),
    ("500ms", NOW - 500 * MS),
    ("1w", NOW - WEEK),
    ("1h30m", NOW - 90 * MIN),
    ("1d2h3m4s5ms", NOW - (DAY + 2 * HOUR + 3 * MIN + 4 * SEC + 5 * MS)),
    ("1.5h", NOW - 90 * MIN),
    ("0.000000001s", NOW - 1),
    ("1.0000000015s", NOW - SEC - 1),  # below a nanosecond is cut
    ("0m", NOW),
    # a span ago, with journalctl's units
    ("5 min ago", NOW - 5 * MIN),
    ("5min ago", NOW - 5 * MIN),
    ("5m ago", NOW - 5 * MIN),
    ("5 minutes ago", NOW - 5 * MIN),
    ("1 minute ago", NOW - MIN),
    ("2 hours ago", NOW - 2 * HOUR),
    ("1 hour ago", NOW - HOUR),
    ("2 hr ago", NOW - 2 * HOUR),
    ("3 days ago", NOW - 3 * DAY),
    ("1 day ago", NOW - DAY),
    ("1 week ago", NOW - WEEK),
    ("2 weeks ago", NOW - 2 * WEEK),
    ("30 sec ago", NOW - 30 * SEC),
    ("30 seconds ago", NOW - 30 * SEC),
    ("1 second ago", NOW - SEC),
    ("250 msec ago", NOW - 250 * MS),
    ("10 usec ago", NOW - 10 * US),
    ("10 us ago", NOW - 10 * US),
    ("10 μs ago", NOW - 10 * US),  # GREEK SMALL LETTER MU
    ("10 µs ago", NOW - 10 * US),  # MICRO SIGN
    ("1 month ago", NOW - 2_629_800 * SEC),
    ("2M ago", NOW - 2 * 2_629_800 * SEC),
    ("1 year ago", NOW - 31_557_600 * SEC),
    ("1y ago", NOW - 31_557_600 * SEC),
    ("1h 30min ago", NOW - 90 * MIN),
    ("1 hour 30 minutes ago", NOW - 90 * MIN),
    ("1h30m ago", NOW - 90 * MIN),
    ("1.5 hours ago", NOW - 90 * MIN),
    ("5   min   ago", NOW - 5 * MIN),
    # signed spans: relative to now, either way
    ("-5m", NOW - 5 * MIN),
    ("+5m", NOW + 5 * MIN),
    ("-1h30m", NOW - 90 * MIN),
    ("+2 hours", NOW + 2 * HOUR),
    ("-5 min", NOW - 5 * MIN),
    ("+1.5d", NOW + 36 * HOUR),
    # RFC 3339, T or a space, seconds and fraction optional, no zone = UTC
    ("2026-11-30T08:25:07Z", T),
    ("2026-11-30t08:25:07z", T),
    ("2026-11-30 08:25:07Z", T),
    ("2026-11-30T08:25:07", T),
    ("2026-11-30 08:25:07", T),
    ("2026-11-30 08:25", T_MINUTE),
    ("2026-11-30T08:25", T_MINUTE),
    ("2026-11-30T08:25Z", T_MINUTE),
    ("2026-11-30 08:25+01:00", T_MINUTE - HOUR),
    ("2026-11-30T08:25:07.123456789Z", T + 123_456_789),
    ("2026-11-30 08:25:07.5", T + 500 * MS),
    ("2026-11-30 08:25:07.000000001", T + NS),
    ("2026-11-30T08:25:07.1234567891Z", T + 123_456_789),  # as Go: digits past ns ignored
    ("2026-11-30T08:25:07+01:00", T - HOUR),
    ("2026-11-30T08:25:07-02:30", T + 2 * HOUR + 30 * MIN),
    ("2026-11-30T08:25:07.25+00:00", T + 250 * MS),
    ("2026-11-30", T_DATE),
    ("1970-01-01", 0),
    ("0001-01-01", -62_135_596_800 * SEC),
    ("9999-12-31T23:59:59.999999999Z", 253_402_300_799 * SEC + 999_999_999),
    ("2016-12-31T23:59:60Z", 1_483_228_800 * SEC),  # a leap second, as Go reads it
    ("1969-12-31 23:59:59.999999999", -1),
]

REJECTED = [
    "5 min",
    "5 minutes",
    "ago",
    "10x",
    "10x ago",
    "5 lightyears ago",
    "2026-13-01",
    "2026-02-30",
    "2026-11-30T25:00",
    "2026-11-30T08:60",
    "2026-11-30T08:25:07+0100",
    "2026-11-30T08:25:07+24:00",
    "2026-11-30T",
    "2026-11-30Z",
    "26-11-30",
    "0000-01-01",
    "2026-11-30T08:25:61",
    "2026-11-30T08:25:07.Z",
    "2026-11-30T8:25",
    "2026-11-30 08:25 UTC",
    "",
    "   ",
    "1d ago ago",
    "yesterday ago",
    "5",
    "-5",
    "+",
    "m",
    "1h30",
    "1.h",
    ".5h",
    "1h 30m",  # a bare span has no spaces: with spaces it needs "ago" or a sign
    "10M",  # the bare form keeps logread's units: M is a month only in a span
    "5minago",
    "- 5m",
    "+5m ago",
    "٣m",  # ARABIC-INDIC DIGIT THREE
    "now now",
    "noon",
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", REJECTED)
def test_rejected_forms(text: str) -> None:
    with pytest.raises(WhenError) as info:
        parse_when(text, NOW)
    message = str(info.value)
    assert "\n" not in message
    assert repr(text) in message
    for form in ("10m", "5 min ago", "yesterday", "RFC 3339", "2026-11-30"):
        assert form in message


def test_when_error_is_a_value_error() -> None:
    assert issubclass(WhenError, ValueError)


def test_midnights_before_1970() -> None:
    now = -DAY - 1  # 1969-12-30T23:59:59.999999999Z
    assert parse_when("today", now) == -2 * DAY
    assert parse_when("yesterday", now) == -3 * DAY
    assert parse_when("tomorrow", now) == -DAY


def test_today_at_midnight_is_itself() -> None:
    assert parse_when("today", MIDNIGHT) == MIDNIGHT
    assert parse_when("today", MIDNIGHT - 1) == MIDNIGHT - DAY


# -------------------------------------------------------------------- properties


def format_time(t: int) -> str:
    """RFC 3339 in UTC as Go's RFC3339Nano writes it (written here independently of
    the code under test): ``2026-11-30T08:25:07.5Z``."""
    secs, frac = divmod(t, SEC)
    d = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
    text = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


FIRST = -62_135_596_800 * SEC + DAY  # 0001-01-02, leaving room for an offset
LAST = 253_402_300_799 * SEC - DAY  # 9999-12-30
instants = st.integers(min_value=FIRST, max_value=LAST)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)  # minutes


@given(instants)
def test_rfc3339_forms_parse_back(t: int) -> None:
    text = format_time(t)  # 2026-11-30T08:25:07.5Z
    assert parse_when(text, NOW) == t
    assert parse_when(text.replace("T", " "), NOW) == t
    assert parse_when(text[:-1], NOW) == t
    assert parse_when(text[:-1].replace("T", " "), NOW) == t


@given(instants, offsets)
def test_rfc3339_with_offset_parses_back(t: int, offset: int) -> None:
    local = format_time(t + offset * MIN)[:-1]  # the wall clock at that offset
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    text = f"{local}{sign}{hours:02d}:{minutes:02d}"
    assert parse_when(text, NOW) == t
    assert parse_when(text.replace("T", " "), NOW) == t


@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_keywords_follow_now(now: int) -> None:
    midnight = parse_when("today", now)
    assert midnight <= now < midnight + DAY
    assert midnight % DAY == 0
    assert parse_when("yesterday", now) == midnight - DAY
    assert parse_when("tomorrow", now) == midnight + DAY
    assert parse_when("now", now) == now


UNITS = [("ms", MS), ("s", SEC), ("m", MIN), ("h", HOUR), ("d", DAY), ("w", WEEK)]


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(UNITS))
def test_bare_durations(n: int, unit: tuple[str, int]) -> None:
    symbol, scale = unit
    assert parse_when(f"{n}{symbol}", NOW) == NOW - n * scale
    assert parse_when(f"{n}{symbol} ago", NOW) == NOW - n * scale
    assert parse_when(f"{n} {symbol} ago", NOW) == NOW - n * scale
    assert parse_when(f"-{n}{symbol}", NOW) == NOW - n * scale
    assert parse_when(f"+{n}{symbol}", NOW) == NOW + n * scale


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_minutes_are_monotone(a: int, b: int) -> None:
    assert parse_when(f"{a}m", NOW) == NOW - a * MIN
    assert (parse_when(f"{a}m", NOW) < parse_when(f"{b}m", NOW)) == (a > b)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**9 - 1),
    st.integers(min_value=1, max_value=9),
)
def test_fractions_are_exact(whole: int, frac: int, digits: int) -> None:
    frac %= 10**digits
    text = f"{whole}.{frac:0{digits}d}"
    frac_ns = frac * 10 ** (9 - digits)
    assert parse_when(f"{text}s", NOW) == NOW - whole * SEC - frac_ns
    assert parse_when(f"{text} seconds ago", NOW) == NOW - whole * SEC - frac_ns
    assert parse_when(f"2026-11-30 08:25:07.{frac:0{digits}d}", NOW) == T + frac_ns


SPELLED = [
    ("sec", SEC),
    ("seconds", SEC),
    ("min", MIN),
    ("minutes", MIN),
    ("hours", HOUR),
    ("days", DAY),
    ("weeks", WEEK),
]


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(SPELLED))
def test_spelled_units_need_ago_or_a_sign(n: int, unit: tuple[str, int]) -> None:
    word, scale = unit
    assert parse_when(f"{n} {word} ago", NOW) == NOW - n * scale
    assert parse_when(f"+{n} {word}", NOW) == NOW + n * scale
    with pytest.raises(WhenError):
        parse_when(f"{n} {word}", NOW)


def test_module_is_pure() -> None:
    """No I/O framework, no CLI machinery: importing it alone loads none of them."""
    probe = (
        "import importlib, json, sys; importlib.import_module('logread.when'); "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('trio', 'click', 'structlog'))))"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
