"""logread.render: upstream's text format, the server's JSON, colours, --since, stats."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.render import (
    PALETTE,
    RESET,
    SinceError,
    escape_source,
    parse_since,
    render_json,
    render_raw,
    render_stats,
    render_text,
    source_color,
)
from memlogd import protocol as proto
from memlogd import timefmt

pytestmark = pytest.mark.unit

NOW = 1_764_000_000_123_456_789
SEC = 1_000_000_000

# what memlogd can hold: text without newlines (sources and messages are decoded UTF-8)
texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"))
sources = texts.filter(bool)
times = st.integers(min_value=0, max_value=253402300799 * SEC)  # up to year 9999
entries = st.builds(proto.LogEntry, times, sources, texts, st.integers(1, 2**53))


def test_render_text_golden() -> None:
    entry = proto.LogEntry(1550851463123456789, "docker", "level=debug")
    assert render_text(entry) == "2019-02-22T16:04:23.123456789Z;docker;level=debug\n"


def test_render_text_trims_fraction_like_go() -> None:
    assert render_text(proto.LogEntry(1550851463 * SEC, "a", "m")) == "2019-02-22T16:04:23Z;a;m\n"
    entry = proto.LogEntry(1550851463 * SEC + 120_000_000, "a", "m")
    assert render_text(entry) == "2019-02-22T16:04:23.12Z;a;m\n"


def test_render_text_escapes_semicolons_in_source_only() -> None:
    entry = proto.LogEntry(0, "a;b;;", "x;y\\;z")
    assert render_text(entry) == "1970-01-01T00:00:00Z;a\\;b\\;\\;;x;y\\;z\n"


@given(entries)
def test_render_text_is_time_escaped_source_msg(entry: proto.LogEntry) -> None:
    text = render_text(entry)
    escaped = escape_source(entry.source)
    assert text == f"{timefmt.format_time(entry.time_ns)};{escaped};{entry.msg}\n"
    assert re.search(r"(?<!\\);", escaped) is None  # every ';' of the source is escaped
    if "\\" not in entry.source:  # as in Go, a backslash itself is not escaped
        assert escaped.replace("\\;", ";") == entry.source


@given(entries)
def test_render_text_color_wraps_only_the_source(entry: proto.LogEntry) -> None:
    color = source_color(entry.source)
    assert color in PALETTE
    assert render_text(entry, color=True) == (
        f"{timefmt.format_time(entry.time_ns)};{color}{escape_source(entry.source)}{RESET};"
        f"{entry.msg}\n"
    )


def test_source_color_is_stable_across_runs() -> None:
    # crc32 is fixed, unlike hash() (randomised per process)
    assert source_color("docker") == PALETTE[0xF255FFAD % len(PALETTE)]
    assert source_color("kmsg") == source_color("kmsg")
    assert len({source_color(f"svc{i}") for i in range(100)}) == len(PALETTE)


@given(entries)
def test_render_json_is_the_servers_bytes(entry: proto.LogEntry) -> None:
    assert entry.seq is not None
    encoded = proto.encode_batch(entry.time_ns, entry.source, [entry.msg.encode()])[0]
    server = proto.add_seq(encoded, entry.seq) + b"\n"
    assert render_json(entry).encode() == server
    assert proto.decode_entry(server) == entry


def test_render_json_golden() -> None:
    entry = proto.LogEntry(1550851463123456789, "a;b", 'say "hi"\x00', seq=7)
    assert render_json(entry) == (
        '{"time":"2019-02-22T16:04:23.123456789Z","source":"a;b",'
        '"msg":"say \\"hi\\"\\u0000","seq":7}\n'
    )
    assert list(json.loads(render_json(entry))) == ["time", "source", "msg", "seq"]


@given(entries)
def test_render_raw_is_the_message(entry: proto.LogEntry) -> None:
    assert render_raw(entry) == entry.msg + "\n"


@pytest.mark.parametrize(
    ("text", "ago_ns"),
    [
        ("30s", 30 * SEC),
        ("10m", 600 * SEC),
        ("2h", 7200 * SEC),
        ("1d", 86400 * SEC),
        ("1w", 7 * 86400 * SEC),
        ("500ms", SEC // 2),
        ("1h30m", 5400 * SEC),
        ("1.5h", 5400 * SEC),
        (" 0s ", 0),
    ],
)
def test_parse_since_durations(text: str, ago_ns: int) -> None:
    assert parse_since(text, NOW) == NOW - ago_ns


@given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
def test_parse_since_any_duration(number: int, unit: str) -> None:
    scale = {"ms": 10**6, "s": SEC, "m": 60 * SEC, "h": 3600 * SEC, "d": 86400 * SEC}
    scale["w"] = 7 * scale["d"]
    assert parse_since(f"{number}{unit}", NOW) == NOW - number * scale[unit]


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-11-29T10:00:00Z", timefmt.parse_time("2026-11-29T10:00:00Z")),
        ("2026-11-29T11:00:00.5+01:00", timefmt.parse_time("2026-11-29T10:00:00.5Z")),
    ],
)
def test_parse_since_rfc3339(text: str, ns: int) -> None:
    assert parse_since(text, NOW) == ns


@given(times)
def test_parse_since_round_trips_formatted_times(ns: int) -> None:
    assert parse_since(timefmt.format_time(ns), NOW) == ns


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "-5m", "yesterday", "2026-11-29", "1h 30m"])
def test_parse_since_rejects_junk(text: str) -> None:
    with pytest.raises(SinceError, match="neither a duration"):
        parse_since(text, NOW)


@given(st.text())
def test_parse_since_never_crashes(text: str) -> None:
    with contextlib.suppress(SinceError):
        parse_since(text, NOW)


STATS = {
    "entries": 21,
    "bytes": 300,
    "received": 22,
    "uptime_s": 1.5,
    "limits": {"max_lines": 100, "max_line_len": 1024},
    "sources": {
        "web.out": {"entries": 13, "received": 14, "open": 2, "pid": 42, "uid": 0},
        "a;b\n": {"entries": 8, "received": 8, "open": 0, "pid": None, "uid": None},
    },
}


def test_render_stats_table() -> None:
    assert render_stats(STATS) == (
        "memlogd\n"
        "  entries   21\n"
        "  bytes     300\n"
        "  received  22\n"
        "  uptime_s  1.500\n"
        "limits\n"
        "  max_lines     100\n"
        "  max_line_len  1024\n"
        "sources\n"
        "  SOURCE   ENTRIES  RECEIVED  OPEN  PID  UID\n"
        "  a;b\\x0a        8         8     0    -    -\n"
        "  web.out       13        14     2   42    0\n"
    )


@given(st.dictionaries(texts, st.integers(0, 10**9), max_size=5))
def test_render_stats_one_row_per_source(counts: dict[str, int]) -> None:
    stats = {"entries": 1, "sources": {k: {"received": v} for k, v in counts.items()}}
    lines = render_stats(stats).splitlines()
    assert lines[:2] == ["memlogd", "  entries  1"]
    assert lines[2:4] == ["sources", "  SOURCE  ENTRIES  RECEIVED  OPEN  PID  UID"] or counts
    assert len(lines) == 4 + len(counts)
