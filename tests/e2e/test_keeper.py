"""The keeper (docs/memlogd.md, "The keeper"): a worker killed, upgraded or
crash-looping under load loses at most what it had read, duplicates nothing,
and breaks no writer; readers with a cursor go on exactly once."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from memlogd.config import READ_BURST  # memlogd reads at most this much of a source at once
from tests import helpers
from tests.conftest import StartMemlogd
from tests.helpers import MemlogdProcess, python_m, query_raw, wait_for, wait_value

pytestmark = pytest.mark.e2e

DEADLINE_S = 30.0
LINE = re.compile(r"^(w\d+) n=(\d{6}) ")

# Writes COUNT numbered lines to FD in bursts of 16, pacing itself so that the
# load lasts about two seconds (it is the load, not a synchronisation).
WRITER = r"""
import os, sys, time
fd, name, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
n = 0
while n < count:
    last = min(n + 16, count)
    burst = b"".join(b"%s n=%06d %s\n" % (name.encode(), i, b"x" * 40) for i in range(n, last))
    view = memoryview(burst)
    while view:
        view = view[os.write(fd, view):]
    n += 16
    time.sleep(0.02)
"""


def stats(query_path: str) -> dict[str, Any]:
    return helpers.stats(query_path, timeout=DEADLINE_S)


def ring(query_path: str) -> tuple[str, list[dict[str, Any]]]:
    lines = query_raw(query_path, b"\x03{}\n", timeout=DEADLINE_S).splitlines()
    header = json.loads(lines[0])["memlogd"]
    return header["instance"], [json.loads(line) for line in lines[1:]]


class Load:
    """``count`` writers: half handed over as an init does (the sender closes its
    copy at once), half through memlogd-exec."""

    def __init__(self, memlogd: MemlogdProcess, count: int, lines: int) -> None:
        self.lines = lines
        self.procs: list[subprocess.Popen[bytes]] = []
        self.names = [f"w{i}" for i in range(count)]
        for i, name in enumerate(self.names):
            if i % 2 == 0:
                ours, theirs = socket.socketpair()
                from memlogd.client import send_fds

                send_fds(memlogd.log_path, name, [theirs.fileno()])
                theirs.close()
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", WRITER, str(ours.fileno()), name, str(lines)],
                        pass_fds=[ours.fileno()],
                        stderr=subprocess.PIPE,
                    )
                )
                ours.close()
            else:
                cmd = python_m(
                    "memlogd.exec",
                    "-socket",
                    memlogd.log_path,
                    "-n",
                    name,
                    "--",
                    sys.executable,
                    "-c",
                    WRITER,
                    "1",
                    name,
                    str(lines),
                )
                self.procs.append(
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                )

    def wait(self) -> list[tuple[int, bytes]]:
        return [(p.wait(DEADLINE_S), p.stderr.read() if p.stderr else b"") for p in self.procs]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(name="loads")
def fixture_loads() -> Iterator[list[Load | Background]]:
    """The test's writers and clients, killed at its end whatever happened."""
    started: list[Load | Background] = []
    yield started
    for load in started:
        load.kill()


def numbers_by_source(entries: list[dict[str, Any]]) -> dict[str, list[int]]:
    got: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        m = LINE.match(entry["msg"])
        if m:
            got[m.group(1)].append(int(m.group(2)))
    return got


def missing_runs(numbers: list[int], count: int) -> list[tuple[int, int]]:
    """The runs (first, length) of the numbers 0..count-1 that are not there."""
    present = set(numbers)
    runs: list[tuple[int, int]] = []
    for n in range(count):
        if n not in present:
            if runs and runs[-1][0] + runs[-1][1] == n:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((n, 1))
    return runs


class Background:
    """A client process (logread, logwrite) whose output goes to files."""

    def __init__(self, tmp: Path, tag: str, *args: str) -> None:
        self.out = tmp / f"{tag}.out"
        self.err = tmp / f"{tag}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(list(args), stdout=out, stderr=err)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(DEADLINE_S)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def follow_with_logread(tmp: Path, memlogd: MemlogdProcess) -> Background:
    return Background(
        tmp,
        "logread",
        *python_m("logread", "-socket", memlogd.query_path, "-F", "--retry"),
        "-o",
        "json",
    )


def persist_with_logwrite(tmp: Path, memlogd: MemlogdProcess) -> Background:
    return Background(
        tmp,
        "logwrite",
        *python_m(
            "logwrite",
            "-socket",
            memlogd.query_path,
            "-log-dir",
            str(tmp / "logs"),
            "-max-log-size",
            str(1 << 30),
        ),
    )


def check_clients(tmp: Path, memlogd: MemlogdProcess, entries: list[dict[str, Any]]) -> None:
    """logread got every entry the ring holds exactly once; logwrite's files have
    no line twice."""
    seqs = [e["seq"] for e in entries]
    lines: list[bytes] = []

    def followed() -> bool:
        nonlocal lines
        lines = (tmp / "logread.out").read_bytes().splitlines()
        return len(lines) >= len(seqs)

    wait_for(followed, DEADLINE_S, f"logread to catch up ({len(seqs)} entries)")
    assert [json.loads(line)["seq"] for line in lines] == seqs
    for path in (tmp / "logs").glob("w*.log"):
        text = path.read_text().splitlines()
        assert len(text) == len(set(text)), path


def progress(memlogd: MemlogdProcess, entries: int) -> None:
    """Wait until memlogd has appended ``entries`` entries (seq goes on across workers)."""
    wait_value(
        lambda: stats(memlogd.query_path)["next_seq"],
        lambda n: n > entries,
        DEADLINE_S,
        f"{entries} entries in the ring",
    )


def wait_gone(pid: int) -> None:
    gone = Path(f"/proc/{pid}")
    wait_for(lambda: not gone.exists(), DEADLINE_S, f"process {pid} to end")


def upgraded(old: int, starts: int, values: dict[str, Any]) -> bool:
    return bool(values["pid"] != old and values["worker_starts"] == starts)


def kill_worker(memlogd: MemlogdProcess) -> int:
    worker = stats(memlogd.query_path)["pid"]
    os.kill(worker, signal.SIGKILL)
    return int(worker)


def test_killed_workers_lose_at_most_a_read_and_duplicate_nothing(
    start_memlogd: StartMemlogd, short_tmp: Path, loads: list[Load | Background]
) -> None:
    memlogd = start_memlogd("-max-lines", "200000")
    keeper = memlogd.proc.pid if memlogd.proc else 0
    reader = follow_with_logread(short_tmp, memlogd)
    writer = persist_with_logwrite(short_tmp, memlogd)
    load = Load(memlogd, 50, 1500)
    loads += [reader, writer, load]
    kills = 3
    for k in range(kills):
        progress(memlogd, (k + 1) * 15000)
        wait_gone(kill_worker(memlogd))
        assert stats(memlogd.query_path)["worker_starts"] == k + 2
    results = load.wait()
    assert [code for code, _ in results] == [0] * len(results), results  # no writer broken
    wait_value(
        lambda: stats(memlogd.query_path)["open_fds"], lambda n: n == 0, DEADLINE_S, "sources"
    )
    final = stats(memlogd.query_path)
    assert (final["keeper_pid"], final["worker_starts"]) == (keeper, kills + 1)
    assert final["pid"] != keeper
    _instance, entries = ring(memlogd.query_path)
    got = numbers_by_source(entries)
    per_read = READ_BURST // 58 + 1  # lines of 58 bytes in one read
    for name in load.names:
        numbers = got[name]
        assert len(numbers) == len(set(numbers)), f"{name}: a line twice"
        assert numbers == sorted(numbers), f"{name}: out of order"
        runs = missing_runs(numbers, load.lines)
        assert len(runs) <= kills and all(length <= per_read for _, length in runs), (name, runs)
    restarted = [e["msg"] for e in entries if e["msg"].startswith("worker_restarted")]
    assert len(restarted) == kills
    assert all('previous="killed by SIGKILL"' in msg for msg in restarted)
    check_clients(short_tmp, memlogd, entries)
    assert reader.stop(signal.SIGINT) == 130 and writer.stop() == 0
    assert b"restarted" not in reader.err.read_bytes()  # the same instance throughout


def test_an_upgrade_under_load_loses_nothing(
    start_memlogd: StartMemlogd, short_tmp: Path, loads: list[Load | Background]
) -> None:
    memlogd = start_memlogd("-max-lines", "200000")
    keeper = memlogd.proc.pid if memlogd.proc else 0
    before, _ = ring(memlogd.query_path)
    reader = follow_with_logread(short_tmp, memlogd)
    writer = persist_with_logwrite(short_tmp, memlogd)
    load = Load(memlogd, 50, 1500)
    loads += [reader, writer, load]
    for upgrade in range(2):
        progress(memlogd, (upgrade + 1) * 20000)
        old = stats(memlogd.query_path)["pid"]
        os.kill(keeper, signal.SIGUSR2)
        wait_value(
            lambda: stats(memlogd.query_path),
            partial(upgraded, old, upgrade + 2),
            DEADLINE_S,
            "the upgraded worker",
        )
    results = load.wait()
    assert [code for code, _ in results] == [0] * len(results), results
    wait_value(
        lambda: stats(memlogd.query_path)["open_fds"], lambda n: n == 0, DEADLINE_S, "sources"
    )
    instance, entries = ring(memlogd.query_path)
    assert instance == before
    got = numbers_by_source(entries)
    for name in load.names:
        assert got[name] == list(range(load.lines)), name  # nothing missing, nothing twice
    assert len([e for e in entries if e["msg"].startswith("worker_upgraded")]) == 2
    check_clients(short_tmp, memlogd, entries)
    assert reader.stop(signal.SIGINT) == 130 and writer.stop() == 0
    assert reader.err.read_bytes() == b""  # no gap, no restart, no lost connection
    assert memlogd.proc is not None and memlogd.proc.pid == keeper  # the same process


def test_a_crash_loop_backs_off_and_a_good_worker_resumes(
    start_memlogd: StartMemlogd, short_tmp: Path, loads: list[Load | Background], monkeypatch: Any
) -> None:
    trap = short_tmp / "fail"
    monkeypatch.setenv("MEMLOGD_TEST_WORKER_FAILS_IF", str(trap))
    memlogd = start_memlogd("-max-lines", "200000")
    load = Load(memlogd, 10, 1500)
    loads.append(load)
    wait_value(lambda: stats(memlogd.query_path)["received"], lambda n: n > 500, DEADLINE_S, "load")
    trap.touch()
    kill_worker(memlogd)
    died = re.compile(r"worker_died .*status=\"?exit status 3\"? restart_in_s=([0-9.]+)")
    delays = wait_value(
        lambda: [float(d) for d in died.findall(memlogd.stderr())],
        lambda d: len(d) >= 4,
        DEADLINE_S,
        "four failed starts",
    )
    assert all(b == min(2 * a, 5.0) for a, b in itertools.pairwise(delays))  # doubling
    assert 0.1 <= delays[0] <= 0.2
    trap.unlink()
    results = load.wait()  # the writers waited (their buffers full): none broken
    assert [code for code, _ in results] == [0] * len(results), results
    wait_value(
        lambda: stats(memlogd.query_path)["open_fds"], lambda n: n == 0, DEADLINE_S, "sources"
    )
    _instance, entries = ring(memlogd.query_path)
    got = numbers_by_source(entries)
    for name in load.names:
        assert len(missing_runs(got[name], load.lines)) <= 1, name  # the one kill


def test_a_dead_keeper_takes_its_worker_and_memlogd_exec_carries_on(short_tmp: Path) -> None:
    first = MemlogdProcess(short_tmp)
    first.start()
    worker = stats(first.query_path)["pid"]
    release = short_tmp / "release"
    os.mkfifo(release)
    script = (
        "import sys\n"
        "print('before', flush=True)\n"
        "for line in open(sys.argv[1]):\n"
        "    print(line.strip(), flush=True)\n"
    )
    service = subprocess.Popen(
        [
            *python_m("memlogd.exec", "-socket", first.log_path, "-n", "svc", "--"),
            *(sys.executable, "-c", script, str(release)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with open(release, "w") as feed:
        wait_value(
            lambda: [e["msg"] for e in ring(first.query_path)[1] if e["source"] == "svc.out"],
            lambda m: m == ["before"],
            DEADLINE_S,
            "the service's first line",
        )
        assert first.proc is not None
        first.proc.kill()  # the keeper
        first.proc.wait(DEADLINE_S)
        wait_gone(worker)
        for i in range(3):
            feed.write(f"during outage {i}\n")
        feed.flush()
        assert service.stdout is not None
        assert [service.stdout.readline() for _ in range(4)] == [
            b"before\n",
            b"during outage 0\n",
            b"during outage 1\n",
            b"during outage 2\n",
        ]  # the console copy never waited
        second = MemlogdProcess(short_tmp)  # the same socket paths
        second.start()
        try:
            wait_value(
                lambda: [e["msg"] for e in ring(second.query_path)[1] if e["source"] == "svc.out"],
                lambda m: m == [f"during outage {i}" for i in range(3)],
                DEADLINE_S,
                "the lines kept during the outage",
            )
            feed.write("after\n")
        finally:
            pass
    try:
        assert service.wait(DEADLINE_S) == 0
        msgs = [e["msg"] for e in ring(second.query_path)[1] if e["source"].startswith("svc")]
        assert msgs[-2:] == ["after", "memlogd-exec: svc exited with status 0"]
        err = service.stderr.read().decode() if service.stderr else ""
        assert "memlogd_unavailable" in err and "memlogd_back" in err, err
        assert "Traceback" not in err
    finally:
        assert second.stop() == 0


def test_sources_that_end_or_are_refused_are_let_go(start_memlogd: StartMemlogd) -> None:
    """The keeper closes its copy of a source the worker ended or refused: nothing
    leaks under churn, and a refused writer sees its stream closed."""
    memlogd = start_memlogd("-max-sources", "5")
    keeper = stats(memlogd.query_path)["keeper_pid"]  # (its worker serves: all set up)
    baseline = len(os.listdir(f"/proc/{keeper}/fd"))
    from tests.helpers import new_source

    for round_ in range(20):
        writers = [new_source(memlogd.log_path, f"c{round_}.{i}") for i in range(10)]
        for w in writers:
            w.close()
    wait_value(
        lambda: len(os.listdir(f"/proc/{keeper}/fd")),
        lambda n: n == baseline,
        DEADLINE_S,
        "the keeper to let go of every source",
    )


def test_a_read_larger_than_a_small_ring_neither_kills_the_worker_nor_loses_the_newest(
    start_memlogd: StartMemlogd,
) -> None:
    """-max-lines 10 and a whole read of short lines: the journal (sized for
    the ring) takes the lines the ring keeps; the worker goes on."""
    memlogd = start_memlogd("-max-lines", "10", "-evict", "oldest")  # memlogd's own lines go
    ours = helpers.new_source(memlogd.log_path, "flood")
    ours.sendall(b"".join(b"%06d\n" % i for i in range(20000)))
    ours.close()
    want = [f"{i:06d}" for i in range(19990, 20000)]
    got = wait_value(
        lambda: helpers.messages(memlogd.query_path, "flood"),
        lambda m: m[-1:] == want[-1:],
        timeout=DEADLINE_S,
        what="the last line of the flood",
    )
    assert got == want
    values = stats(memlogd.query_path)
    assert (values["worker_starts"], values["received"] >= 20000) == (1, True)


# ---------------------------------------------------------------------- names (SPEC 18)


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")


def _found_by(*command: str) -> list[int]:
    """The pids a process finder prints (none when it finds none)."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S)
    return [int(word) for word in result.stdout.split()]


def test_processes_are_named_and_the_pid_file_names_the_keeper(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    """`pidof memlogd`, `pgrep -x memlogd` find the keeper (not the worker), as does
    the pid file; an upgrade keeps the names and reads as one; a clean exit
    removes the pid file."""
    pid_file = short_tmp / "memlogd.pid"
    memlogd = start_memlogd("-pid-file", str(pid_file))
    assert memlogd.proc is not None
    keeper = memlogd.proc.pid
    assert pid_file.read_text() == f"{keeper}\n"
    worker = stats(memlogd.query_path)["pid"]
    assert (_comm(keeper), _comm(worker)) == ("memlogd", "memlogd: worker")
    finders = [["pgrep", "-x", "memlogd"]]
    if os.path.exists("/usr/bin/pidof") or os.path.exists("/bin/pidof"):
        finders.append(["pidof", "memlogd"])
    for finder in finders:  # (other memlogds may run on this machine: ours is among them)
        found = _found_by(*finder)
        assert keeper in found and worker not in found, finder
    subprocess.run(["sh", "-c", f"kill -USR2 $(cat {pid_file})"], check=True, timeout=DEADLINE_S)
    wait_for(lambda: "worker_upgraded" in memlogd.stderr(), DEADLINE_S, "the upgrade")
    said = memlogd.stderr()
    assert "upgrade_handed_over readers=" in said and "shutdown_started" not in said
    new_worker = stats(memlogd.query_path)["pid"]
    assert (_comm(keeper), _comm(new_worker)) == ("memlogd", "memlogd: worker")
    for finder in finders:
        found = _found_by(*finder)
        assert keeper in found and new_worker not in found, finder
    assert memlogd.stop() == 0
    assert not pid_file.exists()


def test_an_unwritable_pid_file_is_an_error(short_tmp: Path) -> None:
    proc = MemlogdProcess(short_tmp, ["-pid-file", str(short_tmp / "no" / "such" / "m.pid")])
    with pytest.raises(AssertionError, match="did not become ready"):
        proc.start()
    assert f"memlogd: cannot write -pid-file {short_tmp}/no/such/m.pid: No such file" in (
        proc.stderr()
    )
    assert not os.path.exists(proc.log_path) and not os.path.exists(proc.query_path)


# ---------------------------------------------------------------------- hostile signals (SPEC 19)

HABITS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM, signal.SIGPIPE)


def reexecuting(pid: int) -> bool:
    """The keeper has become the program on disk (its arguments say so)."""
    try:
        return b"--keeper-state" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_signals_an_admin_sends_by_habit_do_not_end_memlogd(start_memlogd: StartMemlogd) -> None:
    memlogd = start_memlogd()
    assert memlogd.proc is not None
    keeper = memlogd.proc.pid
    worker = stats(memlogd.query_path)["pid"]
    for signum in HABITS:
        os.kill(keeper, signum)
    with helpers.new_source(memlogd.log_path, "after") as w:
        w.sendall(b"still here\n")
    wait_value(
        lambda: [e["msg"] for e in ring(memlogd.query_path)[1] if e["source"] == "after"],
        lambda m: m == ["still here"],
        DEADLINE_S,
        "the line",
    )
    values = stats(memlogd.query_path)
    assert (values["keeper_pid"], values["pid"], values["worker_starts"]) == (keeper, worker, 1)
    assert memlogd.proc.poll() is None


def pending(pid: int) -> set[int]:
    """The signals waiting for process ``pid`` (blocked meanwhile)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("ShdPnd:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 65) if mask >> (n - 1) & 1}
    return set()


def test_signals_during_an_upgrade_are_handled_or_ignored(start_memlogd: StartMemlogd) -> None:
    """HUP, USR1, ALRM, PIPE and a second USR2 while the keeper re-executes itself."""
    memlogd = start_memlogd()
    assert memlogd.proc is not None
    keeper = memlogd.proc.pid
    old = stats(memlogd.query_path)["pid"]
    os.kill(keeper, signal.SIGUSR2)
    wait_for(lambda: reexecuting(keeper), DEADLINE_S, "the keeper's re-execution")
    for signum in (*HABITS, signal.SIGUSR2):
        os.kill(keeper, signum)
    in_time = signal.SIGUSR2 in pending(keeper)  # else the new keeper ran already
    wait_value(
        lambda: stats(memlogd.query_path), partial(upgraded, old, 2), DEADLINE_S, "the upgrade"
    )
    assert memlogd.proc.poll() is None
    if in_time:  # it waited, and came while the old worker handed over: one upgrade at a time
        wait_for(lambda: "upgrade_ignored" in memlogd.stderr(), DEADLINE_S, "the second USR2")
        assert stats(memlogd.query_path)["worker_starts"] == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_during_an_upgrade_is_clean(start_memlogd: StartMemlogd, signum: int) -> None:
    memlogd = start_memlogd()
    assert memlogd.proc is not None
    keeper = memlogd.proc.pid
    assert stats(memlogd.query_path)["pid"] != keeper  # a worker serves: it may upgrade
    os.kill(keeper, signal.SIGUSR2)
    wait_for(lambda: reexecuting(keeper), DEADLINE_S, "the keeper's re-execution")
    os.kill(keeper, signum)
    assert memlogd.proc.wait(DEADLINE_S) == 0
    assert not os.path.exists(memlogd.log_path) and not os.path.exists(memlogd.query_path)


# ---------------------------------------------------------------------- a worker that cannot start


def journal_fd_path(keeper: int) -> Path:
    for fd in Path(f"/proc/{keeper}/fd").iterdir():
        with contextlib.suppress(OSError):
            if "memlogd-journal" in os.readlink(fd):
                return fd
    raise AssertionError("the keeper holds no journal")


def test_a_worker_that_cannot_start_says_why(
    start_memlogd: StartMemlogd, short_tmp: Path, monkeypatch: Any
) -> None:
    trap = short_tmp / "fail"
    monkeypatch.setenv("MEMLOGD_TEST_WORKER_FAILS_IF", str(trap))
    memlogd = start_memlogd()
    worker = stats(memlogd.query_path)["pid"]  # the first worker serves
    trap.write_bytes(b"raise")
    os.kill(worker, signal.SIGKILL)
    died = 'worker_died level=warning pid=\\d+ status="exit status 70"'
    wait_for(lambda: re.search(died, memlogd.stderr()), DEADLINE_S, "the failed start")
    err = memlogd.stderr()
    assert "memlogd: worker_failed: the worker could not go on:\nTraceback" in err
    assert "RuntimeError: MEMLOGD_TEST_WORKER_FAILS_IF says so\n" in err
    trap.unlink()
    wait_for(lambda: (serving(memlogd) or {}).get("worker_starts", 0) >= 3, DEADLINE_S, "a worker")


def serving(memlogd: MemlogdProcess) -> dict[str, Any] | None:
    """Stats, or None while no worker answers."""
    try:
        return stats(memlogd.query_path)
    except OSError:
        return None


def test_a_journal_that_cannot_be_read_is_set_aside_for_a_fresh_ring(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    """SPEC 19: a damaged journal was a crash loop that ended all logging."""
    state_dir = short_tmp / "state"
    memlogd = start_memlogd("-state-dir", str(state_dir))
    assert memlogd.proc is not None
    with helpers.new_source(memlogd.log_path, "before") as w:
        w.sendall(b"in the old ring\n")
    old, _ = wait_value(
        lambda: ring(memlogd.query_path),
        lambda r: any(e["source"] == "before" for e in r[1]),
        DEADLINE_S,
        "the line",
    )
    with open(journal_fd_path(memlogd.proc.pid), "r+b") as journal:
        journal.write(b"\xde\xad" * 2048)  # the header and its commit slots
        size = os.fstat(journal.fileno()).st_size
    wait_gone(kill_worker(memlogd))
    instance, entries = wait_value(
        lambda: ring(memlogd.query_path), lambda r: r[0] != old, DEADLINE_S, "a fresh ring"
    )
    assert not any(e["source"] == "before" for e in entries)
    assert stats(memlogd.query_path)["worker_starts"] == 2
    assert "journal_set_aside" in memlogd.stderr()
    kept = state_dir / "journal.damaged"
    assert kept.stat().st_size == size and kept.stat().st_mode & 0o777 == 0o600
    assert kept.read_bytes()[:4096] == b"\xde\xad" * 2048
    with helpers.new_source(memlogd.log_path, "after") as w:
        w.sendall(b"in the new ring\n")
    wait_value(
        lambda: [e["msg"] for e in ring(memlogd.query_path)[1] if e["source"] == "after"],
        lambda m: m == ["in the new ring"],
        DEADLINE_S,
        "the new line",
    )
    wait_gone(kill_worker(memlogd))  # the fresh journal is a good one: no second set-aside
    wait_value(lambda: ring(memlogd.query_path)[0], lambda i: i == instance, DEADLINE_S, "same")
    assert memlogd.stderr().count("journal_set_aside") == 1
