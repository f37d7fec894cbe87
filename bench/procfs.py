"""What the kernel says about the daemon: CPU time and memory from /proc."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a ``--daemon`` command may be a wrapper)."""
    seen = [pid]
    i = 0
    while i < len(seen):
        for task in Path(f"/proc/{seen[i]}/task").glob("*/children"):
            try:
                seen.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
        i += 1
    return seen


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants, in seconds."""
    ticks = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / _TICKS


def status_kib(pid: int, key: str) -> int | None:
    """A ``VmXXX`` value of /proc/PID/status in KiB, summed over the process tree."""
    total = None
    for p in process_tree(pid):
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key + ":"):
                total = (total or 0) + int(line.split()[1])
                break
    return total


def rss_kib(pid: int) -> int | None:
    return status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int | None:
    return status_kib(pid, "VmHWM")
