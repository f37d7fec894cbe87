"""The benchmark's pure parts: line format, marker counting, sampling, figures."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.configs import CONFIGS, Load, LoadError, custom_load
from bench.lines import (
    MIN_LINE_BYTES,
    MSG_MARKER,
    WRITE_BYTES,
    LineFormatError,
    MarkerCounter,
    line_parts,
    lines_per_write,
    parse_line,
    sample_times,
    stamp,
)
from bench.report import combine, human, percentile, render_table, summarise
from memlogd.protocol import LogEntry, encode_entry

pytestmark = pytest.mark.unit

times = st.integers(min_value=10**18, max_value=10**19 - 1)


@given(
    writer=st.integers(0, 99_999),
    first=st.integers(0, 10**6),
    count=st.integers(1, 40),
    size=st.integers(MIN_LINE_BYTES, 400),
    t=times,
)
def test_stamped_lines_have_exact_size_and_decode_back(
    writer: int, first: int, count: int, size: int, t: int
) -> None:
    data = stamp(line_parts(writer, first, count, size), t)
    assert len(data) == count * size
    lines = [data[i : i + size] for i in range(0, len(data), size)]
    decoded = [parse_line(line) for line in lines]
    assert [(d.time_ns, d.writer, d.seq, d.size) for d in decoded] == [
        (t, writer, first + i, size) for i in range(count)
    ]


def test_line_parts_rejects_lines_shorter_than_the_header() -> None:
    with pytest.raises(ValueError, match="at least 41"):
        line_parts(0, 0, 1, MIN_LINE_BYTES - 1)


def test_parse_line_rejects_other_text() -> None:
    with pytest.raises(LineFormatError):
        parse_line(b"hello\n")


@given(size=st.integers(MIN_LINE_BYTES, 200_000))
def test_a_write_is_whole_lines_within_64k(size: int) -> None:
    n = lines_per_write(size)
    assert n >= 1
    assert n * size <= WRITE_BYTES or n == 1
    assert (n + 1) * size > WRITE_BYTES


@given(
    pieces=st.lists(
        st.sampled_from([b'"msg":"T', b'"msg"', b':"T', b"x", b'"', b"\n"]), max_size=60
    ),
    cuts=st.lists(st.integers(0, 600), max_size=12),
)
def test_marker_count_does_not_depend_on_chunking(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    counter = MarkerCounter(MSG_MARKER)
    for a, b in itertools.pairwise(bounds):
        counter.feed(data[a:b])
    assert counter.count == data.count(MSG_MARKER)


def _json_chunk(ts: list[int]) -> bytes:
    out = b""
    for i, t in enumerate(ts):
        msg = stamp(line_parts(1, i, 1, 100), t)[:-1].decode()
        out += encode_entry(LogEntry(1_700_000_000_000_000_000, "bench.w1", msg))
    return out


@given(
    ts=st.lists(times, min_size=1, max_size=30), cut=st.integers(0, 5000), probes=st.integers(1, 8)
)
def test_sampled_times_are_embedded_times_even_in_cut_chunks(
    ts: list[int], cut: int, probes: int
) -> None:
    chunk = _json_chunk(ts)
    piece = chunk[cut:]
    found = sample_times(piece, probes)
    assert len(found) <= probes
    assert set(found) <= set(ts)
    if cut == 0:
        assert found[0] == ts[0]


@given(values=st.lists(st.floats(0, 1e6), min_size=1, max_size=50), pct=st.floats(0, 100))
def test_percentile_is_a_member_bounding_the_share_below(values: list[float], pct: float) -> None:
    p = percentile(values, pct)
    assert p in values
    assert sum(v <= p for v in values) >= pct / 100 * len(values)


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0, "0"), (999, "999"), (999_960, "1M"), (381_000, "381k"), (1_234_567, "1.23M")],
)
def test_human_numbers(value: float | None, text: str) -> None:
    assert human(value) == text


def test_loads_are_validated() -> None:
    with pytest.raises(LoadError, match="--bytes"):
        Load("x", 1, 1, 10, 1)
    with pytest.raises(LoadError, match="--writers"):
        Load("x", 0, 1, 100, 1)
    with pytest.raises(LoadError, match="--followers"):
        custom_load(CONFIGS["a"], followers=-1)


def test_custom_load_overrides_a_config() -> None:
    load = custom_load(CONFIGS["b"], lines=10)
    assert (load.name, load.writers, load.lines, load.followers) == ("b*", 50, 10, 1)
    assert custom_load(None, writers=3).writers == 3
    assert CONFIGS["f"].followers == 0 and CONFIGS["f"].max_lines == 2_000_000


def _raw(received: list[int]) -> dict[str, object]:
    s = 10**18
    return {
        "writers": [
            {
                "lines": 500,
                "first_write_ns": s,
                "written_ns": s + 10**8,
                "closed_ns": s + 2 * 10**8,
            },
            {
                "lines": 500,
                "first_write_ns": s + 5,
                "written_ns": s + 10**8,
                "closed_ns": s + 10**8,
            },
        ],
        "followers": [
            {
                "received": r,
                "newlines": r + 3,
                "first_rx_ns": s + 10,
                "last_rx_ns": s + 5 * 10**8,
                "latency_ns": [1_000_000, 3_000_000],
                "end": "complete",
            }
            for r in received
        ],
        "daemon_cpu_s": 0.25,
        "daemon_peak_rss_kib": 2048,
        "daemon_alive": True,
    }


def test_summary_figures_of_a_run() -> None:
    load = Load("t", 2, 500, 100, 2)
    s = summarise(load, _raw([1000, 900]))
    assert s["written"] == 1000
    assert s["wall_s"] == 0.5
    assert s["offered_lines_per_s"] == 2000
    assert s["delivered_lines_per_s"] == [2000, 1800]
    assert s["delivered_min_lines_per_s"] == 1800
    assert s["ingest_lines_per_s"] == 5000
    assert s["lost"] == [0, 100]
    assert s["lost_max"] == 100
    assert s["latency_p50_ms"] == 1.0 and s["latency_p99_ms"] == 3.0
    assert s["daemon_cpu_s_per_million_lines"] == 250.0
    assert s["complete"] is False


def test_combined_repeats_take_medians_and_the_worst_loss() -> None:
    load = Load("t", 2, 500, 100, 1)
    runs = [summarise(load, _raw([r])) for r in (1000, 990, 1000)]
    both = combine(runs)
    assert both["repeats"] == 3
    assert both["offered_lines_per_s"] == 2000
    assert both["lost_max"] == 10
    assert both["complete"] is False
    text = render_table(
        {
            "configs": {
                "t": {
                    "load": {"followers": 1},
                    "load_text": "2 x 500 x 100",
                    "summary": both,
                    "problems": ["lost"],
                }
            }
        }
    )
    assert "2 x 500 x 100" in text and "config t: lost" in text
