"""Persisting what memlogd sends into the log directory (docs/logwrite.md). I/O (trio).

A :class:`memlogd.client.Subscription` follows memlogd (resuming after the
saved cursor; upstream's base dump+follow when memlogd does not speak the
extended query).  Each batch it delivers is formatted, written, and then the
cursor is saved.  When the disk refuses a write, the rest of the batch is
kept and retried (with backoff) before more is read, so logwrite's memory
stays bounded and memlogd, which never waits for a reader, reports what it
had to drop as a gap (written to ``DIR/logwrite.log``).

DIR is resolved by its path (SPEC 17): at least once a second, and after
every write error, logwrite checks that DIR still names the directory it
writes into.  When it names another one (a disk mounted over it) or none,
logwrite lets go of the old one, waits for DIR (it is never made again after
start), reads the cursor there, and follows memlogd again from it: what the
ring holds that the new directory lacks is written there.  While DIR cannot
be written, no fd is held in it; it is attached again (and its cursor read)
at every retry.  One persister per DIR: it is locked (``flock``) while held.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import trio

from logwrite.cursor import load_cursor, save_cursor
from logwrite.files import (
    DirIdentity,
    Item,
    LogDirError,
    LogDirLockedError,
    LogFiles,
    dir_identity,
    ensure_log_dir,
    errno_name,
)
from logwrite.instances import note_instance
from logwrite.lines import ERROR_PERIOD_S, OWN_SOURCE, LineFormatter, TimeFormat
from logwrite.report import new_reporter
from logwrite.rotation import safe_log_name
from memlogd.client import Connector, Subscription
from memlogd.errors import MemlogdError
from memlogd.ratelimit import LimitedLog
from memlogd.wire import protocol as proto
from memlogd.wire.cursorfile import CursorError, Pending
from memlogd.wire.events import Connected, Disconnected, Entries, Gap, Restarted, Waiting
from memlogd.wire.globs import SourceMatcher
from memlogd.wire.protocol import Cursor

log = structlog.get_logger("logwrite")

WRITE_RETRY_MIN_S = 0.1  # retrying a write the disk refused
WRITE_RETRY_MAX_S = 1.0  # (SPEC 17: a directory that can be written again is used within 2 s)
DIR_CHECK_S = 0.5  # how often the path is checked to still name the directory written into
DIR_WAIT_S = 0.5  # how often a directory that cannot be used is tried again
MAY_BE_ON_DISK = 4  # failed saves remembered
LOCKED_QUIET_S = 3.0  # a directory locked this long is warned about (a worker handing over)
PERSIST_HEADER_TIMEOUT_S = 3.0  # an extended query unanswered this long: not our memlogd
ONCE_WRITE_ATTEMPTS = 8  # --once gives up on a refusing disk after this many tries
NAME_CACHE_MAX = 4096  # source names remembered (stem, skipped)
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class Config:
    socket: str
    log_dir: str
    max_files: int = 10
    max_size: int = 1048576  # bytes
    max_open: int = 64
    time_format: TimeFormat = TimeFormat.RFC3339
    skip_sources: tuple[str, ...] = ("logwrite*",)
    once: bool = False


class IncompleteError(MemlogdError):
    """``--once`` could not write everything."""


class DirChanged(Exception):
    """DIR names another directory now (or none): follow memlogd again from its cursor."""


SavedCursor = tuple[Cursor, Pending | None] | None  # what a cursor file holds


class Persister:
    """Turns received replies into lines in files, and keeps the cursor."""

    def __init__(self, config: Config, files: LogFiles, reporter: LimitedLog) -> None:
        self.config = config
        self.files = files
        self.reporter = reporter
        self.formatter = LineFormatter(config.time_format)
        self._skip = SourceMatcher(config.skip_sources) if config.skip_sources else None
        self._names: dict[str, str | None] = {}  # source -> stem, None when skipped
        self.instance: str | None = None  # of the connected daemon (extended mode)
        self.cursor: Cursor | None = None  # everything up to it is in the files
        self._saved: Cursor | None = None
        self.pending: list[Item] = []
        self._batch_last: int | None = None  # last seq of the batch in ``pending``
        self.written = 0
        self.dropped = 0
        self.identity: DirIdentity | None = None  # the directory the state above belongs to
        # what its cursor file may hold: what was last saved there, and what a save
        # that failed since may have left (the old file stays, but for a failed fsync)
        self._on_disk: list[SavedCursor] = []
        self._noted: str | None = None  # the instance listed in this DIR's instances file
        self._first: str | None = None  # its first line's time, to list it with

    # ------------------------------------------------------------------ directory

    def attach(self) -> bool:
        """Hold the directory DIR names now (locked) and read its cursor.  False
        when it is the one the state belongs to, as it was left (the queued batch
        is then written on); True when the state is now the new directory's (its
        cursor, nothing queued).  OSError when DIR cannot be used now."""
        identity = self.files.attach()
        try:
            saved: SavedCursor = load_cursor(self.files.dir_fd)
            readable = True
        except CursorError as exc:
            log.warning("cursor_ignored", reason=str(exc))
            saved, readable = None, False
        if identity == self.identity and readable and saved in self._on_disk:
            return False
        self.identity = identity
        self.pending = []
        self._batch_last = None
        self._adopt(saved if readable else None)
        return True

    async def wait_attached(self) -> None:
        """Attach DIR, waiting (and saying why) while it cannot be used: missing
        (never made again: it is a mount point more often than not), read-only,
        or held by another persister."""
        locked_since: float | None = None
        while True:
            try:
                self.attach()
                return
            except LogDirLockedError:
                now = trio.current_time()
                locked_since = now if locked_since is None else locked_since
                if now - locked_since >= LOCKED_QUIET_S:
                    self.reporter.warning(
                        "log_dir_locked", dir=self.files.log_dir, consequence="waiting for it"
                    )
            except OSError as exc:
                self._unavailable(exc)
            await trio.sleep(DIR_WAIT_S)

    def _unavailable(self, exc: OSError) -> None:
        self.reporter.error(
            "log_dir_unavailable",
            dir=self.files.log_dir,
            kind=errno_name(exc),
            error=exc.strerror,
            lines_waiting=len(self.pending),
        )

    def detach(self) -> None:
        """Let go of the directory (DIR names another one now): its files closed,
        its cursor saved when no batch is half written there."""
        if self.files.held and not self.pending and os.fstat(self.files.dir_fd).st_nlink:
            self.save_cursor(sync_dir=True)  # (not into a directory that was removed)
        self.files.release()
        self.identity = None
        self.pending = []
        self._batch_last = None
        self.cursor = self._saved = None
        self._on_disk = []

    def changed(self) -> bool:
        """Does DIR name another directory than the state's (or none) now?"""
        return self.identity is not None and dir_identity(self.files.log_dir) != self.identity

    # ------------------------------------------------------------------ cursor

    def _adopt(self, saved: SavedCursor) -> None:
        """The directory's saved cursor; a batch that was being written when
        logwrite (or memlogd's worker) was killed is undone first, and written again."""
        self.cursor = self._saved = None
        self._on_disk = [saved]
        self._noted = self._first = None  # a directory (re)attached: its instances file too
        if saved is None:
            return
        cursor, pending = saved
        if pending:
            try:
                lost = self.files.undo(pending)
                save_cursor(self.files.dir_fd, cursor, sync_dir=True)
            except OSError as exc:
                log.warning("unfinished_batch_kept", error=exc.strerror, consequence="repeated")
            else:
                log.info("unfinished_batch_undone", files=len(pending), rotated_away=len(lost))
                self._on_disk = [(cursor, None)]
        self.cursor = self._saved = cursor

    def save_cursor(self, *, sync_dir: bool = False) -> None:
        cursor = self.cursor
        if cursor is None or not self.files.held or (cursor == self._saved and not sync_dir):
            return
        try:
            save_cursor(self.files.dir_fd, cursor, sync_dir=sync_dir)
            self._saved = cursor
            self._on_disk = [(cursor, None)]
        except OSError as exc:
            self._may_be_on_disk((cursor, None))
            self.reporter.error("cursor_save_failed", kind=errno_name(exc), error=exc.strerror)

    def forget_cursor(self) -> None:
        self.cursor = None

    # ------------------------------------------------------------------ batches

    def _stem(self, source: str) -> str | None:
        names = self._names
        stem = names.get(source, "")
        if stem == "":
            if len(names) >= NAME_CACHE_MAX:
                names.clear()
            skipped = self._skip is not None and self._skip(source)
            stem = names[source] = None if skipped else safe_log_name(source)
        return stem

    def add(self, event: Entries | Gap) -> None:
        """Queue one received batch (the previous one must be written)."""
        assert not self.pending
        items = self.pending
        if isinstance(event, Gap):
            self.dropped += event.count
            self.reporter.warning("entries_lost", count=event.count, first_seq=event.seq)
            data = self.formatter.lost_line(time.time_ns(), event.seq, event.count, event.last)
            items.append(Item(event.seq, safe_log_name(OWN_SOURCE), data))
            self._batch_last = event.last
            return
        line = self.formatter.line
        for entry in event.entries:
            stem = self._stem(entry.source)
            if stem is not None:
                items.append(Item(entry.seq, stem, line(entry.time_ns, entry.source, entry.msg)))
        self._batch_last = event.entries[-1].seq
        if not items:
            self._advance()
        elif self.instance is not None and self._noted != self.instance and self._first is None:
            first = next(e for e in event.entries if self._stem(e.source) is not None)
            self._first = self.formatter.time_text(first.time_ns)

    def _note_instance(self) -> None:
        """List the instance in DIR/instances with the time of its first line, before
        that line is written (a boot's first line is never unlisted); a failure is
        logged and the listing tried again with the next write."""
        if self.instance is None or self._first is None or self._noted == self.instance:
            self._first = None
            return
        try:
            note_instance(self.files.dir_fd, self.instance, self._first)
        except OSError as exc:
            self.reporter.error("instances_save_failed", kind=errno_name(exc), error=exc.strerror)
            return
        self._noted, self._first = self.instance, None

    def _advance(self) -> None:
        """Move the cursor as far as the written data allows."""
        if self.instance is None:
            return
        if self.pending:
            first = self.pending[0].seq
            seq = None if first is None else first - 1
        else:
            seq = self._batch_last
        if seq is not None and (self.cursor is None or seq > self.cursor.seq):
            self.cursor = Cursor(self.instance, seq)

    def _may_be_on_disk(self, saved: SavedCursor) -> None:
        """A save failed: the file holds the old cursor, or (its fsync failed) this one."""
        self._on_disk.append(saved)
        del self._on_disk[1:-MAY_BE_ON_DISK]

    def _mark(self) -> None:
        """Before a batch is written: the cursor with the batch's files as they are,
        so that a kill before the next save leaves neither a gap nor a repeat."""
        cursor = self.cursor
        if cursor is None:
            return
        pending = self.files.snapshot({item.stem for item in self.pending})
        try:
            save_cursor(self.files.dir_fd, cursor, pending, sync=False)
            self._saved = None  # the saved file holds the mark: the next save clears it
            self._on_disk = [(cursor, pending or None)]
        except OSError as exc:
            self._may_be_on_disk((cursor, pending or None))
            self.reporter.error("cursor_save_failed", kind=errno_name(exc), error=exc.strerror)

    def write_pending(self) -> OSError | None:
        """One attempt at writing the queued batch (repeated at once while a full
        disk can be relieved by deleting a rotated file); the error that stopped it.
        Raises DirChanged when DIR names another directory now."""
        while self.pending:
            if not self.files.held:
                try:
                    if self.attach():
                        raise DirChanged
                except LogDirLockedError as locked:
                    self.reporter.warning(
                        "log_dir_locked", dir=self.files.log_dir, consequence="waiting for it"
                    )
                    return locked
                except OSError as unusable:
                    self._unavailable(unusable)
                    return unusable
            if self._first is not None:
                self._note_instance()
            self._mark()
            before = len(self.pending)
            outcome = self.files.write(self.pending)
            self.pending = outcome.remaining
            self.written += before - len(outcome.remaining) - outcome.refused
            self._advance()
            self.save_cursor()
            exc = outcome.error
            if exc is None:
                return None
            self.reporter.error(
                "write_failed",
                kind=errno_name(exc),
                error=exc.strerror,
                lines_waiting=len(self.pending),
            )
            if exc.errno in DISK_FULL and self.files.free_space() is not None:
                continue
            if self.changed():
                raise DirChanged
            self.files.release()  # hold nothing in a directory that cannot be written
            return exc
        return None

    async def drain(self, max_attempts: int | None = None) -> None:
        """Write the queued batch, retrying with backoff until it is all written."""
        delay = WRITE_RETRY_MIN_S
        attempts = 0
        while self.pending:
            exc = self.write_pending()
            if exc is None:
                break
            attempts += 1
            if max_attempts is not None and attempts >= max_attempts:
                count = len(self.pending)
                raise IncompleteError(
                    f"{count} line{'' if count == 1 else 's'} could not be written to "
                    f"{self.files.log_dir}: {exc.strerror or exc}"
                )
            await trio.sleep(delay)
            delay = min(delay * 2, WRITE_RETRY_MAX_S)
        if self.pending:
            return
        self._advance()
        self.save_cursor()

    def finish(self) -> None:
        """At exit: a last attempt at what is queued, the cursor, fsync, close."""
        if self.identity is not None and not self.changed():
            with contextlib.suppress(DirChanged):
                self.write_pending()
            self.save_cursor(sync_dir=True)
        self.files.close()


# ---------------------------------------------------------------------- following


async def follow(
    config: Config, persister: Persister, reporter: LimitedLog, target: str | Connector
) -> None:
    """Follow memlogd (at ``target``) into the directory DIR names: for ever
    (reconnecting with backoff), or once through the ring with ``--once``;
    from the cursor of the directory DIR names now, again whenever it changes."""
    while True:
        if config.once:  # what cannot be written is counted in the error
            with contextlib.suppress(OSError):
                persister.attach()
        else:
            await persister.wait_attached()
        changed: list[bool] = []
        failed: MemlogdError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_dir, persister, nursery.cancel_scope, changed)
            try:
                await _follow_dir(config, persister, reporter, target)
            except DirChanged:
                changed.append(True)
            except MemlogdError as exc:  # raised below, outside the nursery's group
                failed = exc
            nursery.cancel_scope.cancel()
        if failed is not None:
            raise failed
        if not changed:
            return
        reporter.info("log_dir_changed", dir=persister.files.log_dir, consequence="following again")
        persister.detach()


async def _watch_dir(persister: Persister, scope: trio.CancelScope, changed: list[bool]) -> None:
    """Stop following (``scope``) when DIR names another directory, or none."""
    while not persister.changed():
        await trio.sleep(DIR_CHECK_S)
    changed.append(True)
    scope.cancel()


async def _follow_dir(
    config: Config, persister: Persister, reporter: LimitedLog, target: str | Connector
) -> None:
    request = proto.QueryRequest(dump=True, follow=not config.once)
    subscription = Subscription(
        target,
        request,
        cursor=persister.cursor,
        retry=not config.once,
        header_timeout_s=PERSIST_HEADER_TIMEOUT_S,
    )
    attempts = ONCE_WRITE_ATTEMPTS if config.once else None
    async with subscription:
        async for event in subscription:
            if isinstance(event, Entries | Gap):
                persister.add(event)
                await persister.drain(attempts)
            elif isinstance(event, Connected):
                header = event.header
                persister.instance = None if header is None else header.instance
                if header is None:  # memlogd did not answer the extended query
                    reporter.info("extended_query_unavailable", consequence="base mode")
                    reporter.info("connected", mode="base")
                else:
                    reporter.info(
                        "connected",
                        mode="extended",
                        instance=header.instance,
                        after_seq=event.after_seq,
                        first_seq=header.first_seq,
                        next_seq=header.next_seq,
                    )
            elif isinstance(event, Restarted):
                if event.next_seq is not None:
                    log.warning(
                        "cursor_ignored",
                        reason=f"its seq {event.cursor_seq} is beyond memlogd's next_seq "
                        f"{event.next_seq}",
                    )
                else:
                    reporter.info(
                        "memlogd_restarted",
                        old_instance=event.old_instance,
                        instance=event.instance,
                    )
                persister.forget_cursor()
            elif isinstance(event, Disconnected):
                reporter.info("disconnected", reason=event.reason)
            elif isinstance(event, Waiting):
                reporter.error(
                    "memlogd_unreachable",
                    path=event.error.path,
                    reason=event.error.reason,
                    consequence="retrying with backoff; nothing is lost meanwhile",
                )
            elif isinstance(event, proto.Malformed):
                reporter.error("bad_line_from_memlogd", error=event.reason)


def open_log_files(config: Config, reporter: LimitedLog) -> LogFiles:
    """The log directory, created if missing; LogDirError when it cannot be used."""
    ensure_log_dir(config.log_dir)
    try:
        return LogFiles(
            config.log_dir,
            max_files=config.max_files,
            max_size=config.max_size,
            max_open=config.max_open,
            reporter=reporter,
        )
    except OSError as exc:
        raise LogDirError(config.log_dir, exc.strerror or str(exc)) from None


async def persist(
    config: Config,
    target: str | Connector | None = None,
    *,
    reopen: trio.abc.ReceiveChannel[None] | None = None,
    started: Callable[[Persister], None] | None = None,
) -> None:
    """logwrite's whole job, until cancelled (or the ring is written, ``--once``):
    memlogd at ``target`` (default ``config.socket``) into ``config.log_dir``.
    At the end (cancelled too) what is queued gets a last attempt, the cursor is
    saved and the files are synced.  A message on ``reopen`` reopens the files
    (SIGHUP).  ``started`` gets the :class:`Persister` (memlogd's stats read it).
    Raises LogDirError, IncompleteError, MemlogdError."""
    reporter = new_reporter()
    files = open_log_files(config, reporter)
    persister = Persister(config, files, reporter)
    if started is not None:
        started(persister)
    failed: MemlogdError | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_held_errors, reporter)
            if reopen is not None:
                nursery.start_soon(_reopen_on, reopen, files)
            try:
                await follow(config, persister, reporter, target or config.socket)
            except MemlogdError as exc:  # raised below, outside the nursery's group
                failed = exc
            nursery.cancel_scope.cancel()
        if failed is not None:
            raise failed
    finally:
        persister.finish()
        log.info("stopped", lines_written=persister.written, entries_lost=persister.dropped)


async def _reopen_on(requests: trio.abc.ReceiveChannel[None], files: LogFiles) -> None:
    async for _ in requests:
        files.release()  # attached again (by its path) for the next write
        log.info("files_reopened")


async def report_held_errors(reporter: LimitedLog) -> None:
    while True:
        await trio.sleep(ERROR_PERIOD_S)
        reporter.report_held()
