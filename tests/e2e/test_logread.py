"""logread as a user runs it: `python -m logread` subprocesses against a real memlogd
(and, where the exact bytes on the wire matter, against a scripted fake server)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from logread.render import RESET, source_color
from memlogd.wire import protocol as proto
from memlogd.wire.severity import level_or_default
from tests import helpers
from tests.helpers import (
    MemlogdProcess,
    dump,
    new_source,
    python_m,
    query_raw,
    wait_for,
    wait_value,
)
from tests.wire import encode_entry

pytestmark = pytest.mark.e2e

DEADLINE_S = 10.0


def run_logread(*args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        python_m("logread", *args), capture_output=True, timeout=DEADLINE_S, check=False, **kw
    )


class Logread:
    """A running logread whose stdout is read line by line with deadlines."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            python_m("logread", *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.buf = b""

    def lines(self, count: int, timeout: float = DEADLINE_S) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while self.buf.count(b"\n") < count:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"timed out waiting for {count} lines, have {self.buf!r}")
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise AssertionError(f"logread ended early; stderr: {self.stderr()!r}")
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n", count)
        return lines

    def until(self, wanted: bytes, timeout: float = DEADLINE_S) -> list[bytes]:
        """Lines up to and including the first that contains ``wanted``."""
        deadline = time.monotonic() + timeout
        got: list[bytes] = []
        while not got or wanted not in got[-1]:
            got += self.lines(1, max(0.0, deadline - time.monotonic()))
        return got

    def interrupt(self) -> tuple[int, bytes]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(DEADLINE_S)
        return code, self.stderr()

    def stderr_line(self, timeout: float = DEADLINE_S) -> bytes:
        """One line of stderr while logread runs."""
        assert self.proc.stderr is not None
        fd, line = self.proc.stderr.fileno(), b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no line on stderr, have {line!r}"
            byte = os.read(fd, 1)
            assert byte, f"stderr closed after {line!r}"
            line += byte
        return line

    def stderr(self) -> bytes:
        assert self.proc.stderr is not None
        if self.proc.poll() is None:
            return b"(still running)"
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(name="logread")
def fixture_logread() -> Iterator[Any]:
    started: list[Logread] = []

    def start(*args: str) -> Logread:
        proc = Logread(*args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()


def with_priority(line: bytes) -> bytes:
    """An entry line as memlogd sends it, as logread's -o json writes it: with the
    level its message says it has (SPEC 15) added last."""
    return b'%s,"priority":%d}' % (line[:-1], level_or_default(json.loads(line)["msg"]))


def ext_dump(query_path: str, **req: Any) -> list[bytes]:
    lines = query_raw(query_path, b"\x03" + json.dumps(req).encode() + b"\n").splitlines()
    assert b'"memlogd"' in lines[0]
    return lines[1:]


def readers(query_path: str) -> int:
    """Query connections open now, not counting the one asking."""
    lines = ext_dump(query_path, stats=True)
    value: int = json.loads(lines[0])["stats"]["readers"]
    return value


def wait_landed(query_path: str, msg: str) -> None:
    wait_for(lambda: any(e["msg"] == msg for e in dump(query_path)), DEADLINE_S, repr(msg))


def sync(src: socket.socket, reader: Logread) -> list[bytes]:
    """Write marker lines until the follower shows one, then read up to the last one
    sent: afterwards the next line logread prints is the next one written."""
    for i in range(100):
        src.sendall(b"sync %d\n" % i)
        try:
            first = reader.lines(1, timeout=0.1)
        except AssertionError:
            continue
        return first + (
            reader.until(b"sync %d" % i) if not first[0].endswith(b"sync %d" % i) else []
        )
    raise AssertionError("the follower never showed a marker line")


def short_line(entry: dict[str, Any]) -> bytes:
    source = entry["source"].replace(";", "\\;")
    return f"{entry['time']};{source};{entry['msg']}\n".encode()


@pytest.fixture(name="filled")
def fixture_filled(memlogd: MemlogdProcess) -> MemlogdProcess:
    """memlogd holding awkward sources and messages."""
    writes = {
        "plain": [b"hello", b"a;b;c", b"", b"tab\there", b"cr at end\r"],
        "semi;colon;": [b"\xc3\xbcn\xc3\xafc\xc3\xb6d\xc3\xa9 \xe2\x9c\x93", b"bad \xff\xfe utf8"],
        "uni \u00fc\\x": [b"nul \x00 esc \x1b[31m red", b"last"],
    }
    socks = {name: new_source(memlogd.log_path, name) for name in writes}
    for name, lines in writes.items():
        socks[name].sendall(b"".join(line + b"\n" for line in lines))
    wait_landed(memlogd.query_path, "last")
    wait_landed(memlogd.query_path, "bad \ufffd\ufffd utf8")
    wait_landed(memlogd.query_path, "cr at end")
    return memlogd


# ---------------------------------------------------------------------- output formats


def test_dump_short_is_upstreams_format_byte_for_byte(filled: MemlogdProcess) -> None:
    entries = dump(filled.query_path)
    result = run_logread("-socket", filled.query_path)
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout == b"".join(map(short_line, entries))
    assert b"semi\\;colon\\;;\xc3\xbcn\xc3\xafc" in result.stdout
    assert b";plain;a;b;c\n" in result.stdout  # a ';' in a message is left alone
    assert b";plain;cr at end\n" in result.stdout
    assert "uni \u00fc\\x;nul \x00 esc \x1b[31m red\n".encode() in result.stdout


def test_extended_short_output_is_the_same_bytes(filled: MemlogdProcess) -> None:
    base = run_logread("-socket", filled.query_path)
    ext = run_logread("-socket", filled.query_path, "-s", "*", "--since", "1d")
    assert ext.returncode == 0 and ext.stderr == b""
    assert ext.stdout == base.stdout


def test_json_output_is_the_servers_extended_entries(filled: MemlogdProcess) -> None:
    result = run_logread("-socket", filled.query_path, "-o", "json")
    assert result.returncode == 0 and result.stderr == b""
    server = ext_dump(filled.query_path)
    # the server's entries, each with its priority (SPEC 15)
    assert result.stdout == b"".join(with_priority(line) + b"\n" for line in server)
    for line in result.stdout.splitlines():
        assert list(json.loads(line)) == ["time", "source", "msg", "seq", "priority"]


def test_raw_output_is_messages_only(filled: MemlogdProcess) -> None:
    entries = dump(filled.query_path)
    result = run_logread("-socket", filled.query_path, "-o", "raw")
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout == b"".join(e["msg"].encode() + b"\n" for e in entries)


def test_filters_through_the_cli_match_the_server(filled: MemlogdProcess) -> None:
    q = filled.query_path
    expected = ext_dump(q, sources=["semi*", "plain"], tail=3)
    result = run_logread("-socket", q, "-s", "semi*", "--source", "plain", "-n", "3", "-o", "json")
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout == b"".join(with_priority(line) + b"\n" for line in expected)
    assert len(expected) == 3
    future = run_logread("-socket", q, "--since", "2999-01-01T00:00:00Z")
    assert (future.returncode, future.stdout, future.stderr) == (0, b"", b"-- No entries --\n")


def on_terminal(
    *args: str, env: dict[str, str] | None = None, raw: bool = True
) -> tuple[int, bytes, bytes]:
    """Run logread to its end with stdout on a pseudo-terminal: (status, what the
    terminal received, stderr).  ``raw``: the terminal in raw mode, so that its
    bytes are exactly what logread wrote (no ``\\n`` -> ``\\r\\n``)."""
    main, sub = pty.openpty()
    try:
        if raw:
            tty.setraw(sub)
        proc = subprocess.Popen(
            python_m("logread", *args),
            stdout=sub,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(sub)
        sub = -1
        out = b""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([main], [], [], max(0.0, left))
            if not ready:
                proc.kill()
                raise AssertionError(f"logread did not end; the terminal has {out!r}")
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            out += chunk
        code = proc.wait(DEADLINE_S)
        assert proc.stderr is not None
        err = proc.stderr.read()
        proc.stderr.close()
    finally:
        os.close(main)
        if sub >= 0:
            os.close(sub)
    return code, out, err


def test_no_colour_in_a_pipe_colour_on_a_terminal(filled: MemlogdProcess) -> None:
    piped = run_logread("-socket", filled.query_path, "-s", "plain")
    assert piped.stdout.count(b";plain;") == 5 and b"\x1b[" not in piped.stdout

    code, out, err = on_terminal("-socket", filled.query_path, "-s", "plain", "-n", "1", raw=False)
    assert (code, err) == (0, b"")
    (entry,) = [e for e in dump(filled.query_path) if e["msg"] == "cr at end"]
    expected = f"{entry['time']};{source_color('plain')}plain{RESET};cr at end\r\n"
    assert out == expected.encode()


def test_color_always_colours_sources(filled: MemlogdProcess) -> None:
    result = run_logread("-socket", filled.query_path, "--color", "always", "-s", "semi*")
    colored = f"{source_color('semi;colon;')}semi\\;colon\\;{RESET}".encode()
    assert result.stdout.count(colored) == 2


# ---------------------------------------------------------------------- follow


def test_follow_prints_only_new_entries(memlogd: MemlogdProcess, logread) -> None:
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"old\n")
    wait_landed(memlogd.query_path, "old")
    reader = logread("-socket", memlogd.query_path, "-f")
    shown = sync(src, reader)
    assert all(b";svc;sync " in line for line in shown)  # never "old"
    src.sendall(b"new 1\nnew 2\n")
    lines = reader.lines(2)
    entries = [e for e in dump(memlogd.query_path) if e["msg"].startswith("new")]
    assert [line + b"\n" for line in lines] == list(map(short_line, entries))
    assert reader.interrupt() == (130, b"")
    assert reader.buf == b""


def test_dump_follow_prints_held_then_new(memlogd: MemlogdProcess, logread) -> None:
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"old\n")
    wait_landed(memlogd.query_path, "old")
    held = dump(memlogd.query_path)
    reader = logread("-socket", memlogd.query_path, "-F")
    assert [line + b"\n" for line in reader.lines(len(held))] == list(map(short_line, held))
    src.sendall(b"new\n")
    (line,) = reader.lines(1)
    assert line.endswith(b";svc;new")
    assert reader.interrupt() == (130, b"")


def test_follow_with_tail_shows_last_entries_first(memlogd: MemlogdProcess, logread) -> None:
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"".join(b"m%d\n" % i for i in range(10)))
    wait_landed(memlogd.query_path, "m9")
    reader = logread("-socket", memlogd.query_path, "-f", "-n", "2", "-s", "svc", "-o", "raw")
    assert reader.lines(2) == [b"m8", b"m9"]
    src.sendall(b"m10\n")
    assert reader.lines(1) == [b"m10"]
    assert reader.interrupt() == (130, b"")


# ---------------------------------------------------------------------- exits


def test_closed_stdout_exits_quietly(memlogd: MemlogdProcess) -> None:
    """`logread -F | head -1` returns at once though no new entry ever comes."""
    q = memlogd.query_path
    result = subprocess.run(
        ["sh", "-c", 'exec "$0" -m logread -socket "$1" -F | head -1', python_m("x")[0], q],
        capture_output=True,
        timeout=DEADLINE_S,
    )
    assert result.returncode == 0
    assert result.stderr == b""
    assert result.stdout == short_line(dump(q)[0])


def test_closed_stdout_exit_status_and_stderr(memlogd: MemlogdProcess, logread) -> None:
    reader = logread("-socket", memlogd.query_path, "-F")
    reader.lines(1)
    assert reader.proc.stdout is not None
    reader.proc.stdout.close()
    assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.stderr() == b""


def test_sigint_exits_130_without_traceback(memlogd: MemlogdProcess, logread) -> None:
    reader = logread("-socket", memlogd.query_path, "-f")
    wait_for(lambda: readers(memlogd.query_path) == 1, DEADLINE_S, "logread connected")
    assert reader.interrupt() == (130, b"")


def test_sigint_while_stdout_is_full(memlogd: MemlogdProcess, logread) -> None:
    """Nobody reads logread's stdout: Ctrl-C still ends it at once."""
    src = new_source(memlogd.log_path, "svc")
    src.sendall(b"".join(b"%d %s\n" % (i, b"x" * 200) for i in range(3000)))
    wait_landed(memlogd.query_path, "2999 " + "x" * 200)
    reader = logread("-socket", memlogd.query_path, "-F")
    assert reader.proc.stdout is not None
    # logread has started writing: 750 KB cannot all fit in the pipe, so it is stuck
    wait_for(lambda: select.select([reader.fd], [], [], 0)[0], DEADLINE_S, "logread writing")
    assert reader.interrupt() == (130, b"")


@pytest.mark.parametrize("args", [[], ["-F"], ["-o", "json"], ["--stats"]], ids=str)
def test_cannot_connect(short_tmp: Path, args: list[str]) -> None:
    path = str(short_tmp / "absent.sock")
    result = run_logread("-socket", path, *args)
    assert result.returncode == 1
    assert result.stdout == b""
    expected = (
        f"logread: cannot connect to memlogd at {path}: no such socket (is memlogd running?)\n"
    )
    assert result.stderr == expected.encode()


def test_cannot_connect_to_a_dead_socket(short_tmp: Path) -> None:
    path = str(short_tmp / "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # bound, never listening: connection refused
    result = run_logread("-socket", path)
    assert result.returncode == 1
    expected = (
        f"logread: cannot connect to memlogd at {path}: "
        "connection refused (a socket file without a memlogd behind it)\n"
    )
    assert result.stderr == expected.encode()


@pytest.mark.parametrize(
    "args",
    [["-n", "-1"], ["--since", "5 minutes"], ["-o", "xml"], ["--stats", "-f"], ["--bogus"]],
    ids=str,
)
def test_bad_arguments_exit_2_with_a_message(short_tmp: Path, args: list[str]) -> None:
    result = run_logread("-socket", str(short_tmp / "q"), *args)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"Error:" in result.stderr and b"Traceback" not in result.stderr


# ---------------------------------------------------------------------- fake server


class FakeServer:
    """A scripted query socket: accept one connection at a time, with deadlines."""

    def __init__(self, tmp: Path) -> None:
        self.path = str(tmp / "fake.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.sock.settimeout(DEADLINE_S)

    def accept(self) -> socket.socket:
        conn, _ = self.sock.accept()
        conn.settimeout(DEADLINE_S)
        return conn

    @staticmethod
    def read_request(conn: socket.socket) -> bytes:
        """The mode byte, and for mode 3 the line after it."""
        data = conn.recv(1)
        if data == b"\x03":
            while not data.endswith(b"\n"):
                data += conn.recv(1)
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(name="fake")
def fixture_fake(short_tmp: Path) -> Iterator[FakeServer]:
    server = FakeServer(short_tmp)
    yield server
    server.close()


UPSTREAM_LINES = (
    b'{"time":"2019-02-22T16:04:23.123456789Z","source":"docker","msg":"level=debug"}\n'
    b'{"time":"2019-02-22T16:04:24Z","source":"a;b","msg":"x"}\n'
)
UPSTREAM_SHORT = (
    b"2019-02-22T16:04:23.123456789Z;docker;level=debug\n2019-02-22T16:04:24Z;a\\;b;x\n"
)


def answer_as_upstream(conn: socket.socket, mode: int) -> None:
    assert conn.recv(1) == bytes([mode])
    conn.sendall(UPSTREAM_LINES)
    conn.shutdown(socket.SHUT_WR)
    assert conn.recv(1) == b"", "logread sends nothing after the mode byte"


@pytest.mark.parametrize("args", [[], ["-o", "raw"]], ids=str)
def test_a_plain_dump_speaks_upstreams_mode_0(fake: FakeServer, logread, args: list[str]) -> None:
    reader = logread("-socket", fake.path, *args)
    with fake.accept() as conn:
        answer_as_upstream(conn, 0)
    code = reader.proc.wait(DEADLINE_S)
    assert code == 0 and reader.stderr() == b""
    out = b"".join(line + b"\n" for line in reader.lines(2))
    assert out == (b"level=debug\nx\n" if "raw" in args else UPSTREAM_SHORT)


@pytest.mark.parametrize(
    ("args", "mode"),
    [(["-f"], 1), (["-F"], 2), (["-f", "-F"], 2), (["-F", "-o", "short"], 2)],
    ids=str,
)
@pytest.mark.parametrize("upstream", ["silent", "closes"])
def test_following_asks_extended_first_then_falls_back_to_upstreams_modes(
    fake: FakeServer, logread, args: list[str], mode: int, upstream: str
) -> None:
    """Upstream's memlogd keeps a mode-3 connection open and says nothing (or,
    in older versions, closes it, every time: once is a worker of ours killed
    as it took the query, and logread asks again): logread falls back to mode
    1 or 2, and in the end closes the unanswered connection."""
    reader = logread("-socket", fake.path, *args)
    for _ in range(2 if upstream == "closes" else 1):
        extended = fake.accept()
        request = fake.read_request(extended)
        assert request[:1] == b"\x03"
        assert json.loads(request[1:]) == {"dump": mode == 2, "follow": True}
        if upstream == "closes":
            extended.close()
    with extended:
        with fake.accept() as conn:
            answer_as_upstream(conn, mode)
        if upstream == "silent":
            assert extended.recv(1) == b"", "logread gives up on the silent query"
    code = reader.proc.wait(DEADLINE_S)
    assert code == 0 and reader.stderr() == b""
    assert b"".join(line + b"\n" for line in reader.lines(2)) == UPSTREAM_SHORT


def unread(conn: socket.socket) -> int:
    """Bytes sent on ``conn`` that the other end has not read yet."""
    count: int = struct.unpack("i", fcntl.ioctl(conn, termios.TIOCOUTQ, b"\0" * 4))[0]
    return count


def test_an_extended_answer_just_after_the_base_one_is_taken(fake: FakeServer, logread) -> None:
    """Ours answers the extended query first (it accepts connections in
    order), but a memlogd slow to answer (a worker starting) answers both at
    once when it does, and logread may read the base-mode answer first: the
    extended answer that comes a moment later is still taken (before, logread
    took the daemon for upstream's: no gaps told, no cursor to resume from)."""
    reader = logread("-socket", fake.path, "-f", "-o", "raw")
    with fake.accept() as extended:
        assert fake.read_request(extended)[:1] == b"\x03"
        with fake.accept() as base:  # the extended query unanswered: logread probes
            assert base.recv(1) == b"\x01"
            base.sendall(UPSTREAM_LINES)
            wait_for(lambda: unread(base) == 0, DEADLINE_S, "logread to read the base answer")
            extended.sendall(header("A", 1, 2) + entry(1, "ours"))
            assert base.recv(1) == b"", "logread closes the base-mode connection"
        assert reader.lines(1) == [b"ours"]
        assert reader.interrupt() == (130, b"")


@pytest.mark.parametrize("args", [[], ["-o", "json"]], ids=str)
def test_malformed_reply_is_one_line_and_exit_1(fake: FakeServer, logread, args) -> None:
    reader = logread("-socket", fake.path, *args)
    with fake.accept() as conn:
        fake.read_request(conn)
        conn.sendall(b"this is not json\n")
    assert reader.proc.wait(DEADLINE_S) == 1
    err = reader.stderr()
    assert err.startswith(b"logread: malformed reply from memlogd: ")
    assert err.count(b"\n") == 1


def test_json_output_from_upstream_memlogd_has_no_seq(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-o", "json", "-s", "dock*")
    for _ in range(2):  # once could be a worker of ours killed as it took the query
        with fake.accept() as conn:
            assert fake.read_request(conn).startswith(b"\x03{")
            # upstream memlogd closes (or ignores) a connection with an unknown mode
    with fake.accept() as conn:
        answer_as_upstream(conn, 0)
    assert reader.proc.wait(DEADLINE_S) == 0
    # filtered by logread itself; no seq, and the priority (level=debug: 7)
    assert reader.lines(1) == [with_priority(UPSTREAM_LINES.split(b"\n")[0])]
    assert reader.stderr() == b""


def test_stats_from_upstream_memlogd_says_so(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "--stats")
    with fake.accept() as conn:
        assert fake.read_request(conn).startswith(b"\x03{")
    assert reader.proc.wait(DEADLINE_S) == 1
    assert reader.stderr() == b"logread: memlogd sent no statistics (upstream's memlogd?)\n"


def test_error_reply_is_reported(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-s", "x")
    with fake.accept() as conn:
        fake.read_request(conn)
        conn.sendall(b'{"error":"unknown request key \'x\'"}\n')
    assert reader.proc.wait(DEADLINE_S) == 1
    assert reader.stderr() == b"logread: memlogd refused the query: unknown request key 'x'\n"


def header(instance: str, first: int, nxt: int) -> bytes:
    return proto.encode_header(proto.Header(instance, first, nxt))


def entry(seq: int, msg: str) -> bytes:
    return encode_entry(proto.LogEntry(1_550_851_463 * 10**9 + seq, "svc", msg, seq))


def test_dropped_records_are_reported_on_stderr(fake: FakeServer, logread) -> None:
    reader = logread("-socket", fake.path, "-o", "raw", "-s", "svc")
    with fake.accept() as conn:
        fake.read_request(conn)
        conn.sendall(
            header("i1", 1, 20) + entry(1, "one") + proto.encode_dropped(2, 14) + entry(16, "x")
        )
    assert reader.proc.wait(DEADLINE_S) == 0
    assert reader.lines(2) == [b"one", b"x"]
    assert reader.stderr() == b"logread: 14 entries lost (seq 2-15)\n"


def test_retry_resumes_same_instance_and_refetches_after_a_restart(
    fake: FakeServer, logread
) -> None:
    reader = logread("-socket", fake.path, "-F", "--retry", "-o", "raw", "-n", "5")

    def serve(expected: dict[str, Any], answer: bytes) -> None:
        with fake.accept() as conn:
            request = fake.read_request(conn)
            assert request[:1] == b"\x03"
            assert json.loads(request[1:]) == expected
            conn.sendall(answer)

    serve(
        {"dump": True, "follow": True, "tail": 5},
        header("A", 1, 4) + entry(2, "a2") + entry(3, "a3"),
    )
    assert reader.lines(2) == [b"a2", b"a3"]
    serve(
        {"dump": True, "follow": True, "after_seq": 3},
        header("A", 1, 4) + proto.encode_dropped(4, 2) + entry(6, "a6"),
    )
    assert reader.lines(1) == [b"a6"]
    # a new daemon: logread closes the resume and asks for its whole ring
    with fake.accept() as conn:
        assert json.loads(fake.read_request(conn)[1:])["after_seq"] == 6
        conn.sendall(header("B", 1, 3))
        assert conn.recv(1) == b""
    # from after_seq 0: told of the new instance's holes too (SPEC 14)
    serve(
        {"dump": True, "follow": True, "after_seq": 0},
        header("B", 1, 3) + entry(1, "b1") + entry(2, "b2"),
    )
    assert reader.lines(2) == [b"b1", b"b2"]
    serve({"dump": True, "follow": True, "after_seq": 2}, header("B", 1, 3) + entry(3, "b3"))
    assert reader.lines(1) == [b"b3"]
    with fake.accept() as conn:  # the next resume: leave it waiting, then interrupt
        fake.read_request(conn)
        conn.sendall(header("B", 1, 4))
        code, err = reader.interrupt()
    assert code == 130
    # every reconnection worked at once: nothing to say about them
    assert err.decode() == (
        "logread: 2 entries lost (seq 4-5)\n"
        "logread: memlogd restarted (new instance); printing its whole ring\n"
    )


# ---------------------------------------------------------------------- --retry, for real


def test_retry_follows_across_a_killed_and_restarted_memlogd(short_tmp: Path, logread) -> None:
    first = MemlogdProcess(short_tmp)
    first.start()
    second = MemlogdProcess(short_tmp)
    try:
        src = new_source(first.log_path, "svc")
        src.sendall(b"before\n")
        reader = logread("-socket", first.query_path, "-F", "--retry")
        assert reader.until(b";svc;before")[-1].endswith(b";svc;before")
        assert first.proc is not None
        first.proc.kill()
        first.proc.wait(DEADLINE_S)
        src.close()

        second.start()
        src = new_source(second.log_path, "svc")
        src.sendall(b"after 1\n")
        got = [line + b"\n" for line in reader.until(b";svc;after 1")]
        # the new daemon's whole ring: its own start event first, then the new line
        # (before it, what the first daemon said while it stopped, if anything)
        ring = list(map(short_line, dump(second.query_path)))
        new = ring[: [line.endswith(b";svc;after 1\n") for line in ring].index(True) + 1]
        assert got[len(got) - len(new) :] == new
        assert b";memlogd;memlogd started" in new[0]
        src.sendall(b"after 2\n")
        assert reader.lines(1)[0].endswith(b";svc;after 2")
        code, err = reader.interrupt()
        assert code == 130
        said = err.decode().splitlines()
        # the outage is told only when logread could not reconnect at once (the new
        # memlogd may already be there)
        if said[0].startswith("logread: lost connection"):
            assert (
                said.pop(0)
                == f"logread: lost connection to memlogd at {first.query_path}; reconnecting"
            )
        assert said == ["logread: memlogd restarted (new instance); printing its whole ring"]
    finally:
        first.stop()
        second.stop()


@pytest.mark.parametrize("follow", ["-f", "-F"])
def test_a_follow_goes_on_through_a_worker_restart_without_retry(
    memlogd: MemlogdProcess, logread, follow: str
) -> None:
    """SPEC 18: the keeper keeps the instance, so the cursor is exact: the lines
    written while no worker ran are shown once, and nothing is said."""
    src = new_source(memlogd.log_path, "svc")
    reader = logread("-socket", memlogd.query_path, follow, "-s", "svc", "-o", "raw")
    sync(src, reader)
    worker = helpers.stats(memlogd.query_path)["pid"]
    os.kill(worker, signal.SIGKILL)
    src.sendall(b"while restarting\n")
    wait_value(
        lambda: helpers.stats(memlogd.query_path)["pid"], lambda pid: pid != worker, DEADLINE_S
    )
    src.sendall(b"after\n")
    assert reader.lines(2) == [b"while restarting", b"after"]
    assert reader.interrupt() == (130, b"")


def test_a_follow_says_when_memlogd_goes_away(short_tmp: Path, logread) -> None:
    proc = MemlogdProcess(short_tmp)
    proc.start()
    src = new_source(proc.log_path, "svc")
    reader = logread("-socket", proc.query_path, "-f", "-s", "svc", "-o", "raw")
    sync(src, reader)
    assert proc.stop() == 0
    assert reader.proc.wait(DEADLINE_S) == 1
    assert (
        reader.stderr()
        == (
            f"logread: memlogd at {proc.query_path} went away: no such socket (is memlogd "
            "running?); stopped following (--retry waits for the next one)\n"
        ).encode()
    )


def test_retry_waits_for_memlogd_to_start(short_tmp: Path, logread) -> None:
    proc = MemlogdProcess(short_tmp)
    reader = logread("-socket", proc.query_path, "-f", "--retry", "-o", "raw")
    try:
        assert (
            reader.stderr_line()
            == (
                f"logread: cannot connect to memlogd at {proc.query_path}: "
                "no such socket (is memlogd running?); retrying\n"
            ).encode()
        )
        proc.start()
        src = new_source(proc.log_path, "svc")
        assert sync(src, reader)[0].startswith(b"sync ")
        src.sendall(b"hello\n")
        assert reader.lines(1) == [b"hello"]
        assert reader.interrupt() == (130, b"")
    finally:
        proc.stop()
