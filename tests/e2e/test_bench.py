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


def test_tiny_load_reports_every_figure_and_loses_nothing(short_tmp: Path) -> None:
    out = short_tmp / "report.json"
    proc = run_bench(*TINY, "--json", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert set(report) == {"bench", "started", "machine", "daemon", "configs", "memory"}
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
    assert len(entry["runs"]) == 1
    memory = report["memory"]
    assert memory["ring_lines"] == 5000 and memory["line_bytes"] == 1000
    assert memory["lines_written"] > memory["ring_lines"]
    assert memory["startup_ms"] > 0 and len(memory["startup_ms_all"]) == 5
    assert 0 < memory["idle_rss_kib"] <= memory["full_ring_peak_rss_kib"]
    # the table goes to stderr when --json is given
    assert "offered/s" in proc.stderr and "custom" in proc.stderr
    assert "full ring of 5,000 x 1,000 B lines" in proc.stderr


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bytes", "20"], "--bytes must be at least 41"),
        (["--writers", "0"], "--writers must be between 1"),
        (["--daemon", "true {log}"], "lacks {query}"),
        (["--config", "z"], "Invalid value for '--config'"),
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
