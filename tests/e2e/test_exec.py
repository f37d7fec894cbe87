"""memlogd-exec as a real subprocess against a real memlogd (docs/memlogd.md, "memlogd-exec")."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from memlogd import client
from memlogd.errors import ConnectError
from memlogd.exec import BACKLOG_BYTES
from tests.conftest import StartMemlogd
from tests.helpers import (
    MemlogdProcess,
    messages,
    new_source,
    python_m,
    query_raw,
    wait_for,
    wait_value,
)

pytestmark = pytest.mark.e2e


def run_exec(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_m("memlogd.exec", *args), capture_output=True, text=True, timeout=timeout
    )


def test_tees_output_and_passes_exit_status(memlogd: MemlogdProcess) -> None:
    result = run_exec(
        "-socket",
        memlogd.log_path,
        "-n",
        "demo",
        "--",
        "sh",
        "-c",
        "echo hi; echo err >&2; echo two; exit 3",
    )
    assert result.returncode == 3
    assert result.stdout == "hi\ntwo\n"
    assert result.stderr.endswith("err\n")
    assert wait_value(lambda: messages(memlogd.query_path, "demo.out"), lambda m: len(m) >= 2) == [
        "hi",
        "two",
    ]
    assert wait_value(lambda: messages(memlogd.query_path, "demo"), lambda m: len(m) >= 2) == [
        "err",
        "memlogd-exec: demo exited with status 3",
    ]


def test_upstream_client_mode_2_sees_the_lines(memlogd: MemlogdProcess) -> None:
    """The issue's acceptance scenario, read with the raw protocol as upstream clients do."""
    run_exec("-socket", memlogd.log_path, "-n", "demo", "--", "sh", "-c", "echo hi; echo err >&2")
    wait_value(lambda: messages(memlogd.query_path, "demo"), lambda m: len(m) == 2)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(memlogd.query_path)
    sock.settimeout(10)
    sock.sendall(b"\x02")
    data = b""
    while data.count(b"\n") < 5:
        data += sock.recv(65536)
    sock.close()
    entries = [json.loads(line) for line in data.splitlines()]
    by_source = {(e["source"], e["msg"]) for e in entries}
    assert {("demo.out", "hi"), ("demo", "err")} <= by_source
    assert all(list(e) == ["time", "source", "msg"] for e in entries)


def test_default_name_is_the_command(memlogd: MemlogdProcess) -> None:
    result = run_exec("-socket", memlogd.log_path, "--", "echo", "named")
    assert result.returncode == 0
    assert wait_value(lambda: messages(memlogd.query_path, "echo.out"), bool) == ["named"]


def test_killed_command_exits_128_plus_signal(memlogd: MemlogdProcess) -> None:
    result = run_exec("-socket", memlogd.log_path, "-n", "k", "--", "sh", "-c", "kill -TERM $$")
    assert result.returncode == 128 + signal.SIGTERM
    # how the service ended is in its own source
    assert wait_value(lambda: messages(memlogd.query_path, "k"), bool) == [
        "memlogd-exec: k killed by SIGTERM"
    ]


def test_one_dash_long_flags_are_not_split(memlogd: MemlogdProcess) -> None:
    """`-name x` is the name x (click alone read it as `-n ame`)."""
    result = run_exec("-socket", memlogd.log_path, "-name", "x", "--", "true")
    assert result.returncode == 0
    assert wait_value(lambda: messages(memlogd.query_path, "x"), bool) == [
        "memlogd-exec: x exited with status 0"
    ]
    assert run_exec("-nam", "x", "--", "true").returncode == 2


def test_every_long_flag_means_the_same_with_one_dash() -> None:
    from memlogd.exec import main
    from tests.oneflags import one_dash_mismatches

    assert one_dash_mismatches(main) == []


def test_a_command_after_the_name_keeps_its_own_flags(memlogd: MemlogdProcess) -> None:
    result = run_exec("-socket", memlogd.log_path, "-n", "sh", "sh", "-c", "echo -c is for sh")
    assert result.returncode == 0 and result.stdout == "-c is for sh\n"


def test_a_refused_source_is_told_apart_from_a_dead_memlogd(
    start_memlogd: StartMemlogd,
) -> None:
    memlogd = start_memlogd("-max-sources", "2")
    held = [new_source(memlogd.log_path, f"h{i}") for i in range(2)]  # every slot taken
    child = subprocess.Popen(
        [
            *python_m("memlogd.exec", "-socket", memlogd.log_path, "-n", "late", "--"),
            *("sh", "-c", "echo hello; read x"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stderr is not None and child.stdin is not None
    line = child.stderr.readline().decode()
    assert line.startswith("memlogd-exec: source_refused level=warning source=late")
    assert "over its -max-sources?" in line and "retry_in_s=2.0" in line
    _out, rest_bytes = child.communicate(b"go\n", timeout=20)
    assert child.returncode == 0
    rest = rest_bytes.decode()
    assert "memlogd_unavailable" not in rest and "memlogd_gone" not in rest
    for w in held:
        w.close()


def test_cannot_run_is_in_the_services_source(memlogd: MemlogdProcess) -> None:
    result = run_exec("-socket", memlogd.log_path, "-n", "ghost", "--", "/nonexistent/cmd")
    assert result.returncode == 127
    assert wait_value(lambda: messages(memlogd.query_path, "ghost"), bool) == [
        "memlogd-exec: cannot run /nonexistent/cmd: No such file or directory"
    ]


def test_without_memlogd_warns_and_still_runs(short_tmp: Path) -> None:
    missing = str(short_tmp / "nobody.sock")
    result = run_exec("-socket", missing, "-n", "x", "--", "sh", "-c", "echo out; exit 4")
    assert result.returncode == 4
    assert result.stdout == "out\n"
    assert "memlogd_unavailable" in result.stderr
    assert missing in result.stderr


def _exec_then_kill_memlogd(
    proc: MemlogdProcess, name: str, script: str, stdout: int | IO[bytes]
) -> subprocess.Popen[str]:
    """memlogd-exec running ``script``, which says ``before`` first: once memlogd
    holds that line, memlogd is killed (SIGKILL) and the child returned."""
    child = subprocess.Popen(
        python_m("memlogd.exec", "-socket", proc.log_path, "-n", name, "--", "sh", "-c", script),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_value(lambda: messages(proc.query_path, f"{name}.out"), lambda m: m == ["before"])
        assert proc.proc is not None
        proc.proc.kill()
        assert proc.proc.wait(10) == -signal.SIGKILL
    except BaseException:
        child.kill()
        raise
    return child


def test_memlogd_going_away_does_not_hurt_the_command(short_tmp: Path) -> None:
    proc = MemlogdProcess(short_tmp)
    proc.start()
    gate = short_tmp / "gate"
    os.mkfifo(gate)
    script = (
        f"echo before; read x < {gate}; i=0; while [ $i -lt 2000 ]; do echo line $i; "
        "i=$((i+1)); done; echo after"
    )
    child = _exec_then_kill_memlogd(proc, "gone", script, subprocess.PIPE)
    try:
        with open(gate, "w") as g:
            g.write("go\n")
        out, err = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode == 0  # no SIGPIPE reached the command
    assert out.splitlines() == ["before", *(f"line {i}" for i in range(2000)), "after"]
    assert "Traceback" not in err


def test_output_while_memlogd_is_away_is_kept_up_to_a_mebibyte_then_counted(
    short_tmp: Path,
) -> None:
    """SPEC 7: what the command writes while no memlogd runs goes to the next one,
    whole lines up to 1 MiB, then one line counting the bytes that did not fit."""
    first = MemlogdProcess(short_tmp, ["-no-keeper"])  # killed, nothing of it reads on
    first.start()
    gate, gate2 = short_tmp / "gate", short_tmp / "gate2"  # two: see test_disk's
    os.mkfifo(gate)
    os.mkfifo(gate2)
    lines = 15_000  # 100 bytes each: 1.5 MB, more than the backlog holds
    written = [f"line {i} {0:088d}" for i in range(10_000, 10_000 + lines)]
    burst = short_tmp / "burst"
    burst.write_text("".join(line + "\n" for line in written))  # cat's reads split lines
    script = f"echo before; read x < {gate}; cat {burst}; read x < {gate2}; echo after"
    tee = short_tmp / "tee"  # memlogd-exec's own copy of the output: what it has taken
    with open(tee, "wb") as out:
        child = _exec_then_kill_memlogd(first, "away", script, out)
    try:
        with open(gate, "w") as g:
            g.write("go\n")  # the 1.5 MB while no memlogd runs
        size = len(b"before\n") + burst.stat().st_size
        wait_value(lambda: tee.stat().st_size, lambda n: n == size, what="the burst taken")
        assert child.stderr is not None  # the outage noticed before the next memlogd comes
        ready, _, _ = select.select([child.stderr], [], [], 20)
        assert ready and "memlogd_unavailable" in child.stderr.readline()
        second = MemlogdProcess(short_tmp, ["-max-lines", "20000"])
        second.start()
        try:
            kept = BACKLOG_BYTES // 100  # whole lines of 100 bytes (newline included)
            lost = (
                f"memlogd-exec: {(lines - kept) * 100} bytes of output were lost "
                "while memlogd was away"
            )
            got = wait_value(
                lambda: messages(second.query_path, "away.out"),
                lambda m: len(m) >= kept + 1,
                what="the kept output in the new memlogd",
            )
            assert got == [*written[:kept], lost]
            with open(gate2, "w") as g:
                g.write("go\n")
            assert child.wait(20) == 0  # the command never noticed
            wait_value(
                lambda: messages(second.query_path, "away.out")[-1:], lambda m: m == ["after"]
            )
        finally:
            assert second.stop() == 0
    finally:
        child.kill()
    err = child.stderr.read() if child.stderr else ""
    assert "Traceback" not in err
    # the lines resent carry the time memlogd received them: they are counted
    assert (
        "memlogd-exec: memlogd_back source=away.out "
        f"resending_bytes={kept * 100} resending_lines={kept}\n"
    ) in err


def test_missing_command_exits_127(memlogd: MemlogdProcess) -> None:
    result = run_exec("-socket", memlogd.log_path, "--", "/nonexistent/cmd")
    assert result.returncode == 127
    assert result.stderr.strip().endswith(
        "memlogd-exec: cannot run /nonexistent/cmd: No such file or directory"
    )


def test_python_api_open_log_stream(memlogd: MemlogdProcess) -> None:
    with client.open_log_stream(memlogd.log_path, "api") as stream:
        stream.sendall(b"from the api\n")
    assert wait_value(lambda: messages(memlogd.query_path, "api"), bool) == ["from the api"]
    raw = query_raw(memlogd.query_path, b"\x00")
    assert b'"source":"api","msg":"from the api"}\n' in raw


def test_python_api_send_fds_error_names_the_path(short_tmp: Path) -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(ConnectError) as info:
            client.send_fds(str(short_tmp / "none.sock"), "x", [r])
    finally:
        os.close(r)
        os.close(w)
    assert str(info.value) == (
        f"cannot connect to memlogd at {short_tmp / 'none.sock'}: "
        "no such socket (is memlogd running?)"
    )


# ---------------------------------------------------------------------- SPEC 18


@pytest.mark.parametrize("kind", ["query socket", "file", "directory"])
def test_a_path_that_is_not_a_log_socket_is_an_error(
    memlogd: MemlogdProcess, short_tmp: Path, kind: str
) -> None:
    """Nothing could ever take the output: said at once, and CMD is not run."""
    ran = short_tmp / "ran"
    if kind == "query socket":
        path = memlogd.query_path
        reason = "that is memlogd's query socket, not its log socket"
    else:
        path = str(short_tmp / kind)
        if kind == "file":
            Path(path).write_text("")
        else:
            os.mkdir(path)
        reason = f"{path} is a {kind}, not a socket"
    result = run_exec("-socket", path, "-n", "x", "--", "touch", str(ran))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '-socket': {reason}"
    assert "kept" not in result.stderr
    assert not ran.exists()


def test_output_never_delivered_is_counted_at_exit(short_tmp: Path) -> None:
    missing = str(short_tmp / "nobody.sock")
    result = run_exec("-socket", missing, "-n", "x", "--", "sh", "-c", "echo out; echo err >&2")
    assert result.returncode == 0
    end = "memlogd-exec: x exited with status 0\n"
    assert result.stderr.splitlines()[-1] == (
        f"memlogd-exec: {4 + 4 + len(end)} bytes of output (x.out 4, x {4 + len(end)}) "
        f"could not be delivered to memlogd at {missing}"
    )


def test_a_memlogd_started_while_it_ends_still_gets_the_output(short_tmp: Path) -> None:
    """At the end, memlogd-exec waits a moment (EXIT_WAIT_S) for a memlogd that
    is restarting: a memlogd whose socket is bound by then gets everything."""
    proc = MemlogdProcess(short_tmp)
    gate = short_tmp / "gate"
    os.mkfifo(gate)
    child = subprocess.Popen(
        python_m(
            "memlogd.exec",
            "-socket",
            proc.log_path,
            "-n",
            "late",
            "--",
            "sh",
            "-c",
            f"echo early; read x < {gate}",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "early\n"  # taken, and kept: no memlogd yet
        with open(gate, "w") as g:
            g.write("go\n")  # the command ends; memlogd-exec waits for a memlogd
        proc.start()
        assert child.wait(20) == 0
        assert wait_value(lambda: messages(proc.query_path, "late.out"), bool) == ["early"]
        assert wait_value(lambda: messages(proc.query_path, "late"), bool) == [
            "memlogd-exec: late exited with status 0"
        ]
        err = child.stderr.read() if child.stderr else ""
        assert "could not be delivered" not in err
    finally:
        child.kill()
        proc.stop()


def _gone(pid: int) -> bool:
    """Ended (a zombie no reaper collected counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_exits_when_the_command_does_not_waiting_for_its_background_children(
    memlogd: MemlogdProcess,
) -> None:
    result = run_exec(
        "-socket",
        memlogd.log_path,
        "-n",
        "bg",
        "--",
        "sh",
        "-c",
        "sleep 60 & echo $!; echo started; echo err >&2",
    )  # (before: 60 s, past run_exec's timeout)
    pid = int(result.stdout.splitlines()[0])
    try:
        assert result.returncode == 0
        assert result.stdout.splitlines()[1:] == ["started"]
        assert result.stderr == "err\n"
        assert wait_value(
            lambda: messages(memlogd.query_path, "bg.out"), lambda m: len(m) == 2
        ) == [str(pid), "started"]
        assert wait_value(lambda: messages(memlogd.query_path, "bg"), lambda m: len(m) == 2) == [
            "err",
            "memlogd-exec: bg exited with status 0",
        ]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_reach_the_commands_process_group(
    memlogd: MemlogdProcess, signum: signal.Signals
) -> None:
    """A grandchild (sh's foreground child here) gets the signal too (before, only
    CMD did, and memlogd-exec waited for the grandchild that held the pipes)."""
    child = subprocess.Popen(
        python_m(
            "memlogd.exec",
            "-socket",
            memlogd.log_path,
            "-n",
            "grp",
            "--",
            "sh",
            "-c",
            'sh -c "echo \\$\\$; exec sleep 60"; echo not reached',
        ),
        stdin=subprocess.DEVNULL,  # (on a terminal, CMD stays in the foreground group)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    pid = int(child.stdout.readline())
    try:
        child.send_signal(signum)
        assert child.wait(20) == 128 + signum
        wait_for(lambda: _gone(pid), what=f"the background sleep ({pid}) ended by {signum.name}")
    finally:
        child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# A log socket that keeps memlogd-exec's two streams (in DIR/NAME) until both
# end, as MODE says: "slow" takes 16 KiB a stream every 0.1 s (the load's
# shape, not a synchronisation); "late" takes nothing until told (a line on
# stdin); "busy" takes no datagram until told (the test fills its queue first).
FAKE_MEMLOGD = r"""
import os, select, socket, sys, time
mode, path, out = sys.argv[1:4]
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind(path)
print("ready", flush=True)
if mode == "busy":
    sys.stdin.readline()
streams = {}
while len(streams) < 2:
    name, fds, _flags, _addr = socket.recv_fds(server, 1024, 4)
    if fds:
        streams[fds[0]] = open(os.path.join(out, name.decode()), "wb")
if mode == "late":
    sys.stdin.readline()
while streams:
    ready, _, _ = select.select(list(streams), [], [])
    for fd in ready:
        data = os.read(fd, 16384 if mode == "slow" else 65536)
        if data:
            streams[fd].write(data)
        else:
            streams.pop(fd).close()
            os.close(fd)
    if mode == "slow":
        time.sleep(0.1)
"""


@contextlib.contextmanager
def fake_memlogd(mode: str, tmp: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """FAKE_MEMLOGD in ``mode`` at TMP/log.sock: the process, the path, and
    the directory its streams go to."""
    path, out = str(tmp / "log.sock"), tmp / "got"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_MEMLOGD, mode, path, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc, path, out
    finally:
        proc.kill()
        proc.wait()


def tell(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def test_a_slow_memlogd_gets_everything_after_the_command_ended(short_tmp: Path) -> None:
    """At the end memlogd-exec waits for memlogd as long as memlogd takes some
    output within each EXIT_WAIT_S: a memlogd busy for longer (a worker upgraded
    under load) still gets every line (it was given up after 2 s in all)."""
    with fake_memlogd("slow", short_tmp) as (slow, path, out):
        # 600 KiB at once: the stream's buffer takes part of it, the rest waits in
        # memlogd-exec; taken at 160 KiB/s, it takes about 4 s
        line = "f'{i:07d} {52 * \"x\"}\\n'"
        script = f"import sys; sys.stdout.write(''.join({line} for i in range(10000)))"
        result = run_exec("-socket", path, "-n", "w", "--", sys.executable, "-c", script)
        assert result.returncode == 0
        assert "could not be delivered" not in result.stderr
        assert slow.wait(20) == 0
        expected = "".join(f"{i:07d} {52 * 'x'}\n" for i in range(10000))
        assert (out / "w.out").read_text() == expected
        assert (out / "w").read_text() == "memlogd-exec: w exited with status 0\n"


def test_output_written_in_small_pieces_waits_in_the_kernel_for_a_late_memlogd(
    short_tmp: Path,
) -> None:
    """A command that wrote 300 writes of 16 lines ends while memlogd reads
    nothing: memlogd-exec ends at once with nothing undelivered, and memlogd
    gets every line later (the stream holds what memlogd-exec's backlog would;
    with the default buffer about 90 such writes fit, and the rest was given
    up 2 s after the command's end)."""
    with fake_memlogd("late", short_tmp) as (late, path, out):
        # paced, so that each write is read (and sent) on its own: the load's shape
        script = (
            "import sys, time\n"
            "for n in range(300):\n"
            "    sys.stdout.write(''.join(f'{n:04d} {i:02d} {40 * \"x\"}\\n' for i in range(16)))\n"
            "    sys.stdout.flush()\n"
            "    time.sleep(0.002)\n"
        )
        result = run_exec("-socket", path, "-n", "w", "--", sys.executable, "-c", script)
        assert result.returncode == 0
        assert "could not be delivered" not in result.stderr
        tell(late)
        assert late.wait(20) == 0
        expected = "".join(f"{n:04d} {i:02d} {40 * 'x'}\n" for n in range(300) for i in range(16))
        assert (out / "w.out").read_text() == expected
        assert (out / "w").read_text() == "memlogd-exec: w exited with status 0\n"


def test_a_busy_memlogd_is_offered_the_streams_again_at_once(short_tmp: Path) -> None:
    """memlogd's queue of handed-over fds is full as memlogd-exec starts (many
    services at once): that is no outage (said once, retried a second later in
    step with every other memlogd-exec, so that under a boot's herd some never
    got in): the streams are offered again within 0.1 s, and every line gets
    through."""
    with (
        fake_memlogd("busy", short_tmp) as (busy, path, out),
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as filler,
    ):
        filler.connect(path)
        with contextlib.suppress(BlockingIOError):
            while True:
                filler.send(b"filler")
        child = subprocess.Popen(
            python_m(
                "memlogd.exec",
                "-socket",
                path,
                "-n",
                "w",
                "--",
                "sh",
                "-c",
                "echo started; read x; echo hi",
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdin is not None and child.stdout is not None
            # the command runs: memlogd-exec offered its streams first, to the full queue
            assert child.stdout.readline() == "started\n"
            tell(busy)  # memlogd takes datagrams again
            child.stdin.write("go\n")
            child.stdin.close()
            assert child.wait(20) == 0
            assert child.stderr is not None
            assert child.stderr.read() == ""  # no memlogd_unavailable, nothing undelivered
        finally:
            child.kill()
            child.wait()
        assert busy.wait(20) == 0
        assert (out / "w.out").read_text() == "started\nhi\n"
        assert (out / "w").read_text() == "memlogd-exec: w exited with status 0\n"
