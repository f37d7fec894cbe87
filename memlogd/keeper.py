"""The keeper: the process that holds everything a worker may lose (docs/memlogd.md,
"The keeper").

It owns the two sockets, a copy of every source fd, and the journal (a memfd
the workers write the ring into); it receives every fd datagram itself, keeps
its copy and hands the worker one.  It does as little as possible, so that
it cannot fail: one ``poll`` loop over the log socket, the worker's socket
pair and a signal pipe; no trio, no JSON, no clients.  It lowers its own OOM
score where it may.

* A worker that dies (SIGKILL included) is replaced at once by a new one,
  forked from the keeper, which had imported the worker's modules without
  running them; crash loops back off (doubling to ``MAX_BACKOFF_S``), and
  after ``MAX_FAILED_STARTS`` failed starts in a row the keeper gives up.
* SIGUSR2: upgrade.  The program on disk is checked first (``--check``); then
  the keeper re-executes itself with every fd (``--keeper-state``), the new
  keeper asks the old worker to hand over, and starts a new one.
* SIGTERM/SIGINT: the worker stops cleanly, then the keeper; exit 0.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NoReturn

import structlog

from memlogd import handover
from memlogd.config import GRACE_S, DaemonConfig
from memlogd.fdmsg import ANCBUF_SIZE, fd_ancdata, fds_of, parse_fd_datagram
from memlogd.journal import capacity_for, new_header
from memlogd.protocol import MAX_NAME_BYTES
from memlogd.roles import RoleConfig
from memlogd.sockets import unlink_quietly

READY_TIMEOUT_S = 5.0  # a worker not ready this long after its start failed to start
MAX_FAILED_STARTS = 10  # in a row: then the keeper gives up (exit 1)
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
STABLE_S = 1.0  # a worker that served this long before dying is restarted at once
STOP_TIMEOUT_S = GRACE_S + 3.0  # a stopping worker that takes longer is killed
KEEPER_OOM_SCORE = "-1000"  # the keeper is small and holds everything
MAX_PENDING_REFUSED = 64  # refusals kept for a worker that is not there yet
OOM_SCORE_ADJ = "/proc/self/oom_score_adj"


log = structlog.get_logger("memlogd")  # stderr only: the keeper has no ring


@dataclass
class Held:
    """The keeper's copy of a source fd."""

    fd: int
    spec: handover.SourceSpec


@dataclass
class Worker:
    pid: int
    sock: socket.socket
    started: float
    ready_at: float | None = None
    killed: bool = False
    outbox: list[tuple[bytes, list[int]]] = field(default_factory=list)  # not sent yet


@dataclass
class KeeperState:
    """What the keeper holds; carried across its own re-execution as fds and
    a small binary description (:func:`encode_state`)."""

    config: DaemonConfig
    argv: list[str]  # memlogd's arguments, for a re-execution
    log_sock: socket.socket
    query_sock: socket.socket
    owned: list[str]  # socket files to remove at exit
    journal_fd: int
    held: dict[int, Held] = field(default_factory=dict)
    next_key: int = 1
    worker_starts: int = 0
    oom_score: str | None = None
    roles: RoleConfig | None = None


def create_journal(config: DaemonConfig) -> int:
    """A new journal in shared memory (the worker maps it; the keeper only holds it)."""
    size = capacity_for(config.max_lines, config.max_line_len)
    fd = os.memfd_create("memlogd-journal", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    os.pwrite(fd, new_header(size, str(uuid.uuid4())), 0)
    return fd


def lower_oom_score() -> str | None:
    """Lower the keeper's OOM score where allowed; the old score, for the worker."""
    try:
        with open(OOM_SCORE_ADJ) as f:
            old = f.read().strip()
        with open(OOM_SCORE_ADJ, "w") as f:
            f.write(KEEPER_OOM_SCORE)
    except OSError:
        return None
    return old


def raise_fd_limit() -> None:
    """Every source fd is held twice (keeper and worker): use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class RestartPolicy:
    """When to start a worker again: at once after a worker that served a while;
    with a doubling delay in a crash loop; never after ``MAX_FAILED_STARTS``
    failed starts (exits, or not ready in time) in a row."""

    def __init__(self) -> None:
        self.failed_starts = 0
        self.backoff = 0.0

    def ready(self) -> None:
        self.failed_starts = 0

    def ended(self, now: float, ready_at: float | None) -> float | None:
        """The delay before the next start, or None: give up."""
        if ready_at is None:
            self.failed_starts += 1
            if self.failed_starts >= MAX_FAILED_STARTS:
                return None
        if ready_at is not None and now - ready_at >= STABLE_S:
            self.backoff = 0.0
        else:
            self.backoff = min(max(self.backoff * 2, MIN_BACKOFF_S), MAX_BACKOFF_S)
        return self.backoff


class Keeper:
    def __init__(self, state: KeeperState) -> None:
        self.s = state
        self.worker: Worker | None = None
        self.retiring: dict[int, float] = {}  # old workers finishing their dumps: deadline
        self.checker: int | None = None  # the pid of the upgrade check
        self.partials_fd: int | None = None  # handed over by the last worker
        self.previous: str | None = None  # how the last worker ended
        self.upgrading = False
        self.stopping: float | None = None  # deadline of a clean stop
        self.policy = RestartPolicy()
        self.restart_at: float | None = None
        self.refused: list[bytes] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # ------------------------------------------------------------------ the loop

    def run(self, *, handing_over_from: Worker | None = None) -> NoReturn:
        """Serve until stopped; never returns (the process exits)."""
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGCHLD):
            signal.signal(signum, _noop)
        gc.collect()
        gc.freeze()  # what a worker inherits stays shared: the collector never writes it
        if handing_over_from is not None:  # after an upgrade: the old worker hands over
            self.worker = handing_over_from
            self.upgrading = True
            self._send(handover.Stop(handover=True))
        else:
            self._start_worker()
        while True:
            self._poll_once()

    def _poll_once(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self.s.log_sock, select.POLLIN)
        worker = self.worker
        if worker is not None:
            poller.register(worker.sock, select.POLLIN | (select.POLLOUT if worker.outbox else 0))
        try:
            events = poller.poll(self._timeout_ms())
        except InterruptedError:
            events = []
        for fd, mask in events:
            if fd == self._wake_r:
                self._signals()
            elif fd == self.s.log_sock.fileno():
                self._receive_datagram()
            elif worker is not None and worker is self.worker and fd == worker.sock.fileno():
                if mask & select.POLLOUT:
                    self._flush()
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self._from_worker(worker)
        self._timers()

    def _timeout_ms(self) -> int:
        stopping = None if self.worker is not None and self.worker.killed else self.stopping
        deadlines = [t for t in (self.restart_at, stopping) if t is not None]
        deadlines += self.retiring.values()
        worker = self.worker
        if worker is not None and worker.ready_at is None and not worker.killed:
            deadlines.append(worker.started + READY_TIMEOUT_S)
        if not deadlines:
            return -1
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _timers(self) -> None:
        now = time.monotonic()
        if self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            self._start_worker()
        worker = self.worker
        if worker is None or worker.killed:
            pass
        elif worker.ready_at is None and now >= worker.started + READY_TIMEOUT_S:
            log.error("worker_not_ready", pid=worker.pid, seconds=READY_TIMEOUT_S)
            _kill(worker.pid)
            worker.killed = True
        elif self.stopping is not None and now >= self.stopping:
            log.error("worker_stop_timeout", pid=worker.pid, seconds=STOP_TIMEOUT_S)
            _kill(worker.pid)
            worker.killed = True
        for pid, deadline in list(self.retiring.items()):
            if now >= deadline:
                _kill(pid)
                self.retiring[pid] = now + 3600  # killed: only its reaping is left

    # ------------------------------------------------------------------ signals

    def _signals(self) -> None:
        try:
            received = os.read(self._wake_r, 256)
        except BlockingIOError:
            return
        for signum in received:
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self._stop(signum)
            elif signum == signal.SIGUSR2:
                self._check_upgrade()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.checker:
                self._upgrade_checked(os.waitstatus_to_exitcode(status))
            elif self.worker is not None and pid == self.worker.pid:
                self._worker_ended(status)
            else:
                self.retiring.pop(pid, None)
                if self.stopping is not None and self.worker is None and not self.retiring:
                    self.exit(0)

    def _worker_ended(self, status: int) -> None:
        worker = self.worker
        assert worker is not None
        self._from_worker(worker)  # what it said before it went: releases, readiness
        if self.worker is not worker:  # it had handed over: a new worker runs already
            self.retiring.pop(worker.pid, None)
            return
        worker.sock.close()
        self.worker = None
        if self.stopping is not None:
            if not self.retiring:
                self.exit(0)
            return
        self.previous = _describe(os.waitstatus_to_exitcode(status))
        now = time.monotonic()
        delay = self.policy.ended(now, worker.ready_at)
        if delay is None:
            log.error(
                "giving_up",
                failed_starts=self.policy.failed_starts,
                last=self.previous,
                consequence="memlogd stops; its sources are closed",
            )
            self.exit(1)
        log.warning("worker_died", pid=worker.pid, status=self.previous, restart_in_s=delay)
        self.restart_at = now + delay

    # ------------------------------------------------------------------ workers

    def _start_worker(self) -> None:
        s = self.s
        s.worker_starts += 1
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = {0, 1, 2, s.query_sock.fileno(), s.journal_fd, theirs.fileno()}
        keep |= {held.fd for held in s.held.values()}
        if self.partials_fd is not None:
            keep.add(self.partials_fd)
        spec = self._worker_spec(theirs.fileno())
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 70
            try:
                signal.set_wakeup_fd(-1)
                _close_all_but(keep)
                from memlogd.worker import run_worker

                code = run_worker(spec)
            finally:
                os._exit(code)
        theirs.close()
        if self.partials_fd is not None:
            os.close(self.partials_fd)
            self.partials_fd = None
        ours.setblocking(False)
        self.worker = Worker(pid, ours, time.monotonic())
        self.refused, pending = [], self.refused
        for packet in pending:
            self._queue(packet, [])
        self._flush()

    def _worker_spec(self, control_fd: int) -> Any:
        from memlogd.server.serve import Keeping
        from memlogd.worker import WorkerSpec

        s = self.s
        return WorkerSpec(
            config=s.config,
            query_fd=s.query_sock.fileno(),
            journal_fd=s.journal_fd,
            control_fd=control_fd,
            sources=tuple((held.spec, held.fd) for held in s.held.values()),
            partials_fd=self.partials_fd,
            keeping=Keeping(
                keeper_pid=os.getpid(),
                worker_starts=s.worker_starts,
                previous=None if self.partials_fd is not None else self.previous,
                upgraded=self.partials_fd is not None,
            ),
            oom_score=s.oom_score,
            roles=s.roles,
        )

    def _from_worker(self, worker: Worker) -> None:
        """Every packet the worker sent (it may have died since)."""
        while True:
            try:
                data, anc, _flags, _ = worker.sock.recvmsg(
                    handover.MAX_PACKET, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            fds = fds_of(anc)
            if not data:
                for fd in fds:
                    os.close(fd)
                return
            try:
                message = handover.decode(data)
            except Exception as exc:  # a worker's bug must not end the keeper
                log.error("worker_message_malformed", error=str(exc))
                message = None
            if isinstance(message, handover.Release):
                for key in message.keys:
                    held = self.s.held.pop(key, None)
                    if held is not None:
                        os.close(held.fd)
            elif isinstance(message, handover.Ready):
                worker.ready_at = time.monotonic()
                self.policy.ready()
            elif isinstance(message, handover.HandedOver) and fds:
                self.partials_fd = fds.pop(0)
                self._handed_over(worker)
            for fd in fds:
                os.close(fd)

    def _handed_over(self, worker: Worker) -> None:
        """The old worker stopped reading and committed everything: start the new
        one now (the old one finishes its dumps meanwhile)."""
        self.upgrading = False
        self.retiring[worker.pid] = time.monotonic() + STOP_TIMEOUT_S
        worker.sock.close()
        self.worker = None
        if self.stopping is None:  # (stopped meanwhile: the keeper ends with it)
            self._start_worker()

    # ------------------------------------------------------------------ sources

    def _receive_datagram(self) -> None:
        try:
            data, anc, flags, _ = self.s.log_sock.recvmsg(
                MAX_NAME_BYTES + 1, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
            )
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.error("log_socket_error", error=exc.strerror)
            time.sleep(0.01)
            return
        grant = parse_fd_datagram(data, anc, flags)
        if grant.problem is not None:
            for fd in grant.fds:
                os.close(fd)
            refused = handover.Refused(
                grant.name, grant.pid, grant.uid, len(grant.fds), grant.problem
            )
            packet = handover.encode(refused)
            if self.worker is not None:
                self._queue(packet, [])
            elif len(self.refused) < MAX_PENDING_REFUSED:
                self.refused.append(packet)
            return
        keys = []
        for fd in grant.fds:
            key = self.s.next_key
            self.s.next_key += 1
            self.s.held[key] = Held(fd, handover.SourceSpec(key, grant.name, grant.pid, grant.uid))
            keys.append(key)
        if self.worker is not None:  # else the next worker inherits them all
            packet = handover.encode(
                handover.Sources(grant.name, grant.pid, grant.uid, tuple(keys))
            )
            self._queue(packet, list(grant.fds))
            self._flush()

    def _queue(self, packet: bytes, fds: list[int]) -> None:
        assert self.worker is not None
        self.worker.outbox.append((packet, fds))

    def _send(self, message: handover.Message) -> None:
        if self.worker is not None:
            self._queue(handover.encode(message), [])
            self._flush()

    def _flush(self) -> None:
        worker = self.worker
        while worker is not None and worker.outbox:
            packet, fds = worker.outbox[0]
            try:
                worker.sock.sendmsg([packet], fd_ancdata(fds) if fds else [])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # it died: the next worker inherits everything
                worker.outbox.clear()
                return
            worker.outbox.pop(0)

    # ------------------------------------------------------------------ stop

    def _stop(self, signum: int) -> None:
        if self.stopping is not None:
            return
        self.stopping = time.monotonic() + STOP_TIMEOUT_S
        self.restart_at = None
        if self.worker is None:
            if not self.retiring:
                self.exit(0)
            return
        self._send(handover.Stop(handover=False, signal=signum))

    def exit(self, code: int) -> NoReturn:
        """Close everything, remove the socket files, exit with ``code``."""
        s = self.s
        for held in s.held.values():
            with contextlib.suppress(OSError):
                os.close(held.fd)
        s.log_sock.close()
        s.query_sock.close()
        for path in s.owned:
            unlink_quietly(path)
        sys.exit(code)

    # ------------------------------------------------------------------ upgrade

    def _check_upgrade(self) -> None:
        if self.upgrading or self.checker is not None or self.stopping is not None:
            log.warning("upgrade_ignored", reason="already upgrading or stopping")
            return
        if self.worker is None or self.worker.ready_at is None:
            log.warning("upgrade_ignored", reason="no worker serving")
            return
        log.info("upgrade_checking", program=sys.executable)
        argv = [sys.executable, "-m", "memlogd", "--check", *self.s.argv]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)
        self.checker = proc.pid

    def _upgrade_checked(self, code: int) -> None:
        self.checker = None
        if code != 0:
            log.error("upgrade_refused", reason=f"the program on disk failed its check ({code})")
            return
        if self.worker is None or self.stopping is not None:
            log.warning("upgrade_ignored", reason="no worker serving")
            return
        self.upgrading = True
        reexec(self.s, self.worker)


# ---------------------------------------------------------------------- re-execution

_STATE_HEAD = struct.Struct("<iiiiiQQi")  # log, query, journal, worker sock, pid, next, starts, n
_STATE_SOURCE = struct.Struct("<iQiiH")  # fd, key, pid, uid, name length


def reexec(state: KeeperState, worker: Worker) -> NoReturn:
    """Become the program on disk, keeping every fd and the worker (our child)."""
    held = list(state.held.values())
    parts = [
        _STATE_HEAD.pack(
            state.log_sock.fileno(),
            state.query_sock.fileno(),
            state.journal_fd,
            worker.sock.fileno(),
            worker.pid,
            state.next_key,
            state.worker_starts,
            len(held),
        )
    ]
    for h in held:
        name = h.spec.name.encode("utf-8", "replace")
        pid = -1 if h.spec.pid is None else h.spec.pid
        uid = -1 if h.spec.uid is None else h.spec.uid
        parts.append(_STATE_SOURCE.pack(h.fd, h.spec.key, pid, uid, len(name)) + name)
    extra = "\0".join([state.oom_score or "", *state.owned]).encode()
    blob = b"".join(parts) + struct.pack("<I", len(extra)) + extra
    fd = os.memfd_create("memlogd-keeper-state", 0)
    os.write(fd, blob)
    for kept in [state.log_sock.fileno(), state.query_sock.fileno(), state.journal_fd]:
        os.set_inheritable(kept, True)
    os.set_inheritable(worker.sock.fileno(), True)
    for h in held:
        os.set_inheritable(h.fd, True)
    signal.set_wakeup_fd(-1)
    argv = [sys.executable, "-m", "memlogd", "--keeper-state", str(fd), *state.argv]
    os.execv(sys.executable, argv)


def adopt_state(fd: int, config: DaemonConfig, argv: list[str]) -> tuple[KeeperState, Worker]:
    """The state :func:`reexec` passed on (in the new program)."""
    data = b""
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    os.close(fd)
    log_fd, query_fd, journal_fd, worker_fd, pid, next_key, starts, count = _STATE_HEAD.unpack_from(
        data
    )
    at = _STATE_HEAD.size
    held: dict[int, Held] = {}
    for _ in range(count):
        sfd, key, spid, suid, length = _STATE_SOURCE.unpack_from(data, at)
        at += _STATE_SOURCE.size
        name = data[at : at + length].decode("utf-8", "replace")
        at += length
        spec = handover.SourceSpec(
            key, name, None if spid == -1 else spid, None if suid == -1 else suid
        )
        held[key] = Held(sfd, spec)
        os.set_inheritable(sfd, False)
    (length,) = struct.unpack_from("<I", data, at)
    oom, *owned = data[at + 4 : at + 4 + length].decode().split("\0")
    for kept in (log_fd, query_fd, journal_fd, worker_fd):
        os.set_inheritable(kept, False)
    log_sock = socket.socket(fileno=log_fd)
    query_sock = socket.socket(fileno=query_fd)
    worker_sock = socket.socket(fileno=worker_fd)
    worker_sock.setblocking(False)
    state = KeeperState(
        config=config,
        argv=argv,
        log_sock=log_sock,
        query_sock=query_sock,
        owned=owned,
        journal_fd=journal_fd,
        held=held,
        next_key=next_key,
        worker_starts=starts,
        oom_score=oom or None,
    )
    return state, Worker(pid, worker_sock, time.monotonic(), ready_at=time.monotonic())


# ---------------------------------------------------------------------- helpers


def _noop(_signum: int, _frame: object) -> None:
    """The signal's number reaches the loop through the wakeup fd."""


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _close_all_but(keep: set[int]) -> None:
    """Close every fd of this process but ``keep`` (a forked worker's start)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
