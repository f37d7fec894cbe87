"""Reading answers (memlogd.wire.answerparser): any chunking, exactly what decoding
each line alone gives, the header first, never an exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from memlogd.errors import NotExtendedError, ProtocolError, RequestRefusedError
from memlogd.wire import protocol as proto
from memlogd.wire.answerparser import AnswerParser, _plain_entries, _scan_all, stats_in
from memlogd.wire.protocol import Dropped, ErrorReply, Header, LogEntry, Malformed, Stats
from memlogd.wire.timefmt import format_time
from tests.strategies import log_entries
from tests.wire import encode_entry

pytestmark = pytest.mark.unit

HEADER = b'{"memlogd":{"instance":"i-1","first_seq":3,"next_seq":9}}\n'


def answer_lines() -> st.SearchStrategy[bytes]:
    """Lines an answer may carry, good and bad."""
    entry = log_entries().map(encode_entry)
    dropped = st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)).map(
        lambda t: proto.encode_dropped(*t)
    )
    junk = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n")
    return st.one_of(entry, entry, dropped, st.just(HEADER), junk, st.just(b"\n"))


def parse_in_chunks(data: bytes, cuts: list[int], extended: bool) -> list[Any]:
    parser = AnswerParser(extended=extended)
    out: list[Any] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out += parser.feed(data[start:cut])
        start = cut
    out += parser.feed(data[start:])
    parser.close()
    return out


@given(st.lists(answer_lines(), max_size=12), st.lists(st.integers(0, 10**6)), st.booleans())
def test_answer_parser_gives_the_same_replies_however_the_bytes_are_chunked(
    lines: list[bytes], cuts: list[int], extended: bool
):
    data = b"".join(lines)
    whole = parse_in_chunks(data, [], extended)
    assert parse_in_chunks(data, cuts, extended) == whole
    byte_by_byte = parse_in_chunks(data, list(range(len(data) + 1)), extended)
    assert byte_by_byte == whole


def decoded_line_by_line(data: bytes, extended: bool) -> list[Any]:
    """The model: each complete line decoded on its own (docs/protocol.md,
    "Reading answers")."""
    out: list[Any] = []
    header = None
    for line in data.split(b"\n")[:-1]:
        if not line:
            continue
        try:
            reply = proto.decode_reply(line) if extended else proto.decode_entry(line)
        except ProtocolError as exc:
            out.append(Malformed(line, str(exc)))
            continue
        if extended and isinstance(reply, Header):
            if header is not None:
                out.append(Malformed(line, "a second header line"))
                continue
            header = reply
        elif extended and header is None and not isinstance(reply, ErrorReply):
            out.append(Malformed(line, "expected the header line first"))
            continue
        out.append(reply)
    return out


# pieces that a scan of the whole chunk could take across lines, or take in part
HALF = b'{"time":"2019-02-22T16:04:23Z","source":"a",'  # an entry's first half
TRICKY = [
    *(b'{"a":', b"1}", b"[1,", b"2]", b" {}", b"{} ", b"{},{}", b"\xef\xbb\xbf{}", b"\x00"),
    *(b"\t", b'{"msg":"\\u00e9"', HALF, b'"msg":"x"}', b'"msg":"x","seq":3}', b"\xff"),
    *(b"1" * 5000, b"[" * 3000, b"NaN", b'"s"', b"{}", HALF + b'"msg":"x"}'),
    HALF + b'"msg":"x","seq":3} ',
    *(b'{"msg":"x', b'y"}', b'{"b":1},{"c":2}', b"", b"\r", b"[]"),  # a string across lines
    *(HALF + b'"msg":"x","seq":true}', HALF + b'"msg":1}', HALF + b'"msg":"x","dropped":1}'),
    *(b'{"time":"2019-02-30T00:00:00Z","source":"a","msg":"x"}', HALF + b'"msg":"x","seq":1.0}'),
]


@given(
    st.lists(
        st.one_of(answer_lines(), st.lists(st.sampled_from(TRICKY), max_size=3).map(b"".join)),
        max_size=12,
    ),
    st.booleans(),
    st.booleans(),
)
@example([HALF, b'"msg":"x"}'], False, False)  # an entry only if a scan ran on into line 2
@example([HEADER, HALF, b'"msg":"x","seq":3}'], True, True)
@example([HALF + b'"msg":"x"},' + HALF + b'"msg":"z"}'], False, False)  # 2 values, 1 line
@example(  # a string across two lines, two values on the third: 3 values for 3 lines
    [HALF + b'"msg":"x', b'y"}', HALF + b'"msg":"x"},' + HALF + b'"msg":"z"}'], False, False
)
@example(
    [HEADER, b'{"msg":"x', b'y","time":"2019-02-22T16:04:23Z","source":"a"}', b"{},{}"], True, True
)
def test_answer_parser_gives_what_decoding_each_line_alone_gives(
    lines: list[bytes], extended: bool, newline_between: bool
):
    sep = b"\n" if newline_between else b""
    data = sep.join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
    assert parse_in_chunks(data, [], extended) == decoded_line_by_line(data, extended)


@given(st.lists(log_entries(), max_size=10), st.lists(st.integers(0, 10**5)))
def test_answer_parser_reads_what_the_server_writes(entries: list[LogEntry], cuts: list[int]):
    data = HEADER + b"".join(encode_entry(e) for e in entries)
    replies = parse_in_chunks(data, cuts, extended=True)
    assert replies == [Header("i-1", 3, 9), *entries]


def test_answer_parser_wants_the_header_first():
    parser = AnswerParser(extended=True)
    entry = b'{"time":"2019-02-22T16:04:23Z","source":"a","msg":"x","seq":3}'
    assert parser.feed(entry + b"\n" + HEADER + entry + b"\n" + HEADER) == [
        Malformed(entry, "expected the header line first"),
        Header("i-1", 3, 9),
        LogEntry(1_550_851_463_000_000_000, "a", "x", 3),
        Malformed(HEADER[:-1], "a second header line"),
    ]
    assert parser.header == Header("i-1", 3, 9)


def test_answer_parser_lets_an_error_come_instead_of_the_header():
    parser = AnswerParser(extended=True)
    assert parser.feed(b'{"error":"unknown request key \'x\'"}\n') == [
        ErrorReply("unknown request key 'x'")
    ]


def test_answer_parser_base_mode_reads_entries_and_drops_a_line_cut_short():
    parser = AnswerParser(extended=False)
    entry = b'{"time":"2019-02-22T16:04:23Z","source":"a","msg":"x"}'
    assert parser.feed(entry + b"\n" + entry[:10]) == [
        LogEntry(1_550_851_463_000_000_000, "a", "x")
    ]
    assert parser.pending == 10
    assert parser.feed(entry[10:]) == []
    assert parser.close() == len(entry)  # no newline: a daemon killed while sending it
    assert parser.pending == 0
    assert parser.feed(HEADER) == [Malformed(HEADER[:-1], "entry field 'time' is not a string")]


@given(st.binary(max_size=200), st.booleans())
def test_answer_parser_never_raises(data: bytes, extended: bool):
    replies = parse_in_chunks(data, [], extended)
    assert all(
        isinstance(r, (LogEntry, Header, Dropped, Stats, ErrorReply, Malformed)) for r in replies
    )


def test_stats_in_an_answer() -> None:
    header = b'{"memlogd":{"instance":"x","first_seq":1,"next_seq":1}}\n'
    assert stats_in(AnswerParser(extended=True).feed(header + b'{"stats":{"pid":7}}\n')) == {
        "pid": 7
    }
    with pytest.raises(RequestRefusedError, match="bad request"):
        stats_in(AnswerParser(extended=True).feed(b'{"error":"bad request"}\n'))
    with pytest.raises(ProtocolError, match="malformed reply"):
        stats_in(AnswerParser(extended=True).feed(b"{oops\n"))
    with pytest.raises(NotExtendedError):
        stats_in(AnswerParser(extended=True).feed(header))


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("line", [*TRICKY, HALF + b'"msg":"x"}', HALF + b'"msg":"x","seq":3}'])
def test_a_chunk_after_the_header_gives_what_each_line_alone_gives(
    line: bytes, extended: bool
) -> None:
    """The header in a chunk of its own: the next chunk is decoded as one array
    when it can be, with the entries made inline (_scan_all)."""
    head = HEADER if extended else b""
    good = HALF + b'"msg":"ok","seq":1}\n'
    data = head + good + line + b"\n" + good
    want = decoded_line_by_line(data, extended)
    assert parse_in_chunks(data, [len(head)], extended) == want


# Lines that are entries as memlogd writes them, or nearly: the fast path
# (_plain_entries) must take the first and leave every other to the exact
# path, and a chunk with one it leaves goes whole to the exact path.
_GOOD_PARTS = ('{"time":"', "T", '","source":"', "S", '","msg":"', "M", '"', "Q", "}")
_BAD_PARTS: tuple[tuple[str, ...], ...] = (
    ('{ "time":"', '{"Time":"', '["time":"', '{"time": "', "", '{"time":"x","time":"'),
    ("2019-02-30T00:00:00Z", "2019-02-22T16:04:23", "x", "", "2019-02-22t16:04:23z"),
    ('", "source":"', '","msg":"', '","source":', '","sourc":"', '","source":"\n'),
    ('a"b', "a\\b", "a\\", "a\nb", "a\tb", "\x00", "\x1f", "\r", "\x7f", "\ud800"),
    ('","msg" :"', '","source":"', '","dropped":"', '","msg":', '","msg":""'),
    ('a"b', "a\\b", '\\"', "a\nb", "\n", "\x00", "\x1f", "\r", "\\u00e9", "\ud800"),
    ('""', '"\\', "", '" '),
    (',"seq":01', ',"seq":-1', ',"seq":1.0', ',"seq":1e3', ',"seq": 1', ',"seq":1 ', ',"seq":true'),
    ("} ", "}}", "", "},{}", "}\r", "}x"),
)
_PLAIN_TEXT = st.text(st.characters(blacklist_characters='"\\', min_codepoint=0x20), max_size=12)


@st.composite
def _plainish_lines(draw: st.DrawFn) -> str:
    """An entry line as memlogd writes it (strings without escapes), half the
    time with one part of it changed to something near."""
    parts = list(_GOOD_PARTS)
    parts[1] = format_time(draw(st.integers(0, 4_102_444_800 * 10**9)))
    parts[3] = draw(st.one_of(st.just("bench.ship"), _PLAIN_TEXT))
    parts[5] = draw(_PLAIN_TEXT)
    seq = draw(st.one_of(st.integers(0, 10**6), st.integers(0, 10**25), st.just(10**19 - 1)))
    parts[7] = f',"seq":{seq}'
    if draw(st.booleans()):
        where = draw(st.integers(0, len(parts) - 1))
        change = st.sampled_from(_BAD_PARTS[where])
        parts[where] = draw(
            st.one_of(change, st.text(max_size=5) if where in (1, 3, 5, 7) else change)
        )
    return "".join(parts)


@given(
    st.lists(
        st.one_of(_plainish_lines(), _plainish_lines(), st.text(max_size=20)),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
@example(['{"time":"2019-02-22T16:04:23Z","source":"a","msg":"x","seq":3}'], True)
@example(['{"time":"2019-02-22T16:04:23Z","source":"a","msg":"x\\"y","seq":3}'], True)
@example(['{"time":"2019-02-22T16:04:23Z","source":"a","msg":"x\ty","seq":3}'], True)
@example(['{"time":"2019-02-22T16:04:23Z","source":"a","msg":"x","seq":' + "9" * 5000 + "}"], True)
def test_the_plain_fast_path_gives_exactly_what_the_exact_path_gives(
    lines: list[str], extended: bool
) -> None:
    """For any chunk of complete lines: _plain_entries gives None or exactly
    the replies of decoding each line alone (and of _scan_all); the parser, fed
    the chunk after the header, gives those replies either way."""
    data = "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"
    head = HEADER if extended else b""
    everything = decoded_line_by_line(head + data, extended)
    want = everything[1:] if extended else everything  # after the header
    try:
        text = data[:-1].decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        fast = _plain_entries(data[:-1], text)
        if fast is not None:
            assert fast == want
            assert all(type(e) is LogEntry for e in fast)
            assert fast == _scan_all(text, proto.reply_from_obj, extended)
    assert parse_in_chunks(head + data, [len(head)], extended) == everything


@given(st.lists(log_entries(seq=True), min_size=1, max_size=10))
def test_entries_as_memlogd_writes_them_take_the_fast_path(entries: list[LogEntry]) -> None:
    """Every chunk of entries with a seq whose strings need no escape is read
    by _plain_entries, to the entries written."""
    plain = [
        e
        for e in entries
        if not any(c in '"\\' or c < " " for c in e.source + e.msg)
        and e.seq is not None
        and e.seq < 10**19
    ]
    if not plain:
        return
    data = b"".join(encode_entry(e) for e in plain)[:-1]
    text = data.decode("utf-8")
    assert _plain_entries(data, text) == plain
