"""Persisting what memlogd sends into the log directory (docs/logwrite.md). I/O (trio).

A :class:`memlogd.client.Subscription` follows memlogd (resuming after the
saved cursor; upstream's base dump+follow when memlogd does not speak the
extended query).  Each batch it delivers is formatted, written, and then the
cursor is saved.  When the disk refuses a write, the rest of the batch is
kept and retried (with backoff) before more is read, so logwrite's memory
stays bounded and memlogd, which never waits for a reader, reports what it
had to drop as a gap (written to ``DIR/logwrite.log``).
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass

import structlog
import trio

from logwrite.cursor import load_cursor, save_cursor
from logwrite.files import Item, LogDirError, LogFiles, ensure_log_dir, errno_name
from logwrite.lines import ERROR_PERIOD_S, OWN_SOURCE, CursorError, LineFormatter, TimeFormat
from logwrite.report import new_reporter
from logwrite.rotation import safe_log_name
from memlogd.client import Connector, Subscription
from memlogd.errors import MemlogdError
from memlogd.ratelimit import LimitedLog
from memlogd.wire import protocol as proto
from memlogd.wire.events import Connected, Disconnected, Entries, Gap, Restarted, Waiting
from memlogd.wire.globs import SourceMatcher
from memlogd.wire.protocol import Cursor

log = structlog.get_logger("logwrite")

RETRY_MIN_S = 0.1  # retrying a write the disk refused
RETRY_MAX_S = 2.0
HEADER_TIMEOUT_S = 3.0  # an extended query unanswered this long: not our memlogd
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

    # ------------------------------------------------------------------ cursor

    def load_cursor(self) -> None:
        """The saved cursor; a batch that was being written when logwrite (or
        memlogd's worker) was killed is undone first, and written again."""
        try:
            saved = load_cursor(self.files.dir_fd)
        except CursorError as exc:
            log.warning("cursor_ignored", reason=str(exc))
            return
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
        self.cursor = self._saved = cursor

    def save_cursor(self, *, sync_dir: bool = False) -> None:
        cursor = self.cursor
        if cursor is None or (cursor == self._saved and not sync_dir):
            return
        try:
            save_cursor(self.files.dir_fd, cursor, sync_dir=sync_dir)
            self._saved = cursor
        except OSError as exc:
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
            data = self.formatter.lost_line(time.time_ns(), event.seq, event.count)
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
        except OSError as exc:
            self.reporter.error("cursor_save_failed", kind=errno_name(exc), error=exc.strerror)

    def write_pending(self) -> OSError | None:
        """One attempt at writing the queued batch (repeated at once while a full
        disk can be relieved by deleting a rotated file); the error that stopped it."""
        while self.pending:
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
            if exc.errno == errno.ENOENT:  # the directory was removed: make it again
                self.files.recreate_dir()
            return exc
        return None

    async def drain(self, max_attempts: int | None = None) -> None:
        """Write the queued batch, retrying with backoff until it is all written."""
        delay = RETRY_MIN_S
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
            delay = min(delay * 2, RETRY_MAX_S)
        if self.pending:
            return
        self._advance()
        self.save_cursor()

    def finish(self) -> None:
        """At exit: a last attempt at what is queued, the cursor, fsync, close."""
        self.write_pending()
        self.save_cursor(sync_dir=True)
        self.files.close()


# ---------------------------------------------------------------------- following


async def follow(
    config: Config, persister: Persister, reporter: LimitedLog, target: str | Connector
) -> None:
    """Follow memlogd (at ``target``) into the files: for ever (reconnecting with
    backoff), or once through the ring with ``--once``."""
    request = proto.QueryRequest(dump=True, follow=not config.once)
    subscription = Subscription(
        target,
        request,
        cursor=persister.cursor,
        retry=not config.once,
        header_timeout_s=HEADER_TIMEOUT_S,
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
                reporter.info(
                    "memlogd_restarted", old_instance=event.old_instance, instance=event.instance
                )
                persister.forget_cursor()
            elif isinstance(event, Disconnected):
                reporter.info("disconnected", reason=event.reason)
            elif isinstance(event, Waiting):
                reporter.error(
                    "memlogd_unreachable", path=event.error.path, reason=event.error.reason
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
) -> None:
    """logwrite's whole job, until cancelled (or the ring is written, ``--once``):
    memlogd at ``target`` (default ``config.socket``) into ``config.log_dir``.
    At the end (cancelled too) what is queued gets a last attempt, the cursor is
    saved and the files are synced.  A message on ``reopen`` reopens the files
    (SIGHUP).  Raises LogDirError, IncompleteError, MemlogdError."""
    reporter = new_reporter()
    files = open_log_files(config, reporter)
    persister = Persister(config, files, reporter)
    persister.load_cursor()
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
        files.reopen()
        log.info("files_reopened")


async def report_held_errors(reporter: LimitedLog) -> None:
    while True:
        await trio.sleep(ERROR_PERIOD_S)
        reporter.report_held()
