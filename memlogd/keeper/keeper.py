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

It knows nothing of the daemon's code: :mod:`memlogd.cli` hands it the
function a forked worker runs (given a :class:`~memlogd.wire.handover.WorkerStart`)
and a logger, and imports the worker's modules before the keeper forks.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from memlogd.config import FD_DATAGRAMS_PER_PASS, GRACE_S
from memlogd.keeper.keeperstate import Held, KeeperState, Worker, reexec
from memlogd.keeper.restart import RestartPolicy, describe_exit
from memlogd.sockets import unlink_quietly
from memlogd.wire import handover
from memlogd.wire.fdmsg import ANCBUF_SIZE, fd_ancdata, fds_of, parse_fd_datagram
from memlogd.wire.protocol import MAX_NAME_BYTES

READY_TIMEOUT_S = 5.0  # a worker not ready this long after its start failed to start
STOP_TIMEOUT_S = GRACE_S + 3.0  # a stopping worker that takes longer is killed
MAX_PENDING_REFUSED = 64  # refusals kept for a worker that is not there yet
EXIT_WORKER_CRASHED = 70  # a worker's entry that raised (EX_SOFTWARE)

WorkerEntry = Callable[[handover.WorkerStart], int]  # runs in the forked child: its exit status
# SPEC 19: every signal an admin may send is handled or ignored, at every moment
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGCHLD)
IGNORED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM, signal.SIGPIPE)


class Log(Protocol):
    """Events with data as keys (a structlog logger; stderr only: the keeper has no ring)."""

    def info(self, event: str, **kw: Any) -> Any: ...

    def warning(self, event: str, **kw: Any) -> Any: ...

    def error(self, event: str, **kw: Any) -> Any: ...


class Keeper:
    def __init__(self, state: KeeperState, run_worker: WorkerEntry, log: Log) -> None:
        self.s = state
        self.run_worker = run_worker
        self.log = log
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
        for signum in HANDLED:
            signal.signal(signum, _noop)
        for signum in IGNORED:
            signal.signal(signum, signal.SIG_IGN)
        gc.collect()
        gc.freeze()  # what a worker inherits stays shared: the collector never writes it
        if handing_over_from is not None:  # after an upgrade: the old worker hands over
            self.worker = handing_over_from
            self.upgrading = True
            self._send(handover.Stop(handover=True))
        # what came while the keeper re-executed itself (blocked by reexec) arrives now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        if handing_over_from is None:
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
                for _ in range(FD_DATAGRAMS_PER_PASS):  # all waiting, bounded
                    if not self._receive_datagram():
                        break
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
            self.log.error("worker_not_ready", pid=worker.pid, seconds=READY_TIMEOUT_S)
            _kill(worker.pid)
            worker.killed = True
        elif self.stopping is not None and now >= self.stopping:
            self.log.error("worker_stop_timeout", pid=worker.pid, seconds=STOP_TIMEOUT_S)
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
        self.previous = describe_exit(os.waitstatus_to_exitcode(status))
        now = time.monotonic()
        delay = self.policy.ended(now, worker.ready_at)
        if delay is None:
            self.log.error(
                "giving_up",
                failed_starts=self.policy.failed_starts,
                last=self.previous,
                consequence="memlogd stops; its sources are closed",
            )
            self.exit(1)
        self.log.warning("worker_died", pid=worker.pid, status=self.previous, restart_in_s=delay)
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
        start = self._worker_start(theirs.fileno())
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = EXIT_WORKER_CRASHED
            try:
                signal.set_wakeup_fd(-1)
                _close_all_but(keep)
                code = self.run_worker(start)
            except BaseException:  # a worker that cannot start says why (SPEC 19)
                _report_failure()
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

    def _worker_start(self, control_fd: int) -> handover.WorkerStart:
        s = self.s
        return handover.WorkerStart(
            query_fd=s.query_sock.fileno(),
            journal_fd=s.journal_fd,
            control_fd=control_fd,
            sources=tuple((held.spec, held.fd) for held in s.held.values()),
            partials_fd=self.partials_fd,
            keeper_pid=os.getpid(),
            worker_starts=s.worker_starts,
            previous=None if self.partials_fd is not None else self.previous,
            oom_score=s.oom_score,
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
                self.log.error("worker_message_malformed", error=str(exc))
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

    def _receive_datagram(self) -> bool:
        """One fd datagram taken (False: none was waiting)."""
        try:
            data, anc, flags, _ = self.s.log_sock.recvmsg(
                MAX_NAME_BYTES + 1, ANCBUF_SIZE, socket.MSG_CMSG_CLOEXEC
            )
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.log.error("log_socket_error", error=exc.strerror)
            time.sleep(0.01)
            return False
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
            return True
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
        return True

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
            self.log.warning("upgrade_ignored", reason="already upgrading or stopping")
            return
        if self.worker is None or self.worker.ready_at is None:
            self.log.warning("upgrade_ignored", reason="no worker serving")
            return
        self.log.info("upgrade_checking", program=sys.executable)
        argv = [sys.executable, "-m", "memlogd", "--check", *self.s.argv]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, close_fds=True)
        self.checker = proc.pid

    def _upgrade_checked(self, code: int) -> None:
        self.checker = None
        if code != 0:
            self.log.error(
                "upgrade_refused", reason=f"the program on disk failed its check ({code})"
            )
            return
        if self.worker is None or self.stopping is not None:
            self.log.warning("upgrade_ignored", reason="no worker serving")
            return
        self.upgrading = True
        try:
            reexec(self.s, self.worker)
        except OSError as exc:  # the program could not be run: this keeper goes on
            signal.set_wakeup_fd(self._wake_w)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            self.upgrading = False
            self.log.error("upgrade_failed", error=exc.strerror or str(exc))


# ---------------------------------------------------------------------- helpers


def _noop(_signum: int, _frame: object) -> None:
    """The signal's number reaches the loop through the wakeup fd."""


def _report_failure() -> None:
    """The exception being handled, with its traceback, on stderr (the keeper's
    log), before the worker exits with status 70."""
    with contextlib.suppress(BaseException):
        sys.stderr.write("memlogd: worker_failed: the worker could not go on:\n")
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


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
