"""``logread -D``'s pure parts (logread.directory, memlogd.wire.logdir): file
names back to sources, lines back to entries, the merge, boots (docs/logread.md,
"Reading a log directory").  What logwrite would write is made here with its
own formatter and naming, and read back."""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator, Sequence
from itertools import chain
from operator import itemgetter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logread.directory import (
    BootError,
    BootInfo,
    FileLines,
    FileParser,
    boot_window,
    line_time,
    list_boots,
    merge,
    merge_batches,
    outside,
    parse_file,
    plan_directory,
    recover_source,
    render_boots,
    select_boot,
    time_range,
)
from logread.render import render_text, render_text_batch
from logwrite.lines import LineFormatter, TimeFormat
from logwrite.rotation import needs_rotation
from memlogd.wire.logdir import (
    MAX_INSTANCES,
    Boot,
    add_instance,
    decode_instances,
    encode_instances,
    log_file_name,
    safe_log_name,
    source_field,
    source_readings,
    stem_source,
)
from memlogd.wire.protocol import LogEntry
from memlogd.wire.timefmt import NS_PER_S, format_time, parse_time
from tests import strategies

pytestmark = pytest.mark.unit

T0 = 1_796_000_000_000_000_000  # 2026-11-29T...

# names as memlogd keeps them (no lone surrogates: it decodes with replacement),
# with the hard cases: spaces, ';', '/', '%', newlines, a leading dot, long ones
names = st.one_of(
    strategies.sources(),
    st.sampled_from(["a b", "x/y", "%~", "50%", ".hidden", "a\nb", "tab\there", "\\n", "é" * 120]),
    st.text(min_size=150, max_size=260),
    st.builds(lambda s: s + " " * 3 + "/x", st.text(min_size=200, max_size=220)),
)
# messages as memlogd keeps them: never a newline (it splits lines there)
msgs = strategies.messages().map(lambda m: m.replace("\n", ""))


def write_like_logwrite(
    entries: Sequence[LogEntry], time_format: TimeFormat, max_size: int
) -> dict[str, str]:
    """The files logwrite makes of ``entries`` (its formatter, its names, its
    rotation rule, enough files kept): name -> text."""
    formatter = LineFormatter(time_format)
    chunks: dict[str, list[bytes]] = {}
    for e in entries:
        files = chunks.setdefault(safe_log_name(e.source), [b""])
        files[-1] += formatter.line(e.time_ns, e.source, e.msg)
        if needs_rotation(len(files[-1]), max_size):
            files.append(b"")
    out = {}
    for stem, files in chunks.items():
        *rotated, live = files
        for k, data in enumerate(reversed(rotated)):  # the newest rotated is .log.0
            out[log_file_name(stem, k)] = data.decode()
        if live:
            out[log_file_name(stem)] = live.decode()
    return out


def read_back(files: dict[str, str], since_ns: int | None = None) -> list[LogEntry]:
    parsed = []
    for sf in plan_directory(files):
        for name in sf.names:
            lines = parse_file(files[name], sf.stem)
            assert lines.bad == 0 and not lines.torn
            parsed.append(lines)
    return list(merge(parsed, since_ns=since_ns))


@st.composite
def rings(draw: st.DrawFn) -> list[LogEntry]:
    """A ring's dump: entries in seq order, their times never going back."""
    sources = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    steps = st.sampled_from([0, 1, 7, 999, NS_PER_S // 2, NS_PER_S, 3 * NS_PER_S])
    rows = draw(st.lists(st.tuples(st.sampled_from(sources), msgs, steps), max_size=40))
    out, t = [], T0 + draw(st.integers(0, NS_PER_S))
    for source, msg, step in rows:
        t += step
        out.append(LogEntry(t, source, msg))
    return out


def as_dump(ring: Sequence[LogEntry], time_format: TimeFormat) -> list[LogEntry]:
    """What logread -D must give back: the ring, times as the files keep them,
    equal times in source-name order (each source's order kept)."""
    seconds = time_format is TimeFormat.RFC3339
    kept = [e._replace(time_ns=e.time_ns // NS_PER_S * NS_PER_S) if seconds else e for e in ring]
    return sorted(kept, key=lambda e: (e.time_ns, e.source))


# ---------------------------------------------------------------------- round trips


@given(rings(), st.integers(1, 400))
def test_what_logwrite_wrote_in_nanoseconds_reads_back_as_the_ring(
    ring: list[LogEntry], max_size: int
) -> None:
    files = write_like_logwrite(ring, TimeFormat.RFC3339NANO, max_size)
    assert read_back(files) == as_dump(ring, TimeFormat.RFC3339NANO)


@given(rings(), st.integers(1, 400))
def test_whole_seconds_read_back_ordered_by_second_then_source(
    ring: list[LogEntry], max_size: int
) -> None:
    files = write_like_logwrite(ring, TimeFormat.RFC3339, max_size)
    assert read_back(files) == as_dump(ring, TimeFormat.RFC3339)


@given(rings(), st.integers(1, 400), st.integers(0, 50))
def test_since_leaves_out_exactly_the_older_lines(
    ring: list[LogEntry], max_size: int, cut: int
) -> None:
    files = write_like_logwrite(ring, TimeFormat.RFC3339NANO, max_size)
    since = ring[min(cut, len(ring) - 1)].time_ns if ring else T0
    expected = [e for e in as_dump(ring, TimeFormat.RFC3339NANO) if e.time_ns >= since]
    assert read_back(files, since_ns=since) == expected


@given(names)
def test_a_file_name_gives_back_its_source_unless_it_was_cut(source: str) -> None:
    stem = safe_log_name(source)
    got = stem_source(stem)
    cut = len(stem.encode("utf-8", "surrogatepass")) >= 190 and stem != source
    if got is None:
        assert cut
    else:
        assert got == source


@given(names, msgs)
def test_a_cut_name_is_recovered_from_a_line_by_its_hash(source: str, msg: str) -> None:
    stem = safe_log_name(source)
    line = LineFormatter(TimeFormat.RFC3339NANO).line(T0, source, msg).decode()
    assert recover_source(stem, [line]) == source
    assert parse_file(line, stem).source == source


@given(names)
def test_source_readings_include_what_source_field_wrote(source: str) -> None:
    assert source in source_readings(source_field(source))


def test_unchanged_escaped_and_cut_names() -> None:
    assert stem_source("docker.out") == "docker.out"
    assert stem_source(safe_log_name("a/b")) == "a/b"
    assert stem_source(safe_log_name(".x")) == ".x"
    assert stem_source(safe_log_name("")) == ""
    long = "svc " * 80
    assert stem_source(safe_log_name(long)) is None
    # a '%' name logwrite never writes: taken as it spells
    assert stem_source("50%") == "50%"
    assert stem_source("a%2Fb%~000000000000") is None  # the hash does not match


def test_a_clock_that_steps_back_keeps_each_sources_file_order() -> None:
    a = FileLines("a", [T0 + 10, T0 + 5, T0 + 20], ["a1", "a2", "a3"])
    b = FileLines("b", [T0 + 6, T0 + 10], ["b1", "b2"])
    got = [(e.source, e.msg) for e in merge([a, b])]
    assert [m for s, m in got if s == "a"] == ["a1", "a2", "a3"]
    assert [m for s, m in got if s == "b"] == ["b1", "b2"]
    assert got == [("b", "b1"), ("a", "a1"), ("a", "a2"), ("b", "b2"), ("a", "a3")]


def test_equal_times_go_in_source_name_order() -> None:
    files = [
        FileLines("web", [T0, T0], ["w1", "w2"]),
        FileLines("db", [T0, T0 + 1], ["d1", "d2"]),
        FileLines("app", [T0], ["a1"]),
    ]
    assert [e.msg for e in merge(files)] == ["a1", "d1", "w1", "w2", "d2"]


def _cut(data: st.DataObject, items: list[str], most: int) -> list[list[str]]:
    """``items`` cut into pieces at places drawn."""
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(items) - 1)), max_size=most)))
    return [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True)]


@given(st.lists(st.lists(st.integers(0, 12), max_size=25), max_size=5), st.data())
def test_the_batched_merge_takes_lines_as_heapq_merge_of_whole_sources(
    sources: list[list[int]], data: st.DataObject
) -> None:
    """Times going back or not, cut in batches anywhere: each round's stable sort
    by the highest time so far gives what a merge of whole sources gives."""
    names = [f"s{i}" for i in range(len(sources))]  # in name order
    whole = [
        [(t, name, str(k)) for k, t in enumerate(times)]
        for name, times in zip(names, sources, strict=True)
    ]
    expected = list(heapq.merge(*whole, key=itemgetter(0)))
    batched = []
    for name, lines in zip(names, whole, strict=True):
        pieces = _cut(data, [msg for _, _, msg in lines], 6)
        times = iter(t for t, _, _ in lines)
        batched.append([FileLines(name, [next(times) for _ in p], p) for p in pieces])
    got = [e[:3] for e in chain.from_iterable(merge_batches(batched))]
    assert got == expected


def test_the_merge_reads_a_source_only_as_far_as_it_merges() -> None:
    """Memory is a batch or two per source: when the first merged batch comes,
    each source has given at most two of its hundred batches."""
    given = {"a": 0, "b": 0}

    def batches(source: str, offset: int) -> Iterator[FileLines]:
        for k in range(100):
            given[source] += 1
            yield FileLines(
                source, [T0 + 10 * (10 * k + j) + offset for j in range(10)], ["m"] * 10
            )

    merged = merge_batches([batches("a", 0), batches("b", 5)])
    first = next(merged)
    assert [e.source for e in first[:4]] == ["a", "b", "a", "b"]
    assert max(given.values()) <= 2
    assert sum(map(len, merged)) + len(first) == 2000
    assert given == {"a": 100, "b": 100}


@given(st.lists(st.sampled_from([f"2026-11-29T10:00:0{k % 10}Z s m{k}" for k in range(12)]
    + ["garbage", "2026-11-29T10:00:05.5Z other x", ""]), max_size=30), st.booleans(),
    st.integers(0, 9), st.data())  # fmt: skip
def test_a_file_parsed_in_pieces_is_the_file_parsed_whole(
    lines: list[str], torn: bool, since_s: int, data: st.DataObject
) -> None:
    text = "".join(line + "\n" for line in lines)
    if torn and lines:
        text = text[:-1]
    since = parse_time(f"2026-11-29T10:00:0{since_s}Z")
    whole = FileParser("s", since).feed(text)
    parser = FileParser("s", since)
    pieces = ["".join(p) for p in _cut(data, text.splitlines(keepends=True), 5)]
    parts = [parser.feed(p) for p in pieces]
    assert list(chain.from_iterable(p.times for p in parts)) == whole.times
    assert list(chain.from_iterable(p.msgs for p in parts)) == whole.msgs
    assert sum(p.bad for p in parts) == whole.bad
    assert any(p.torn for p in parts) == whole.torn == (text != "" and not text.endswith("\n"))


# ---------------------------------------------------------------------- names in DIR


def test_rotations_are_read_oldest_first_and_a_gz_stands_in_for_its_file() -> None:
    listing = [
        "web.log",
        "web.log.0",
        "web.log.10",
        "web.log.2",
        "web.log.1.gz",
        "db.log.0",
        "db.log.0.gz",  # the plain file wins
        "instances",
        "instances.tmp",
        "logwrite.cursor",
        "x.log.gz",  # logwrite never makes one
        ".log",
        "notes.txt",
    ]
    plan = plan_directory(listing)
    assert [(sf.stem, sf.names) for sf in plan] == [
        ("db", ("db.log.0",)),
        ("web", ("web.log.10", "web.log.2", "web.log.1.gz", "web.log.0", "web.log")),
    ]


# ---------------------------------------------------------------------- bad lines


def test_a_torn_last_line_and_lines_of_another_format_are_shown_and_counted() -> None:
    text = (
        "2026-11-29T10:00:00.5Z web first\n"
        "garbage without a time\n"
        "2026-11-29T10:00:01Z other-source said this\n"
        "2026-11-29T10:00:02Z web cut sh"
    )
    got = parse_file(text, "web")
    t = parse_time("2026-11-29T10:00:00.5Z")
    assert got.source == "web"
    assert got.msgs == ["first", "garbage without a time", "other-source said this", "cut sh"]
    assert got.times == [t, t, t + NS_PER_S // 2, t + 3 * NS_PER_S // 2]
    assert got.bad == 2 and got.torn


def test_a_file_of_only_garbage_is_shown_whole() -> None:
    got = parse_file("\x00\x01\nno\n", "s")
    assert (got.msgs, got.times, got.bad, got.torn) == (["\x00\x01", "no"], [0, 0], 2, False)


def test_an_empty_file_has_no_lines() -> None:
    got = parse_file("", "s")
    assert (got.msgs, got.bad, got.torn) == ([], 0, False)


@given(st.text(max_size=200))
def test_any_text_parses_without_raising(text: str) -> None:
    got = parse_file(text, "s%~000000000000")
    assert len(got.times) == len(got.msgs)


def test_line_time_takes_any_rfc3339_time() -> None:
    assert line_time("2026-11-29T10:00:00Z x y") == parse_time("2026-11-29T10:00:00Z")
    assert line_time("2026-11-29T10:00:00.123+01:00 x") == parse_time(
        "2026-11-29T10:00:00.123+01:00"
    )
    assert line_time("not a time") is None
    assert line_time("") is None


def test_files_wholly_outside_since_until_are_skipped() -> None:
    span = time_range("2026-11-29T10:00:00Z a b", "2026-11-29T11:00:00Z a b")
    assert span is not None
    ten, eleven = span
    assert outside(span, eleven + 1, None) and outside(span, None, ten - 1)
    assert not outside(span, eleven, None) and not outside(span, None, ten)
    assert not outside((eleven, ten), eleven + 1, None)  # the clock stepped back: read it
    assert time_range("garbage", "2026-11-29T11:00:00Z a b") is None


# ---------------------------------------------------------------------- boots


BOOTS = [
    Boot("aaaa-1", "2026-11-29T10:00:00Z"),
    Boot("bbbb-2", "2026-11-29T11:00:00.5Z"),
    Boot("bbbb-3", "2026-11-29T12:00:00Z"),
]


@pytest.mark.parametrize(
    ("which", "index"),
    [
        *[("", 2), ("0", 2), ("-1", 1), ("-2", 0), ("1", 0), ("+2", 1), ("3", 2)],
        *[("aaaa-1", 0), ("aaaa", 0), ("bbbb-3", 2)],
    ],
)
def test_select_boot_as_journalctl(which: str, index: int) -> None:
    assert select_boot(BOOTS, which) == index


@pytest.mark.parametrize(
    ("which", "error"),
    [
        ("-3", "no boot at offset -3 (3 recorded)"),
        ("4", "no boot at offset 4 (3 recorded)"),
        ("bbbb", "'bbbb' is the start of 2 instances: give more of it"),
        ("cccc", "no boot with instance 'cccc'"),
    ],
)
def test_select_boot_errors(which: str, error: str) -> None:
    with pytest.raises(BootError, match=re.escape(error)):
        select_boot(BOOTS, which)
    with pytest.raises(BootError, match="no boots recorded"):
        select_boot([], "0")


def test_a_boot_ends_where_the_next_begins() -> None:
    assert boot_window(BOOTS, 0) == (BOOTS[0].first_ns, BOOTS[1].first_ns - 1)
    assert boot_window(BOOTS, 2) == (BOOTS[2].first_ns, None)


def test_list_boots_finds_each_boots_last_line() -> None:
    first = [b.first_ns for b in BOOTS]
    times = [first[2] + 7, first[0], first[0] + 5, first[2]]  # nothing left of boot 2
    assert list_boots(BOOTS, times) == [
        BootInfo(-2, "aaaa-1", first[0], first[0] + 5),
        BootInfo(-1, "bbbb-2", first[1], None),
        BootInfo(0, "bbbb-3", first[2], first[2] + 7),
    ]


def test_render_boots() -> None:
    infos = list_boots(BOOTS, [BOOTS[0].first_ns + 1])
    assert render_boots(infos) == (
        "IDX  INSTANCE  FIRST ENTRY             LAST ENTRY\n"
        " -2  aaaa-1    2026-11-29T10:00:00Z    2026-11-29T10:00:00.000000001Z\n"
        " -1  bbbb-2    2026-11-29T11:00:00.5Z  -\n"
        "  0  bbbb-3    2026-11-29T12:00:00Z    -\n"
    )
    assert render_boots(infos[:1], output="json") == (
        '{"offset":-2,"instance":"aaaa-1","first":"2026-11-29T10:00:00Z",'
        '"last":"2026-11-29T10:00:00.000000001Z"}\n'
    )


def test_instances_file_keeps_the_last_hundred_and_adds_an_instance_once() -> None:
    boots: list[Boot] = []
    for i in range(MAX_INSTANCES + 5):
        added = add_instance(boots, f"i-{i}", format_time(T0 + i))
        assert added is not None
        boots = added
    assert len(boots) == MAX_INSTANCES and boots[0].instance == "i-5"
    assert add_instance(boots, "i-50", format_time(T0)) is None  # a restart adds nothing
    data = encode_instances(boots)
    assert data.splitlines()[0] == f"i-5 {format_time(T0 + 5)}".encode()
    assert decode_instances(data) == (boots, 0)


def test_bad_lines_of_the_instances_file_are_skipped_and_counted() -> None:
    data = (
        b"ok-1 2026-11-29T10:00:00Z\nno-time\nbad 2026-13-40T00:00:00Z\n\n"
        b"ok-2 2026-11-29T11:00:00Z\n"
    )
    boots, bad = decode_instances(data)
    assert [b.instance for b in boots] == ["ok-1", "ok-2"] and bad == 3


# ---------------------------------------------------------------------- rendering


@given(st.lists(strategies.log_entries(), max_size=30))
def test_the_batch_renderer_writes_what_render_text_writes(entries: list[LogEntry]) -> None:
    assert render_text_batch(entries) == "".join(map(render_text, entries))


def test_a_source_field_escapes_controls_as_logread_does_and_reads_back() -> None:
    """SPEC 19: logwrite writes a name's controls as logread shows them."""
    source = "a\nb\x1b[2J\rc\td"
    field = source_field(source)
    assert field == "a\\x0ab\\x1b[2J\\x0dc\td"
    assert source in source_readings(field)
    assert source_readings("plain\\x41\\x09") == ["plain\\x41\\x09"]  # never escaped: literal
    assert source_readings("old\\nname") == ["old\\nname", "old\nname"]  # files before \xNN
