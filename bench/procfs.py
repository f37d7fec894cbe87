"""What the kernel says about the daemon: CPU time and memory from /proc.

A daemon is a *process tree*: our memlogd is a keeper and the worker it forked
(SPEC 11), a ``--daemon`` command may be a wrapper and its child, upstream's
memlogd is one process.  Every figure here is summed over the tree, found from
the parent pid in ``/proc/*/stat`` (that works on every kernel;
``/proc/PID/task/*/children`` needs ``CONFIG_PROC_CHILDREN``).

Memory is given as PSS (proportional set size, ``/proc/PID/smaps_rollup``):
a page shared by the keeper and its worker counts half in each, so the sum
over the tree is what the tree costs.  RSS counts it in both, so a sum of
RSS overstates a forked pair; it is kept because upstream's figures are RSS.

The parsers are pure; every reader takes the /proc root as ``proc`` so tests
can give it a fake one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- pure parsers


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` the benchmark uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    utime: int  # clock ticks
    stime: int


def parse_stat(text: str) -> ProcStat:
    """``/proc/PID/stat``; the command name may hold spaces and parentheses, so
    the fields after it are found from the *last* ``)``."""
    open_at = text.index("(")
    close_at = text.rindex(")")
    fields = text[close_at + 2 :].split()
    return ProcStat(
        pid=int(text[:open_at]),
        comm=text[open_at + 1 : close_at],
        state=fields[0],  # field 3
        ppid=int(fields[1]),  # field 4
        utime=int(fields[11]),  # field 14
        stime=int(fields[12]),  # field 15
    )


def parse_kib_fields(text: str) -> dict[str, int]:
    """``Key:   123 kB`` lines (``smaps_rollup``, ``status``) as {key: KiB};
    lines without a ``kB`` value (the rollup's header, ``Name:``) are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, colon, rest = line.partition(":")
        words = rest.split()
        if colon and len(words) == 2 and words[1] == "kB" and words[0].isdigit():
            out[key.strip()] = int(words[0])
    return out


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """``root`` and every process below it, breadth first (children by pid),
    from a {pid: ppid} map; ``root`` alone if it has no known child."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        if pid != ppid:
            children.setdefault(ppid, []).append(pid)
    tree = [root]
    seen = {root}
    i = 0
    while i < len(tree):
        for child in sorted(children.get(tree[i], ())):
            if child not in seen:
                seen.add(child)
                tree.append(child)
        i += 1
    return tree


# ---------------------------------------------------------------------- readers


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # gone meanwhile, or not ours
        return None


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    text = _read(proc / str(pid) / "stat")
    return None if text is None else parse_stat(text)


def parent_map(proc: Path = PROC) -> dict[int, int]:
    """{pid: ppid} of every process /proc shows (threads are not listed)."""
    out: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name), proc)
        if stat is not None:
            out[stat.pid] = stat.ppid
    return out


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """``pid`` and its descendants."""
    return descendants(pid, parent_map(proc))


def cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """CPU time of ``pid`` and its descendants, in seconds: the time each of
    their threads ran, in nanoseconds (``/proc/PID/task/TID/schedstat``), where
    the kernel has it; else user + system time in clock ticks (10 ms: a daemon
    that spends 0.05-0.2 s on a run needs the nanoseconds)."""
    seconds = 0.0
    for p in process_tree(pid, proc):
        ran = ran_ns(p, proc)
        if ran is not None:
            seconds += ran / 1e9
            continue
        stat = read_stat(p, proc)
        if stat is not None:
            seconds += (stat.utime + stat.stime) / _TICKS
    return seconds


def parse_schedstat(text: str) -> int | None:
    """The first field of ``schedstat``: nanoseconds on the CPU (None if malformed)."""
    field = text.split(maxsplit=1)[:1]
    return int(field[0]) if field and field[0].isdigit() else None


def ran_ns(pid: int, proc: Path = PROC) -> int | None:
    """Nanoseconds every thread of ``pid`` ran (None without schedstat)."""
    try:
        tasks = os.listdir(proc / str(pid) / "task")
    except OSError:
        return None
    total = 0
    for tid in tasks:
        text = _read(proc / str(pid) / "task" / tid / "schedstat")
        ran = parse_schedstat(text) if text is not None else None
        if ran is None:
            return None
        total += ran
    return total if tasks else None


def status_kib(pid: int, key: str, proc: Path = PROC) -> int | None:
    """A ``VmXXX`` value of /proc/PID/status in KiB, summed over the process tree."""
    total = None
    for p in process_tree(pid, proc):
        text = _read(proc / str(p) / "status")
        if text is None:
            continue
        value = parse_kib_fields(text).get(key)
        if value is not None:
            total = (total or 0) + value
    return total


def rss_kib(pid: int, proc: Path = PROC) -> int | None:
    return status_kib(pid, "VmRSS", proc)


def peak_rss_kib(pid: int, proc: Path = PROC) -> int | None:
    return status_kib(pid, "VmHWM", proc)


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """One process's memory, in KiB (``pss_kib`` None without smaps_rollup)."""

    pid: int
    ppid: int
    comm: str
    pss_kib: int | None
    rss_kib: int | None
    peak_rss_kib: int | None
    pss_anon_kib: int | None = None
    pss_file_kib: int | None = None
    pss_shmem_kib: int | None = None

    def as_dict(self) -> dict[str, int | str | None]:
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "comm": self.comm,
            "pss_kib": self.pss_kib,
            "rss_kib": self.rss_kib,
            "peak_rss_kib": self.peak_rss_kib,
            "pss_anon_kib": self.pss_anon_kib,
            "pss_file_kib": self.pss_file_kib,
            "pss_shmem_kib": self.pss_shmem_kib,
        }


def process_memory(pid: int, proc: Path = PROC) -> ProcessMemory | None:
    """``pid``'s memory, or None if it is gone."""
    stat = read_stat(pid, proc)
    status = _read(proc / str(pid) / "status")
    if stat is None or status is None:
        return None
    vm = parse_kib_fields(status)
    rollup_text = _read(proc / str(pid) / "smaps_rollup")
    rollup = parse_kib_fields(rollup_text) if rollup_text is not None else {}
    return ProcessMemory(
        pid=pid,
        ppid=stat.ppid,
        comm=stat.comm,
        pss_kib=rollup.get("Pss"),
        rss_kib=vm.get("VmRSS"),
        peak_rss_kib=vm.get("VmHWM"),
        pss_anon_kib=rollup.get("Pss_Anon"),
        pss_file_kib=rollup.get("Pss_File"),
        pss_shmem_kib=rollup.get("Pss_Shmem"),
    )


def _sum(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@dataclass(frozen=True, slots=True)
class TreeMemory:
    """The memory of a process tree: each process, and the sums."""

    processes: tuple[ProcessMemory, ...]

    @property
    def pss_kib(self) -> int | None:
        """The tree's PSS: None if any process's PSS could not be read."""
        if not self.processes or any(p.pss_kib is None for p in self.processes):
            return None
        return sum(p.pss_kib for p in self.processes if p.pss_kib is not None)

    @property
    def rss_kib(self) -> int | None:
        return _sum(p.rss_kib for p in self.processes)

    @property
    def peak_rss_kib(self) -> int | None:
        return _sum(p.peak_rss_kib for p in self.processes)

    def of(self, pid: int) -> ProcessMemory | None:
        return next((p for p in self.processes if p.pid == pid), None)


def tree_memory(pid: int, proc: Path = PROC) -> TreeMemory:
    """PSS and RSS of ``pid`` and each of its descendants."""
    found = (process_memory(p, proc) for p in process_tree(pid, proc))
    return TreeMemory(tuple(m for m in found if m is not None))


def trees_memory(pids: Iterable[int], proc: Path = PROC) -> TreeMemory:
    """The memory of several trees (separate programs) as one."""
    parents = parent_map(proc)
    found = []
    seen: set[int] = set()
    for root in pids:
        for p in descendants(root, parents):
            if p not in seen:
                seen.add(p)
                m = process_memory(p, proc)
                if m is not None:
                    found.append(m)
    return TreeMemory(tuple(found))
