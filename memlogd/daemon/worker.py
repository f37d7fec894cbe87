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
import uuid
from collections.abc import Sequence

import structlog
import trio

from memlogd.atomicfile import UntrustedFileError, check_state_dir, replace_file
from memlogd.config import DaemonConfig
from memlogd.daemon.encoding import encode_block
from memlogd.daemon.host import Role
from memlogd.daemon.journal import VERSION, Journal, capacity_for, new_header, upgrade
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Ring
from memlogd.daemon.serve import Daemon, Keeping, run
from memlogd.daemon.state import LogState
from memlogd.errors import ProtocolError
from memlogd.procname import WORKER_NAME, set_process_name
from memlogd.wire import handover

log = structlog.get_logger("memlogd")

OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
# A test hook (docs/memlogd.md, "Tests"): a worker fails at its start while this file
# exists (exit 3; by an exception when the file starts with "raise").
FAIL_IF_ENV = "MEMLOGD_TEST_WORKER_FAILS_IF"
EXIT_TEST_FAILURE = 3


def create_journal(config: DaemonConfig) -> int:
    """A new journal in shared memory, made once by the boot: each worker maps
    it, the keeper only holds it."""
    size = capacity_for(config.max_lines, config.max_line_len)
    fd = os.memfd_create("memlogd-journal", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    os.pwrite(fd, new_header(size, str(uuid.uuid4())), 0)
    return fd


def run_worker(
    start: handover.WorkerStart,
    config: DaemonConfig,
    roles: Sequence[Role],
    state_dir: str | None = None,
) -> int:
    """In the forked child: undo what is the keeper's, serve, return the exit status.
    (memlogd.cli hands the keeper this function, with the configuration and roles;
    ``state_dir``: where a journal that cannot be read is kept for inspection.)"""
    set_process_name(WORKER_NAME)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if start.oom_score is not None:
        with contextlib.suppress(OSError), open(OOM_SCORE_ADJ, "w") as f:
            f.write(start.oom_score)
    fail_if = os.environ.get(FAIL_IF_ENV)
    if fail_if and os.path.exists(fail_if):
        with open(fail_if, "rb") as trap:
            if trap.read(5) == b"raise":  # by an exception (its traceback on stderr)
                raise RuntimeError(f"{FAIL_IF_ENV} says so")
        return EXIT_TEST_FAILURE
    return trio.run(_serve, start, config, roles, state_dir)


def replay(journal: Journal, config: DaemonConfig) -> Ring:
    """The ring a journal holds: the same entries with the same seq, the same
    holes between them, and the same counts of evicted entries."""
    records = sorted(journal.records(), key=lambda r: r.first_seq)
    ring = Ring(config.max_lines, config.max_bytes, policy=config.evict)
    evicted: dict[str, int] = {}
    for record in records:
        lines = record.lines
        skip = ring.next_seq - record.first_seq  # a copy's lines held twice: once
        if skip > 0:
            lines = lines[skip:]
        if lines:
            ring.skip_to(record.first_seq + max(skip, 0))
            ring.append(encode_block(record.time_ns, record.source, Lines.of(lines)))
        evicted[record.source] = max(evicted.get(record.source, 0), record.evicted)
    ring.skip_to(journal.next_seq)
    ring.overwritten = journal.overwritten
    for name, count in evicted.items():
        ring.set_evicted(name, count)
    # a worker killed between an append and its eviction, or a journal behind
    # its ring (entries that left lazily): room made now, what went listed for
    # the journal (LogState writes it)
    ring.trimmed = []
    ring.evict()
    return ring


def open_journal(buf: memoryview, config: DaemonConfig) -> Journal:
    """The journal in ``buf``; one a worker before the fair ring wrote (an
    upgrade) is rewritten in this version first, holding what that worker's
    ring held under ``config``'s limits (JournalError if neither)."""
    journal = Journal(buf)
    if journal.version != VERSION:
        log.info("journal_upgraded", from_version=journal.version, version=VERSION)
        journal = upgrade(buf, config.max_lines, config.max_bytes)
    return journal


DAMAGED_JOURNAL_NAME = "journal.damaged"  # in the state directory, for inspection


def _open_journal(
    shared: mmap.mmap, config: DaemonConfig, state_dir: str | None
) -> tuple[Journal, Ring]:
    """The journal and the ring it holds.  One that cannot be read is set aside
    (copied to the state directory where it can be) and a fresh ring starts,
    with a warning: a crash loop would end all logging (SPEC 19)."""
    try:
        journal = open_journal(memoryview(shared), config)
        return journal, replay(journal, config)
    except Exception as exc:  # whatever a damaged journal makes the replay raise
        kept = _set_aside(bytes(shared), state_dir)
        log.warning(
            "journal_set_aside",
            error=str(exc) or type(exc).__name__,
            kept=kept,
            consequence="a fresh ring (a new instance)",
        )
    for at in range(0, len(shared), 1 << 20):
        end = min(at + (1 << 20), len(shared))
        shared[at:end] = bytes(end - at)
    head = new_header(len(shared), str(uuid.uuid4()))
    shared[: len(head)] = head
    journal = Journal(memoryview(shared))
    return journal, replay(journal, config)


def _set_aside(data: bytes, state_dir: str | None) -> str | None:
    """Keep a damaged journal in the state directory; its path, or None."""
    if state_dir is None:
        return None
    try:
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        check_state_dir(state_dir)
        path = os.path.join(state_dir, DAMAGED_JOURNAL_NAME)
        replace_file(path, data, mode=0o600)
    except (OSError, UntrustedFileError) as exc:
        log.warning("journal_not_kept", dir=state_dir, error=str(exc))
        return None
    return path


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


async def _serve(
    start: handover.WorkerStart,
    config: DaemonConfig,
    roles: Sequence[Role],
    state_dir: str | None,
) -> int:
    keeping = Keeping(
        keeper_pid=start.keeper_pid,
        worker_starts=start.worker_starts,
        previous=start.previous,
        upgraded=start.partials_fd is not None,
    )
    size = os.fstat(start.journal_fd).st_size
    with mmap.mmap(start.journal_fd, size) as shared:
        journal, ring = _open_journal(shared, config, state_dir)
        state = LogState(config, journal.instance, ring, journal)
        daemon = Daemon(config, 1 if config.console else None, state=state, keeping=keeping)
        link = daemon.attach_keeper(socket.socket(fileno=start.control_fd))
        partials = _partials(start.partials_fd)
        for source, fd in start.sources:
            daemon.intake.adopt(source, fd, partials.get(source.key))
        query_sock = socket.socket(fileno=start.query_fd)
        query_sock.setblocking(False)

        async def hand_over(left: list[handover.Partial]) -> None:
            fd = os.memfd_create("memlogd-partials", os.MFD_CLOEXEC)
            try:
                os.write(fd, handover.encode_partials(left))
                await link.send(handover.HandedOver(), [fd])
            finally:
                os.close(fd)

        try:
            await run(daemon, query_sock, None, roles=roles, on_handover=hand_over)
        finally:
            link.close()
            query_sock.close()
            journal.buf.release()
    return 0
