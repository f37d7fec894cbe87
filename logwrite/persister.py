"""Following memlogd into the log directory (SPEC section 5). I/O (trio).

One *session* is one query connection: an extended (mode 3) query resuming
after the saved cursor, or, when memlogd does not speak mode 3 (upstream),
the base dump+follow.  Each chunk received becomes one batch: its entries are
formatted, written, and then the cursor is saved.  When the disk refuses a
write, the rest of the batch is kept and retried (with backoff) before more
is read, so logwrite's memory stays bounded and memlogd, which never waits
for a reader, reports what it had to drop as ``dropped`` (written to
``DIR/logwrite.log``).  Sessions are retried with backoff for ever (or once,
with ``--once``).
"""

from __future__ import annotations

import errno
import fnmatch
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
import trio

from logwrite.cursor import load_cursor, save_cursor
from logwrite.files import Item, LogFiles, errno_name
from logwrite.lines import (
    ERROR_PERIOD_S,
    OWN_SOURCE,
    Cursor,
    CursorError,
    LineFormatter,
    TimeFormat,
)
from logwrite.report import Reporter
from logwrite.rotation import safe_log_name
from memlogd import protocol as proto
from memlogd.client import RECV_CHUNK, ConnectError, Query, open_query

log = structlog.get_logger("logwrite")

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
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


class ExtendedUnavailableError(proto.MemlogdError):
    """memlogd did not answer an extended query with a header line."""


class IncompleteError(proto.MemlogdError):
    """``--once`` could not write everything."""


class Persister:
    """Turns received replies into lines in files, and keeps the cursor."""

    def __init__(self, config: Config, files: LogFiles, reporter: Reporter) -> None:
        self.config = config
        self.files = files
        self.reporter = reporter
        self.formatter = LineFormatter(config.time_format)
        self._skip = (
            re.compile("|".join(fnmatch.translate(g) for g in config.skip_sources))
            if config.skip_sources
            else None
        )
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
        try:
            self.cursor = self._saved = load_cursor(self.files.dir_fd)
        except CursorError as exc:
            log.warning("cursor_ignored", reason=str(exc))

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
            skipped = self._skip is not None and self._skip.match(source) is not None
            stem = names[source] = None if skipped else safe_log_name(source)
        return stem

    def add(self, replies: Sequence[proto.Reply]) -> None:
        """Queue one received batch (the previous one must be written)."""
        assert not self.pending
        items = self.pending
        line = self.formatter.line
        last: int | None = None
        for reply in replies:
            if isinstance(reply, proto.LogEntry):
                if reply.seq is not None:
                    last = reply.seq
                stem = self._stem(reply.source)
                if stem is not None:
                    items.append(
                        Item(reply.seq, stem, line(reply.time_ns, reply.source, reply.msg))
                    )
            elif isinstance(reply, proto.Dropped):
                last = reply.seq + reply.count - 1
                self.dropped += reply.count
                self.reporter.warning("entries_lost", count=reply.count, first_seq=reply.seq)
                data = self.formatter.lost_line(time.time_ns(), reply.seq, reply.count)
                items.append(Item(reply.seq, safe_log_name(OWN_SOURCE), data))
            elif isinstance(reply, proto.ErrorReply):
                self.reporter.error("memlogd_error", message=reply.message)
        self._batch_last = last
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

    def write_pending(self) -> OSError | None:
        """One attempt at writing the queued batch (repeated at once while a full
        disk can be relieved by deleting a rotated file); the error that stopped it."""
        while self.pending:
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
            if self.write_pending() is None:
                break
            attempts += 1
            if max_attempts is not None and attempts >= max_attempts:
                raise IncompleteError(f"{len(self.pending)} lines could not be written")
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


# ---------------------------------------------------------------------- sessions


class LineBuffer:
    """Splits received bytes into lines (PURE helper kept here for locality)."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            self._tail += data
            return []
        *lines, tail = (self._tail + data).split(b"\n")
        self._tail = tail
        return lines


async def _read_header(query: Query, buffer: LineBuffer) -> tuple[proto.Header, list[bytes]]:
    lines: list[bytes] = []
    with trio.move_on_after(HEADER_TIMEOUT_S):
        try:
            while not lines:
                data = await query.stream.receive_some(RECV_CHUNK)
                if not data:
                    break
                lines = buffer.feed(data)
        except (trio.BrokenResourceError, OSError):
            pass
    if not lines:
        raise ExtendedUnavailableError("no answer to an extended query")
    try:
        header = proto.decode_reply(lines[0])
    except proto.ProtocolError:
        raise ExtendedUnavailableError("the first answer line is not a header") from None
    if isinstance(header, proto.ErrorReply):
        raise ExtendedUnavailableError(f"memlogd refused the query: {header.message}")
    if not isinstance(header, proto.Header):
        raise ExtendedUnavailableError("the first answer line is not a header")
    return header, lines[1:]


class Follower:
    def __init__(self, config: Config, persister: Persister, reporter: Reporter) -> None:
        self.config = config
        self.persister = persister
        self.reporter = reporter

    def _decode(self, lines: list[bytes], extended: bool) -> list[proto.Reply]:
        decode = proto.decode_reply if extended else proto.decode_entry
        replies: list[proto.Reply] = []
        for line in lines:
            if not line:
                continue
            try:
                replies.append(decode(line))
            except proto.ProtocolError as exc:
                self.reporter.error("bad_line_from_memlogd", error=str(exc))
        return replies

    async def _pump(
        self, query: Query, buffer: LineBuffer, lines: list[bytes], extended: bool
    ) -> bool:
        """Write batches until memlogd closes the connection; True if any came."""
        attempts = ONCE_WRITE_ATTEMPTS if self.config.once else None
        received = False
        while True:
            if lines:
                received = True
                self.persister.add(self._decode(lines, extended))
                await self.persister.drain(attempts)
            try:
                data = await query.stream.receive_some(RECV_CHUNK)
            except (trio.BrokenResourceError, OSError):
                return received
            if not data:
                return received
            lines = buffer.feed(data)

    async def session(self) -> bool:
        """One connection; True when it reached the data (a header, or base mode)."""
        persister = self.persister
        follow = not self.config.once
        path = self.config.socket
        for _ in range(2):
            cursor = persister.cursor
            request = proto.QueryRequest(
                dump=True, follow=follow, after_seq=None if cursor is None else cursor.seq
            )
            try:
                async with open_query(path, request) as query:
                    buffer = LineBuffer()
                    header, lines = await _read_header(query, buffer)
                    if cursor is not None and header.instance != cursor.instance:
                        self.reporter.info(
                            "memlogd_restarted",
                            old_instance=cursor.instance,
                            instance=header.instance,
                        )
                        persister.forget_cursor()
                        continue  # the after_seq we sent meant nothing to this daemon
                    persister.instance = header.instance
                    self.reporter.info(
                        "connected",
                        mode="extended",
                        instance=header.instance,
                        after_seq=request.after_seq,
                        first_seq=header.first_seq,
                        next_seq=header.next_seq,
                    )
                    await self._pump(query, buffer, lines, extended=True)
                    return True
            except (ExtendedUnavailableError, trio.BrokenResourceError) as exc:
                # upstream memlogd closes the connection after an unknown mode byte
                self.reporter.info(
                    "extended_query_unavailable", reason=str(exc) or "connection closed"
                )
                return await self._base_session()
        return False

    async def _base_session(self) -> bool:
        """Upstream memlogd: base dump(+follow); no cursor, no gap reports."""
        mode = proto.QueryMode.DUMP if self.config.once else proto.QueryMode.DUMP_FOLLOW
        self.persister.instance = None
        async with open_query(self.config.socket, mode) as query:
            self.reporter.info("connected", kind="base", mode="base")
            return await self._pump(query, LineBuffer(), [], extended=False)

    async def run(self) -> None:
        """Sessions until cancelled (or one, with ``--once``)."""
        if self.config.once:
            await self.session()
            return
        delay = BACKOFF_MIN_S
        while True:
            try:
                if await self.session():
                    delay = BACKOFF_MIN_S
                self.reporter.info("disconnected")
            except ConnectError as exc:
                self.reporter.error("memlogd_unreachable", path=exc.path, reason=exc.reason)
            except (trio.BrokenResourceError, OSError) as exc:
                self.reporter.error("memlogd_connection_failed", error=str(exc))
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)


async def report_held_errors(reporter: Reporter) -> None:
    while True:
        await trio.sleep(ERROR_PERIOD_S)
        reporter.report_held()
