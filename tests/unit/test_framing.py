"""LineSplitter (memlogd.daemon.framing) against a simple model of docs/protocol.md "Lines"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.daemon.encoding import encode_block
from memlogd.daemon.framing import LineSplitter
from memlogd.daemon.lines import Lines, line_start
from memlogd.wire.protocol import LogEntry
from tests.strategies import splits, stream_bytes
from tests.wire import encode_entry

pytestmark = pytest.mark.unit

GOLDEN_NS = 1_550_851_463_123_456_789

max_lens = st.one_of(st.integers(1, 12), st.sampled_from([1024]))


def ref_boundary(line: bytes, limit: int) -> int:
    """The last cut <= limit that starts no continuation byte, looking back at most
    three bytes (the longest tail of a UTF-8 sequence); ``limit`` if there is none."""
    if len(line) <= limit:
        return len(line)
    for cut in range(limit, max(limit - 3, 0) - 1, -1):
        if line[cut] & 0xC0 != 0x80:
            return cut
    return limit


def reference(data: bytes, max_len: int) -> tuple[list[bytes], bytes | None, int]:
    """(every line, the close() tail, lines cut) the naive way: split on \\n,
    strip one \\r before it, cut long lines; a final line without \\n is the tail
    unless it is too long (then it is emitted, cut, before EOF)."""
    *complete, last = data.split(b"\n")
    lines = []
    truncated = 0
    for line in complete:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max_len:
            truncated += 1
        lines.append(line[: ref_boundary(line, max_len)])
    tail: bytes | None = last or None
    if len(last) > max_len:
        truncated += 1
        lines.append(last[: ref_boundary(last, max_len)])
        tail = None
    return lines, tail, truncated


def run(chunks: list[bytes], max_len: int) -> tuple[list[bytes], bytes | None, int]:
    splitter = LineSplitter(max_len)
    lines: list[bytes] = []
    for chunk in chunks:
        got = splitter.feed(chunk)
        assert got == Lines.of(got.split())  # the ends are where the lines end
        lines.extend(got.split())
        assert splitter.pending <= max_len
    truncated = splitter.truncated
    return lines, splitter.close(), truncated


@given(st.data(), stream_bytes(), max_lens)
def test_any_chunking_equals_reference_model(data: st.DataObject, stream: bytes, max_len: int):
    chunks = data.draw(splits(stream))
    assert run(chunks, max_len) == reference(stream, max_len)


def long_lines_stream() -> st.SearchStrategy[bytes]:
    """Lines around and beyond a limit of 300 (long lines take another way
    than short ones), now and then a CR."""
    line = st.builds(
        lambda n, end: b"y" * n + end,
        st.sampled_from([0, 1, 255, 256, 299, 300, 301, 700]),
        st.sampled_from([b"\n", b"\n", b"\n", b"\r\n", b""]),
    )
    return st.lists(line, max_size=12).map(b"".join)


@given(st.data(), long_lines_stream())
def test_long_lines_any_chunking_equals_reference_model(data: st.DataObject, stream: bytes):
    chunks = data.draw(splits(stream))
    assert run(chunks, 300) == reference(stream, 300)


@pytest.mark.parametrize("size", [299, 300, 301, 302])
@pytest.mark.parametrize("before", [b"", b"a\n", b"x" * 150 + b"\n" + b"y" * 10])
def test_a_line_at_and_just_over_the_limit_anywhere_in_a_read(before: bytes, size: int):
    """The length check at its edges: first in the read, after a short line, or
    after a partial line carried over from the previous read."""
    stream = before + b"z" * size + b"\nb\n"
    for chunks in ([stream], [stream[: len(before)], stream[len(before) :]]):
        assert run(chunks, 300) == reference(stream, 300)


def test_lines_of_records_where_each_line_ends():
    assert Lines.of([]) == Lines(b"", b"", 0, [])
    assert Lines.of([b""]) == Lines(b"", b"", 0, [0])
    assert Lines.of([b"ab", b"", b"c"]) == Lines(b"", b"ab\n\nc", 5, [2, 3, 5])
    assert Lines.of([b"ab", b"", b"c"]).split() == [b"ab", b"", b"c"]
    assert len(Lines.of([b"a", b"b"])) == 2


@given(st.data(), stream_bytes(), max_lens)
def test_any_split_yields_same_lines(data: st.DataObject, stream: bytes, max_len: int):
    one = data.draw(splits(stream))
    other = data.draw(splits(stream))
    assert run(one, max_len) == run(other, max_len) == run([stream], max_len)


@given(st.data(), stream_bytes(), st.integers(1, 8))
def test_no_line_exceeds_the_limit(data: st.DataObject, stream: bytes, max_len: int):
    lines, tail, _ = run(data.draw(splits(stream)), max_len)
    assert all(len(line) <= max_len for line in lines)
    assert tail is None or len(tail) <= max_len
    assert all(b"\n" not in line for line in lines)


@given(st.data(), st.text(max_size=40), st.integers(1, 10))
def test_cut_of_valid_utf8_never_splits_a_sequence(data: st.DataObject, text: str, max_len: int):
    stream = text.encode("utf-8")
    lines, tail, _ = run(data.draw(splits(stream)), max_len)
    for line in [*lines, tail or b""]:
        line.decode("utf-8")  # strict: raises on a split sequence
        assert len(line) <= max_len


def test_cut_keeps_as_many_whole_characters_as_fit():
    # "€" is 3 bytes: 1 + 3 + 3 = 7 > 6, so the second "€" goes entirely.
    assert run([b"a\xe2\x82\xac\xe2\x82\xac\n"], 6) == ([b"a\xe2\x82\xac"], None, 1)
    # a four-byte sequence that starts exactly at the limit goes entirely
    assert run(["ab𝄞\n".encode()], 3) == ([b"ab"], None, 1)
    # invalid UTF-8 (continuation bytes only) is cut at the limit itself
    assert run([b"\x80" * 8 + b"\n"], 5) == ([b"\x80" * 5], None, 1)


def test_crlf_and_lf_lines():
    assert run([b"one\r\ntwo\nthree\r\n"], 1024) == ([b"one", b"two", b"three"], None, 0)


def test_only_one_cr_before_lf_is_removed():
    assert run([b"a\r\r\n"], 1024) == ([b"a\r"], None, 0)


def test_lone_cr_is_kept():
    assert run([b"a\rb\n\r"], 1024) == ([b"a\rb"], b"\r", 0)


def test_empty_lines_are_kept():
    assert run([b"\n\n\r\nx\n\n"], 1024) == ([b"", b"", b"", b"x", b""], None, 0)


def test_final_partial_line_is_the_tail_at_eof():
    assert run([b"a\nb", b"c"], 1024) == ([b"a"], b"bc", 0)
    assert run([b"", b""], 1024) == ([], None, 0)


def test_crlf_split_at_the_limit_is_not_a_truncation():
    # 4 bytes + CRLF with max 4: the line fits whichever way the CRLF is chunked
    for chunks in ([b"abcd\r\n"], [b"abcd\r", b"\n"], [b"abcd\r", b"", b"\nx\n"]):
        lines, _tail, truncated = run(chunks, 4)
        assert lines[0] == b"abcd"
        assert truncated == 0, chunks
    # ... but a CR followed by more text makes the line too long
    assert run([b"abcd\r", b"e\n"], 4) == ([b"abcd"], None, 1)
    assert run([b"abcd\r"], 4) == ([b"abcd"], None, 1)


def test_rest_of_a_cut_line_is_dropped_up_to_the_next_newline():
    chunks = [b"0123456789", b"abcdef", b"gh\nnext\n"]
    assert run(chunks, 4) == ([b"0123", b"next"], None, 1)


def test_close_resets_for_a_new_stream():
    splitter = LineSplitter(4)
    assert splitter.feed(b"0123456").split() == [b"0123"]
    assert splitter.close() is None
    assert splitter.feed(b"ab\n").split() == [b"ab"]  # not discarded as the rest of the cut line


def test_max_line_len_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        LineSplitter(0)


def test_100_mb_without_newline_keeps_memory_bounded():
    """100 MB fed in 1 MiB chunks: at most max_line_len bytes are ever held, and
    exactly one (cut) line comes out."""
    splitter = LineSplitter(1024)
    chunk = b"x" * (1 << 20)
    lines: list[bytes] = []
    for _i in range(100):
        lines.extend(splitter.feed(chunk).split())
        assert splitter.pending <= 1024
    assert lines == [b"x" * 1024]
    assert splitter.truncated == 1
    assert splitter.close() is None
    assert splitter.feed(b"\nafter\n") == Lines(b"", b"\nafter", 6, [0, 6])


@given(st.data(), stream_bytes(), max_lens)
def test_what_is_made_of_the_lines_does_not_depend_on_how_they_were_read(
    data: st.DataObject, stream: bytes, max_len: int
):
    """The console echo and the ring's block made straight from what was read
    (the partial line, the chunk) equal those made from the lines themselves
    (and the last lines found from the end, without where each ends),
    whatever follows the lines in the chunk (a partial line needing escapes)."""
    splitter = LineSplitter(max_len)
    for chunk in data.draw(splits(stream)):
        got = splitter.feed(chunk)
        if not got.ends:
            continue
        lines = got.split()
        joined = (b"<" + b"|:".join(lines) + b">\n", len(lines))
        assert got.joined_with(b"<", b"|:", b">\n") == joined
        assert b"".join(got.pieces()) == b"\n".join(lines)
        a = data.draw(st.integers(0, len(lines)))
        b = data.draw(st.integers(a, len(lines)))
        assert b"".join(got.pieces(a, b)) == b"\n".join(lines[a:b])
        unknown = Lines(got.head, got.body, got.stop, None)  # where each ends not found yet
        tail = b"".join(unknown.tail(a, len(lines)))
        assert tail == b"\n".join(lines[a:])
        if 0 < a < len(lines):  # a block told where its entry a starts, from the tail
            told = encode_block(GOLDEN_NS, "s", Lines(got.head, got.body, got.stop, None))
            told.remember(a, len(tail))
            whole = encode_block(GOLDEN_NS, "s", Lines.of(lines))
            told.start = whole.start = a
            assert told.offset(a) == whole.offset(a)
            assert told.compacted().data == whole.compacted().data
        if a < len(lines):
            room = data.draw(st.integers(0, 40))
            fit = got.fit(a, room)
            assert fit == a + 1 or len(b"\n".join(lines[a:fit])) <= room
            assert fit == len(lines) or len(b"\n".join(lines[a : fit + 1])) > room
        made = encode_block(GOLDEN_NS, "s", got)
        assert made.data == encode_block(GOLDEN_NS, "s", Lines.of(lines)).data
        assert made.entries(0, len(lines)) == [
            encode_entry(LogEntry(GOLDEN_NS, "s", line.decode("utf-8", "replace")))[:-1]
            for line in lines
        ]


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), min_size=1, max_size=30),
    st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"")),
    st.data(),
)
def test_where_a_line_starts_is_found_from_the_end(
    lines: list[bytes], after: bytes, data: st.DataObject
) -> None:
    """line_start finds where line ``a`` starts, whatever the lines' lengths
    (its first guess assumes them even), the first line maybe cut short and
    something after the last one's newline."""
    first = data.draw(st.integers(0, len(lines[0])))
    lines = [lines[0][first:], *lines[1:]]
    body = b"\n".join(lines)
    stop = len(body)
    if after:
        body += b"\n" + after
    a = data.draw(st.integers(0, len(lines)))  # (len(lines): past the last, after its newline)
    before = b"".join(line + b"\n" for line in lines[:a])
    assert line_start(body, stop, len(lines), a) == len(before)


def test_the_lines_from_the_last_on_are_none() -> None:
    """A tail from past the last line is empty, found from the end too (the
    first guess then lands on the last line's newline: it once gave all)."""
    lines = Lines(b"", b"\rxy\n", 4, None)  # two lines, the last one empty
    assert b"".join(lines.tail(2, 2)) == b""
    assert line_start(b"\rxy\n", 4, 2, 2) == 5
