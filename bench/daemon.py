"""Starting and stopping the daemon under test, and knowing when it serves."""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.0005  # between connection attempts when readiness is polled
PLACEHOLDERS = ("{log}", "{query}")


class DaemonError(RuntimeError):
    """The daemon could not be started (the message says why)."""


def check_template(template: str) -> None:
    """A ``--daemon`` command must name both sockets."""
    missing = [p for p in PLACEHOLDERS if p not in template]
    if missing:
        raise ValueError(f"--daemon command lacks {' and '.join(missing)}")
    if not shlex.split(template):
        raise ValueError("--daemon command is empty")


def our_command(log: str, query: str, max_lines: int, ready_fd: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "memlogd",
        "-socket-log",
        log,
        "-socket-query",
        query,
        "-max-lines",
        str(max_lines),
        "--no-console",
        "--ready-fd",
        str(ready_fd),
    ]


def expand(template: str, log: str, query: str, max_lines: int) -> list[str]:
    """The argv of a ``--daemon`` template: ``{log}``, ``{query}`` and
    ``{max_lines}`` are replaced (in each word, after splitting)."""
    return [
        word.replace("{log}", log).replace("{query}", query).replace("{max_lines}", str(max_lines))
        for word in shlex.split(template)
    ]


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log_path: str
    query_path: str
    stderr_path: Path
    startup_s: float

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a deadline; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode


_counter = 0


def start_daemon(template: str | None, workdir: Path, max_lines: int) -> Daemon:
    """Start a daemon on fresh socket paths in ``workdir``; returns once its
    query socket serves.  ``template`` None = our memlogd, ready via --ready-fd;
    otherwise readiness is polled (the query socket accepts a connection)."""
    global _counter
    _counter += 1
    log = str(workdir / f"l{_counter}.sock")
    query = str(workdir / f"q{_counter}.sock")
    stderr_path = workdir / f"daemon{_counter}.stderr"
    ready_r = ready_w = -1
    if template is None:
        ready_r, ready_w = os.pipe()
        argv = our_command(log, query, max_lines, ready_w)
    else:
        argv = expand(template, log, query, max_lines)
    with open(stderr_path, "wb") as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(ready_w,) if ready_w >= 0 else (),
            )
        except OSError as exc:
            for fd in (ready_r, ready_w):
                if fd >= 0:
                    os.close(fd)
            raise DaemonError(f"cannot run {argv[0]}: {exc.strerror}") from None
    daemon = Daemon(proc, log, query, stderr_path, 0.0)
    try:
        if ready_w >= 0:
            os.close(ready_w)
            ok = _wait_ready_fd(ready_r, start)
        else:
            ok = _poll_ready(daemon, start)
        daemon.startup_s = time.perf_counter() - start
    finally:
        if ready_r >= 0:
            os.close(ready_r)
    if not ok:
        daemon.stop()
        raise DaemonError(
            f"the daemon did not serve within {READY_TIMEOUT_S:g}s "
            f"(exit status {proc.returncode}): {daemon.stderr_tail()}"
        )
    return daemon


def _wait_ready_fd(fd: int, start: float) -> bool:
    remaining = READY_TIMEOUT_S - (time.perf_counter() - start)
    ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
    return bool(ready) and os.read(fd, 1) == b"\n"


def _poll_ready(daemon: Daemon, start: float) -> bool:
    while time.perf_counter() - start < READY_TIMEOUT_S:
        if daemon.proc.poll() is not None:
            return False
        if os.path.exists(daemon.log_path):
            with (
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe,
                contextlib.suppress(OSError),
            ):
                probe.connect(daemon.query_path)
                return True
        time.sleep(POLL_S)
    return False
