"""The benchmark's pure parts: line format, marker counting, sampling, figures."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import record
from bench.bytecodes import count, reads, replay
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
from bench.measures import median_ms, memory_figures
from bench.procfs import (
    ProcessMemory,
    TreeMemory,
    cpu_seconds,
    descendants,
    parse_kib_fields,
    parse_schedstat,
    parse_stat,
    peak_rss_kib,
    process_tree,
    rss_kib,
    tree_memory,
    trees_memory,
)
from bench.query import QueryError, parse_stats_answer
from bench.report import combine, human, percentile, render_table, summarise, targets_of
from bench.settle import wait_stable, wait_until
from memlogd.daemon.lines import Lines, ends_of
from memlogd.wire.protocol import LogEntry
from tests.wire import encode_entry

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


# ---------------------------------------------------------------------- /proc parsing

ROLLUP = """\
55f1d28b0000-7ffdb7b91000 ---p 00000000 00:00 0                          [rollup]
Rss:               26816 kB
Pss:               10796 kB
Pss_Dirty:         10516 kB
Pss_Anon:          10516 kB
Pss_File:            280 kB
Pss_Shmem:             0 kB
Shared_Clean:      10620 kB
Private_Dirty:      4836 kB
Swap:                  0 kB
"""

STATUS = """\
Name:\tpython
State:\tS (sleeping)
Pid:\t7464
VmHWM:\t   26900 kB
VmRSS:\t   26816 kB
Threads:\t1
"""


def _stat(pid: int, ppid: int, comm: str = "python", utime: int = 7, stime: int = 3) -> str:
    rest = " ".join(["0"] * 4)  # minflt cminflt majflt cmajflt
    return f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 {rest} {utime} {stime} 0 0 20 0 1\n"


def test_smaps_rollup_and_status_values_are_read_in_kib() -> None:
    rollup = parse_kib_fields(ROLLUP)
    assert rollup["Pss"] == 10796 and rollup["Rss"] == 26816
    assert rollup["Pss_Anon"] == 10516 and rollup["Pss_Shmem"] == 0
    assert "55f1d28b0000-7ffdb7b91000 ---p 00000000 00" not in rollup  # the header line
    status = parse_kib_fields(STATUS)
    assert status == {"VmHWM": 26900, "VmRSS": 26816}


def test_stat_fields_survive_odd_command_names() -> None:
    stat = parse_stat(_stat(42, 7, comm="a) (b c", utime=120, stime=30))
    assert (stat.pid, stat.comm, stat.state, stat.ppid) == (42, "a) (b c", "S", 7)
    assert (stat.utime, stat.stime) == (120, 30)


def test_descendants_are_found_breadth_first_from_parent_pids() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert descendants(10, parents) == [10, 11, 12, 13]
    assert descendants(20, parents) == [20, 21]
    assert descendants(13, parents) == [13]
    assert descendants(99, parents) == [99]  # gone: itself only
    assert descendants(5, {5: 5, 6: 5}) == [5, 6]  # a self-parent does not loop


def _fake_proc(root: Path, procs: dict[int, tuple[int, int | None, int]]) -> Path:
    """{pid: (ppid, Pss or None, VmRSS)} as /proc/PID/{stat,status,smaps_rollup}."""
    for pid, (ppid, pss, rss) in procs.items():
        d = root / str(pid)
        d.mkdir()
        (d / "stat").write_text(_stat(pid, ppid))
        (d / "status").write_text(f"Name:\tpython\nVmHWM:\t{rss + 100} kB\nVmRSS:\t{rss} kB\n")
        if pss is not None:
            (d / "smaps_rollup").write_text(f"00-ff ---p 0 00:00 0 [rollup]\nPss: {pss} kB\n")
    (root / "self").mkdir()  # not a pid
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    return root


def test_a_keeper_and_its_worker_are_one_tree_in_fake_proc(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {1: (0, 500, 900), 100: (1, 10_000, 26_000), 101: (100, 11_000, 21_000),
         102: (101, 50, 60), 200: (1, 7_000, 9_000)},
    )  # fmt: skip
    assert process_tree(100, proc) == [100, 101, 102]
    tree = tree_memory(100, proc)
    assert [p.pid for p in tree.processes] == [100, 101, 102]
    assert tree.pss_kib == 21_050 and tree.rss_kib == 47_060 and tree.peak_rss_kib == 47_360
    keeper = tree.of(100)
    assert keeper is not None and keeper.pss_kib == 10_000
    assert tree.pss_kib >= keeper.pss_kib
    both = trees_memory([100, 200], proc)
    assert both.pss_kib == 28_050
    assert rss_kib(100, proc) == 47_060 and peak_rss_kib(200, proc) == 9_100
    assert cpu_seconds(100, proc) > 0


def test_cpu_seconds_are_the_threads_nanoseconds_where_schedstat_has_them(
    tmp_path: Path,
) -> None:
    proc = _fake_proc(tmp_path, {100: (1, 10_000, 26_000), 101: (100, 11_000, 21_000)})
    ticks = cpu_seconds(100, proc)
    for pid, threads in ((100, {"100": "1500000000 7 3\n", "105": "250000000 0 1\n"}),):
        for tid, text in threads.items():
            (proc / str(pid) / "task" / tid).mkdir(parents=True)
            (proc / str(pid) / "task" / tid / "schedstat").write_text(text)
    # 100 from its threads' nanoseconds, 101 (no task directory) from its ticks
    assert cpu_seconds(100, proc) == pytest.approx(1.75 + ticks / 2)
    assert parse_schedstat("12 3 4\n") == 12 and parse_schedstat("x") is None
    assert parse_schedstat("") is None


def test_a_tree_without_every_pss_has_no_pss_sum(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {100: (1, 10_000, 26_000), 101: (100, None, 21_000)})
    tree = tree_memory(100, proc)
    assert tree.pss_kib is None
    assert tree.rss_kib == 47_000
    assert TreeMemory(()).pss_kib is None


def test_processes_are_labelled_by_memlogd_stats() -> None:
    tree = TreeMemory(
        (
            ProcessMemory(100, 1, "python", 10_000, 26_000, 26_000),
            ProcessMemory(101, 100, "python", 11_000, 21_000, 22_000),
        )
    )
    figures = memory_figures(tree, 100, {"keeper_pid": 100, "pid": 101})
    assert [p["role"] for p in figures["processes"]] == ["keeper", "worker"]
    assert figures["pss_kib_by_role"] == {"keeper": 10_000, "worker": 11_000}
    assert figures["pss_kib"] == 21_000 and figures["rss_kib"] == 47_000
    alone = memory_figures(tree, 100, None)  # a --daemon command: no stats
    assert [p["role"] for p in alone["processes"]] == ["daemon", "child"]


# ---------------------------------------------------------------------- answers, medians, waits


def test_stats_are_read_from_an_extended_answer() -> None:
    answer = b'{"memlogd":{"instance":"x","first_seq":1,"next_seq":2}}\n{"stats":{"pid":7}}\n'
    assert parse_stats_answer(answer) == {"pid": 7}
    with pytest.raises(QueryError, match="error"):
        parse_stats_answer(b'{"error":"bad request"}\n')
    with pytest.raises(QueryError, match="no stats"):
        parse_stats_answer(b"")
    with pytest.raises(QueryError, match="not JSON"):
        parse_stats_answer(b"{oops\n")


def test_medians_of_durations_are_in_ms() -> None:
    assert median_ms([0.010, 0.030, 0.020]) == pytest.approx(20.0)
    assert median_ms([0.010, 0.020]) == pytest.approx(15.0)
    assert median_ms([]) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def test_wait_stable_returns_once_the_sample_stopped_changing() -> None:
    clock = FakeClock()
    values = iter([1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3])
    settled = wait_stable(lambda: next(values), 0.3, 10, 0.1, clock, clock.pause)
    assert settled.stable and settled.value == 3
    assert settled.waited_s == pytest.approx(0.5)  # changed at 0.2, unchanged until 0.5


def test_wait_stable_gives_up_at_its_deadline() -> None:
    clock = FakeClock()
    counter = itertools.count()
    settled = wait_stable(lambda: next(counter), 0.3, 2.0, 0.1, clock, clock.pause)
    assert not settled.stable and settled.waited_s >= 2.0


def test_wait_until_returns_the_first_truthy_value_or_none() -> None:
    clock = FakeClock()
    values = iter([0, 0, 5])
    assert wait_until(lambda: next(values), 1.0, 0.1, clock, clock.pause) == 5
    assert wait_until(lambda: 0, 1.0, 0.1, clock, clock.pause) is None


# ---------------------------------------------------------------------- targets and the table


def _figures(pss: int, processes: int = 2) -> dict[str, object]:
    procs = [{"role": r, "pss_kib": pss // processes} for r in ("keeper", "worker")[:processes]]
    return {
        "pss_kib": pss,
        "rss_kib": 2 * pss,
        "peak_rss_kib": 2 * pss,
        "processes": procs,
        "pss_kib_by_role": {p["role"]: p["pss_kib"] for p in procs},
    }


def _results() -> dict[str, Any]:
    return {
        "precompiled": {"ok": True, "packages": ["memlogd", "logship"]},
        "configs": {},
        "boot": {"starts": 5, "ready_by": "ready-fd", "ready_ms": 42.0, "answered_ms": 260.0},
        "restart": {"kills": 3, "restart_ms": 12.5},
        "memory": {
            "idle": _figures(21_000),
            "idle_pss_kib": 21_000,
            "idle_rss_kib": 47_000,
            "ring_lines": 5000,
            "line_bytes": 1000,
            "full_ring_pss_kib": 33_000,
            "full_ring_rss_kib": 59_000,
            "full_ring_peak_rss_kib": 60_000,
        },
        "stack": {
            "lines": 20_000,
            "line_bytes": 100,
            "kmsg": False,
            "kmsg_note": "/dev/kmsg: Permission denied",
            "one": {"idle": _figures(27_000)},
            "idle_pss_kib": 27_000,
            "idle_rss_kib": 50_000,
            "after_lines_pss_kib": 31 * 1024,
            "after_lines_rss_kib": 54_000,
            "separate": {
                "programs": ["memlogd", "logwrite", "logship"],
                "idle": {"pss_kib": 60_000},
                "after_lines": {"pss_kib": 66_000},
                "three_idle_pss_kib": 42_000,
                "three_after_lines_pss_kib": 45_000,
            },
            "problems": ["one memlogd: 5 of 20000 lines not persisted (gap)"],
        },
        "logship": {"skipped": "rsyslogd is not installed"},
    }


def test_targets_compare_each_measured_figure_with_its_limit() -> None:
    results = _results()
    targets = {t["key"]: t for t in targets_of(results)}
    assert set(targets) == {
        "boot_ready_ms",
        "boot_answered_ms",
        "restart_ms",
        "stack_idle_pss_mb",
        "stack_after_lines_pss_mb",
    }  # logship was skipped: no figure, no target
    assert targets["boot_ready_ms"]["met"] is True
    assert targets["boot_answered_ms"]["met"] is False  # 260 > 250
    assert targets["stack_after_lines_pss_mb"]["value"] == 31.0
    assert "20,000 lines" in targets["stack_after_lines_pss_mb"]["what"]
    assert targets["restart_ms"]["limit"] == 200
    assert targets_of({"logship": {"lines_per_s": 150_000.0}})[0]["met"] is True
    assert targets_of({"logship": {"lines_per_s": 50_000.0}})[0]["met"] is False
    both = targets_of({"logship": {"lines_per_s": 70_000.0, "wide": {"lines_per_s": 110_000.0}}})
    assert [(t["key"], t["met"]) for t in both] == [
        ("logship_lines_per_s", False),
        ("logship_wide_lines_per_s", True),
    ]


def test_the_table_shows_every_new_figure_beside_its_target() -> None:
    results = _results()
    results["targets"] = targets_of(results)
    text = render_table(results)
    assert "cfg" not in text  # no config was run: no config table
    for expected in (
        "modules precompiled before measuring: memlogd logship",
        "boot, median of 5 starts: sockets bound (ready-fd) 42.0 ms, first query answered 260 ms",
        "worker restart, median of 3 SIGKILLs: answered by the new worker 12.5 ms",
        "idle: PSS 20.5 MB over 2 processes: keeper 10.3 MB, worker 10.3 MB; RSS 45.9 MB",
        "full ring of 5,000 x 1,000 B lines: PSS 32.2 MB, RSS 57.6 MB, peak RSS 58.6 MB",
        "no -kmsg: /dev/kmsg: Permission denied",
        "after 20,000 x 100 B lines 31.0 MB",
        "memlogd, logwrite, kmsg PSS 41.0 MB / 43.9 MB",
        "logship: skipped (rsyslogd is not installed)",
        "stack: one memlogd: 5 of 20000 lines not persisted (gap)",
    ):
        assert expected in text, expected
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert rows["boot: exec -> first query answered"].endswith("MISSED")
    assert rows["worker SIGKILL -> query answered by a new worker"].endswith("met")
    assert "<= 45 MB" in rows["whole stack in one memlogd, idle: PSS"]


def test_severity_bench_runs_and_checks_its_table() -> None:
    """``python -m bench.severity`` (a few calls each: its figures are not checked here)."""
    import json

    from click.testing import CliRunner

    from bench import severity

    result = CliRunner().invoke(
        severity.main, ["--number", "3", "--repeat", "1", "--json", "--no-check"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [(r["line"], r["level"]) for r in report["lines"]] == [
        (line, wanted) for _, line, wanted in severity.LINES
    ]
    assert set(report["uses"]) == {
        "logship_format_plain_ns",
        "logship_format_mixed_ns",
        "memlogd_dump_all_ns",
        "memlogd_dump_priority_ns",
    }


def test_the_bytecode_count_reads_as_the_daemon_and_is_the_same_every_run() -> None:
    """bench.bytecodes: the writers' lines come back whole from reads of 64
    KiB in turn (a line cut between two reads is one line), with an event
    as each source opens and closes; the count is the same run after run
    (but for the time's text, made once a second)."""
    load = Load("t", writers=3, lines=1500, line_bytes=100, followers=0, max_lines=500)
    got: dict[str, list[bytes]] = {}
    for source, lines in reads(load):
        got.setdefault(source, []).extend(lines.split())
    for w in range(3):
        assert got[f"w{w}"] == [b"%03d %08d " % (w, i) + b"x" * 86 for i in range(1500)]
    assert len(got["memlogd"]) == 6
    (appended, first), (again, second) = count(load, "fair"), count(load, "fair")
    assert appended == again == 3 * 1500 + 6 == count(load, "oldest")[0]
    # the same but for the time's text, made again when a second begins
    assert {f for f in first | second if first[f] != second[f]} <= {"timefmt.py:format_seconds"}


def test_a_replay_appends_every_line_untraced_and_none_only_reads() -> None:
    """bench.bytecodes --replay: the same lines as the count, under either
    policy; ``none`` (the run a CPU counter subtracts) appends nothing."""
    load = Load("t", writers=2, lines=700, line_bytes=100, followers=0, max_lines=300)
    assert replay(load, "fair") == replay(load, "oldest") == 2 * 700 + 4 == count(load, "fair")[0]
    assert replay(load, None) == 0


_line = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"."))


@given(
    st.lists(
        st.tuples(
            st.text(max_size=12),
            st.lists(_line, min_size=1, max_size=6),
            st.booleans(),
            st.binary(max_size=8),
        ),
        max_size=6,
    )
)
def test_recorded_batches_read_back_as_they_were_appended(
    batches: list[tuple[str, list[bytes], bool, bytes]],
) -> None:
    """bench.record's file: each batch's source and lines, in order, with
    where each line ends known as the daemon knew it (a head carried over
    from the read before, a partial line after the body's stop)."""
    made = []
    for source, lines, known, rest in batches:
        head, body = lines[0][:3], b"\n".join([lines[0][3:], *lines[1:]])
        stop = len(body)
        body += b"\n" + rest.replace(b"\n", b".")
        made.append((source, Lines(head, body, stop, ends_of(lines) if known else None)))
    back = list(record.decode(b"".join(record.encode(s, lines) for s, lines in made)))
    assert [(s, lines.known_ends, lines.split()) for s, lines in back] == [
        (s, lines.known_ends, lines.split()) for s, lines in made
    ]


def test_a_damaged_batches_file_is_refused() -> None:
    data = record.encode("w1", Lines.of([b"one", b"two"]))
    assert [lines.split() for _s, lines in record.decode(data)] == [[b"one", b"two"]]
    with pytest.raises(record.BatchFileError, match="cut short at byte 0"):
        list(record.decode(data[:5]))
    with pytest.raises(record.BatchFileError, match="at byte 0 is damaged"):
        list(record.decode(data[:-1]))


def test_recorded_batches_are_replayed_in_their_order() -> None:
    """bench.bytecodes --batches: the recorded batches, not the load's."""
    load = Load("t", writers=2, lines=700, line_bytes=100, followers=0, max_lines=300)
    batches = list(reads(load))
    data = b"".join(record.encode(s, lines) for s, lines in batches)
    again = list(record.decode(data))
    assert replay(load, "fair", again) == replay(load, "fair") == count(load, "oldest", again)[0]
    assert replay(load, "fair", again[:3]) == sum(len(lines) for _s, lines in batches[:3])
