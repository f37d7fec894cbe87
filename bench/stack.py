"""The memory of the whole logging stack (SPEC 13, BENCHMARKS.md "Memory of the
whole stack"): one memlogd that also persists (``-persist-dir``), reads the
kernel log (``-kmsg``) and ships (``-ship-to tcp://`` to a sink of the
benchmark's own), keeper included, PSS summed over its processes; idle, and
after one writer's lines were all persisted.  For comparison, the same jobs
as separate programs: memlogd, logwrite and kmsg (and logship).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procfs, query
from bench.configs import DEFAULT_MAX_LINES
from bench.daemon import STOP_TIMEOUT_S, Daemon, DaemonError, start_daemon
from bench.load import LoadRunError, fill_ring
from bench.measures import memory_figures
from bench.settle import wait_stable, wait_until
from bench.sink import Sink, start_sink

STACK_LINES = 20_000
STACK_LINE_BYTES = 100
STACK_SOURCE = "bench.stack"
KMSG_PATH = "/dev/kmsg"
STACK_QUIET_S = 1.5  # unchanged this long: settled (logship says "receiver_connected" after 1 s)
STACK_SETTLE_TIMEOUT_S = 20.0
PERSIST_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _sink() -> Iterator[Sink]:
    sink = start_sink()
    try:
        yield sink
    finally:
        sink.stop()


def kmsg_readable(path: str = KMSG_PATH) -> str | None:
    """None if the kernel log can be read, else why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    try:
        os.read(fd, 8192)
    except BlockingIOError:
        pass  # readable, nothing new
    except OSError as exc:
        if exc.errno != errno.EPIPE:  # EPIPE: records were overwritten, still readable
            return f"{path}: {exc.strerror}"
    finally:
        os.close(fd)
    return None


def count_persisted(directory: Path, source: str) -> int:
    """Lines of ``source`` persisted in ``directory`` (its file and rotated ones)."""
    total = 0
    for path in directory.glob(f"{source}.log*"):
        with contextlib.suppress(OSError):
            total += path.read_bytes().count(b"\n")
    return total


def _dir_bytes(directory: Path) -> int:
    total = 0
    for path in directory.iterdir():
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


@dataclass
class Programs:
    """Separately started programs (logwrite, kmsg, logship) beside a daemon."""

    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], stderr: Path) -> None:
        with open(stderr, "wb") as err:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise DaemonError(f"{name} exited early (status {proc.returncode})")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)


def _settle(daemon: Daemon, sink: Sink, persist: Path, check: Callable[[], None]) -> dict[str, Any]:
    def sample() -> object:
        check()
        stats = query.try_stats(daemon.query_path, 2.0)
        ring = (stats.get("next_seq"), stats.get("received")) if stats else None
        return (ring, sink.received, _dir_bytes(persist), tuple(procfs.process_tree(daemon.pid)))

    settled = wait_stable(sample, STACK_QUIET_S, STACK_SETTLE_TIMEOUT_S)
    return {"settled": settled.stable, "settle_s": round(settled.waited_s, 3)}


def _write_and_persist(
    daemon: Daemon, persist: Path, lines: int, line_bytes: int, check: Callable[[], None]
) -> dict[str, Any]:
    """One writer's lines, until they are all in the persisted files (or the
    count stopped growing: lines lost, reported): how long, how many."""
    start = time.monotonic()
    if not fill_ring(daemon, lines, line_bytes, PERSIST_TIMEOUT_S, name=STACK_SOURCE):
        raise LoadRunError("the daemon did not read the stack's lines in time")
    written_s = time.monotonic() - start

    def persisted() -> int:
        check()
        return count_persisted(persist, STACK_SOURCE)

    done = wait_until(lambda: persisted() >= lines, PERSIST_TIMEOUT_S / 2)
    if not done:  # lost (a reader more than a ring behind), or very slow: until it stops
        wait_stable(persisted, STACK_QUIET_S, PERSIST_TIMEOUT_S / 2)
    count = persisted()
    return {
        "written_s": round(written_s, 3),
        "persisted_s": round(time.monotonic() - start, 3),
        "persisted_lines": count,
        "not_persisted": max(0, lines - count),
        "gaps": _gap_lines(persist),
    }


def _gap_lines(persist: Path) -> list[str]:
    """What logwrite wrote about gaps (``DIR/logwrite.log``), the last few lines."""
    try:
        text = (persist / "logwrite.log").read_text(errors="replace")
    except OSError:
        return []
    return text.strip().splitlines()[-5:]


def _phase(
    roots: Sequence[int],
    daemon: Daemon,
    settle: dict[str, Any],
    sink: Sink,
    names: dict[int, str] | None = None,
) -> dict[str, Any]:
    stats = query.try_stats(daemon.query_path)
    tree = procfs.trees_memory(roots)
    figures = memory_figures(tree, daemon.pid, stats, names)
    return {**figures, **settle, "shipped_bytes": sink.received, "ring_received": _received(stats)}


def _received(stats: dict[str, Any] | None) -> int | None:
    return None if stats is None else stats.get("received")


def measure_stack(
    workdir: Path,
    lines: int = STACK_LINES,
    line_bytes: int = STACK_LINE_BYTES,
    separate: bool = True,
) -> dict[str, Any]:
    """The stack in one memlogd, then (``separate``) as separate programs."""
    kmsg_problem = kmsg_readable()
    out: dict[str, Any] = {
        "lines": lines,
        "line_bytes": line_bytes,
        "kmsg": kmsg_problem is None,
        "kmsg_note": kmsg_problem,
    }
    with _sink() as sink:
        out["one"] = _one_memlogd(workdir / "stack", sink, kmsg_problem is None, lines, line_bytes)
    if separate:
        with _sink() as sink:
            out["separate"] = _separate(
                workdir / "separate", sink, kmsg_problem is None, lines, line_bytes
            )
    out["problems"] = stack_problems(out)
    one = out["one"]
    out["idle_pss_kib"] = one["idle"]["pss_kib"]
    out["idle_rss_kib"] = one["idle"]["rss_kib"]
    out["after_lines_pss_kib"] = one["after_lines"]["pss_kib"]
    out["after_lines_rss_kib"] = one["after_lines"]["rss_kib"]
    out["after_lines_peak_rss_kib"] = one["after_lines"]["peak_rss_kib"]
    if separate:
        sep = out["separate"]
        out["separate_idle_pss_kib"] = sep["idle"]["pss_kib"]
        out["separate_after_lines_pss_kib"] = sep["after_lines"]["pss_kib"]
    return out


def _one_memlogd(base: Path, sink: Sink, kmsg: bool, lines: int, line_bytes: int) -> dict[str, Any]:
    persist, state = base / "persist", base / "state"
    persist.mkdir(parents=True)
    flags = ["-persist-dir", str(persist), "-state-dir", str(state), "-ship-to", sink.url]
    if kmsg:
        flags.append("-kmsg")
    daemon = start_daemon(None, base, DEFAULT_MAX_LINES, extra=flags)
    alive = _alive(None, daemon)
    try:
        idle = _phase([daemon.pid], daemon, _settle(daemon, sink, persist, alive), sink)
        wrote = _write_and_persist(daemon, persist, lines, line_bytes, alive)
        after = _phase([daemon.pid], daemon, _settle(daemon, sink, persist, alive), sink)
    finally:
        daemon.stop()
    return {"flags": flags, "idle": idle, "after_lines": {**after, **wrote}}


def _alive(programs: Programs | None, daemon: Daemon) -> Callable[[], None]:
    def check() -> None:
        if daemon.proc.poll() is not None:
            raise DaemonError(
                f"memlogd exited ({daemon.proc.returncode}) while measured: {daemon.stderr_tail()}"
            )
        if programs:
            programs.check()

    return check


def _separate(base: Path, sink: Sink, kmsg: bool, lines: int, line_bytes: int) -> dict[str, Any]:
    """memlogd (keeper and worker), logwrite, kmsg and logship as programs."""
    persist, state = base / "persist", base / "state"
    persist.mkdir(parents=True)
    state.mkdir()
    daemon = start_daemon(None, base, DEFAULT_MAX_LINES)
    programs = Programs()
    py = [sys.executable, "-m"]
    try:
        programs.start(
            "logwrite",
            [*py, "logwrite", "-socket", daemon.query_path, "-log-dir", str(persist)],
            base / "logwrite.stderr",
        )
        if kmsg:
            programs.start(
                "kmsg",
                [*py, "kmsg", "--socket-log", daemon.log_path,
                 "--state-file", str(state / "kmsg.state")],
                base / "kmsg.stderr",
            )  # fmt: skip
        programs.start(
            "logship",
            [*py, "logship", "--socket", daemon.query_path, "--to", sink.url,
             "--state-file", str(state / "logship.state")],
            base / "logship.stderr",
        )  # fmt: skip
        alive = _alive(programs, daemon)
        names = {p.pid: name for name, p in programs.procs.items()}
        roots = [daemon.pid, *names]
        idle = _phase(roots, daemon, _settle(daemon, sink, persist, alive), sink, names)
        idle["by_program"] = _by_program(daemon, programs)
        wrote = _write_and_persist(daemon, persist, lines, line_bytes, alive)
        after = _phase(roots, daemon, _settle(daemon, sink, persist, alive), sink, names)
        after["by_program"] = _by_program(daemon, programs)
    finally:
        programs.stop()
        daemon.stop()
    three = ["memlogd", "logwrite", "kmsg"]
    return {
        "programs": ["memlogd", *programs.procs],
        "idle": idle,
        "after_lines": {**after, **wrote},
        "three_idle_pss_kib": _sum_of(idle["by_program"], three),
        "three_after_lines_pss_kib": _sum_of(after["by_program"], three),
    }


def _by_program(daemon: Daemon, programs: Programs) -> dict[str, dict[str, int | None]]:
    out = {}
    for name, pid in [("memlogd", daemon.pid), *((n, p.pid) for n, p in programs.procs.items())]:
        tree = procfs.tree_memory(pid)
        out[name] = {"pss_kib": tree.pss_kib, "rss_kib": tree.rss_kib}
    return out


def _sum_of(by_program: dict[str, dict[str, int | None]], names: Sequence[str]) -> int | None:
    values = [by_program[n]["pss_kib"] for n in names if n in by_program]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def stack_problems(stack: dict[str, Any]) -> list[str]:
    """Lines not persisted, states that never settled: in words."""
    out = []
    for part, name in (("one", "one memlogd"), ("separate", "separate programs")):
        figures = stack.get(part)
        if not figures:
            continue
        after = figures["after_lines"]
        if after.get("not_persisted"):
            gaps = "; ".join(after.get("gaps") or ()) or "no gap recorded"
            out.append(
                f"{name}: {after['not_persisted']} of {stack['lines']} lines not persisted ({gaps})"
            )
        for phase in ("idle", "after_lines"):
            if not figures[phase].get("settled", True):
                out.append(f"{name}, {phase}: still changing after {STACK_SETTLE_TIMEOUT_S:g}s")
    return out
