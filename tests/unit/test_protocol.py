"""The wire protocol (memlogd.wire.protocol): round trips, golden strings, rejections."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memlogd.daemon.encoding import encode_block
from memlogd.daemon.lines import Lines
from memlogd.errors import ProtocolError
from memlogd.wire import protocol as proto
from memlogd.wire import timefmt
from memlogd.wire.protocol import (
    Dropped,
    ErrorReply,
    Header,
    LogEntry,
    QueryMode,
    QueryRequest,
    Stats,
)
from tests.strategies import (
    log_entries,
    messages,
    query_requests,
    raw_lines,
    sources,
    times_ns,
)
from tests.wire import encode_entry

pytestmark = pytest.mark.unit

GOLDEN_NS = 1_550_851_463_123_456_789  # 2019-02-22T16:04:23.123456789Z


def pairs(line: bytes) -> list[tuple[str, Any]]:
    """The key/value pairs of a JSON object line, in order (strict JSON)."""

    def reject(name: str) -> None:
        raise AssertionError(f"not strict JSON: {name}")

    result: list[tuple[str, Any]] = json.loads(
        line.decode("utf-8"), object_pairs_hook=list, parse_constant=reject
    )
    return result


# --------------------------------------------------------------------------- entries


def test_encode_entry_golden():
    entry = LogEntry(GOLDEN_NS, "docker", "level=debug")
    assert encode_entry(entry) == (
        b'{"time":"2019-02-22T16:04:23.123456789Z","source":"docker","msg":"level=debug"}\n'
    )
    with_seq = LogEntry(1_550_851_463_000_000_000, "kmsg", "x", seq=42)
    assert encode_entry(with_seq) == (
        b'{"time":"2019-02-22T16:04:23Z","source":"kmsg","msg":"x","seq":42}\n'
    )


def encode_lines(time_ns: int, source: str, lines: list[bytes]) -> list[bytes]:
    """Each line's entry (without newline), through the ring's block."""
    batch = Lines.of(lines)
    return encode_block(time_ns, source, batch).entries(0, len(lines))


def test_encode_block_golden_escapes_control_bytes_and_replaces_invalid_utf8():
    lines = [b'a"b\\c', b"\x00\x1f\t\x7f", "é€".encode(), b"\xff\xe2\x82", b""]
    assert encode_lines(GOLDEN_NS, "s;1", lines) == [
        b'{"time":"2019-02-22T16:04:23.123456789Z","source":"s;1","msg":"a\\"b\\\\c"}',
        b'{"time":"2019-02-22T16:04:23.123456789Z","source":"s;1","msg":"\\u0000\\u001f\\t\x7f"}',
        '{"time":"2019-02-22T16:04:23.123456789Z","source":"s;1","msg":"é€"}'.encode(),
        '{"time":"2019-02-22T16:04:23.123456789Z","source":"s;1","msg":"\ufffd\ufffd"}'.encode(),
        b'{"time":"2019-02-22T16:04:23.123456789Z","source":"s;1","msg":""}',
    ]
    assert encode_lines(GOLDEN_NS, "s", []) == []


@given(times_ns(), sources(), st.lists(raw_lines(), max_size=8), st.data())
def test_encode_block_knows_where_every_entry_and_line_ends(
    time_ns: int, source: str, lines: list[bytes], data: st.DataObject
):
    """Whichever way a block was encoded (plain lines or lines to escape), its
    bytes are its entries with newlines, and any run of them is found at once:
    their bytes, and their message bytes."""
    batch = Lines.of(lines)
    block = encode_block(time_ns, source, batch)
    entries = block.entries(0, len(lines))
    assert block.data == b"".join(e + b"\n" for e in entries)
    assert (block.source, block.time_ns, len(block)) == (source, time_ns, len(lines))
    a = data.draw(st.integers(0, len(lines)))
    b = data.draw(st.integers(a, len(lines)))
    assert block.entries(a, b) == entries[a:b]
    assert bytes(block.view(a, b)) == b"".join(e + b"\n" for e in entries[a:b])
    assert block.size(a, b) == sum(map(len, lines[a:b]))


@given(times_ns(), sources(), st.lists(raw_lines(), max_size=8))
def test_encode_block_is_valid_json_whatever_the_bytes(time_ns: int, source: str, lines):
    encoded = encode_lines(time_ns, source, lines)
    assert len(encoded) == len(lines)
    for line, raw in zip(encoded, lines, strict=True):
        assert b"\n" not in line
        assert pairs(line) == [
            ("time", timefmt.format_time(time_ns)),
            ("source", source),
            ("msg", raw.decode("utf-8", "replace")),
        ]


@given(times_ns(), sources(), st.lists(raw_lines(), max_size=8))
def test_encode_block_equals_per_line_encode_of_decoded_line(time_ns: int, source: str, lines):
    expected = [
        encode_entry(LogEntry(time_ns, source, raw.decode("utf-8", "replace")))[:-1]
        for raw in lines
    ]
    assert encode_lines(time_ns, source, lines) == expected


@given(log_entries())
def test_encode_entry_keys_are_time_source_msg_then_seq(entry: LogEntry):
    line = encode_entry(entry)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    expected: list[tuple[str, Any]] = [
        ("time", entry.time),
        ("source", entry.source),
        ("msg", entry.msg),
    ]
    if entry.seq is not None:
        expected.append(("seq", entry.seq))
    assert pairs(line) == expected


@given(log_entries())
def test_decode_entry_round_trips_encode_entry(entry: LogEntry):
    assert proto.decode_entry(encode_entry(entry)) == entry
    assert proto.decode_entry(encode_entry(entry).decode("utf-8")) == entry


@given(times_ns(), sources(), messages().filter(lambda m: "\n" not in m), st.integers(0, 2**63))
def test_add_seq_appends_seq_as_last_key(time_ns: int, source: str, msg: str, seq: int):
    (encoded,) = encode_lines(time_ns, source, [msg.encode("utf-8")])
    with_seq = proto.add_seq(encoded, seq)
    assert with_seq + b"\n" == encode_entry(LogEntry(time_ns, source, msg, seq))
    assert proto.decode_reply(with_seq) == LogEntry(time_ns, source, msg, seq)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b"[]",
        b'"x"',
        b"\xff",
        b"[" * 60_000,
        b'{"time":"2019-02-22T16:04:23Z","source":"s"}',
        b'{"time":"2019-02-22T16:04:23Z","source":1,"msg":"m"}',
        b'{"time":"yesterday","source":"s","msg":"m"}',
        b'{"time":"2019-02-22T16:04:23Z","source":"s","msg":"m","seq":1.5}',
        b'{"time":"2019-02-22T16:04:23Z","source":"s","msg":"m","seq":true}',
    ],
)
def test_decode_entry_rejects(line: bytes):
    with pytest.raises(ProtocolError):
        proto.decode_entry(line)


def test_join_lines():
    assert proto.join_lines([]) == b""
    assert proto.join_lines([b"a", b"b"]) == b"a\nb\n"


# --------------------------------------------------------------------------- names


def ref_name(raw: bytes) -> str:
    cut = len(raw)
    if cut > 512:
        cut = 512
        for back in range(512, 508, -1):
            if raw[back] & 0xC0 != 0x80:
                cut = back
                break
    return raw[:cut].decode("utf-8", "replace") or "unnamed"


@given(st.one_of(st.binary(max_size=600), st.text(min_size=150, max_size=200).map(str.encode)))
def test_decode_name_cuts_at_512_bytes_on_a_utf8_boundary(raw: bytes):
    name = proto.decode_name(raw)
    assert name == ref_name(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    if text:
        assert text.startswith(name)
        assert len(name.encode()) <= 512
        assert len(name.encode()) > 508 or name == text


def test_decode_name_examples():
    assert proto.decode_name(b"") == "unnamed"
    assert proto.decode_name(b"docker.out") == "docker.out"
    assert proto.decode_name(b"a\xffb") == "a\ufffdb"
    assert proto.decode_name(b"x" * 10_000) == "x" * 512
    assert proto.decode_name(b"x" * 511 + "€".encode()) == "x" * 511  # no half "€"
    assert proto.decode_name(b"x" * 509 + "€".encode()) == "x" * 509 + "€"  # exactly 512


@given(st.binary(max_size=20), st.integers(0, 25))
def test_utf8_boundary_is_the_last_cut_within_the_limit(data: bytes, limit: int):
    cut = proto.utf8_boundary(data, limit)
    assert cut <= max(limit, 0) or cut == len(data) <= limit
    if limit >= len(data):
        assert cut == len(data)
    else:
        assert limit - 3 <= cut <= limit
        assert data[cut] & 0xC0 != 0x80 or cut == limit


@given(st.text(max_size=12), st.integers(0, 50))
def test_utf8_boundary_never_splits_valid_utf8(text: str, limit: int):
    data = text.encode()
    cut = proto.utf8_boundary(data, limit)
    data[:cut].decode("utf-8")  # strict
    if cut < len(data):
        # the next character would not fit
        rest = data[cut:].decode("utf-8")
        assert cut + len(rest[0].encode()) > limit


# --------------------------------------------------------------------------- extended query


def test_query_mode_bytes():
    assert [int(m) for m in QueryMode] == [0, 1, 2, 3]
    assert [m.name for m in QueryMode] == ["DUMP", "FOLLOW", "DUMP_FOLLOW", "EXTENDED"]


@given(query_requests())
def test_encode_request_parse_request_round_trip(request: QueryRequest):
    wire = proto.encode_request(request)
    assert wire[:1] == b"\x03"
    assert wire.endswith(b"\n")
    assert wire.count(b"\n") == 1
    assert proto.parse_request(wire[1:]) == request
    assert proto.parse_request(wire[1:-1]) == request  # the newline is optional


request_values = st.fixed_dictionaries(
    {},
    optional={
        "dump": st.booleans(),
        "follow": st.booleans(),
        "sources": st.lists(st.text(max_size=8), max_size=3),
        "after_seq": st.integers(0, 2**64),
        "tail": st.integers(0, 2**64),
        "since": times_ns().map(timefmt.format_time),
        "stats": st.booleans(),
        "priority": st.integers(0, 7) | st.lists(st.integers(0, 7), min_size=2, max_size=2),
    },
)


@given(request_values)
def test_parse_request_accepts_every_valid_request(obj: dict[str, Any]):
    request = proto.parse_request(json.dumps(obj).encode())
    assert request.dump is obj.get("dump", True)
    assert request.follow is obj.get("follow", False)
    assert request.sources == tuple(obj.get("sources", ()))
    assert request.after_seq == obj.get("after_seq")
    assert request.tail == obj.get("tail")
    assert request.since_ns == (timefmt.parse_time(obj["since"]) if "since" in obj else None)
    assert request.stats is obj.get("stats", False)
    priority = obj.get("priority")
    if priority is None:
        assert request.priority is None
    elif isinstance(priority, int):
        assert request.priority == (0, priority)
    else:
        assert request.priority == (min(priority), max(priority))


def test_priority_key_golden():
    assert proto.parse_request(b'{"priority":3}').priority == (0, 3)
    assert proto.parse_request(b'{"priority":[5,2]}').priority == (2, 5)
    wire = proto.encode_request(QueryRequest(priority=(0, 4)))
    assert wire == b'\x03{"dump":true,"follow":false,"priority":4}\n'
    wire = proto.encode_request(QueryRequest(priority=(3, 5)))
    assert wire == b'\x03{"dump":true,"follow":false,"priority":[3,5]}\n'


def test_entry_message_is_the_encoded_message():
    for msg in ["plain", 'say "hi"\\ \x00 \u00fc \ufffd', ""]:
        prefix = proto.entry_prefix(7, 's"rc')
        encoded = encode_entry(LogEntry(7, 's"rc', msg))[:-1]
        assert proto.entry_message(encoded, len(prefix.encode())) == msg


def test_parse_request_empty_object_is_a_plain_dump():
    assert proto.parse_request(b"{}\n") == QueryRequest(dump=True, follow=False)
    assert proto.parse_request(b" { } ") == QueryRequest()


WRONG_VALUES: dict[str, list[Any]] = {
    "dump": [1, 0, "true", None, [], {}],
    "follow": [1, "yes", None],
    "stats": [0, None, "false"],
    "sources": ["docker*", [1], [None], ["a", 2], {"a": 1}, None, True],
    "after_seq": [True, False, 1.0, 1.5, "1", None, [1], -1],
    "tail": [True, 2.0, "10", None, -5],
    "since": [0, None, "10m", "2019-02-22", True, "2019-02-22T16:04:99Z"],
    "priority": [8, -1, True, "err", None, 3.0, [], [1], [1, 2, 3], [0, 8], ["0", 3], [True, 2]],
}


@pytest.mark.parametrize(
    ("key", "value"), [(k, v) for k, values in WRONG_VALUES.items() for v in values]
)
def test_parse_request_rejects_wrong_types_and_negative_ints(key: str, value: Any):
    with pytest.raises(ProtocolError, match=f"request key '{key}'"):
        proto.parse_request(json.dumps({key: value}).encode())


@given(
    st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in proto._REQUEST_KEYS),
        st.none() | st.integers() | st.booleans(),
        min_size=1,
        max_size=3,
    )
)
def test_parse_request_rejects_unknown_keys(extra: dict[str, Any]):
    obj: dict[str, Any] = {"dump": True, **extra}
    with pytest.raises(ProtocolError, match="unknown request key"):
        proto.parse_request(json.dumps(obj).encode())


@pytest.mark.parametrize(
    "line",
    [b"", b"[]", b'"dump"', b"1", b"null", b"true", b"{", b"\xff\xfe", b"[" * 65_000, b"{}{}"],
)
def test_parse_request_rejects_non_objects_and_bad_json(line: bytes):
    with pytest.raises(ProtocolError):
        proto.parse_request(line)


def test_parse_request_rejects_more_than_64_kib():
    padding = " " * (proto.MAX_REQUEST_BYTES - 2)
    assert proto.parse_request(("{" + padding + "}").encode()) == QueryRequest()
    with pytest.raises(ProtocolError, match="longer than 65536 bytes"):
        proto.parse_request(("{ " + padding + "}").encode())


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), st.lists, max_leaves=10))
def test_parse_request_raises_only_protocol_error(value: Any):
    with contextlib.suppress(ProtocolError):
        proto.parse_request(json.dumps({"sources": value}).encode())


# --------------------------------------------------------------------------- replies


@given(
    st.text(max_size=40), st.integers(0, 2**63), st.integers(0, 2**63), st.integers(), st.integers()
)
def test_reply_round_trips(instance: str, first: int, nxt: int, seq: int, count: int):
    header = Header(instance, first, nxt)
    line = proto.encode_header(header)
    assert pairs(line) == [
        ("memlogd", [("instance", instance), ("first_seq", first), ("next_seq", nxt)])
    ]
    assert proto.decode_reply(line) == header
    dropped = proto.encode_dropped(seq, count)
    assert pairs(dropped) == [("seq", seq), ("dropped", count)]
    assert proto.decode_reply(dropped) == Dropped(seq, count)


@given(st.text(max_size=40))
def test_error_reply_round_trips(message: str):
    assert proto.decode_reply(proto.encode_error(message)) == ErrorReply(message)


def test_stats_reply_round_trips():
    values = {"entries": 3, "limits": {"max_lines": 5000}, "sources": {"a": {"pid": None}}}
    assert proto.decode_reply(proto.encode_stats(values)) == Stats(values)


def test_decode_reply_golden_lines():
    assert proto.decode_reply(
        b'{"memlogd":{"instance":"u-1","first_seq":1,"next_seq":5}}\n'
    ) == Header("u-1", 1, 5)
    assert proto.decode_reply(b'{"seq":3,"dropped":7}') == Dropped(3, 7)
    assert proto.decode_reply(b'{"error":"bad"}') == ErrorReply("bad")
    assert proto.decode_reply(
        b'{"time":"2019-02-22T16:04:23.123456789Z","source":"docker","msg":"m","seq":9}'
    ) == LogEntry(GOLDEN_NS, "docker", "m", 9)


@pytest.mark.parametrize(
    "line",
    [
        b"[]",
        b"{}",
        b"[" * 60_000,
        b'{"memlogd":[1]}',
        b'{"memlogd":"x"}',
        b'{"memlogd":{"instance":1,"first_seq":1,"next_seq":1}}',
        b'{"memlogd":{"instance":"x","first_seq":Infinity,"next_seq":1}}',
        b'{"memlogd":{"instance":"x","first_seq":1.5,"next_seq":1}}',
        b'{"memlogd":{"instance":"x","first_seq":true,"next_seq":1}}',
        b'{"memlogd":{"instance":"x","first_seq":1}}',
        b'{"seq":1,"dropped":"2"}',
        b'{"seq":NaN,"dropped":2}',
        b'{"dropped":2}',
        b'{"stats":[]}',
    ],
)
def test_decode_reply_rejects_malformed_lines(line: bytes):
    with pytest.raises(ProtocolError):
        proto.decode_reply(line)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["memlogd", "seq", "dropped", "stats", "error", "time", "source", "msg"]),
        json_values,
    )
)
def test_decode_reply_raises_only_protocol_error(obj: dict[str, Any]):
    try:
        reply = proto.decode_reply(json.dumps(obj).encode())
    except ProtocolError:
        return
    assert isinstance(reply, Header | LogEntry | Dropped | Stats | ErrorReply)


def test_query_mode_base_asks_for_the_same():
    assert QueryMode.base(dump=True, follow=False) is QueryMode.DUMP
    assert QueryMode.base(dump=False, follow=True) is QueryMode.FOLLOW
    assert QueryMode.base(dump=True, follow=True) is QueryMode.DUMP_FOLLOW


@pytest.mark.parametrize(
    ("globs", "reason"),
    [
        (["a"] * 65, "request key 'sources' holds more than 64 globs"),
        (["é" * 129], "request key 'sources' holds a glob over 256 bytes"),
        (["a"] * 64 + ["b"], "request key 'sources' holds more than 64 globs"),
    ],
)
def test_a_requests_globs_are_bounded(globs: list[str], reason: str) -> None:
    """SPEC 19: a request's cost is bounded (64 globs of 256 bytes at most)."""
    with pytest.raises(ProtocolError, match=f"^{re.escape(reason)}$"):
        proto.parse_request(json.dumps({"sources": globs}).encode())
    most = ["é" * 128] * 64
    assert proto.parse_request(json.dumps({"sources": most}).encode()).sources == tuple(most)
