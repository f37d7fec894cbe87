"""Go RFC3339Nano times (memlogd.wire.timefmt): golden strings, round trips, rejections."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.errors import ProtocolError
from memlogd.wire import timefmt
from tests.strategies import MAX_TIME_NS, MIN_TIME_NS, times_ns

pytestmark = pytest.mark.unit

GOLDEN_NS = 1_550_851_463_123_456_789  # 2019-02-22T16:04:23.123456789Z


@pytest.mark.parametrize(
    ("time_ns", "text"),
    [
        (GOLDEN_NS, "2019-02-22T16:04:23.123456789Z"),
        (1_550_851_463_100_000_000, "2019-02-22T16:04:23.1Z"),
        (1_550_851_463_120_000_000, "2019-02-22T16:04:23.12Z"),
        (1_550_851_463_000_000_001, "2019-02-22T16:04:23.000000001Z"),
        (1_550_851_463_000_000_000, "2019-02-22T16:04:23Z"),
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
        (MIN_TIME_NS, "0001-01-01T00:00:00Z"),
        (-50_000_000_000 * 10**9, "0385-07-25T07:06:40Z"),
        (MAX_TIME_NS, "9999-12-31T23:59:59.999999999Z"),
    ],
)
def test_format_time_is_go_rfc3339nano(time_ns: int, text: str):
    assert timefmt.format_time(time_ns) == text
    assert timefmt.parse_time(text) == time_ns


def test_format_time_seconds_is_go_rfc3339():
    assert timefmt.format_time_seconds(GOLDEN_NS) == "2019-02-22T16:04:23Z"
    assert timefmt.format_time_seconds(-1) == "1969-12-31T23:59:59Z"
    assert timefmt.format_time_seconds(MIN_TIME_NS) == "0001-01-01T00:00:00Z"


@given(times_ns())
def test_parse_time_round_trips_format_time(time_ns: int):
    text = timefmt.format_time(time_ns)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", text, re.ASCII)
    assert timefmt.parse_time(text) == time_ns
    assert timefmt.parse_time(text.lower()) == time_ns  # "t" and "z" are RFC 3339 too
    assert timefmt.parse_time(timefmt.format_time_seconds(time_ns)) == time_ns // 10**9 * 10**9


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    st.integers(0, 999_999_999),
)
def test_parse_time_accepts_any_offset(local: datetime, offset_min: int, nanos: int):
    tz = timezone(timedelta(minutes=offset_min))
    when = local.replace(microsecond=0, tzinfo=tz)
    sign = "+" if offset_min >= 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    text = f"{when.year:04d}-{when:%m-%dT%H:%M:%S}.{nanos:09d}{sign}{hours:02d}:{minutes:02d}"
    expected = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1) * 10**9 + nanos
    assert timefmt.parse_time(text) == expected


def test_parse_time_examples():
    assert timefmt.parse_time("2019-02-22T17:04:23.123456789+01:00") == GOLDEN_NS
    assert timefmt.parse_time("2019-02-22T12:34:23.123456789-03:30") == GOLDEN_NS
    assert timefmt.parse_time("2019-02-22t16:04:23.123456789z") == GOLDEN_NS
    assert timefmt.parse_time("2019-02-22T16:04:23.123456789999Z") == GOLDEN_NS  # Go truncates
    assert (
        timefmt.parse_time("2019-02-22T16:04:23.5-00:00") == GOLDEN_NS - 123_456_789 + 500_000_000
    )
    # a leap second is the next minute's first second
    assert timefmt.parse_time("2016-12-31T23:59:60Z") == timefmt.parse_time("2017-01-01T00:00:00Z")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2019-02-22",
        "2019-02-22T16:04:23",  # no zone
        "2019-02-22 16:04:23Z",
        "2019-02-22T16:04:23.Z",
        "2019-02-22T16:04:23+0100",
        "2019-02-30T16:04:23Z",
        "2019-13-01T16:04:23Z",
        "2019-02-22T24:00:00Z",
        "2019-02-22T16:60:00Z",
        "2019-02-22T16:04:61Z",
        "2019-02-22T16:04:99Z",
        "2019-02-22T16:04:23+24:00",
        "2019-02-22T16:04:23+01:60",
        "0000-01-01T00:00:00Z",
        "٢٠١٩-02-22T16:04:23Z",  # Unicode digits
        "2019-02-22T16:04:23Z\n",
        " 2019-02-22T16:04:23Z",
        "10m",
    ],
)
def test_parse_time_rejects(text: str):
    with pytest.raises(ProtocolError, match="RFC 3339"):
        timefmt.parse_time(text)


@given(st.text(max_size=40))
def test_parse_time_raises_only_protocol_error(text: str):
    with contextlib.suppress(ProtocolError):
        timefmt.parse_time(text)


@pytest.mark.parametrize(
    ("time_ns", "text"),
    [
        (GOLDEN_NS, "2019-02-22T16:04:23.123456Z"),
        (1_550_851_463_000_000_000, "2019-02-22T16:04:23.000000Z"),
        (1_550_851_463_000_000_999, "2019-02-22T16:04:23.000000Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
    ],
)
def test_format_time_micros_truncates_to_six_digits(time_ns: int, text: str):
    assert timefmt.format_time_micros(time_ns) == text


@given(times_ns())
def test_format_time_micros_parses_back_to_the_microsecond(time_ns: int):
    assert timefmt.parse_time(timefmt.format_time_micros(time_ns)) == time_ns - time_ns % 1000
