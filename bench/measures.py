"""The run-independent figures of one daemon (docs/bench.md): boot time, worker
restart, and the memory of its process tree idle and with a full ring."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import procfs, query
from bench.configs import DEFAULT_MAX_LINES
from bench.daemon import Daemon, DaemonError, start_daemon
from bench.load import LoadRunError, fill_ring
from bench.settle import wait_stable, wait_until

FULL_RING_LINE_BYTES = 1000
FILL_TIMEOUT_S = 60.0
SETTLE_QUIET_S = 0.5  # the daemon's state unchanged this long: it settled
SETTLE_TIMEOUT_S = 10.0
RESTART_TIMEOUT_S = 10.0  # a worker not replaced by then: the measurement fails
STABLE_MARGIN_S = 0.2  # beyond the keeper's STABLE_S between two kills


def median_ms(seconds: Sequence[float]) -> float | None:
    """The median of durations in seconds, in ms (None for none)."""
    return statistics.median(seconds) * 1000 if seconds else None


# ---------------------------------------------------------------------- boot


def measure_boot(template: str | None, workdir: Path, starts: int) -> dict[str, Any]:
    """``starts`` starts of the daemon (after one that is not counted: it fills
    the page cache, as an initramfs in RAM would be): exec -> sockets bound
    (``--ready-fd`` written, or polled) and exec -> the first byte answering a
    dump query.  Each daemon is stopped before the next starts."""
    ready: list[float] = []
    answered: list[float] = []
    ready_by = ""
    for i in range(starts + 1):
        daemon = start_daemon(template, workdir, DEFAULT_MAX_LINES)
        try:
            if i:
                ready.append(daemon.ready_s)
                assert daemon.answered_s is not None
                answered.append(daemon.answered_s)
            ready_by = daemon.ready_by
        finally:
            daemon.stop()
    return {
        "starts": starts,
        "ready_by": ready_by,
        "ready_ms": median_ms(ready),
        "ready_ms_all": [round(s * 1000, 2) for s in ready],
        "answered_ms": median_ms(answered),
        "answered_ms_all": [round(s * 1000, 2) for s in answered],
    }


# ---------------------------------------------------------------------- restart


def _stable_s() -> float:
    """How long a worker must have served to be replaced at once (else the
    keeper backs off): the keeper's own constant."""
    from memlogd.keeper.restart import STABLE_S

    return float(STABLE_S)


def measure_restart(
    workdir: Path,
    kills: int,
    max_lines: int = DEFAULT_MAX_LINES,
    fill_lines: int = 0,
    line_bytes: int = 100,
) -> dict[str, Any]:
    """Our memlogd with its keeper: ``kills`` times, SIGKILL the worker (its pid
    from stats) and time until a stats query is answered by a new worker (its
    pid differs).  Kills are spaced so that each worker served longer than the
    keeper's ``STABLE_S`` (a worker dying sooner is restarted after a backoff).
    With ``fill_lines``, the ring (``max_lines``) holds that many lines of
    ``line_bytes`` first: the new worker replays them from the journal."""
    spacing = _stable_s() + STABLE_MARGIN_S
    daemon = start_daemon(None, workdir, max_lines)
    times: list[float] = []
    try:
        if fill_lines and not fill_ring(daemon, fill_lines, line_bytes, FILL_TIMEOUT_S):
            raise LoadRunError(f"the ring could not be filled with {fill_lines} lines")
        first = query.stats(daemon.query_path)
        if first.get("keeper_pid") is None:
            return {"skipped": "memlogd runs without a keeper"}
        keeper = first["keeper_pid"]
        answered_at = time.monotonic()
        starts = first.get("worker_starts", 1)
        for _ in range(kills):
            # a wait the keeper's policy needs, not a synchronisation
            time.sleep(max(0.0, answered_at + spacing - time.monotonic()))
            before = query.stats(daemon.query_path)
            old = before["pid"]
            if old not in procfs.process_tree(daemon.pid):
                raise LoadRunError(f"the worker pid {old} in stats is not below the keeper")
            start = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            after = _stats_of_new_worker(daemon, old, RESTART_TIMEOUT_S)
            times.append(time.perf_counter() - start)
            answered_at = time.monotonic()
            if after["keeper_pid"] != keeper:
                raise LoadRunError("the keeper changed after a worker was killed")
            starts = after.get("worker_starts", starts)
    finally:
        daemon.stop()
    return {
        "kills": kills,
        "ring_entries": first.get("entries"),
        "restart_ms": median_ms(times),
        "restart_ms_all": [round(s * 1000, 2) for s in times],
        "worker_starts": starts,
        "spacing_s": round(spacing, 3),
    }


def _stats_of_new_worker(daemon: Daemon, old_pid: int, timeout_s: float) -> dict[str, Any]:
    """Ask for stats until a worker other than ``old_pid`` answers."""

    def answer() -> dict[str, Any] | None:
        if daemon.proc.poll() is not None:
            raise DaemonError(f"the keeper exited ({daemon.proc.returncode}) after a kill")
        stats = query.try_stats(daemon.query_path, timeout_s)
        return stats if stats is not None and stats.get("pid") != old_pid else None

    stats = wait_until(answer, timeout_s, every_s=0.001)
    if stats is None:
        raise LoadRunError(f"no new worker answered within {timeout_s:g}s of the kill")
    return stats


# ---------------------------------------------------------------------- memory


def label_processes(
    tree: procfs.TreeMemory,
    root: int,
    stats: dict[str, Any] | None,
    names: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Each process of a daemon's tree with its role: ``keeper`` and
    ``worker`` as memlogd's stats name them, else ``daemon`` (the root),
    the name ``names`` gives a pid (other programs), or ``child``."""
    keeper = stats.get("keeper_pid") if stats else None
    worker = stats.get("pid") if stats else None
    out = []
    for p in tree.processes:
        if names and p.pid in names:
            role = names[p.pid]
        elif p.pid == root:
            role = "keeper" if keeper == root else "daemon"
        elif p.pid == worker:
            role = "worker"
        else:
            role = "child"
        out.append({"role": role, **p.as_dict()})
    return out


def memory_figures(
    tree: procfs.TreeMemory,
    root: int,
    stats: dict[str, Any] | None,
    names: dict[int, str] | None = None,
) -> dict[str, Any]:
    """PSS and RSS of a tree, summed and per process (role-labelled)."""
    processes = label_processes(tree, root, stats, names)
    by_role: dict[str, int] = {}
    for p in processes:
        if p["pss_kib"] is not None:
            by_role[p["role"]] = by_role.get(p["role"], 0) + p["pss_kib"]
    return {
        "pss_kib": tree.pss_kib,
        "rss_kib": tree.rss_kib,
        "peak_rss_kib": tree.peak_rss_kib,
        "processes": processes,
        "pss_kib_by_role": by_role,
    }


def settle_daemon(daemon: Daemon, extra: Callable[[], object] | None = None) -> dict[str, Any]:
    """Wait until the daemon settled (its tree's pids, and for memlogd the
    ring's ``next_seq`` and ``received``, plus ``extra()``, unchanged for
    ``SETTLE_QUIET_S``); how it went."""

    def sample() -> object:
        stats = query.try_stats(daemon.query_path, 2.0)
        ring = (stats.get("next_seq"), stats.get("received")) if stats else None
        tree = tuple(procfs.process_tree(daemon.pid))
        return (ring, tree, extra() if extra else None)

    settled = wait_stable(sample, SETTLE_QUIET_S, SETTLE_TIMEOUT_S)
    return {"settled": settled.stable, "settle_s": round(settled.waited_s, 3)}


def measure_memory(template: str | None, workdir: Path) -> dict[str, Any]:
    """The daemon's tree idle (once it answered and settled) and after a
    default ring was filled with 1 KB lines (and overwritten a little)."""
    daemon = start_daemon(template, workdir, DEFAULT_MAX_LINES)
    try:
        idle_wait = settle_daemon(daemon)
        stats = query.try_stats(daemon.query_path)
        idle = memory_figures(procfs.tree_memory(daemon.pid), daemon.pid, stats)
        lines = DEFAULT_MAX_LINES + DEFAULT_MAX_LINES // 5  # overwrite the oldest too
        if not fill_ring(daemon, lines, FULL_RING_LINE_BYTES, FILL_TIMEOUT_S):
            raise LoadRunError("the daemon did not read the ring-filling lines in time")
        full_wait = settle_daemon(daemon)
        stats = query.try_stats(daemon.query_path)
        full = memory_figures(procfs.tree_memory(daemon.pid), daemon.pid, stats)
    finally:
        daemon.stop()
    roles = idle["pss_kib_by_role"]
    return {
        "idle": {**idle, **idle_wait},
        "full_ring": {**full, **full_wait},
        "idle_pss_kib": idle["pss_kib"],
        "idle_rss_kib": idle["rss_kib"],
        "idle_processes": len(idle["processes"]),
        "keeper_pss_kib": roles.get("keeper"),
        "worker_pss_kib": roles.get("worker"),
        "ring_lines": DEFAULT_MAX_LINES,
        "lines_written": lines,
        "line_bytes": FULL_RING_LINE_BYTES,
        "full_ring_pss_kib": full["pss_kib"],
        "full_ring_rss_kib": full["rss_kib"],
        "full_ring_peak_rss_kib": full["peak_rss_kib"],
    }
