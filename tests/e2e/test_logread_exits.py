"""How logread ends, as a user sees it: precise connection errors (exit 1), Ctrl-C
at any moment (exit 130, nothing on stderr), a closed stdout (exit 0, nothing on
stderr), usage errors (exit 2), one-dash long options.  Real processes."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from memlogd.wire import protocol as proto
from tests.e2e.test_logread import (
    DEADLINE_S,
    FakeServer,
    entry,
    fixture_fake,
    fixture_logread,
    header,
    run_logread,
    wait_landed,
)
from tests.helpers import MemlogdProcess, new_source, python_m

__all__ = ["fixture_fake", "fixture_logread"]  # the fixtures this module uses

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------------- cannot connect


def cannot_connect(path: str, reason: str, *args: str) -> None:
    result = run_logread("-socket", path, *args)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr == f"logread: cannot connect to memlogd at {path}: {reason}\n".encode()


MODES = [[], ["-f"], ["-F", "-g", "x", "-n", "1"], ["--list-sources"], ["-o", "json"]]


@pytest.mark.parametrize("args", MODES, ids=str)
def test_a_regular_file(short_tmp: Path, args: list[str]) -> None:
    path = short_tmp / "not-a-socket"
    path.write_text("hello\n")
    cannot_connect(str(path), f"{path} is a file, not a socket", *args)


@pytest.mark.parametrize("args", MODES, ids=str)
def test_a_directory(short_tmp: Path, args: list[str]) -> None:
    cannot_connect(str(short_tmp), f"{short_tmp} is a directory, not a socket", *args)


@pytest.mark.parametrize("args", MODES, ids=str)
def test_a_missing_path(short_tmp: Path, args: list[str]) -> None:
    cannot_connect(str(short_tmp / "absent.sock"), "no such socket (is memlogd running?)", *args)


@pytest.mark.parametrize("args", MODES, ids=str)
def test_memlogds_log_socket(memlogd: MemlogdProcess, args: list[str]) -> None:
    """The query socket beside it is named (SPEC 18)."""
    cannot_connect(
        memlogd.log_path,
        "that is memlogd's log socket, not its query socket "
        f"(the query socket beside it: -socket {memlogd.query_path})",
        *args,
    )


def test_memlogds_log_socket_alone(short_tmp: Path) -> None:
    """No query socket beside it: the usual place is named."""
    path = str(short_tmp / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        (short_tmp / "query.sock").write_text("")  # a file of that name: no socket
        cannot_connect(
            path,
            "that is memlogd's log socket, not its query socket "
            "(the query socket is usually /var/run/memlogdq.sock)",
        )


@pytest.mark.parametrize("args", MODES, ids=str)
def test_a_dead_socket(short_tmp: Path, args: list[str]) -> None:
    path = str(short_tmp / "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # bound, never listening: connection refused
    cannot_connect(path, "connection refused (a socket file without a memlogd behind it)", *args)


# ---------------------------------------------------------------------- Ctrl-C


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    stderr: bytes  # read so far


def started_and_in_charge(*args: str) -> Started:
    """Start logread; return once its own SIGINT handler is in place.

    Python's start-up (before any line of the program runs) turns SIGINT into a
    KeyboardInterrupt traceback in its own frozen modules, which no program can
    prevent; the console entry point (memlogd.scripts) makes SIGINT quiet as its
    first act.  ``-X importtime`` makes the process say on stderr when each import
    is done: one line after ``memlogd.scripts``'s proves the handler is in place."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "logread", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    fd, seen = proc.stderr.fileno(), b""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        lines = seen.split(b"\n")[:-1]
        done = [i for i, line in enumerate(lines) if line.endswith(b"| memlogd.scripts")]
        if done and len(lines) > done[0] + 1:
            return Started(proc, seen)
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        assert ready, f"logread did not start: {seen[-2000:]!r}"
        chunk = os.read(fd, 1 << 16)
        assert chunk, f"logread ended: {seen[-2000:]!r}"
        seen += chunk


def interrupted_quietly(started: Started, may_say: bytes = b"") -> None:
    """SIGINT: exit 130, and nothing on stderr but ``may_say`` (once at most)."""
    started.proc.send_signal(signal.SIGINT)
    _, rest = started.proc.communicate(timeout=DEADLINE_S)
    err = started.stderr + rest
    said = [line for line in err.split(b"\n") if line and not line.startswith(b"import time:")]
    assert started.proc.returncode == 130
    assert said in ([], [may_say]), said


# from the entry point's first act to following: imports (~0.3 s), parsing, trio,
# connecting, the extended query's answer, the dump, following
DELAYS_S = [0.0, 0.0005, 0.002, 0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5]


@pytest.mark.parametrize("delay", DELAYS_S)
def test_ctrl_c_at_any_moment(memlogd: MemlogdProcess, delay: float) -> None:
    """Not a synchronisation: the point is any moment of start-up and after."""
    started = started_and_in_charge("-socket", memlogd.query_path, "-F", "-g", "x", "-n", "3")
    time.sleep(delay)
    interrupted_quietly(started)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.2])
def test_ctrl_c_while_retrying(short_tmp: Path, delay: float) -> None:
    path = str(short_tmp / "absent.sock")
    started = started_and_in_charge("-socket", path, "-f", "--retry")
    time.sleep(delay)
    interrupted_quietly(
        started,
        f"logread: cannot connect to memlogd at {path}: "
        "no such socket (is memlogd running?); retrying".encode(),
    )


def test_ctrl_c_while_waiting_for_an_answer(fake: FakeServer, logread) -> None:
    """Connected; memlogd has not answered yet (or is upstream's, which never does)."""
    reader = logread("-socket", fake.path, "-f")
    with fake.accept() as conn:
        assert fake.read_request(conn)[:1] == b"\x03"
        assert reader.interrupt() == (130, b"")


def test_ctrl_c_with_a_held_loss_line_prints_it(fake: FakeServer, logread) -> None:
    """A loss held for the once-a-second pacing is still said at exit."""
    reader = logread("-socket", fake.path, "-f", "-o", "raw")
    with fake.accept() as conn:
        fake.read_request(conn)
        conn.sendall(header("I", 1, 1) + proto.encode_dropped(1, 2) + entry(3, "three"))
        assert reader.lines(1) == [b"three"]
        conn.sendall(proto.encode_dropped(5, 3) + entry(9, "after the gaps"))
        assert reader.lines(1) == [b"after the gaps"]
        code, err = reader.interrupt()
    assert code == 130
    assert err == b"logread: 2 entries lost (seq 1-2)\nlogread: 3 entries lost (seq 5-7)\n"


# ---------------------------------------------------------------------- closed stdout


@pytest.mark.parametrize("args", [[], ["-o", "json"], ["-r"], ["-g", "line"], ["-F"]], ids=str)
def test_closed_stdout_in_a_long_dump(memlogd: MemlogdProcess, args: list[str]) -> None:
    """`logread | head -1` on a full ring: exit 0 at once, nothing on stderr."""
    with new_source(memlogd.log_path, "svc") as src:
        src.sendall(b"".join(b"line %d %s\n" % (i, b"x" * 100) for i in range(4000)))
    wait_landed(memlogd.query_path, "line 3999 " + "x" * 100)
    script = '"$0" -m logread -socket "$1" "${@:2}" | head -1; exit "${PIPESTATUS[0]}"'
    result = subprocess.run(
        ["bash", "-c", script, sys.executable, memlogd.query_path, *args],
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.count(b"\n") == 1
    assert result.stderr == b""


def test_closed_stdout_status_is_0(memlogd: MemlogdProcess) -> None:
    with new_source(memlogd.log_path, "svc") as src:
        src.sendall(b"".join(b"line %d %s\n" % (i, b"x" * 100) for i in range(4000)))
    wait_landed(memlogd.query_path, "line 3999 " + "x" * 100)
    proc = subprocess.Popen(
        python_m("logread", "-socket", memlogd.query_path, "-o", "cat"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"memlogd st"  # memlogd's own first line
    proc.stdout.close()
    assert proc.wait(DEADLINE_S) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


@pytest.mark.parametrize("args", [[], ["-o", "json"], ["--stats"], ["--list-sources"]], ids=str)
def test_a_full_stdout_is_an_error(memlogd: MemlogdProcess, args: list[str]) -> None:
    """SPEC 19: `logread > /dev/full` exited 0 having written nothing."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            python_m("logread", "-socket", memlogd.query_path, *args),
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=DEADLINE_S,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr == b"logread: cannot write to stdout: No space left on device\n"


def test_a_stdout_closed_at_start_is_one_line(memlogd: MemlogdProcess) -> None:
    """SPEC 19: `logread >&-` printed a traceback."""
    script = 'exec "$0" -m logread -socket "$1" >&-'
    result = subprocess.run(
        ["bash", "-c", script, sys.executable, memlogd.query_path],
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert (result.returncode, result.stderr) == (1, b"logread: standard output is closed\n")


# ---------------------------------------------------------------------- usage


def usage_error(*args: str) -> bytes:
    result = run_logread(*args)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.startswith(b"Usage: logread [OPTIONS]\n")
    assert b"Traceback" not in result.stderr
    return result.stderr.split(b"\n")[-2]


def test_one_dash_long_options(memlogd: MemlogdProcess) -> None:
    q = memlogd.query_path
    long = run_logread("--socket", q, "--stats", "-o", "json")
    short = run_logread("-socket", q, "-stats", "-o", "json")
    assert long.returncode == short.returncode == 0
    assert long.stdout.startswith(b'{"entries":') and short.stdout.startswith(b'{"entries":')
    assert usage_error("-socket", q, "-stat") == (
        b"Error: No such option '-stat'. (Did you mean one of: '-stats', '-tail'?)"
    )
    assert usage_error("-socket", q, "-sx").startswith(b"Error: No such option '-sx'.")
    help_one = run_logread("-help")
    help_two = run_logread("--help")
    assert help_one.returncode == help_two.returncode == 0
    assert help_one.stdout == help_two.stdout
    assert b"  Examples:\n" in help_one.stdout


def test_tail_one_dash_forms(memlogd: MemlogdProcess) -> None:
    q = memlogd.query_path
    want = run_logread("-socket", q, "--tail", "1")
    assert want.returncode == 0 and want.stdout.count(b"\n") == 1
    for args in (["-tail=1"], ["-n1"], ["-n=1"], ["-lines", "1"], ["-since", "1h", "-n", "1"]):
        got = run_logread("-socket", q, *args)
        assert (got.returncode, got.stdout, got.stderr) == (0, want.stdout, b""), args


@pytest.mark.parametrize(
    ("args", "value"),
    [(["-p", "errors"], b"'errors'"), (["--priority=8"], b"'8'"), (["-priority", "1..x"], b"'x'")],
)
def test_a_bad_priority_is_a_usage_error(args: list[str], value: bytes) -> None:
    assert usage_error(*args) == (
        b"Error: Invalid value for '-p' / '--priority': "
        + value
        + b" is not a priority: use 0-7 or a name (emerg, alert, crit, err, warning, notice, "
        b"info, debug)"
    )


def test_priority_needs_a_value() -> None:
    result = run_logread("-p")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == b"Error: Option '-p' requires an argument.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "-1"], b"Error: Invalid value for '-n' / '-tail' / '--tail' / '-lines' / "),
        (
            ["--since", "5 minutes"],
            b"Error: Invalid value for '--since': '5 minutes' is not a time",
        ),
        (["-o", "xml"], b"Error: Invalid value for '-o' / '-output' / '--output': 'xml' is not"),
        (["--stats", "-f"], b"Error: --stats cannot be combined with -f, -F, -s, -u, -g, -n, "),
        (["-i"], b"Error: -i/--ignore-case applies to -g/--grep: give -g REGEX too"),
        (["-r", "-F"], b"Error: -r/--reverse shows a dump newest first: not with -f or -F"),
        (["-fF"], b"Error: No such option '-fF'"),
    ],
    ids=str,
)
def test_usage_errors(short_tmp: Path, args: list[str], message: bytes) -> None:
    assert usage_error("-socket", str(short_tmp / "q"), *args).startswith(message)
