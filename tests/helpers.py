"""Test helpers for real processes and sockets. Every wait has a deadline."""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from memlogd.wire.fdmsg import fd_ancdata

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0


def wait_for(
    predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


async def wait_until(condition: Callable[[], object]) -> None:
    """Inside a trio test: yield until ``condition()`` holds (the deadline is
    the caller's ``trio.fail_after``)."""
    while not condition():
        await trio.sleep(0.005)


def wait_value(
    fetch: Callable[[], T],
    ok: Callable[[T], bool],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "value",
) -> T:
    """Call ``fetch`` until ``ok(value)``; return that value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last: {value!r}"[:2000]
            )
        time.sleep(0.01)


def python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class MemlogdProcess:
    """A memlogd subprocess on sockets in ``tmp``, started with --ready-fd."""

    def __init__(self, tmp: Path, args: Sequence[str] = (), console: bool = False) -> None:
        self.tmp = tmp
        self.log_path = str(tmp / "log.sock")
        self.query_path = str(tmp / "query.sock")
        self.args = list(args)
        self.console = console
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = tmp / "memlogd.stderr"
        self.stdout_path = tmp / "memlogd.stdout"

    def command(self, ready_fd: int) -> list[str]:
        cmd = python_m(
            "memlogd",
            "-socket-log",
            self.log_path,
            "-socket-query",
            self.query_path,
            "--ready-fd",
            str(ready_fd),
            *self.args,
        )
        if not self.console:
            cmd.append("--no-console")
        return cmd

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        r, w = os.pipe()
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(w), pass_fds=(w,), stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        os.close(w)
        try:
            ready, _, _ = select.select([r], [], [], timeout)
            data = os.read(r, 1) if ready else b""
        finally:
            os.close(r)
        if data != b"\n":
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError(f"memlogd did not become ready: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            try:  # what it said last: the step of its shutdown it was in
                said = self.stderr_path.read_text(errors="replace").strip().splitlines()[-8:]
            except OSError:
                said = []
            raise AssertionError(
                "memlogd did not exit on SIGTERM; its stderr ended: " + " | ".join(said)
            ) from None

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def send_fds(log_path: str, name: bytes, fds: Sequence[int]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(log_path)
        if fds:
            sock.sendmsg([name], fd_ancdata(fds))
        else:
            sock.send(name)


def new_source(log_path: str, name: str | bytes) -> socket.socket:
    """A connected socket whose writes memlogd reads as source ``name``."""
    ours, theirs = socket.socketpair()
    send_fds(log_path, name.encode() if isinstance(name, str) else name, [theirs.fileno()])
    theirs.close()
    return ours


def query_raw(query_path: str, request: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Send ``request`` and read until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(query_path)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


def stats(query_path: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """memlogd's statistics, read raw: the extended answer's second line."""
    lines = query_raw(query_path, b'\x03{"stats":true}\n', timeout).splitlines()
    values: dict[str, Any] = json.loads(lines[1])["stats"]
    return values


def dump(query_path: str, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
    return [json.loads(line) for line in query_raw(query_path, b"\x00", timeout).splitlines()]


def messages(query_path: str, source: str) -> list[str]:
    return [e["msg"] for e in dump(query_path) if e["source"] == source]


class LineReader:
    """Reads JSON lines from a connected socket with a deadline per call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def lines(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while (have := self.buf.count(b"\n")) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {count} lines, have {have}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {count} lines, have {have}") from None
            if not chunk:
                raise AssertionError(f"connection closed after {have} lines")
            self.buf += chunk
        out = self.buf.split(b"\n")
        self.buf = b"\n".join(out[count:])
        return out[:count]

    def json(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines(count, timeout)]


def open_query(query_path: str, request: bytes) -> LineReader:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(query_path)
    sock.sendall(request)
    return LineReader(sock)


def as_user(user: pwd.struct_passwd) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child ``user`` (no supplementary groups)."""

    def become() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return become


def ignores(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores ``signum`` now (``SigIgn`` in its status):
    it runs its own first instructions (the interpreter's start-up is before)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False
