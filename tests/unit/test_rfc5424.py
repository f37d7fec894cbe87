"""logship.rfc5424: messages, their escaping, SD-IDs, octet counting, and parsing back."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from logship.rfc5424 import (
    DEFAULT_SD_ID,
    MAX_APP_NAME,
    MAX_HOSTNAME,
    Rfc5424Error,
    SdIdError,
    entry_pri,
    escape_param_value,
    format_gap,
    format_time,
    frame_octet_counted,
    gap_text,
    safe_name,
    validate_sd_id,
)
from memlogd.errors import ProtocolError
from tests.rfc5424 import (
    MessageParseError,
    OctetCountedParser,
    OctetCountError,
    ParsedMessage,
    format_message,
    parse_message,
    unescape_param_value,
)

pytestmark = pytest.mark.unit

T0 = 1_764_410_401_123_456_789  # 2025-11-29T10:00:01.123456789Z
MIN_NS = -62_135_596_800 * 1_000_000_000  # 0001-01-01T00:00:00Z
MAX_NS = 253_402_300_799 * 1_000_000_000 + 999_999_999  # 9999-12-31T23:59:59.999999999Z
BOM = "\ufeff"

# Characters that matter here: the three escaped ones, SD syntax, space, BOM,
# U+FFFD (what memlogd makes of invalid UTF-8), controls, non-ASCII.
SPECIAL = '"\\] [=@-' + BOM + "\ufffd\x00\x01\t\r\n\x7f\x80é€𝄞"
texts = st.text(
    alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8")), max_size=40
)
from_invalid_utf8 = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace"))
long_texts = st.builds(lambda t, n: (t or "x") * n, texts, st.integers(1, 300)).map(
    lambda t: t[:10_240]
)
any_text = st.one_of(texts, from_invalid_utf8, long_texts)
times = st.one_of(
    st.integers(MIN_NS, MAX_NS),
    st.integers(0, 4_102_444_800 * 10**9),
    st.sampled_from([0, -1, 999, 1000, 999_999_999, T0, MIN_NS, MAX_NS]),
)
sd_ids = st.one_of(
    st.just(DEFAULT_SD_ID),
    st.builds(
        lambda name, pen: f"{name}@{pen}"[:32],
        st.text(alphabet="abcXYZ09_.-!#$%&'()*+,/:;<>?[\\^`{|}~", min_size=1, max_size=20),
        st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,3}){0,2}", fullmatch=True),
    ).filter(lambda s: re.fullmatch(r"[^@]+@[0-9]+(\.[0-9]+)*", s) is not None),
)


def parsed(**kwargs: object) -> ParsedMessage:
    return parse_message(format_message(**kwargs))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- golden


def test_golden_message():
    assert (
        format_message(
            time_ns=T0,
            hostname="vm1",
            source="myservice.out",
            msg="hello world",
            instance="3f2a",
            seq=42,
        )
        == b"<14>1 2025-11-29T10:00:01.123456Z vm1 myservice.out - - "
        b'[memlogd@32473 instance="3f2a" seq="42" source="myservice.out"] hello world'
    )


@pytest.mark.parametrize(
    ("msg", "pri"),
    [
        ("hello world", 14),  # no level: info
        ("<3>disk failed", 11),
        ("<0>", 8),
        ('{"level":"warn","msg":"slow"}', 12),
        ('time="2026-12-07T10:00:00Z" level=debug msg="x"', 15),
        ("E1207 10:00:00.123456       1 main.go:42] boom", 11),
        ("GET /error.html 200", 14),  # no keyword search
    ],
)
def test_pri_is_user_facility_plus_the_level(msg: str, pri: int):
    assert entry_pri(msg) == pri
    message = format_message(time_ns=T0, hostname="h", source="s", msg=msg, instance="i", seq=1)
    assert message.startswith(b"<%d>1 " % pri)
    assert entry_pri(msg, facility=16) == pri - 8 + 128  # local0


def test_golden_message_with_everything_to_escape_and_reduce():
    assert (
        format_message(
            time_ns=0,
            hostname="my host\n",
            source='we"ird] na\\me é',
            msg=BOM + BOM + "x" + BOM,
            instance='i"]\\',
            seq=0,
            pri=0,
            sd_id="acme@1.2",
        )
        == b'<0>1 1970-01-01T00:00:00.000000Z myhost we"ird]na\\me - - '
        b'[acme@1.2 instance="i\\"\\]\\\\" seq="0" source="we\\"ird\\] na\\\\me \xc3\xa9"] '
        b"x\xef\xbb\xbf"
    )


def test_golden_empty_message_and_names():
    assert (
        format_message(time_ns=T0, hostname="", source="", msg="", instance="", seq=1, pri=191)
        == b'<191>1 2025-11-29T10:00:01.123456Z - - - - [memlogd@32473 instance="" seq="1" '
        b'source=""]'
    )
    only_bom = format_message(time_ns=T0, hostname="h", source="é ", msg=BOM, instance="", seq=1)
    assert only_bom.endswith(b'source="\xc3\xa9 "]')
    assert b"Z h - - - [" in only_bom  # HOSTNAME h, APP-NAME "-", no PROCID, no MSGID


def test_golden_gap():
    assert (
        format_gap(time_ns=T0, hostname="vm1", instance="3f2a", seq=100, dropped=25)
        == b"<12>1 2025-11-29T10:00:01.123456Z vm1 logship - - "
        b'[memlogd@32473 instance="3f2a" seq="100" dropped="25" source="logship"] '
        b"lost 25 entries (seq 100-124)"
    )
    assert gap_text(5, 1) == "lost 1 entries (seq 5-5)"
    gap = parse_message(format_gap(time_ns=0, hostname="h", instance="i", seq=7, dropped=3))
    assert (gap.seq, gap.dropped, gap.source, gap.instance) == (7, 3, "logship", "i")
    assert gap.app_name == "logship"
    assert gap.msg == "lost 3 entries (seq 7-9)"


@pytest.mark.parametrize("dropped", [0, -1])
def test_a_gap_has_at_least_one_entry(dropped: int):
    with pytest.raises(Rfc5424Error):
        format_gap(time_ns=0, hostname="h", instance="i", seq=1, dropped=dropped)


@pytest.mark.parametrize(
    ("time_ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (999, "1970-01-01T00:00:00.000000Z"),
        (1_000, "1970-01-01T00:00:00.000001Z"),
        (999_999_999, "1970-01-01T00:00:00.999999Z"),  # truncated, not rounded
        (1_999_999_999, "1970-01-01T00:00:01.999999Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (T0, "2025-11-29T10:00:01.123456Z"),
        (MIN_NS, "0001-01-01T00:00:00.000000Z"),
        (MAX_NS, "9999-12-31T23:59:59.999999Z"),
        (951_782_400 * 10**9, "2000-02-29T00:00:00.000000Z"),
    ],
)
def test_format_time(time_ns: int, text: str):
    assert format_time(time_ns) == text


@pytest.mark.parametrize("time_ns", [MIN_NS - 1, MAX_NS + 1])
def test_format_time_out_of_range(time_ns: int):
    with pytest.raises(Rfc5424Error, match="outside the years 0001-9999"):
        format_time(time_ns)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pri": -1}, "PRI -1"),
        ({"pri": 192}, "PRI 192"),
        ({"seq": -1}, "seq -1"),
        ({"sd_id": "origin"}, "IANA"),
        ({"time_ns": MAX_NS + 1}, "0001-9999"),
    ],
)
def test_format_message_refuses_bad_values(kwargs: dict[str, object], message: str):
    args: dict[str, object] = {
        "time_ns": 0,
        "hostname": "h",
        "source": "s",
        "msg": "m",
        "instance": "i",
        "seq": 1,
    }
    args.update(kwargs)
    with pytest.raises(Rfc5424Error, match=message):
        format_message(**args)  # type: ignore[arg-type]


def test_errors_are_protocol_errors():
    for cls in (Rfc5424Error, SdIdError, MessageParseError, OctetCountError):
        assert issubclass(cls, ProtocolError)
        assert issubclass(cls, ValueError)


# --------------------------------------------------------------------------- round trips


@given(
    time_ns=times,
    hostname=any_text,
    source=any_text,
    msg=any_text,
    instance=any_text,
    seq=st.one_of(st.integers(0, 2**63), st.integers(0, 10)),
    pri=st.integers(0, 191),
    sd_id=sd_ids,
)
@example(
    time_ns=T0,
    hostname="h",
    source="x" * 10_240,
    msg="\\" * 10_240,
    instance="]" * 10_240,
    seq=1,
    pri=14,
    sd_id=DEFAULT_SD_ID,
)
def test_round_trip(
    time_ns: int,
    hostname: str,
    source: str,
    msg: str,
    instance: str,
    seq: int,
    pri: int,
    sd_id: str,
):
    raw = format_message(
        time_ns=time_ns,
        hostname=hostname,
        source=source,
        msg=msg,
        instance=instance,
        seq=seq,
        pri=pri,
        sd_id=sd_id,
    )
    got = parse_message(raw)
    assert got == ParsedMessage(
        pri=pri,
        time_ns=time_ns // 1000 * 1000,
        hostname=safe_name(hostname, MAX_HOSTNAME),
        app_name=safe_name(source, MAX_APP_NAME),
        procid="-",
        msgid="-",
        sd_id=sd_id,
        params=(("instance", instance), ("seq", str(seq)), ("source", source)),
        msg=msg.lstrip(BOM),
    )
    assert (got.instance, got.seq, got.source, got.dropped) == (instance, seq, source, None)
    # MSG is the text's UTF-8 without a leading BOM, and it is the end of the message.
    body = msg.lstrip(BOM).encode()
    assert raw.endswith(b"] " + body if body else b"]")
    assert not raw.split(b"] ", 1)[-1].startswith(BOM.encode()) or not body


@given(
    time_ns=times,
    hostname=any_text,
    instance=any_text,
    seq=st.integers(0, 2**63),
    dropped=st.integers(1, 2**63),
)
def test_gap_round_trip(time_ns: int, hostname: str, instance: str, seq: int, dropped: int):
    got = parse_message(
        format_gap(time_ns=time_ns, hostname=hostname, instance=instance, seq=seq, dropped=dropped)
    )
    assert got.params == (
        ("instance", instance),
        ("seq", str(seq)),
        ("dropped", str(dropped)),
        ("source", "logship"),
    )
    assert got.msg == f"lost {dropped} entries (seq {seq}-{seq + dropped - 1})"
    assert got.time_ns == time_ns // 1000 * 1000


@pytest.mark.parametrize(
    ("msg", "body"),
    [
        (BOM + "x", b"x"),
        (BOM + BOM + "x", b"x"),
        ("x" + BOM, b"x\xef\xbb\xbf"),
        (BOM, b""),
        ("", b""),
        (" " + BOM, b" \xef\xbb\xbf"),
    ],
)
def test_leading_bom_is_removed(msg: str, body: bytes):
    raw = format_message(time_ns=0, hostname="h", source="s", msg=msg, instance="i", seq=1)
    head = (
        b'<14>1 1970-01-01T00:00:00.000000Z h s - - [memlogd@32473 instance="i" seq="1" source="s"]'
    )
    assert raw == (head + b" " + body if body else head)


def test_lone_surrogates_do_not_crash():
    raw = format_message(
        time_ns=0, hostname="\udc80", source="a\ud800", msg="\udfffz", instance="\udc00", seq=1
    )
    assert raw == (
        b"<14>1 1970-01-01T00:00:00.000000Z ? a? - - "
        b'[memlogd@32473 instance="?" seq="1" source="a?"] ?z'
    )


def test_control_characters_are_kept_in_values_and_msg():
    got = parsed(time_ns=0, hostname="h", source="a\tb", msg="x\x00y\nz\r", instance="i", seq=1)
    assert got.source == "a\tb" and got.app_name == "ab"
    assert got.msg == "x\x00y\nz\r"


# --------------------------------------------------------------------------- pieces


@given(any_text)
def test_escape_round_trip_and_form(value: str):
    escaped = escape_param_value(value)
    assert unescape_param_value(escaped) == value
    # Every '"', ']' and '\' is escaped, and every backslash escapes one of them.
    assert re.fullmatch(rb'(?:[^"\\\]]|\\["\\\]])*', escaped, re.DOTALL)


def test_unescape_keeps_other_backslashes():
    assert unescape_param_value(b"a\\nb") == "a\\nb"
    assert unescape_param_value(b'\\\\\\"\\]') == '\\"]'
    assert unescape_param_value(b"\\") == "\\"
    assert unescape_param_value(b"\xff") == "\ufffd"


def reference_safe_name(name: str, limit: int) -> str:
    kept = bytes(b for b in name.encode("utf-8", "replace") if 33 <= b <= 126)[:limit]
    return kept.decode() or "-"


@given(any_text, st.sampled_from([MAX_APP_NAME, MAX_HOSTNAME, 1]))
def test_safe_name(name: str, limit: int):
    safe = safe_name(name, limit)
    assert safe == reference_safe_name(name, limit)
    assert 1 <= len(safe) <= limit
    assert all(33 <= ord(c) <= 126 for c in safe)


@pytest.mark.parametrize(
    ("name", "app_name"),
    [
        ("myservice.out", "myservice.out"),
        ("my service", "myservice"),
        ("café", "caf"),
        ("   ", "-"),
        ("", "-"),
        ("-", "-"),
        ("a" * 60, "a" * 48),
        ("é" * 30 + "b", "b"),
    ],
)
def test_app_name_examples(name: str, app_name: str):
    assert safe_name(name, MAX_APP_NAME) == app_name
    got = parsed(time_ns=0, hostname="h", source=name, msg="m", instance="i", seq=1)
    assert got.app_name == app_name
    assert got.source == name


@pytest.mark.parametrize(
    "sd_id",
    ["memlogd@32473", "a@1", "acme@1.2.3", "x" * 26 + "@12345", "n-1_!#$%&'()*+,./:;<>?[^`{|}~@7"],
)
def test_valid_sd_ids(sd_id: str):
    assert validate_sd_id(sd_id) == sd_id
    got = parsed(time_ns=0, hostname="h", source="s", msg="m", instance="i", seq=1, sd_id=sd_id)
    assert got.sd_id == sd_id


@pytest.mark.parametrize(
    ("sd_id", "message"),
    [
        ("", "1-32 printable"),
        ("x" * 27 + "@12345", "1-32 printable"),
        ("a b@1", "1-32 printable"),
        ("a=b@1", "1-32 printable"),
        ("a]b@1", "1-32 printable"),
        ('a"b@1', "1-32 printable"),
        ("é@1", "1-32 printable"),
        ("a\t@1", "1-32 printable"),
        ("origin", "IANA"),
        ("timeQuality", "IANA"),
        ("meta", "IANA"),
        ("memlogd", "NAME@ENTERPRISE-NUMBER"),
        ("@32473", "NAME@ENTERPRISE-NUMBER"),
        ("a@", "NAME@ENTERPRISE-NUMBER"),
        ("a@x", "NAME@ENTERPRISE-NUMBER"),
        ("a@1.", "NAME@ENTERPRISE-NUMBER"),
        ("a@.1", "NAME@ENTERPRISE-NUMBER"),
        ("a@1@2", "NAME@ENTERPRISE-NUMBER"),
        ("a@-1", "NAME@ENTERPRISE-NUMBER"),
    ],
)
def test_invalid_sd_ids(sd_id: str, message: str):
    with pytest.raises(SdIdError, match=message) as info:
        validate_sd_id(sd_id)
    assert "\n" not in str(info.value)
    with pytest.raises(SdIdError):
        format_message(
            time_ns=0, hostname="h", source="s", msg="m", instance="i", seq=1, sd_id=sd_id
        )


@given(st.text(max_size=40))
def test_sd_id_validation_fuzz(sd_id: str):
    try:
        validate_sd_id(sd_id)
    except SdIdError:
        return
    assert 1 <= len(sd_id) <= 32
    assert all(33 <= ord(c) <= 126 and c not in '=]"' for c in sd_id)
    name, _, number = sd_id.partition("@")
    assert name and re.fullmatch(r"[0-9]+(\.[0-9]+)*", number)


# --------------------------------------------------------------------------- parsing


def test_parse_what_a_receiver_may_write():
    got = parse_message(b'<13>1 2026-11-29T10:00:01+01:00 h a p m [x@1 seq="3" k="v\\w"]')
    assert got == ParsedMessage(
        pri=13,
        time_ns=1_795_946_401 * 10**9 - 3600 * 10**9,
        hostname="h",
        app_name="a",
        procid="p",
        msgid="m",
        sd_id="x@1",
        params=(("seq", "3"), ("k", "v\\w")),
        msg="",
    )
    assert got.seq == 3 and got.instance is None and got.dropped is None
    frac = parse_message(b"<14>1 2026-11-29T10:00:01.5-00:30 h a - - [x@1] \xef\xbb\xbfm")
    assert frac.time_ns == (1_795_946_401 + 1800) * 10**9 + 500_000_000
    assert frac.msg == BOM + "m"  # the parser reports what is there
    assert frac.params == ()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<14>1",
        b"14>1 2026-11-29T10:00:01Z h a - - [x@1]",
        b"<192>1 2026-11-29T10:00:01Z h a - - [x@1]",
        b"<014>1 2026-11-29T10:00:01Z h a - - [x@1]",
        b"<14>2 2026-11-29T10:00:01Z h a - - [x@1]",
        b"<14>1 - h a - - [x@1]",
        b"<14>1 2026-11-29T10:00:01 h a - - [x@1]",
        b"<14>1 2026-13-29T10:00:01Z h a - - [x@1]",
        b"<14>1 2026-11-29T10:00:01.1234567Z h a - - [x@1]",
        b"<14>1 2026-11-29T10:00:01+24:00 h a - - [x@1]",
        b"<14>1 2026-11-29T10:00:01Z h " + b"a" * 49 + b" - - [x@1]",
        b"<14>1 2026-11-29T10:00:01Z h a - - -",
        b"<14>1 2026-11-29T10:00:01Z h a - - [x@1",
        b'<14>1 2026-11-29T10:00:01Z h a - - [x@1 k="v]',
        b"<14>1 2026-11-29T10:00:01Z h a - - [x@1 k=v]",
        b"<14>1 2026-11-29T10:00:01Z h a - - [x@1]m",
        b"<14>1 2026-11-29T10:00:01Z h a - - [x@1][y@2]",
        b"<14>1 2026-11-29T10:00:01Z h\xff a - - [x@1]",
    ],
)
def test_parse_refuses(data: bytes):
    with pytest.raises(MessageParseError) as info:
        parse_message(data)
    assert "\n" not in str(info.value)


@given(st.binary(max_size=300))
def test_parse_fuzz_raises_only_the_typed_error(data: bytes):
    try:
        got = parse_message(data)
    except MessageParseError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 <= got.pri <= 191


@given(st.lists(st.sampled_from([b" ", b'"', b"\\", b"]", b"=", b"x", b"[", b"\xff"]), max_size=30))
def test_parse_fuzz_structured_data(pieces: list[bytes]):
    data = b"<14>1 2026-11-29T10:00:01Z h a - - [x@1" + b"".join(pieces)
    try:
        got = parse_message(data)
    except MessageParseError:
        return
    assert got.sd_id.startswith("x@1")  # "\\" and "[" are SD-NAME characters too


# --------------------------------------------------------------------------- octet counting


def test_octet_counting_golden():
    assert frame_octet_counted(b"abc") == b"3 abc"
    assert frame_octet_counted(b"x" * 10) == b"10 " + b"x" * 10
    assert frame_octet_counted("é".encode()) == b"2 \xc3\xa9"
    with pytest.raises(Rfc5424Error):
        frame_octet_counted(b"")


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(set(cuts))
    chunks, start = [], 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return chunks


def run_octets(chunks: list[bytes], max_len: int) -> tuple[list[bytes], str | None, int]:
    parser = OctetCountedParser(max_len)
    got: list[bytes] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (msg := parser.next_message()) is not None:
                got.append(msg)
    except OctetCountError as exc:
        return got, str(exc), -1
    return got, None, parser.pending


@given(st.lists(st.binary(min_size=1, max_size=50), max_size=6), st.data())
def test_octet_counted_round_trip_under_any_chunking(msgs: list[bytes], data: st.DataObject):
    stream = b"".join(frame_octet_counted(m) for m in msgs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    assert run_octets(split_at(stream, cuts), 50) == (msgs, None, 0)


@given(st.binary(max_size=100), st.data())
def test_octet_counted_fuzz_any_chunking(stream: bytes, data: st.DataObject):
    whole = run_octets([stream], 20)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    assert run_octets(split_at(stream, cuts), 20) == whole


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"0 ", "not LEN SP"),
        (b"01 a", "not LEN SP"),
        (b"x", "not LEN SP"),
        (b" 1 a", "not LEN SP"),
        (b"1234567890 ", "not LEN SP"),
        (b"21 ", "over 20"),
        (b"3 abc3x", "not LEN SP"),
    ],
)
def test_octet_counted_errors(stream: bytes, message: str):
    _, error, _ = run_octets([stream], 20)
    assert error is not None and message in error
    parser = OctetCountedParser(20)
    parser.feed(stream)
    with pytest.raises(OctetCountError):
        while parser.next_message() is not None:
            pass
    with pytest.raises(OctetCountError):
        parser.feed(b"1 a")
