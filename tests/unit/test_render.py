"""logread.render: upstream's text format, short-iso, the server's JSON, json-pretty, colours,
terminal escaping, --list-sources and stats."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.render import (
    OUTPUTS,
    PALETTE,
    RESET,
    escape_controls,
    escape_json_controls,
    escape_source,
    make_renderer,
    render_json,
    render_json_pretty,
    render_raw,
    render_short_iso,
    render_sources,
    render_stats,
    render_text,
    severity_color,
    source_color,
    source_counts,
)
from memlogd.wire import protocol as proto
from memlogd.wire import timefmt
from memlogd.wire.severity import level_or_default
from memlogd.wire.textescape import escape_name
from tests.unit.test_protocol import encode_lines

pytestmark = pytest.mark.unit

NOW = 1_764_000_000_123_456_789
SEC = 1_000_000_000

# what memlogd can hold: text without newlines (sources and messages are decoded UTF-8)
texts = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"))
sources = texts.filter(bool)
times = st.integers(min_value=0, max_value=253402300799 * SEC)  # up to year 9999
entries = st.builds(proto.LogEntry, times, sources, texts, st.integers(1, 2**53))
# what a hostile or broken server could send: any text, newlines included
any_texts = st.text(st.characters(blacklist_categories=["Cs"]))
any_entries = st.builds(
    proto.LogEntry, times, any_texts, any_texts, st.one_of(st.none(), st.integers(1, 2**53))
)
CONTROLS = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}


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
        assert escaped.replace("\\;", ";") == escape_name(entry.source)
    assert text.count("\n") == 1 + entry.msg.count("\n")  # SPEC 19: no line forged by a name
    assert "\r" not in escaped and "\x1b" not in escaped


@given(entries)
def test_render_text_color_wraps_only_the_source(entry: proto.LogEntry) -> None:
    color = source_color(entry.source)
    assert color in PALETTE
    severe = severity_color(entry.msg)
    time = timefmt.format_time(entry.time_ns)
    if severe is None:  # info and below: the source in its colour
        wanted = f"{time};{color}{escape_source(entry.source)}{RESET};{entry.msg}\n"
    else:
        wanted = f"{time};{severe}{escape_source(entry.source)};{entry.msg}{RESET}\n"
    assert render_text(entry, color=True) == wanted


@pytest.mark.parametrize(
    ("msg", "color"),
    [
        ("<0>emerg", "\x1b[1;31m"),
        ("<3>err", "\x1b[1;31m"),
        ('{"level":"fatal"}', "\x1b[1;31m"),
        ("<4>warning", "\x1b[33m"),
        ("WARN[0000] x", "\x1b[33m"),
        ("<5>notice", None),
        ("GET /error.html 200", None),
    ],
)
def test_severity_colours(msg: str, color: str | None) -> None:
    assert severity_color(msg) == color
    entry = proto.LogEntry(0, "svc", msg, 1)
    line = render_text(entry, color=True)
    if color is None:
        assert line == f"1970-01-01T00:00:00Z;{source_color('svc')}svc{RESET};{msg}\n"
    else:
        assert line == f"1970-01-01T00:00:00Z;{color}svc;{msg}{RESET}\n"
    assert render_short_iso(entry, color=True).endswith(line.split(";", 1)[1])
    assert render_text(entry) == f"1970-01-01T00:00:00Z;svc;{msg}\n"  # no colour asked


def test_source_color_is_stable_across_runs() -> None:
    # crc32 is fixed, unlike hash() (randomised per process)
    assert source_color("docker") == PALETTE[0xF255FFAD % len(PALETTE)]
    assert source_color("kmsg") == source_color("kmsg")
    assert len({source_color(f"svc{i}") for i in range(100)}) == len(PALETTE)


@given(entries)
def test_render_json_is_the_servers_bytes(entry: proto.LogEntry) -> None:
    assert entry.seq is not None
    (encoded,) = encode_lines(entry.time_ns, entry.source, [entry.msg.encode()])
    server = proto.add_seq(encoded, entry.seq)
    # the server's bytes, then the line's priority (SPEC 15)
    wanted = b'%s,"priority":%d}\n' % (server[:-1], level_or_default(entry.msg))
    assert render_json(entry).encode() == wanted
    assert proto.decode_entry(server) == entry


def test_render_json_golden() -> None:
    entry = proto.LogEntry(1550851463123456789, "a;b", 'say "hi"\x00', seq=7)
    assert render_json(entry) == (
        '{"time":"2019-02-22T16:04:23.123456789Z","source":"a;b",'
        '"msg":"say \\"hi\\"\\u0000","seq":7,"priority":6}\n'
    )
    assert list(json.loads(render_json(entry))) == ["time", "source", "msg", "seq", "priority"]


@given(entries)
def test_render_raw_is_the_message(entry: proto.LogEntry) -> None:
    assert render_raw(entry) == entry.msg + "\n"


# ---------------------------------------------------------------------- short-iso


def test_render_short_iso_golden() -> None:
    entry = proto.LogEntry(1550851463123456789, "a;b", "level=debug")
    assert render_short_iso(entry) == "2019-02-22T16:04:23+0000;a\\;b;level=debug\n"
    assert render_short_iso(proto.LogEntry(0, "s", "m")) == "1970-01-01T00:00:00+0000;s;m\n"


@given(entries)
def test_render_short_iso_is_short_with_journalctls_time(entry: proto.LogEntry) -> None:
    line = render_short_iso(entry)
    time_text, rest = line.split(";", 1)
    assert rest == render_text(entry).split(";", 1)[1]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", time_text)
    # the time is the entry's, cut to the second
    assert timefmt.parse_time(time_text[:-5] + "Z") == entry.time_ns // SEC * SEC


# ---------------------------------------------------------------------- json-pretty


def test_render_json_pretty_golden() -> None:
    entry = proto.LogEntry(1550851463123456789, "a;b", 'say "hi"\x00 \u00fc', seq=7)
    assert render_json_pretty(entry) == (
        "{\n"
        '  "time": "2019-02-22T16:04:23.123456789Z",\n'
        '  "source": "a;b",\n'
        '  "msg": "say \\"hi\\"\\u0000 \u00fc",\n'
        '  "seq": 7,\n'
        '  "priority": 6\n'
        "}\n"
    )
    assert '"seq"' not in render_json_pretty(proto.LogEntry(0, "s", "m"))


@given(any_entries)
def test_render_json_pretty_is_the_same_object_as_json(entry: proto.LogEntry) -> None:
    pretty = render_json_pretty(entry)
    assert json.loads(pretty) == json.loads(render_json(entry))
    assert list(json.loads(pretty)) == list(json.loads(render_json(entry)))
    assert pretty.endswith("\n}\n")


# ---------------------------------------------------------------------- terminal escaping


def test_escape_controls_golden() -> None:
    text = "nul \x00 esc \x1b[31m red\ttab\x7f\x9b\x85\r\n \u00fc \\x1b"
    assert escape_controls(text) == (
        "nul \\x00 esc \\x1b[31m red\ttab\\x7f\\x9b\\x85\\x0d\\x0a \u00fc \\x1b"
    )
    assert escape_controls("plain text") == "plain text"


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m[1], 16)), text)


@given(any_texts)
def test_escape_controls_leaves_no_control_but_tab(text: str) -> None:
    escaped = escape_controls(text)
    assert not (set(escaped) & CONTROLS) - {"\t"}
    if "\\" not in text:  # then the escaping can be undone
        assert _unescape(escaped) == text
    if not set(text) & CONTROLS - {"\t"}:
        assert escaped == text


@given(any_entries)
def test_escape_json_controls_keeps_the_json_value(entry: proto.LogEntry) -> None:
    for render in (render_json, render_json_pretty):
        text = render(entry)
        safe = escape_json_controls(text)
        assert json.loads(safe) == json.loads(text)
        assert not set(safe[:-1]) & CONTROLS - {"\n"}  # JSON-pretty's own newlines only
        assert safe.count("\n") == text.count("\n")


@pytest.mark.parametrize("output", OUTPUTS)
@given(batch=st.lists(any_entries, max_size=5), color=st.booleans())
def test_escaped_output_has_one_line_per_entry_and_no_control(
    output: str, batch: list[proto.LogEntry], color: bool
) -> None:
    """A message cannot forge a line, nor send an escape sequence, to a terminal."""
    text = make_renderer(output, color=color, escape=True)(batch)
    if color and output.startswith("short"):  # our own colour codes are the only ESCs
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert not set(text) & CONTROLS - {"\t", "\n"}
    lines = text.split("\n")
    assert lines.pop() == ""
    if output != "json-pretty":
        assert len(lines) == len(batch)


# ---------------------------------------------------------------------- a batch


@pytest.mark.parametrize("output", OUTPUTS)
@given(batch=st.lists(entries, max_size=5), color=st.booleans())
def test_make_renderer_joins_the_entry_renderers(
    output: str, batch: list[proto.LogEntry], color: bool
) -> None:
    """Piped (escape off), every format is the exact message."""
    one = {
        "short": lambda e: render_text(e, color=color),
        "short-iso": lambda e: render_short_iso(e, color=color),
        "json": render_json,
        "json-pretty": render_json_pretty,
        "raw": render_raw,
        "cat": render_raw,
    }[output]
    assert make_renderer(output, color=color)(batch) == "".join(map(one, batch))


def test_make_renderer_escapes_only_when_asked() -> None:
    entry = proto.LogEntry(0, "s\x1b", "a\x1b[2Jb\x9b", seq=1)
    # a source's controls always escaped (SPEC 19), a message's on a terminal only
    assert make_renderer("short")([entry]) == "1970-01-01T00:00:00Z;s\\x1b;a\x1b[2Jb\x9b\n"
    assert make_renderer("short", escape=True)([entry]) == (
        "1970-01-01T00:00:00Z;s\\x1b;a\\x1b[2Jb\\x9b\n"
    )
    assert make_renderer("cat", escape=True)([entry]) == "a\\x1b[2Jb\\x9b\n"
    assert make_renderer("json", escape=True)([entry]) == (
        '{"time":"1970-01-01T00:00:00Z","source":"s\\u001b","msg":"a\\u001b[2Jb\\u009b","seq":1,"priority":6}\n'
    )
    colored = make_renderer("short-iso", color=True, escape=True)([entry])
    color = source_color(entry.source)
    assert colored == f"1970-01-01T00:00:00+0000;{color}s\\x1b{RESET};a\\x1b[2Jb\\x9b\n"
    with pytest.raises(ValueError, match="unknown output"):
        make_renderer("xml")


# ---------------------------------------------------------------------- --list-sources

SOURCES_STATS = {
    "entries": 10,
    "sources": {
        "web.out": {"entries": 7, "received": 9},
        "kmsg": {"entries": 120},
        "evil\x1b]0;x\x07": {"entries": 3},
        "gone": {"received": 4},
    },
}


def test_render_sources_text() -> None:
    assert render_sources(SOURCES_STATS) == (
        "evil\x1b]0;x\x07    3\n"  # 10 characters
        "gone          0\n"
        "kmsg        120\n"
        "web.out       7\n"
    )
    assert render_sources(SOURCES_STATS, escape=True) == (
        "evil\\x1b]0;x\\x07    3\n"  # 16 characters
        "gone                0\n"
        "kmsg              120\n"
        "web.out             7\n"
    )
    assert render_sources({"entries": 0}) == ""


def test_render_sources_json() -> None:
    text = render_sources(SOURCES_STATS, output="json")
    assert text.splitlines()[2] == '{"source":"kmsg","entries":120}'
    assert [json.loads(line) for line in text.splitlines()] == [
        {"source": name, "entries": count} for name, count in source_counts(SOURCES_STATS)
    ]
    pretty = render_sources({"sources": {"a": {"entries": 1}}}, output="json-pretty")
    assert pretty == '{\n  "source": "a",\n  "entries": 1\n}\n'


def test_render_sources_with_evicted_counts() -> None:
    stats = {
        "sources": {
            "flood": {"entries": 4990, "evicted": 15010},
            "kmsg": {"entries": 10, "evicted": 0},
        }
    }
    assert render_sources(stats) == "flood  4990  evicted 15010\nkmsg     10\n"
    assert render_sources(stats, output="json") == (
        '{"source":"flood","entries":4990,"evicted":15010}\n'
        '{"source":"kmsg","entries":10,"evicted":0}\n'
    )


@given(st.dictionaries(any_texts, st.integers(0, 10**9), max_size=6))
def test_render_sources_one_line_per_source(counts: dict[str, int]) -> None:
    stats = {"sources": {name: {"entries": n} for name, n in counts.items()}}
    assert source_counts(stats) == sorted(counts.items())
    text = render_sources(stats, escape=True)
    lines = text.split("\n")
    assert lines.pop() == ""
    assert len(lines) == len(counts)
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == [n for _, n in sorted(counts.items())]
    as_json = [json.loads(line) for line in render_sources(stats, output="json").split("\n")[:-1]]
    assert [(o["source"], o["entries"]) for o in as_json] == sorted(counts.items())


STATS = {
    "entries": 21,
    "bytes": 300,
    "received": 22,
    "uptime_s": 1.5,
    "limits": {"max_lines": 100, "max_line_len": 1024},
    "sources": {
        "web.out": {"entries": 13, "received": 14, "evicted": 1, "open": 2, "pid": 42, "uid": 0},
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
        "  SOURCE   ENTRIES  RECEIVED  EVICTED  OPEN  PID  UID\n"
        "  a;b\\x0a        8         8        -     0    -    -\n"
        "  web.out       13        14        1     2   42    0\n"
    )


@given(st.dictionaries(texts, st.integers(0, 10**9), max_size=5))
def test_render_stats_one_row_per_source(counts: dict[str, int]) -> None:
    stats = {"entries": 1, "sources": {k: {"received": v} for k, v in counts.items()}}
    lines = render_stats(stats).splitlines()
    assert lines[:2] == ["memlogd", "  entries  1"]
    assert (
        lines[2:4] == ["sources", "  SOURCE  ENTRIES  RECEIVED  EVICTED  OPEN  PID  UID"] or counts
    )
    assert len(lines) == 4 + len(counts)


def test_a_newline_in_a_source_never_forges_a_line() -> None:
    entry = proto.LogEntry(0, "web\n1970-01-01T00:00:00Z;root\r", "hello", seq=1)
    for output in ("short", "short-iso"):
        line = make_renderer(output)([entry])
        assert line.count("\n") == 1
        assert "web\\x0a1970-01-01T00:00:00Z\\;root\\x0d;hello\n" in line


def test_bidirectional_overrides_are_escaped_on_a_terminal_only() -> None:
    entry = proto.LogEntry(0, "s\u202e", "txt.exe\u2066x\u202a", seq=1)
    assert make_renderer("short", escape=True)([entry]) == (
        "1970-01-01T00:00:00Z;s\\u202e;txt.exe\\u2066x\\u202a\n"
    )
    assert make_renderer("short")([entry]) == "1970-01-01T00:00:00Z;s\u202e;txt.exe\u2066x\u202a\n"
    assert escape_controls("\u2029\u202f\u2065\u206a") == "\u2029\u202f\u2065\u206a"
