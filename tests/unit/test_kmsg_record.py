"""kmsg records (docs/kmsg.md): parsing, rendering, lost records, stream splitting, state."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kmsg.record import (
    KmsgDecoder,
    KmsgParseError,
    KmsgRecord,
    RecordSplitter,
    encode_record,
    parse_record,
    records_lost,
    render_json,
    render_lost_text,
    render_text,
    text_seq,
)
from kmsg.state import KmsgState, encode_state, parse_state
from memlogd.errors import MemlogdError
from memlogd.wire.severity import level

pytestmark = pytest.mark.unit

BOOT_NS = 1_700_000_000_123_456_789

# ------------------------------------------------------------------ strategies

# What the kernel writes: printable ASCII without the backslash, and \xNN escapes
# for everything else (the backslash itself included).
_plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"))
_escape = st.integers(0, 255).filter(lambda b: b < 0x20 or b >= 0x7F or b == 0x5C)
kernel_text = st.lists(st.one_of(_plain, _escape.map(lambda b: f"\\x{b:02x}")), max_size=12).map(
    "".join
)
keys = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="=\\"),
    min_size=1,
    max_size=20,
)
u64 = st.integers(0, 2**64 - 1)


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """A record as the kernel writes it, and the values it was made of."""
    prio = draw(st.integers(0, 2**31 - 1))
    seq = draw(u64)
    usec = draw(st.integers(0, 10**15))  # up to 31 years of uptime
    flags = draw(st.sampled_from(["-", "c"]))
    extra = draw(st.lists(st.sampled_from(["caller=T123", "x", "caller=C0"]), max_size=2))
    text = draw(kernel_text)
    fields = draw(st.dictionaries(keys, kernel_text, max_size=4))
    header = ",".join([str(prio), str(seq), str(usec), flags, *extra])
    data = f"{header};{text}\n" + "".join(f" {k}={v}\n" for k, v in fields.items())
    want = {
        "priority": prio,
        "seq": seq,
        "usec": usec,
        "flags": flags,
        "text": text,
        "fields": fields,
    }
    return data.encode("ascii"), want


# ------------------------------------------------------------------ parse


@given(records())
def test_generated_records_parse_back_to_their_values(rec: tuple[bytes, dict[str, object]]) -> None:
    data, want = rec
    got = parse_record(data, BOOT_NS)
    assert got.priority == want["priority"]
    assert got.facility == want["priority"] >> 3
    assert got.level == want["priority"] & 7
    assert got.seq == want["seq"]
    assert got.usec == want["usec"]
    assert got.flags == want["flags"]
    assert got.text == want["text"]
    assert got.fields == want["fields"]
    assert got.time_ns == BOOT_NS + want["usec"] * 1000


@given(records())
def test_encode_record_is_the_inverse_of_parse(rec: tuple[bytes, dict[str, object]]) -> None:
    data, _ = rec
    parsed = parse_record(data, BOOT_NS)
    assert parse_record(encode_record(parsed), BOOT_NS) == parsed


@given(st.binary(max_size=300))
@example(b"")
@example(b";")
@example(b"1,2,3;x")
@example(b"1,2,3,-;x\nno-space")
@example(b"1,2,3,-;x\n =v")
@example(b"1,2,3,-;x\n novalue")
@example(b"+1,2,3,-;x")
@example(b"1,2," + b"9" * 5000 + b",-;x")
@example(b"1,2,99999999999999999999,-;x")
def test_any_bytes_parse_or_raise_kmsg_parse_error_only(data: bytes) -> None:
    try:
        record = parse_record(data, BOOT_NS)
    except KmsgParseError as exc:
        assert isinstance(exc, MemlogdError)
        return
    # whatever parsed stays one line when rendered
    assert "\n" not in render_text(record)
    assert "\n" not in render_json(record)
    assert "\r" not in render_text(record)


def test_kernel_documentation_example_with_dictionary() -> None:
    data = (
        b"7,160,424069,-;pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)\n"
        b" SUBSYSTEM=acpi\n"
        b" DEVICE=+acpi:PNP0A03:00\n"
    )
    rec = parse_record(data, 0)
    assert rec == KmsgRecord(
        seq=160,
        usec=424069,
        priority=7,
        flags="-",
        text="pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)",
        time_ns=424_069_000,
        fields={"SUBSYSTEM": "acpi", "DEVICE": "+acpi:PNP0A03:00"},
    )
    assert (rec.facility, rec.level) == (0, 7)


def test_user_record_has_facility_user_and_continuation_flag() -> None:
    rec = parse_record(b"30,340,5690716,c;udevd[80]: starting version 181\n", 0)
    assert (rec.priority, rec.facility, rec.level, rec.flags) == (30, 3, 6, "c")


def test_kernel_escapes_are_kept_verbatim() -> None:
    rec = parse_record(b"6,1,2,-;tab\\x09here back\\x5cslash \\xe2\\x82\\xac\n", 0)
    assert rec.text == "tab\\x09here back\\x5cslash \\xe2\\x82\\xac"


def test_raw_control_bytes_and_invalid_utf8_are_escaped_like_the_kernel() -> None:
    rec = parse_record(b"6,1,2,-;a\rb\x00c\xffd \xe2\x82\xac\n K=v\x1b\n", 0)
    assert rec.text == "a\\x0db\\x00c\\xffd \u20ac"
    assert rec.fields == {"K": "v\\x1b"}


def test_extra_header_fields_are_accepted_and_text_keeps_semicolons() -> None:
    rec = parse_record(b"4,9,10,-,caller=T42;a;b,c\n", 0)
    assert (rec.seq, rec.usec, rec.flags, rec.text) == (9, 10, "-", "a;b,c")


def test_record_without_final_newline_parses() -> None:
    assert parse_record(b"6,1,2,-;x", 0).text == "x"


@pytest.mark.parametrize(
    "data",
    [
        b"no semicolon\n",
        b"6,1,2;three fields\n",
        b"x,1,2,-;bad prio\n",
        b"6,-1,2,-;negative seq\n",
        b"6,1, 2,-;space\n",
        b"6,1,2_0,-;underscore\n",
        "6,\u0661,2,-;arabic digit\n".encode(),
        b"6,1,123456789012345678901,-;21 digits\n",
        b"6,1,18446744073709551615,-;beyond year 9999\n",
        b"6,1,2,-;x\nKEY=no leading space\n",
        b"6,1,2,-;x\n KEY\n",
        b"6,1,2,-;x\n =empty key\n",
        b"6,1,2,-;x\n\n",
    ],
)
def test_malformed_records_raise_kmsg_parse_error(data: bytes) -> None:
    with pytest.raises(KmsgParseError):
        parse_record(data, 0)


# ------------------------------------------------------------------ render


def test_render_text_is_upstreams_format_in_utc() -> None:
    rec = parse_record(b"6,42,1500000,-;hello\\x0a world\n", 1_600_000_000_000_000_000)
    assert render_text(rec) == "<6>(42) - 2020-09-13T12:26:41.5Z: hello\\x0a world"
    assert render_text(rec, upstream=True) == "(42) - 2020-09-13T12:26:41.5Z: hello\\x0a world"


def test_render_text_whole_second_has_no_fraction() -> None:
    rec = parse_record(b"0,0,0,-;boot\n", 1_600_000_000_000_000_000)
    assert render_text(rec) == "<0>(0) - 2020-09-13T12:26:40Z: boot"


def test_render_json_has_every_field_in_order() -> None:
    rec = parse_record(b"14,7,1000001,-;msg\n SUBSYSTEM=usb\n DEVICE=c189:1\n", 0)
    assert render_json(rec) == (
        '{"seq":7,"time":"1970-01-01T00:00:01.000001Z","usec":1000001,"priority":14,'
        '"facility":1,"level":6,"flags":"-","text":"msg",'
        '"fields":{"SUBSYSTEM":"usb","DEVICE":"c189:1"}}'
    )


@given(records())
def test_render_json_round_trips_the_values(rec: tuple[bytes, dict[str, object]]) -> None:
    data, want = rec
    obj = json.loads(render_json(parse_record(data, BOOT_NS)))
    assert list(obj) == [
        "seq",
        "time",
        "usec",
        "priority",
        "facility",
        "level",
        "flags",
        "text",
        "fields",
    ]
    assert {k: obj[k] for k in want} == want


# ------------------------------------------------------------------ lost records


@given(st.one_of(st.none(), u64), u64)
def test_records_lost_is_the_sequence_gap(last: int | None, seq: int) -> None:
    lost = records_lost(last, seq)
    if last is None or seq <= last + 1:
        assert lost == 0
    else:
        assert lost == seq - last - 1
        assert last + lost + 1 == seq


def test_lost_line_wording() -> None:
    assert render_lost_text(1) == "kmsg: 1 record lost"
    assert render_lost_text(5) == "kmsg: 5 records lost"
    assert render_lost_text(None) == "kmsg: records lost (count unknown)"


def _raw(seq: int, text: str = "t") -> bytes:
    return f"6,{seq},{seq},-;{text}\n".encode()


def test_decoder_reports_gap_after_overrun_then_goes_on() -> None:
    dec = KmsgDecoder(0)
    assert dec.decode(_raw(10, "a")) == ["<6>(10) - 1970-01-01T00:00:00.00001Z: a"]
    dec.overrun()
    lines = dec.decode(_raw(15, "b"))
    assert lines == ["kmsg: 4 records lost", "<6>(15) - 1970-01-01T00:00:00.000015Z: b"]
    assert dec.decode(_raw(16)) == ["<6>(16) - 1970-01-01T00:00:00.000016Z: t"]
    assert (dec.last_seq, dec.lost) == (16, 4)


def test_decoder_upstream_format_has_no_level_in_front() -> None:
    dec = KmsgDecoder(0, upstream_format=True)
    assert dec.decode(b"3,10,10,-;disk error\n") == [
        "(10) - 1970-01-01T00:00:00.00001Z: disk error"
    ]
    assert KmsgDecoder(0).decode(b"3,10,10,-;disk error\n") == [
        "<3>(10) - 1970-01-01T00:00:00.00001Z: disk error"
    ]


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 191),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
)
def test_text_seq_reads_both_formats_back(seq: int, priority: int, text: str) -> None:
    """The role's resume point: kmsg's own records in memlogd, whichever format."""
    rec = KmsgRecord(seq=seq, usec=1, priority=priority, flags="-", text=text, time_ns=1000)
    ours, upstreams = render_text(rec), render_text(rec, upstream=True)
    assert ours == f"<{priority & 7}>" + upstreams
    assert text_seq(ours) == text_seq(upstreams) == seq
    assert level(ours) == priority & 7  # memlogd's readers see the kernel's level


@pytest.mark.parametrize(
    "line", ["kmsg: 4 records lost", "<8>(1) - x", "(x) - y", "<3> (5) - t", " <3>(5) - t"]
)
def test_text_seq_of_another_line_is_none(line: str) -> None:
    assert text_seq(line) is None


def test_decoder_overrun_before_any_record_says_count_unknown() -> None:
    dec = KmsgDecoder(0)
    dec.overrun()
    assert dec.decode(_raw(3))[0] == "kmsg: records lost (count unknown)"
    assert dec.decode(_raw(4)) == ["<6>(4) - 1970-01-01T00:00:00.000004Z: t"]


def test_decoder_resumes_after_saved_seq_and_reports_what_the_ring_lost() -> None:
    dec = KmsgDecoder(0, after_seq=5)
    assert dec.decode(_raw(4)) == []
    assert dec.decode(_raw(5)) == []
    assert dec.decode(_raw(6)) == ["<6>(6) - 1970-01-01T00:00:00.000006Z: t"]
    gap = KmsgDecoder(0, after_seq=5)
    assert gap.decode(_raw(9))[0] == "kmsg: 3 records lost"


def test_decoder_json_lost_object_names_first_missing_seq() -> None:
    dec = KmsgDecoder(0, json=True, after_seq=1)
    lines = dec.decode(_raw(4))
    assert json.loads(lines[0]) == {"lost": 2, "seq": 2}
    assert json.loads(lines[1])["seq"] == 4


def test_decoder_leaves_state_alone_on_malformed_record() -> None:
    dec = KmsgDecoder(0, after_seq=1)
    with pytest.raises(KmsgParseError):
        dec.decode(b"garbage")
    assert dec.last_seq == 1


# ------------------------------------------------------------------ stream splitting


@given(st.lists(records().map(lambda r: r[0]), max_size=8), st.data())
def test_any_split_of_a_record_stream_yields_the_same_records(
    recs: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(recs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    splitter = RecordSplitter(max_record=1 << 20)
    out: list[bytes] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += splitter.feed(stream[a:b])
    out += splitter.close()
    assert out == recs


def test_flush_returns_a_complete_record_but_holds_a_started_continuation() -> None:
    splitter = RecordSplitter()
    assert splitter.feed(b"6,1,0,-;a\n") == []
    assert splitter.flush() == [b"6,1,0,-;a\n"]
    assert splitter.feed(b"6,2,0,-;b\n K=") == []
    assert splitter.flush() == []
    assert splitter.feed(b"v\n6,3,0,-;c") == [b"6,2,0,-;b\n K=v\n"]
    assert splitter.flush() == [] and splitter.close() == [b"6,3,0,-;c"]


def test_splitter_bounds_what_it_holds() -> None:
    splitter = RecordSplitter(max_record=16)
    out = splitter.feed(b"x" * 40)
    assert out == [b"x" * 16]
    assert splitter.close() == []


# ------------------------------------------------------------------ state file content


@given(st.text(max_size=40), u64)
def test_state_round_trips(boot_id: str, seq: int) -> None:
    state = KmsgState(boot_id, seq)
    assert parse_state(encode_state(state)) == state


@given(st.binary(max_size=100))
@example(b'{"boot_id": "x", "seq": -1}')
@example(b'{"boot_id": "x", "seq": true}')
@example(b'{"boot_id": 1, "seq": 1}')
@example(b"[1]")
def test_garbage_state_is_none_never_an_exception(data: bytes) -> None:
    state = parse_state(data)
    assert state is None or (isinstance(state.seq, int) and state.seq >= 0)
