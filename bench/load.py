"""One benchmark run: forked writers and followers against a running daemon.

Each child is a forked process that reports to the parent as JSON lines on
its own pipe: ``{"ready": ...}`` once set up, then its result.  Writers
start together when the parent closes the barrier pipe; followers are
connected (mode 1) before that, and a sync line is re-sent on a source of
the parent's until every follower has seen it, so every follower is known
to the daemon before the first writer line exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import procfs
from bench.configs import Load
from bench.daemon import Daemon
from bench.lines import (
    MSG_MARKER,
    SYNC_TEXT,
    MarkerCounter,
    line_parts,
    lines_per_write,
    sample_times,
    stamp,
)
from memlogd.wire.fdmsg import fd_ancdata

RECV_BYTES = 256 * 1024  # a follower's receive size
SILENCE_S = 2.0  # a run ends after this long without a line
START_GRACE_S = 10.0  # a follower waits this long for its first writer line
SYNC_EVERY_S = 0.05  # the sync line is re-sent this often
SETUP_TIMEOUT_S = 60.0  # for children to get ready and followers to sync
PROBES = 4  # lines decoded per received chunk
MAX_SAMPLES = 50_000  # latency samples kept per follower (reservoir)


class LoadRunError(RuntimeError):
    """A run could not be set up (the message says why)."""


@dataclass
class Child:
    pid: int
    kind: str
    index: int
    fd: int  # read end of the report pipe
    buf: bytes = b""
    messages: list[dict[str, Any]] = field(default_factory=list)
    eof: bool = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        self.messages.extend(json.loads(line) for line in lines if line)

    def result(self) -> dict[str, Any] | None:
        for msg in self.messages:
            if "result" in msg:
                res: dict[str, Any] = msg["result"]
                return res
        return None

    def has(self, key: str) -> bool:
        return any(key in msg for msg in self.messages)


# ---------------------------------------------------------------------- children


def _report(fd: int, obj: dict[str, Any]) -> None:
    data = memoryview((json.dumps(obj, separators=(",", ":")) + "\n").encode())
    while data:
        data = data[os.write(fd, data) :]


def send_fd(log_path: str, name: str, fd: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(log_path)
        sock.sendmsg([name.encode()], fd_ancdata([fd]))


def _fork(kind: str, index: int, close: list[int], body: Callable[[int], None]) -> Child:
    """Run ``body(report_fd)`` in a forked child that exits when it returns."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.close(r)
            for fd in close:
                with contextlib.suppress(OSError):
                    os.close(fd)
            body(w)
        except BaseException:
            traceback.print_exc()
            with contextlib.suppress(OSError):
                _report(w, {"error": traceback.format_exc(limit=3).strip().splitlines()[-1]})
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    return Child(pid, kind, index, r)


def writer_body(load: Load, index: int, log_path: str, barrier: int, deadline: float) -> Any:
    def body(report: int) -> None:
        per = lines_per_write(load.line_bytes)
        chunks = [
            line_parts(index, seq, min(per, load.lines - seq), load.line_bytes)
            for seq in range(0, load.lines, per)
        ]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        send_fd(log_path, f"bench.w{index}", theirs.fileno())
        theirs.close()
        _report(report, {"ready": True})
        os.read(barrier, 1)  # returns b"" when the parent closes its end: go
        first = time.time_ns()
        for parts in chunks:
            ours.sendall(stamp(parts, time.time_ns()))
        written = time.time_ns()
        ours.shutdown(socket.SHUT_WR)
        closed = None
        ours.settimeout(max(0.1, deadline - time.time()))
        with contextlib.suppress(OSError):
            while ours.recv(4096):
                pass
            closed = time.time_ns()  # the daemon read everything and closed its end
        _report(
            report,
            {
                "result": {
                    "lines": load.lines,
                    "first_write_ns": first,
                    "written_ns": written,
                    "closed_ns": closed,
                }
            },
        )

    return body


def follower_body(expected: int, query_path: str, deadline: float) -> Any:
    def body(report: int) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(query_path)
        sock.sendall(b"\x01")
        sync = MarkerCounter(SYNC_TEXT)
        marks = MarkerCounter(MSG_MARKER)
        newlines = 0
        samples: list[int] = []
        seen_samples = 0
        first_rx = last_rx = None
        reason = "deadline"
        _report(report, {"connected": True})
        synced_at = None
        rng = random.Random(0)
        while True:
            now = time.time()
            if now >= deadline:
                break
            if synced_at is None:
                wait = deadline - now
            elif first_rx is None:
                wait = min(deadline - now, synced_at + START_GRACE_S - now)
            else:
                wait = min(deadline - now, SILENCE_S)
            if wait <= 0:
                reason = "silence"
                break
            sock.settimeout(wait)
            try:
                chunk = sock.recv(RECV_BYTES)
            except TimeoutError:
                reason = "silence" if synced_at is not None else "deadline"
                break
            rx = time.time_ns()
            if not chunk:
                reason = "eof"
                break
            newlines += chunk.count(b"\n")
            if synced_at is None:
                sync.feed(chunk)
                if sync.count:
                    synced_at = time.time()
                    _report(report, {"synced": True})
            if marks.feed(chunk):
                if first_rx is None:
                    first_rx = rx
                last_rx = rx
                for t in sample_times(chunk, PROBES):
                    seen_samples += 1
                    if len(samples) < MAX_SAMPLES:
                        samples.append(rx - t)
                    else:
                        j = rng.randrange(seen_samples)
                        if j < MAX_SAMPLES:
                            samples[j] = rx - t
                if marks.count >= expected:
                    reason = "complete"
                    break
        sock.close()
        _report(
            report,
            {
                "result": {
                    "received": marks.count,
                    "newlines": newlines,
                    "first_rx_ns": first_rx,
                    "last_rx_ns": last_rx,
                    "latency_ns": samples,
                    "end": reason,
                }
            },
        )

    return body


# ---------------------------------------------------------------------- parent


class Children:
    """The forked children of one run and their report pipes."""

    def __init__(self) -> None:
        self.all: list[Child] = []
        self.sel = selectors.DefaultSelector()

    def fds(self) -> list[int]:
        return [c.fd for c in self.all if not c.eof]

    def add(self, child: Child) -> Child:
        self.all.append(child)
        self.sel.register(child.fd, selectors.EVENT_READ, child)
        return child

    def pump(self, timeout: float) -> None:
        """Read whatever the children reported within ``timeout``."""
        for key, _ in self.sel.select(max(0.0, timeout)):
            child: Child = key.data
            data = os.read(child.fd, 65536)
            if data:
                child.feed(data)
            else:
                child.eof = True
                self.sel.unregister(child.fd)
                os.close(child.fd)

    def wait_until(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            now = time.monotonic()
            if now >= deadline:
                raise LoadRunError(f"timed out waiting for {what}")
            failed = [c for c in self.all if c.has("error") or (c.eof and not c.result())]
            if failed:
                errors = [m["error"] for m in failed[0].messages if "error" in m]
                detail = errors[0] if errors else "exited early"
                raise LoadRunError(f"{failed[0].kind} {failed[0].index} failed: {detail}")
            self.pump(min(0.1, deadline - now))

    def close(self) -> None:
        """Kill what is still running (by pid) and reap every child."""
        for child in self.all:
            with contextlib.suppress(ChildProcessError):
                pid, _ = os.waitpid(child.pid, os.WNOHANG)
                if pid == 0:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
            if not child.eof:
                self.sel.unregister(child.fd)
                os.close(child.fd)
                child.eof = True
        self.sel.close()


def run_load(load: Load, daemon: Daemon, timeout_s: float) -> dict[str, Any]:
    """Run ``load`` against a serving ``daemon``; returns the raw measurements."""
    deadline_wall = time.time() + SETUP_TIMEOUT_S + timeout_s
    setup_deadline = time.monotonic() + SETUP_TIMEOUT_S
    barrier_r, barrier_w = os.pipe()
    children = Children()
    sync_ours: socket.socket | None = None
    try:
        for i in range(load.writers):
            body = writer_body(load, i, daemon.log_path, barrier_r, deadline_wall)
            children.add(_fork("writer", i, [barrier_w, *children.fds()], body))
        writers = list(children.all)
        children.wait_until(
            lambda: all(c.has("ready") for c in writers), setup_deadline, "writers to register"
        )
        # Datagrams are taken in order: once the sync source is registered, so are the writers.
        sync_ours, sync_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        send_fd(daemon.log_path, "bench.sync", sync_theirs.fileno())
        sync_theirs.close()
        followers = []
        for i in range(load.followers):
            body = follower_body(load.total_lines, daemon.query_path, deadline_wall)
            close = [barrier_w, sync_ours.fileno(), *children.fds()]
            followers.append(children.add(_fork("follower", i, close, body)))
        children.wait_until(
            lambda: all(c.has("connected") for c in followers),
            setup_deadline,
            "followers to connect",
        )
        while not all(c.has("synced") for c in followers):
            sync_ours.sendall(SYNC_TEXT + b"\n")
            resend = time.monotonic() + SYNC_EVERY_S
            children.wait_until(
                lambda t=resend: (
                    time.monotonic() >= t  # type: ignore[misc]
                    or all(c.has("synced") for c in followers)
                ),
                setup_deadline,
                "followers to see the sync line",
            )
        cpu_before = procfs.cpu_seconds(daemon.pid)
        start_ns = time.time_ns()
        os.close(barrier_w)  # every writer starts now
        barrier_w = -1
        children.wait_until(
            lambda: all(c.result() is not None for c in children.all),
            time.monotonic() + timeout_s,
            "the run to finish",
        )
        cpu_after = procfs.cpu_seconds(daemon.pid)
        peak_rss = procfs.peak_rss_kib(daemon.pid)
        pss = procfs.tree_memory(daemon.pid).pss_kib
    finally:
        if sync_ours is not None:
            sync_ours.close()
        for fd in (barrier_r, barrier_w):
            if fd >= 0:
                os.close(fd)
        children.close()
    return {
        "start_ns": start_ns,
        "writers": [c.result() for c in writers],
        "followers": [c.result() for c in followers],
        "daemon_cpu_s": cpu_after - cpu_before,
        "daemon_peak_rss_kib": peak_rss,
        "daemon_pss_kib": pss,
        "daemon_alive": daemon.proc.poll() is None,
    }


def fill_ring(
    daemon: Daemon, lines: int, line_bytes: int, timeout_s: float, name: str = "bench.fill"
) -> bool:
    """Write ``lines`` lines of ``line_bytes`` from one source ``name`` (in this
    process) and wait until the daemon has read them all (it closes its end)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        send_fd(daemon.log_path, name, theirs.fileno())
        theirs.close()
        per = lines_per_write(line_bytes)
        ours.settimeout(timeout_s)
        try:
            for seq in range(0, lines, per):
                ours.sendall(
                    stamp(line_parts(0, seq, min(per, lines - seq), line_bytes), time.time_ns())
                )
            ours.shutdown(socket.SHUT_WR)
            while ours.recv(4096):
                pass
        except OSError:
            return False
    return True
