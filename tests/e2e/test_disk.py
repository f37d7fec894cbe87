"""SPEC 17, end to end: the disk comes late, goes read-only, or is mounted over;
no glued lines; a restart right after a keeper crash.

The mounts are real (tmpfs, as root); a test is skipped, with the reason, where
the machine refuses them, and every mount is undone at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import StartMemlogd
from tests.e2e.test_logwrite import FAKE_UPSTREAM, Logwrite, messages
from tests.e2e.test_memlogd import pids_with_argument
from tests.helpers import MemlogdProcess, dump, new_source, python_m, stats, wait_for, wait_value
from tests.helpers import messages as held

pytestmark = pytest.mark.e2e

DEADLINE_S = 20.0
SERVE_WITHIN_S = 5.0  # SPEC 17: a new memlogd on a dead keeper's paths serves within this
LIVE_CHECK_S = 5.0  # SPEC 17: how long paths held but unanswered are checked


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)


def mount_tmpfs(path: Path, *options: str) -> None:
    """A tmpfs over ``path`` (skips the test where mounting is refused)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    opts = ["-o", ",".join(options)] if options else []
    done = _run("mount", "-t", "tmpfs", *opts, "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def unmount(path: Path) -> bool:
    """Unmount ``path`` now (no lazy unmount): False while something holds it (EBUSY)."""
    return _run("umount", str(path)).returncode == 0


@contextlib.contextmanager
def mounts_undone(path: Path) -> Iterator[None]:
    """Whatever happens, nothing stays mounted on ``path`` (lazily at the end)."""
    try:
        yield
    finally:
        while os.path.ismount(path):
            if _run("umount", "-l", str(path)).returncode != 0:
                break


def only_lines(directory: Path, stem: str) -> list[str]:
    return messages(directory / f"{stem}.log")


# --------------------------------------------------------------------- a mount over DIR


def test_logwrite_follows_a_disk_mounted_over_its_dir_and_back(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    logs = short_tmp / "logs"
    logs.mkdir()
    lw = Logwrite(short_tmp, memlogd.query_path, logs).start()
    try:
        src = new_source(memlogd.log_path, "s")
        src.sendall(b"one\n")
        wait_for(lambda: only_lines(logs, "s") == ["one"], what="one in the first dir")
        with mounts_undone(logs):
            mount_tmpfs(logs)  # the log disk appears over the directory
            src.sendall(b"two\n")
            wait_for(
                lambda: only_lines(logs, "s") == ["one", "two"],
                DEADLINE_S,
                "what the ring holds, on the new disk",
            )
            assert lw.events("log_dir_changed")
            src.sendall(b"three\n")
            wait_for(lambda: only_lines(logs, "s") == ["one", "two", "three"], DEADLINE_S, "three")
            assert (logs / "logwrite.cursor").exists()
            # the disk goes (lazily: logwrite holds it); the directory under it
            # gets what it lacks, from its own cursor, and nothing twice
            assert _run("umount", "-l", str(logs)).returncode == 0
        src.sendall(b"four\n")
        wait_for(
            lambda: only_lines(logs, "s") == ["one", "two", "three", "four"],
            DEADLINE_S,
            "the first dir made whole again",
        )
        assert lw.stop() == 0
        assert only_lines(logs, "s") == ["one", "two", "three", "four"]
    finally:
        with contextlib.suppress(AssertionError):
            lw.stop(signal.SIGKILL)


def test_the_persist_role_follows_a_disk_mounted_over_its_dir(
    start_memlogd: StartMemlogd, short_tmp: Path
) -> None:
    logs = short_tmp / "logs"
    logs.mkdir()
    memlogd = start_memlogd("-persist-dir", str(logs))
    src = new_source(memlogd.log_path, "s")
    src.sendall(b"one\n")
    wait_for(lambda: only_lines(logs, "s") == ["one"], DEADLINE_S, "one in the first dir")
    with mounts_undone(logs):
        mount_tmpfs(logs)
        src.sendall(b"two\n")
        wait_for(
            lambda: only_lines(logs, "s") == ["one", "two"],
            DEADLINE_S,
            "what the ring holds, on the new disk",
        )
        assert "log_dir_changed" in memlogd.stderr()
        assert memlogd.stop() == 0  # lets go of the disk: it unmounts as it is
        assert unmount(logs)
    assert only_lines(logs, "s")[:1] == ["one"]  # the hidden dir: "two" too, if it was quick


# --------------------------------------------------------------------- read-only, then writable


def test_a_read_only_disk_is_let_go_then_replaced_by_a_writable_one(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    logs = short_tmp / "logs"
    logs.mkdir()
    lw = Logwrite(short_tmp, memlogd.query_path, logs).start()
    try:
        src = new_source(memlogd.log_path, "s")
        src.sendall(b"one\n")
        wait_for(lambda: only_lines(logs, "s") == ["one"], what="one")
        with mounts_undone(logs):
            mount_tmpfs(logs, "ro")  # the disk comes read-only first
            src.sendall(b"two\n")
            wait_value(
                lambda: [e["kind"] for e in lw.events("log_dir_unavailable")],
                lambda kinds: "EROFS" in kinds,
                DEADLINE_S,
                "EROFS",
            )
            # logwrite holds no fd in it: the administrator can unmount it
            # (tried again for a moment: logwrite looks at it twice a second)
            wait_for(lambda: unmount(logs), DEADLINE_S, "the read-only disk unmounted")
            wait_for(
                lambda: only_lines(logs, "s") == ["one", "two"],
                DEADLINE_S,
                "two in the directory the disk had hidden",
            )
            mount_tmpfs(logs)  # then mounted read-write
            wait_for(
                lambda: only_lines(logs, "s") == ["one", "two"],
                DEADLINE_S,
                "the ring on the writable disk",
            )
            src.sendall(b"three\n")
            wait_for(lambda: only_lines(logs, "s") == ["one", "two", "three"], DEADLINE_S, "3")
            assert lw.stop() == 0
            assert only_lines(logs, "s") == ["one", "two", "three"]
            assert unmount(logs)
    finally:
        with contextlib.suppress(AssertionError):
            lw.stop(signal.SIGKILL)


# --------------------------------------------------------------------- one persister per DIR


def test_a_second_logwrite_on_the_same_dir_waits_with_a_warning(
    memlogd: MemlogdProcess, short_tmp: Path
) -> None:
    logs = short_tmp / "logs"
    first = Logwrite(short_tmp, memlogd.query_path, logs).start()
    second = Logwrite(short_tmp, memlogd.query_path, logs)
    try:
        src = new_source(memlogd.log_path, "s")
        src.sendall(b"one\n")
        wait_for(lambda: only_lines(logs, "s") == ["one"], what="one")
        second.start()
        warning = second.wait_event("log_dir_locked")[0]
        assert warning["dir"] == str(logs)
        assert not second.events("connected")  # it waits before asking memlogd anything
        assert first.stop() == 0
        src.sendall(b"two\n")
        wait_for(lambda: only_lines(logs, "s") == ["one", "two"], DEADLINE_S, "two, by the second")
        assert second.stop() == 0
        assert only_lines(logs, "s") == ["one", "two"]
    finally:
        for lw in (first, second):
            with contextlib.suppress(AssertionError):
                lw.stop(signal.SIGKILL)


def test_a_role_state_file_has_one_owner(start_memlogd: StartMemlogd, short_tmp: Path) -> None:
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here")
    state = short_tmp / "state"
    state.mkdir()
    fd = os.open(state / "kmsg.state.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as an orphaned worker's kmsg role would
        memlogd = start_memlogd("-kmsg", "-state-dir", str(state))
        wait_for(lambda: "state_file_locked" in memlogd.stderr(), DEADLINE_S, "the warning")
        assert not held(memlogd.query_path, "kmsg")
    finally:
        os.close(fd)
    wait_for(lambda: held(memlogd.query_path, "kmsg"), DEADLINE_S, "the kernel log, once free")


# --------------------------------------------------------------------- no glued lines


def run_exec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_m("memlogd.exec", *args), capture_output=True, text=True, timeout=DEADLINE_S
    )


def exec_then_kill_memlogd(proc: MemlogdProcess, name: str, script: str) -> subprocess.Popen[str]:
    """memlogd-exec running ``script``, which says ``before`` first: once memlogd
    holds that line, memlogd is killed (SIGKILL) and the child returned."""
    child = subprocess.Popen(
        python_m("memlogd.exec", "-socket", proc.log_path, "-n", name, "--", "sh", "-c", script),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_value(lambda: held(proc.query_path, f"{name}.out"), lambda m: m == ["before"])
        assert proc.proc is not None
        proc.proc.kill()
        assert proc.proc.wait(DEADLINE_S) == -signal.SIGKILL
    except BaseException:
        child.kill()
        raise
    return child


def test_the_end_of_service_line_is_an_entry_of_its_own(memlogd: MemlogdProcess) -> None:
    result = run_exec("-socket", memlogd.log_path, "-n", "tee", "--", "sh", "-c", "printf err2 >&2")
    assert (result.returncode, result.stderr) == (0, "err2")
    assert wait_value(lambda: held(memlogd.query_path, "tee"), lambda m: len(m) >= 2) == [
        "err2",
        "memlogd-exec: tee exited with status 0",
    ]


def test_the_end_of_service_line_is_its_own_after_an_outage_too(short_tmp: Path) -> None:
    first = MemlogdProcess(short_tmp, ["-no-keeper"])
    first.start()
    # two gates: a second read of one FIFO could open it while the first
    # writer still holds it, and end at its close (the command ending early)
    gate, gate2 = short_tmp / "gate", short_tmp / "gate2"
    os.mkfifo(gate)
    os.mkfifo(gate2)
    script = f"echo before; read x < {gate}; printf err2 >&2; read x < {gate2}"
    child = exec_then_kill_memlogd(first, "tee", script)
    second = MemlogdProcess(short_tmp)
    try:
        with open(gate, "w") as g:
            g.write("go\n")  # "err2", without a newline, while no memlogd runs
        second.start()
        wait_value(
            lambda: stats(second.query_path)["sources"].get("tee", {}).get("open"),
            lambda n: n == 1,
            DEADLINE_S,
            "the stream registered again",
        )
        with open(gate2, "w") as g:
            g.write("go\n")
        assert child.wait(DEADLINE_S) == 0
        assert wait_value(lambda: held(second.query_path, "tee"), lambda m: len(m) >= 2) == [
            "err2",
            "memlogd-exec: tee exited with status 0",
        ]
    finally:
        child.kill()
        assert second.stop() == 0


# --------------------------------------------------------------------- a restart after a crash


def _serving(memlogd: MemlogdProcess, keeper: int) -> None:
    """``memlogd`` serves, with its own keeper (not the dead one's worker)."""
    values = stats(memlogd.query_path)
    assert memlogd.proc is not None
    assert values["keeper_pid"] == memlogd.proc.pid != keeper
    assert dump(memlogd.query_path)[0]["msg"].startswith("memlogd started")
    with new_source(memlogd.log_path, "after") as w:
        w.sendall(b"served\n")
    assert wait_value(lambda: held(memlogd.query_path, "after"), bool) == ["served"]


@pytest.mark.parametrize("attempt", range(3))
def test_a_new_memlogd_serves_at_once_after_its_keeper_is_killed(
    short_tmp: Path, attempt: int
) -> None:
    first = MemlogdProcess(short_tmp)
    first.start()
    assert first.proc is not None
    keeper, worker = first.proc.pid, stats(first.query_path)["pid"]
    second = MemlogdProcess(short_tmp)  # the same paths: a supervisor restarting it
    try:
        os.kill(keeper, signal.SIGKILL)  # not reaped yet: a zombie, as under a busy init
        second.start(timeout=SERVE_WITHIN_S)
        _serving(second, keeper)
    finally:
        first.proc.wait(DEADLINE_S)
        wait_for(lambda: not Path(f"/proc/{worker}").exists(), DEADLINE_S, "the orphan's end")
        assert second.stop() == 0


@pytest.mark.parametrize("stopped_s", [0.5, None])
def test_a_new_memlogd_serves_while_the_orphaned_worker_is_stopped(
    short_tmp: Path, stopped_s: float | None
) -> None:
    """The orphan stopped (SIGSTOP) before it could close its socket: for half a
    second, or until the new memlogd has taken the paths over (after its 5 s check)."""
    first = MemlogdProcess(short_tmp)
    first.start()
    assert first.proc is not None
    keeper, worker = first.proc.pid, stats(first.query_path)["pid"]
    second = MemlogdProcess(short_tmp)
    os.kill(worker, signal.SIGSTOP)
    try:
        os.kill(keeper, signal.SIGKILL)
        first.proc.wait(DEADLINE_S)
        if stopped_s is None:
            second.start(timeout=LIVE_CHECK_S + SERVE_WITHIN_S)
            assert Path(f"/proc/{worker}").exists()  # still there, stopped: taken over
        else:
            r, w = os.pipe()
            try:
                # started while the orphan is stopped; it goes on after half a second
                with open(second.stderr_path, "ab") as err:
                    second.proc = subprocess.Popen(
                        second.command(w), pass_fds=(w,), stderr=err, stdin=subprocess.DEVNULL
                    )
                os.close(w)
                w = -1
                ready = wait_ready(r, stopped_s)
                os.kill(worker, signal.SIGCONT)
                assert ready or wait_ready(r, SERVE_WITHIN_S - stopped_s), second.stderr()
            finally:
                os.close(r)
                if w >= 0:
                    os.close(w)
        os.kill(worker, signal.SIGCONT)
        wait_for(lambda: not Path(f"/proc/{worker}").exists(), DEADLINE_S, "the orphan's end")
        _serving(second, keeper)  # the orphan's end took nothing of the new one
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGCONT)
        assert second.stop() == 0


def wait_ready(fd: int, timeout: float) -> bool:
    """Did memlogd write its --ready-fd line within ``timeout``?"""
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 1) == b"\n"


# --------------------------------------------------------------------- still refuses a live one


def _second_on(query_path: str, log_path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_m("memlogd", "-socket-log", log_path, "-socket-query", query_path, *extra),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


@pytest.mark.parametrize("behaviour", ["closes", "silent"])
def test_an_upstream_memlogd_is_still_refused(short_tmp: Path, behaviour: str) -> None:
    path = str(short_tmp / "up.sock")
    upstream = subprocess.Popen(
        [sys.executable, "-c", FAKE_UPSTREAM, path, behaviour], stdout=subprocess.PIPE, text=True
    )
    try:
        assert upstream.stdout is not None and upstream.stdout.readline() == "ready\n"
        second = _second_on(path, str(short_tmp / "l.sock"), "--no-console")
        assert (second.returncode, second.stderr) == (
            1,
            f"memlogd: a memlogd is already serving at {path}\n",
        )
        assert upstream.poll() is None
    finally:
        upstream.kill()
        upstream.wait()


def test_a_daemonized_memlogd_is_still_refused(short_tmp: Path) -> None:
    log_path, query_path = str(short_tmp / "l.sock"), str(short_tmp / "q.sock")
    err_path = short_tmp / "daemon.stderr"
    try:
        with open(err_path, "wb") as err:  # the daemon keeps its stderr: not a pipe to wait on
            started = subprocess.run(
                python_m(
                    "memlogd",
                    "-daemonize",
                    *("-socket-log", log_path, "-socket-query", query_path),
                    "--no-console",
                ),
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=DEADLINE_S,
            )
        assert started.returncode == 0, err_path.read_text()
        again = _second_on(query_path, str(short_tmp / "l2.sock"), "--no-console")
        assert (again.returncode, again.stderr) == (
            1,
            f"memlogd: a memlogd is already serving at {query_path}\n",
        )
        assert dump(query_path)[0]["msg"].startswith("memlogd started")
    finally:
        for stray in pids_with_argument(log_path):
            os.kill(stray, signal.SIGKILL)
