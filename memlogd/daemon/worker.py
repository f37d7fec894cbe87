"""The worker: the daemon, forked from its keeper (docs/memlogd.md, "The keeper").

The keeper imported this module (and with it trio and the whole server)
without running any of it, so a forked worker starts serving in a few
milliseconds and shares those pages with the keeper.  The worker rebuilds
the ring from the journal, takes every source the keeper holds, and serves
until its keeper tells it to stop (or dies).  It ignores SIGINT and SIGTERM:
a terminal's Ctrl-C reaches the whole process group, and stopping is the
keeper's decision.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import socket
from dataclasses import dataclass

import structlog
import trio

from memlogd.config import DaemonConfig
from memlogd.daemon.encoding import encode_block
from memlogd.daemon.journal import Journal
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Ring
from memlogd.daemon.serve import Daemon, Keeping, run
from memlogd.daemon.state import LogState
from memlogd.errors import ProtocolError
from memlogd.roles import RoleConfig
from memlogd.wire import handover

log = structlog.get_logger("memlogd")

OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
# A test hook (docs/memlogd.md, "Tests"): a worker fails at its start while this file exists.
FAIL_IF_ENV = "MEMLOGD_TEST_WORKER_FAILS_IF"
EXIT_TEST_FAILURE = 3


@dataclass(frozen=True)
class WorkerSpec:
    config: DaemonConfig
    query_fd: int
    journal_fd: int
    control_fd: int
    sources: tuple[tuple[handover.SourceSpec, int], ...]  # with the worker's copy of each fd
    partials_fd: int | None  # the partial lines an upgraded worker handed over
    keeping: Keeping
    oom_score: str | None  # the OOM score the keeper had before it lowered its own
    roles: RoleConfig | None = None


def run_worker(spec: WorkerSpec) -> int:
    """In the forked child: undo what is the keeper's, serve, return the exit status."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if spec.oom_score is not None:
        with contextlib.suppress(OSError), open(OOM_SCORE_ADJ, "w") as f:
            f.write(spec.oom_score)
    fail_if = os.environ.get(FAIL_IF_ENV)
    if fail_if and os.path.exists(fail_if):
        return EXIT_TEST_FAILURE
    return trio.run(_serve, spec)


def replay(journal: Journal, config: DaemonConfig) -> Ring:
    """The ring a journal holds: the same entries with the same seq."""
    records = list(journal.records())
    ring = Ring(
        config.max_lines,
        config.max_bytes,
        records[0].first_seq if records else journal.next_seq,
    )
    for record in records:
        if record.first_seq != ring.next_seq:  # never: the journal has no holes
            log.error("journal_gap", expected=ring.next_seq, found=record.first_seq)
            continue
        lines = Lines.of(record.lines)
        ring.extend(encode_block(record.time_ns, record.source, lines))
    return ring


def _partials(fd: int | None) -> dict[int, handover.Partial]:
    if fd is None:
        return {}
    try:
        data = b""
        while chunk := os.pread(fd, 1 << 20, len(data)):
            data += chunk
        return handover.decode_partials(data)
    except (OSError, ProtocolError) as exc:
        log.error("partial_lines_lost", error=str(exc))
        return {}
    finally:
        os.close(fd)


async def _serve(spec: WorkerSpec) -> int:
    config = spec.config
    size = os.fstat(spec.journal_fd).st_size
    with mmap.mmap(spec.journal_fd, size) as shared:
        journal = Journal(memoryview(shared))
        state = LogState(config, journal.instance, replay(journal, config), journal)
        daemon = Daemon(config, 1 if config.console else None, state=state, keeping=spec.keeping)
        link = daemon.attach_keeper(socket.socket(fileno=spec.control_fd))
        partials = _partials(spec.partials_fd)
        for source, fd in spec.sources:
            daemon.intake.adopt(source, fd, partials.get(source.key))
        query_sock = socket.socket(fileno=spec.query_fd)
        query_sock.setblocking(False)

        async def hand_over(left: list[handover.Partial]) -> None:
            fd = os.memfd_create("memlogd-partials", os.MFD_CLOEXEC)
            try:
                os.write(fd, handover.encode_partials(left))
                await link.send(handover.HandedOver(), [fd])
            finally:
                os.close(fd)

        try:
            await run(daemon, query_sock, None, roles=spec.roles, on_handover=hand_over)
        finally:
            link.close()
            query_sock.close()
            journal.buf.release()
    return 0
