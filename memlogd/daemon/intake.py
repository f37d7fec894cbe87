"""Reading the sources: fds handed over on the log socket (docs/memlogd.md).

Every pollable source sits in one epoll set served by one task
(:class:`Intake`); each pass reads every ready fd, up to ``READ_CHUNK``
bytes, or ``READ_BURST`` from a source whose last read gave at least
``READ_CHUNK`` of long lines; a source whose read gave ``READ_CHUNK`` is read
again, a few times, while it does and no other source is ready; a read's
complete lines become one batch appended to the ring (BENCHMARKS.md, "Long
lines").  One task instead of a task per fd halves the CPU per line with
hundreds of sources (BENCHMARKS.md).  A source epoll refuses (a regular
file) gets a task of its own that reads it to its end.

While a follower half a ring behind holds the intake (:class:`IntakeHold`),
no source is read: writers wait in their socket buffers, nothing is lost.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import select
from collections.abc import Callable

import structlog
import trio

from memlogd.config import BURST_LINE_BYTES, READ_BURST, READ_CHUNK, READS_ALONE, uid_share
from memlogd.daemon.framing import LineSplitter
from memlogd.daemon.lines import Lines
from memlogd.daemon.readers import IntakeHold
from memlogd.daemon.state import LogState, SourceInfo
from memlogd.wire.fdmsg import FdGrant
from memlogd.wire.handover import Partial, SourceSpec

log = structlog.get_logger("memlogd")


class ReadState(enum.Enum):
    DATA = 1  # read something; there may be more
    AGAIN = 2  # nothing to read now
    DONE = 3  # end of file, or an error (warned): close it
    FULL = 4  # read READ_CHUNK or more: there is likely more now


class Source:
    """One source fd and its line splitter; owns the fd until ``close()``."""

    __slots__ = ("fd", "info", "key", "name", "splitter", "state", "want")

    def __init__(
        self, state: LogState, fd: int, name: str, info: SourceInfo, key: int | None = None
    ) -> None:
        self.state = state
        self.fd = fd
        self.name = name
        self.info = info
        self.key = key  # the keeper's id of the fd, when a keeper holds a copy
        self.splitter = LineSplitter(state.config.max_line_len)
        self.want = READ_CHUNK  # bytes asked of the next read

    def read_once(self) -> ReadState:
        """One read; its complete lines become one batch."""
        try:
            chunk = os.read(self.fd, self.want)
        except BlockingIOError:
            return ReadState.AGAIN
        except OSError as exc:
            if exc.errno != errno.ECONNRESET:
                self.warn_unreadable(exc)
            return ReadState.DONE
        if not chunk:
            return ReadState.DONE
        lines = self.splitter.feed(chunk)
        count = self.state.append(self.name, lines, self.info) if lines else 0
        if len(chunk) < READ_CHUNK:
            self.want = READ_CHUNK
            return ReadState.DATA
        # a busy source of long lines: larger reads spread the work per batch over
        # as many lines as a read of short ones (short ones keep their latency)
        long_lines = len(chunk) >= BURST_LINE_BYTES * count
        self.want = READ_BURST if long_lines else READ_CHUNK
        return ReadState.FULL

    def warn_unreadable(self, exc: OSError) -> None:
        self.state.warnings.warning(
            "source_unreadable", source=self.name, error=exc.strerror or str(exc)
        )

    def close(self) -> None:
        """At its end: the last partial line, the truncation count, the fd."""
        splitter = self.splitter
        tail = splitter.close()
        if tail is not None:
            self.state.append(self.name, Lines.of([tail]), self.info)
        if splitter.truncated:
            log.info(
                "lines_truncated",
                source=self.name,
                count=splitter.truncated,
                max_line_len=self.state.config.max_line_len,
            )
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.info.open -= 1


class Intake:
    """Every source: pollable ones in one epoll set served by :meth:`run`; the
    others each read to their end by a task of their own.

    With a keeper, each source has the ``key`` of the keeper's copy of its fd,
    and ``on_released(keys)`` is called when sources ended or were refused, so
    that the keeper lets go of its copies."""

    def __init__(
        self,
        state: LogState,
        hold: IntakeHold,
        on_released: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.state = state
        self.hold = hold
        self.on_released = on_released
        self.open_fds = 0
        self._uid_fds: dict[int | None, int] = {}  # open fds per writer's uid (SPEC 19)
        self._uid_of: dict[Source, int | None] = {}
        self.handing_over = False  # stop for the next worker: keep the partial lines
        self.ended = False  # run() returned: no source is read here any more
        self.partials: list[Partial] = []  # what handing over left for the next worker
        self._epoll = select.epoll()
        _heap_allocated_reads()
        self._sources: dict[int, Source] = {}
        self._unpollable: set[Source] = set()
        self._adopted: list[Source] = []  # adopted before run() started
        self._nursery: trio.Nursery | None = None

    def accept(self, grant: FdGrant, keys: list[int] | None = None) -> bool:
        """Take a datagram's fds as sources, whole or not at all (closed with a
        warning when over ``-max-sources`` or when the datagram is refused;
        closed quietly once :meth:`run` returned: at an upgrade the keeper
        hands them to the next worker, else they end as the others did)."""
        state = self.state
        if self.ended:  # (the keeper's link outlives the intake as the worker stops)
            for fd in grant.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if keys and not self.handing_over and self.on_released is not None:
                self.on_released(keys)  # (handing over: the keeper keeps it for the next worker)
            return False
        refusal = grant.problem
        if refusal is None and self.open_fds + len(grant.fds) > state.config.max_sources:
            refusal = f"over -max-sources {state.config.max_sources}"
        share = uid_share(state.config.max_sources, grant.uid)
        if refusal is None and self._uid_fds.get(grant.uid, 0) + len(grant.fds) > share:
            refusal = f"over uid {grant.uid}'s share of -max-sources ({share})"
        if refusal is not None:
            for fd in grant.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if keys and self.on_released is not None:
                self.on_released(keys)
            state.warnings.warning(
                "fds_refused",
                source=grant.name,
                fds=len(grant.fds),
                reason=refusal,
                pid=grant.pid,
                uid=grant.uid,
            )
            return False
        info = state.source_info(grant.name)
        info.pid, info.uid = grant.pid, grant.uid
        info.open += len(grant.fds)
        self.open_fds += len(grant.fds)
        log.info(
            "fd_registered", source=grant.name, fds=len(grant.fds), pid=grant.pid, uid=grant.uid
        )
        for i, fd in enumerate(grant.fds):
            with contextlib.suppress(OSError):
                os.set_blocking(fd, False)
            source = Source(state, fd, grant.name, info, None if keys is None else keys[i])
            self._count_uid(source, grant.uid)
            self._add(source)
        return True

    def adopt(self, spec: SourceSpec, fd: int, partial: Partial | None) -> None:
        """A source a previous worker was reading (the keeper held it meanwhile),
        with the partial line it handed over, if any."""
        info = self.state.source_info(spec.name)
        info.pid, info.uid = spec.pid, spec.uid
        info.open += 1
        self.open_fds += 1
        source = Source(self.state, fd, spec.name, info, spec.key)
        self._count_uid(source, spec.uid)
        if partial is not None:
            source.splitter.restore(
                partial.partial, partial.discarding, partial.maybe_crlf, partial.truncated
            )
        with contextlib.suppress(OSError):
            os.set_blocking(fd, False)
        if self._nursery is None:
            self._adopted.append(source)
        else:
            self._add(source)

    def _add(self, source: Source) -> None:
        try:
            self._epoll.register(source.fd, select.EPOLLIN)
        except (OSError, ValueError):  # EPERM: not pollable; ValueError: shutting down
            assert self._nursery is not None, "Intake.run() is not running"
            self._nursery.start_soon(self._read_unpollable, source)
            return
        self._sources[source.fd] = source
        if source.read_once() is ReadState.DONE:  # e.g. a write-only pipe: EBADF
            self._close(source)

    def _count_uid(self, source: Source, uid: int | None) -> None:
        self._uid_of[source] = uid
        self._uid_fds[uid] = self._uid_fds.get(uid, 0) + 1

    def _close(self, source: Source) -> None:
        if self._sources.pop(source.fd, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(source.fd)
        self._unpollable.discard(source)
        self.open_fds -= 1
        uid = self._uid_of.pop(source, None)
        if self._uid_fds.get(uid, 0) > 1:
            self._uid_fds[uid] -= 1
        else:
            self._uid_fds.pop(uid, None)
        if self.handing_over:  # the next worker reads on: no last line, no release
            key = source.key if source.key is not None else -1
            self.partials.append(Partial(key, *source.splitter.state()))
            with contextlib.suppress(OSError):
                os.close(source.fd)
            source.info.open -= 1
            return
        source.close()
        if source.key is not None and self.on_released is not None:
            self.on_released([source.key])

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve every source until cancelled; then close them all."""
        hold = self.hold
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                adopted, self._adopted = self._adopted, []
                for waiting in adopted:
                    self._add(waiting)
                task_status.started()
                while True:
                    ready = self._epoll.poll(0)
                    if not ready:  # only now ask trio to watch the epoll fd
                        await trio.lowlevel.wait_readable(self._epoll.fileno())
                        continue
                    for fd, _events in ready:
                        source = self._sources.get(fd)
                        if source is None:
                            continue
                        if hold.active:
                            await hold.wait()
                        state = source.read_once()
                        # the only busy source is read again: no other waits for its turn
                        again = READS_ALONE - 1 if len(ready) == 1 else 0
                        while state is ReadState.FULL and again and not hold.active:
                            state = source.read_once()
                            again -= 1
                        if state is ReadState.DONE:
                            self._close(source)
                    await trio.lowlevel.checkpoint()  # followers, the console, new fds
        finally:
            self._nursery = None
            self.ended = True
            for source in [*self._sources.values(), *self._unpollable]:
                self._close(source)
            self._epoll.close()

    async def _read_unpollable(self, source: Source) -> None:
        """A source epoll refuses (a regular file): read it to its end, batch by batch."""
        self._unpollable.add(source)
        try:
            while (state := source.read_once()) is not ReadState.DONE:
                if state is ReadState.AGAIN:
                    try:  # not expected of a file: wait if trio can, else give up
                        await trio.lowlevel.wait_readable(source.fd)
                    except OSError as exc:
                        source.warn_unreadable(exc)
                        return
                if self.hold.active:
                    await self.hold.wait()
                await trio.lowlevel.checkpoint()
        finally:
            self._close(source)


def _heap_allocated_reads() -> None:
    """Make reads of READ_BURST bytes come from the heap.  glibc serves a
    malloc above its mmap threshold (128 KiB at first) with mmap, and the
    shrink of a read's buffer to what was read with mremap and munmap: 20 us
    a read (BENCHMARKS.md, "Long lines").  Freeing one larger mmapped block
    raises the threshold past it (mallopt(3), "M_MMAP_THRESHOLD": dynamic).
    Elsewhere this costs one allocation."""
    block = bytes(2 * READ_BURST)
    del block
