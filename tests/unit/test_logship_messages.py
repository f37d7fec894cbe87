"""logship.messages: the batch formatter writes exactly what logship.rfc5424 writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logship import messages
from logship.messages import MessageFormatter
from logship.rfc5424 import DEFAULT_SD_ID, Rfc5424Error, format_gap
from memlogd.wire.protocol import LogEntry
from memlogd.wire.severity import level_or_default
from tests.rfc5424 import format_message
from tests.strategies import times_ns

pytestmark = pytest.mark.unit

BOM = "\ufeff"
SPECIAL = '"\\] [=@-' + BOM + "\ufffd\x00\x01\t\r\n\x7f\x80é€𝄞\ud800"  # a lone surrogate too
texts = st.text(
    alphabet=st.one_of(st.sampled_from(SPECIAL), st.characters(codec="utf-8")), max_size=30
)
sources = st.one_of(st.sampled_from(["svc.out", "svc", "kmsg", "", 'a"b]c\\d', "x" * 60]), texts)
sd_ids = st.sampled_from([DEFAULT_SD_ID, "acme@1.2.3", "x@1"])
entries = st.builds(
    LogEntry,
    time_ns=st.one_of(times_ns(), st.sampled_from([1_764_410_401_123_456_789])),
    source=sources,
    msg=st.one_of(
        texts,
        st.sampled_from(["", BOM, BOM + BOM + "x", "plain", "<3>x", "level=warn", BOM + "<0>"]),
    ),
    seq=st.integers(0, 2**63),
)


def reference(
    entry: LogEntry, instance: str, hostname: str, sd_id: str, facility: int = 1
) -> bytes:
    assert entry.seq is not None
    pri = facility * 8 + level_or_default(entry.msg)
    return format_message(
        time_ns=entry.time_ns,
        hostname=hostname,
        source=entry.source,
        msg=entry.msg,
        instance=instance,
        seq=entry.seq,
        pri=pri,
        sd_id=sd_id,
    )


@given(
    batches=st.lists(
        st.tuples(st.sampled_from(["i1", 'i"2]', ""]), st.lists(entries, max_size=6)), max_size=5
    ),
    hostname=st.one_of(st.just("vm1"), texts),
    sd_id=sd_ids,
    facility=st.integers(0, 23),
)
def test_messages_are_format_message_byte_for_byte(
    batches: list[tuple[str, list[LogEntry]]], hostname: str, sd_id: str, facility: int
):
    formatter = MessageFormatter(hostname, sd_id, facility)
    for instance, batch in batches:  # the caches carry over from batch to batch
        got = formatter.messages(instance, batch)
        assert got == [reference(e, instance, hostname, sd_id, facility) for e in batch]


def test_a_batch_sharing_time_and_source():
    formatter = MessageFormatter("vm1")
    batch = [LogEntry(1_764_410_401_123_456_789, "svc.out", f"line {i}", i) for i in range(1, 50)]
    assert formatter.messages("inst", batch) == [
        reference(e, "inst", "vm1", DEFAULT_SD_ID) for e in batch
    ]
    assert formatter.message("inst", batch[0]) == reference(batch[0], "inst", "vm1", DEFAULT_SD_ID)


def test_the_source_cache_is_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(messages, "SOURCE_CACHE_MAX", 3)
    formatter = MessageFormatter("h")
    batch = [LogEntry(0, f"s{i}", "m", i) for i in range(10)]
    assert formatter.messages("i", batch) == [reference(e, "i", "h", DEFAULT_SD_ID) for e in batch]
    assert len(formatter._sources) <= 3


@given(
    time_ns=times_ns(),
    instance=st.sampled_from(["i", 'we"ird]\\']),
    seq=st.integers(0, 2**40),
    dropped=st.integers(1, 2**40),
    hostname=st.one_of(st.just("vm1"), texts),
    sd_id=sd_ids,
)
def test_gap_is_format_gap(
    time_ns: int, instance: str, seq: int, dropped: int, hostname: str, sd_id: str
):
    formatter = MessageFormatter(hostname, sd_id)
    assert formatter.gap(time_ns=time_ns, instance=instance, seq=seq, dropped=dropped) == (
        format_gap(
            time_ns=time_ns,
            hostname=hostname,
            instance=instance,
            seq=seq,
            dropped=dropped,
            sd_id=sd_id,
        )
    )


@pytest.mark.parametrize(
    ("args", "entry"),
    [
        (("h", "no-at-sign"), None),
        (("h", DEFAULT_SD_ID, 24), None),  # facility 24: PRI beyond 191
        (("h", DEFAULT_SD_ID, -1), None),
        (("h",), LogEntry(0, "s", "m", None)),
        (("h",), LogEntry(0, "s", "m", -1)),
        (("h",), LogEntry(10**30, "s", "m", 1)),  # beyond the year 9999
    ],
)
def test_what_rfc5424_cannot_carry_is_refused(args: tuple[object, ...], entry: LogEntry | None):
    with pytest.raises(Rfc5424Error):
        formatter = MessageFormatter(*args)  # type: ignore[arg-type]
        assert entry is not None
        formatter.messages("i", [entry])


def test_pri_is_eight_plus_the_level_and_a_gap_is_a_warning():
    formatter = MessageFormatter("vm1")
    lines = ["<3>disk on fire", 'level=warning msg="slow"', "plain", "<7>detail", "<0>"]
    batch = [LogEntry(0, "s", msg, i) for i, msg in enumerate(lines, 1)]
    got = [m[: m.index(b">") + 1] for m in formatter.messages("i", batch)]
    assert got == [b"<11>", b"<12>", b"<14>", b"<15>", b"<8>"]
    assert formatter.gap(time_ns=0, instance="i", seq=1, dropped=2).startswith(b"<12>1 ")
    local0 = MessageFormatter("vm1", DEFAULT_SD_ID, 16)
    assert local0.messages("i", batch[:1])[0].startswith(b"<131>1 ")
    assert local0.gap(time_ns=0, instance="i", seq=1, dropped=2).startswith(b"<132>1 ")


@given(
    runs=st.lists(
        st.tuples(
            st.sampled_from([1_764_410_401_123_456_789, 1_764_410_402_000_000_000]),
            st.sampled_from(["svc.out", 'a"b]c\\d', "kmsg"]),
            st.lists(
                st.one_of(
                    st.sampled_from(["plain", "line 7", "<3>err", "level=warn x", "", BOM + "x"]),
                    texts,
                ),
                min_size=1,
                max_size=8,
            ),
        ),
        max_size=4,
    ),
    first_seq=st.integers(0, 2**62),
)
def test_runs_sharing_time_and_source_are_format_message_byte_for_byte(
    runs: list[tuple[int, str, list[str]]], first_seq: int
) -> None:
    """memlogd's batches: runs of entries with one time and source (made by
    map over the run), levels of every kind among them, or none."""
    batch = [LogEntry(time_ns, source, msg, 0) for time_ns, source, msgs in runs for msg in msgs]
    batch = [e._replace(seq=first_seq + i) for i, e in enumerate(batch)]
    formatter = MessageFormatter("vm1")
    assert formatter.messages("inst", batch) == [
        reference(e, "inst", "vm1", DEFAULT_SD_ID) for e in batch
    ]


def test_a_bad_seq_in_a_run_is_refused_as_before() -> None:
    formatter = MessageFormatter("vm1")
    batch = [LogEntry(1, "s", "a", 1), LogEntry(1, "s", "b", -2), LogEntry(1, "s", "c", None)]
    with pytest.raises(Rfc5424Error, match="seq -2 is not a sequence number"):
        formatter.messages("inst", batch)
