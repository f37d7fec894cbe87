"""``python -m bench`` on a tiny load against a real memlogd (issue 7): the
report's structure and that nothing was lost. Behaviour only, no speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import python_m

pytestmark = pytest.mark.e2e

# Loads stay below the ring (5000 lines), so no follower can fall a ring behind:
# any loss is a bug, whatever the machine's speed.
TINY = ["--writers", "2", "--lines", "2000", "--followers", "1"]


def run_bench(*args: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_m("bench", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_lossless_run(entry: dict[str, Any], written: int, followers: int) -> None:
    s = entry["summary"]
    assert entry["problems"] == []
    assert s["written"] == written
    assert s["received"] == [written] * followers
    assert s["lost"] == [0] * followers
    assert s["lost_max"] == 0 and s["duplicates_max"] == 0
    assert s["follower_end"] == ["complete"] * followers
    assert s["complete"] is True and s["daemon_alive"] is True
    assert s["latency_samples"] > 0
    assert 0 <= s["latency_p50_ms"] <= s["latency_p99_ms"] <= s["latency_max_ms"]
    for key in ("offered_lines_per_s", "ingest_lines_per_s", "delivered_min_lines_per_s"):
        assert s[key] > 0, key
    assert s["daemon_cpu_s"] >= 0
    assert s["daemon_peak_rss_kib"] > 0


# Small counts for every run-independent figure: boot (2 starts), restart (1 kill),
# the whole stack with 500 lines; the separate programs are a test of their own.
SMALL = ["--starts", "2", "--kills", "1", "--stack-lines", "500"]


def assert_tree_memory(figures: dict[str, Any], processes: int) -> None:
    """PSS and RSS summed over the tree, each process's present and positive."""
    procs = figures["processes"]
    assert len(procs) == processes
    assert all(p["pss_kib"] > 0 and p["rss_kib"] >= p["pss_kib"] for p in procs)
    assert figures["pss_kib"] == sum(p["pss_kib"] for p in procs)
    assert figures["rss_kib"] == sum(p["rss_kib"] for p in procs)
    assert figures["peak_rss_kib"] >= figures["rss_kib"] >= figures["pss_kib"] > 0


def assert_keeper_and_worker(figures: dict[str, Any]) -> None:
    assert_tree_memory(figures, 2)
    keeper, worker = figures["processes"]
    assert (keeper["role"], worker["role"]) == ("keeper", "worker")
    assert worker["ppid"] == keeper["pid"]
    assert figures["pss_kib"] > keeper["pss_kib"]  # the tree is more than the keeper alone
    assert figures["pss_kib_by_role"] == {"keeper": keeper["pss_kib"], "worker": worker["pss_kib"]}


@pytest.mark.timeout(240)  # long: every figure (about 20 s on a quiet machine)
def test_tiny_load_reports_every_figure_and_loses_nothing(short_tmp: Path) -> None:
    out = short_tmp / "report.json"
    proc = run_bench(*TINY, *SMALL, "--no-separate", "--json", "--output", str(out), timeout=200)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert set(report) == {
        "bench", "started", "machine", "load_average", "daemon", "precompiled", "configs",
        "boot", "memory", "restart", "stack", "targets",
    }  # fmt: skip
    assert report["precompiled"]["ok"] is True
    assert "memlogd" in report["precompiled"]["packages"]
    assert list(report["configs"]) == ["custom"]
    entry = report["configs"]["custom"]
    assert entry["load"] == {
        "writers": 2,
        "lines": 2000,
        "bytes": 100,
        "followers": 1,
        "max_lines": 5000,
    }
    assert_lossless_run(entry, 4000, 1)
    assert entry["summary"]["daemon_pss_kib"] > 0
    assert len(entry["runs"]) == 1

    boot = report["boot"]
    assert boot["starts"] == 2 and boot["ready_by"] == "ready-fd"
    assert len(boot["ready_ms_all"]) == len(boot["answered_ms_all"]) == 2
    assert 0 < boot["ready_ms"] <= boot["answered_ms"]
    pairs = zip(boot["ready_ms_all"], boot["answered_ms_all"], strict=True)
    assert all(0 < r <= a for r, a in pairs)

    restart = report["restart"]
    assert restart["kills"] == 1 and len(restart["restart_ms_all"]) == 1
    assert restart["restart_ms"] > 0
    assert restart["worker_starts"] == 2  # the first worker, and the one after the kill

    memory = report["memory"]
    assert memory["ring_lines"] == 5000 and memory["line_bytes"] == 1000
    assert memory["lines_written"] > memory["ring_lines"]
    assert_keeper_and_worker(memory["idle"])
    assert_keeper_and_worker(memory["full_ring"])
    assert memory["idle_processes"] == 2
    assert memory["idle_pss_kib"] == memory["keeper_pss_kib"] + memory["worker_pss_kib"]
    assert memory["idle_rss_kib"] >= memory["idle_pss_kib"]
    assert memory["full_ring_peak_rss_kib"] >= memory["full_ring_rss_kib"]
    assert memory["full_ring_pss_kib"] > memory["idle_pss_kib"]  # 5 MB of lines more

    stack = report["stack"]
    assert stack["lines"] == 500 and stack["problems"] == []
    one = stack["one"]
    assert "-persist-dir" in one["flags"] and "-ship-to" in one["flags"]
    assert ("-kmsg" in one["flags"]) is stack["kmsg"]
    assert stack["kmsg"] or stack["kmsg_note"]
    assert_keeper_and_worker(one["idle"])
    assert_keeper_and_worker(one["after_lines"])
    assert one["after_lines"]["persisted_lines"] == 500
    assert one["after_lines"]["shipped_bytes"] > one["idle"]["shipped_bytes"] >= 0
    assert one["after_lines"]["ring_received"] >= 500
    assert stack["idle_pss_kib"] == one["idle"]["pss_kib"]
    assert stack["after_lines_pss_kib"] == one["after_lines"]["pss_kib"]
    assert "separate" not in stack

    targets = {t["key"]: t for t in report["targets"]}
    assert set(targets) == {
        "boot_ready_ms", "boot_answered_ms", "restart_ms",
        "stack_idle_pss_mb", "stack_after_lines_pss_mb",
    }  # fmt: skip
    assert all(isinstance(t["met"], bool) and t["value"] > 0 for t in targets.values())
    # the table goes to stderr when --json is given
    for text in ("offered/s", "custom", "boot, median of 2 starts", "worker restart",
                 "idle: PSS", "full ring of 5,000 x 1,000 B lines", "whole stack in one memlogd",
                 "target"):  # fmt: skip
        assert text in proc.stderr, text


@pytest.mark.timeout(180)  # long: memlogd, logwrite, kmsg and logship started twice over
def test_the_stack_as_one_memlogd_and_as_separate_programs(short_tmp: Path) -> None:
    out = short_tmp / "r.json"
    proc = run_bench(
        "--no-configs", "--no-boot", "--no-restart", "--stack-lines", "300",
        "--no-precompile", "--output", str(out), timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["configs"] == {} and "precompiled" not in report
    assert "boot" not in report and "restart" not in report
    stack = report["stack"]
    sep = stack["separate"]
    names = (
        ["memlogd", "logwrite", "kmsg", "logship"]
        if stack["kmsg"]
        else ["memlogd", "logwrite", "logship"]
    )
    assert sep["programs"] == names
    for phase in ("idle", "after_lines"):
        figures = sep[phase]
        by_program = figures["by_program"]
        assert list(by_program) == names
        assert all(p["pss_kib"] > 0 for p in by_program.values())
        # keeper + worker, and each other program (a python process, no child)
        roles = [p["role"] for p in figures["processes"]]
        assert roles == ["keeper", "worker", *names[1:]]
        summed = sum(p["pss_kib"] for p in by_program.values())  # read a moment later
        assert 0.9 * summed <= figures["pss_kib"] <= 1.1 * summed
        three = sum(by_program[n]["pss_kib"] for n in names if n != "logship")
        assert sep[f"three_{phase}_pss_kib"] == three
    assert sep["after_lines"]["persisted_lines"] == 300
    assert stack["separate_idle_pss_kib"] == sep["idle"]["pss_kib"]
    assert "as separate programs" in proc.stdout


def test_a_one_process_daemon_command_is_measured_as_its_single_process(short_tmp: Path) -> None:
    daemon = (
        f"{sys.executable} -m memlogd -socket-log {{log}} -socket-query {{query}}"
        " -max-lines {max_lines} --no-console -no-keeper"
    )
    out = short_tmp / "r.json"
    proc = run_bench(
        "--no-configs", "--starts", "1", "--daemon", daemon, "--output", str(out), timeout=50
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["boot"]["ready_by"] == "polling"
    assert 0 < report["boot"]["ready_ms"] <= report["boot"]["answered_ms"]
    memory = report["memory"]
    assert_tree_memory(memory["idle"], 1)
    assert memory["idle"]["processes"][0]["role"] == "daemon"
    assert memory["idle_processes"] == 1 and memory["keeper_pss_kib"] is None
    assert "skipped" in report["restart"] and "skipped" in report["stack"]
    assert {t["key"] for t in report["targets"]} == {"boot_ready_ms", "boot_answered_ms"}


def test_any_daemon_command_with_polled_readiness_and_two_followers(short_tmp: Path) -> None:
    out = short_tmp / "r.json"
    daemon = (
        f"{sys.executable} -m memlogd -socket-log {{log}} -socket-query {{query}}"
        " -max-lines {max_lines} --no-console"
    )
    proc = run_bench(
        "--config", "e", "--writers", "2", "--lines", "1500", "--followers", "2", "--no-memory",
        "--daemon", daemon, "--output", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["daemon"] == daemon
    entry = report["configs"]["e*"]
    assert entry["load"]["writers"] == 2
    assert_lossless_run(entry, 3000, 2)
    assert "memory" not in report
    assert "e*" in proc.stdout and "upstream" not in proc.stdout


@pytest.mark.timeout(180)  # long once bench/logship.py measures against a real rsyslogd
def test_logship_is_measured_or_skipped_with_a_reason(short_tmp: Path) -> None:
    out = short_tmp / "r.json"
    proc = run_bench(
        "--no-configs", "--no-memory", "--no-precompile", "--logship", "--output", str(out),
        timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    logship = json.loads(out.read_text())["logship"]
    if "skipped" in logship:
        assert logship["skipped"]
        assert f"logship: skipped ({logship['skipped']})" in proc.stdout
    else:
        assert logship["lines_per_s"] > 0
        assert "logship --once over RELP" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bytes", "20"], "--bytes must be at least 41"),
        (["--writers", "0"], "--writers must be between 1"),
        (["--daemon", "true {log}"], "lacks {query}"),
        (["--config", "z"], "Invalid value for '--config'"),
        (["--starts", "0"], "Invalid value for '--starts'"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    proc = run_bench(*args, "--no-memory", timeout=20)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_daemon_that_cannot_start_is_a_one_line_error(short_tmp: Path) -> None:
    proc = run_bench(
        *TINY, "--no-memory", "--daemon", "/nonexistent/memlogd {log} {query}",
        "--output", str(short_tmp / "r.json"), timeout=20,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "bench: cannot run /nonexistent/memlogd: No such file or directory"
    assert "Traceback" not in proc.stderr
    assert not (short_tmp / "r.json").exists()


def test_logread_directory_bench_reports_both_cases(short_tmp: Path) -> None:
    args = ["--sources", "3", "--rotations", "4", "--lines-per-file", "50", "--runs", "1"]
    proc = subprocess.run(
        python_m("bench.directory", *args, "--json", "--keep", str(short_tmp / "dir")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    cases = result["cases"]
    assert cases["all"]["lines_shown"] == 3 * 4 * 50
    assert cases["since_last_tenth"]["lines_shown"] == 3 * 4 * 50 // 10
    assert result["since_speedup"] > 0 and cases["all"]["cpu_s"] > 0
    assert cases["start_up"]["lines_shown"] == 0
    # a figure, not a measure here: 600 lines cost less CPU than the clock's noise
    # (the start-up's own run may take longer than both), so its sign is not asserted
    assert isinstance(result["since_speedup_cpu_net"], int | float)
    assert len(list((short_tmp / "dir").iterdir())) == 3 * 4
