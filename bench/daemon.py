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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import query

READY_TIMEOUT_S = 15.0  # to bound sockets, and again to the first answered query
STOP_TIMEOUT_S = 10.0
EXIT_GRACE_S = 1.0  # for a daemon that failed to start, to see it exit by itself
POLL_S = 0.0005  # between connection attempts when readiness is polled
PLACEHOLDERS = ("{log}", "{query}")
READY_FD = "{ready_fd}"  # optional in a template: a pipe the daemon writes a newline to


class DaemonError(RuntimeError):
    """The daemon could not be started (the message says why)."""


def check_template(template: str) -> None:
    """A ``--daemon`` command must name both sockets."""
    missing = [p for p in PLACEHOLDERS if p not in template]
    if missing:
        raise ValueError(f"--daemon command lacks {' and '.join(missing)}")
    if not shlex.split(template):
        raise ValueError("--daemon command is empty")


def our_command(
    log: str, query: str, max_lines: int, ready_fd: int, extra: Sequence[str] = ()
) -> list[str]:
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
        *extra,
    ]


def expand(
    template: str, log: str, query: str, max_lines: int, ready_fd: int | None = None
) -> list[str]:
    """The argv of a ``--daemon`` template: ``{log}``, ``{query}``,
    ``{max_lines}`` and ``{ready_fd}`` are replaced (in each word, after splitting)."""
    words = []
    for word in shlex.split(template):
        word = word.replace("{log}", log).replace("{query}", query)
        word = word.replace("{max_lines}", str(max_lines))
        if ready_fd is not None:
            word = word.replace(READY_FD, str(ready_fd))
        words.append(word)
    return words


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log_path: str
    query_path: str
    stderr_path: Path
    ready_by: str  # "ready-fd" (written by the daemon) or "polling" (the query socket accepts)
    ready_s: float = 0.0  # exec -> both sockets bound (--ready-fd written, or connectable)
    answered_s: float | None = None  # exec -> first byte of the answer to a dump (mode 0)

    @property
    def pid(self) -> int:
        """The process we started: with our memlogd, the keeper."""
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


def start_daemon(
    template: str | None,
    workdir: Path,
    max_lines: int,
    extra: Sequence[str] = (),
    wait_answer: bool = True,
) -> Daemon:
    """Start a daemon on fresh socket paths in ``workdir``; returns once its
    sockets are bound and (``wait_answer``) a dump query was answered, with
    both times measured from just before the exec.

    ``template`` None = our memlogd (with ``extra`` flags), ready via
    ``--ready-fd``; a template with ``{ready_fd}`` likewise; otherwise
    readiness is polled (the query socket accepts a connection, which then
    asks for the dump)."""
    global _counter
    _counter += 1
    log = str(workdir / f"l{_counter}.sock")
    query = str(workdir / f"q{_counter}.sock")
    stderr_path = workdir / f"daemon{_counter}.stderr"
    ready_r = ready_w = -1
    if template is None or READY_FD in template:
        ready_r, ready_w = os.pipe()
    if template is None:
        argv = our_command(log, query, max_lines, ready_w, extra)
    else:
        argv = expand(template, log, query, max_lines, ready_w if ready_w >= 0 else None)
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
    daemon = Daemon(proc, log, query, stderr_path, "ready-fd" if ready_w >= 0 else "polling")
    probe = None
    stage = "serve"
    try:
        if ready_w >= 0:
            os.close(ready_w)
            ok = _wait_ready_fd(ready_r, start)
        else:
            probe = _poll_ready(daemon, start)
            ok = probe is not None
        daemon.ready_s = time.perf_counter() - start
        if ok and wait_answer:
            stage = "answer a query"
            daemon.answered_s = _answer(daemon, probe, start)
            ok = daemon.answered_s is not None
    finally:
        if ready_r >= 0:
            os.close(ready_r)
        if probe is not None:
            probe.close()
    if not ok:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(EXIT_GRACE_S)  # its own exit status, if it is dying
        died = proc.returncode is not None
        daemon.stop()
        within = "" if died else f" within {READY_TIMEOUT_S:g}s"
        raise DaemonError(
            f"the daemon did not {stage}{within} "
            f"(exit status {proc.returncode}): {daemon.stderr_tail(1)}"
        )
    return daemon


def _wait_ready_fd(fd: int, start: float) -> bool:
    remaining = READY_TIMEOUT_S - (time.perf_counter() - start)
    ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
    return bool(ready) and os.read(fd, 1) == b"\n"


def _poll_ready(daemon: Daemon, start: float) -> socket.socket | None:
    """Connect until the query socket accepts (after the log socket exists):
    the connected socket, or None if the daemon died or the deadline passed."""
    while time.perf_counter() - start < READY_TIMEOUT_S:
        if daemon.proc.poll() is not None:
            return None
        if os.path.exists(daemon.log_path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(daemon.query_path)
            except OSError:
                probe.close()
            else:
                return probe
        time.sleep(POLL_S)
    return None


def _answer(daemon: Daemon, probe: socket.socket | None, start: float) -> float | None:
    """Seconds from ``start`` to the first byte answering a dump (None: no answer
    before the deadline, or the daemon died)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with contextlib.suppress(OSError):
        if probe is not None:
            return query.first_answer(probe, start, deadline)
        return query.answer_after_connect(daemon.query_path, start, READY_TIMEOUT_S)
    return None
