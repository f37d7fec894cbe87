"""Reading the kernel log device on trio, and writing its lines out (docs/kmsg.md).

The device (``/dev/kmsg``, or any path given) is opened non-blocking.  For a
character device every ``read(2)`` returns exactly one record; ``EPIPE`` means
records were overwritten before we read them (the next read returns the
oldest one still there) and ``EAGAIN`` means we are at the end.  A regular
file or a FIFO standing in for the device (tests, replays) is read as a byte
stream of records, one per line plus its dictionary lines; its end of file
ends ``--no-follow`` and is polled with ``--follow`` (like ``tail -f``).

Records are written in batches (one write per batch), and after each batch
the last sequence number written is saved to the state file, if any: a record
counts as done only once its line has been handed on.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
import trio

from kmsg.record import READ_SIZE, KmsgDecoder, KmsgParseError, RecordSplitter
from kmsg.state import KmsgState, StateError, load_state, read_boot_id, save_state
from memlogd import termio
from memlogd.client import open_log_stream
from memlogd.errors import MemlogdError

DEFAULT_PATH = "/dev/kmsg"
DMESG_RESTRICT = "/proc/sys/kernel/dmesg_restrict"
DEFAULT_NAME = "kmsg"
MAX_BATCH = 256  # records per write
POLL_S = 0.25  # how often the end of a regular file (or a FIFO without writer) is re-read
WRITE_GRACE_S = 2.0  # a batch being written when a signal comes may finish within this

log = structlog.get_logger("kmsg")


class KmsgOpenError(MemlogdError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open {path}: {reason}")


class KmsgReadError(MemlogdError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")


@dataclass(frozen=True, slots=True)
class KmsgConfig:
    path: str = DEFAULT_PATH
    follow: bool = True
    from_end: bool = False
    json: bool = False
    to_stdout: bool = False  # text records on stdout (json records always go there)
    socket_log: str | None = None
    name: str = DEFAULT_NAME
    state_file: str | None = None
    upstream_format: bool = False  # text records without the <L> in front

    @property
    def records_fd(self) -> int:
        """Where records go without --socket-log (and once memlogd is gone):
        stdout for ``-o json`` (for tools like jq) or with ``--stdout``, else stderr."""
        return 1 if self.json or self.to_stdout else 2


# ------------------------------------------------------------------ time


def boot_time_ns() -> int:
    """Wall-clock time of boot: CLOCK_REALTIME - CLOCK_BOOTTIME (``btime`` as a fallback)."""
    try:
        before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        now = time.clock_gettime_ns(time.CLOCK_REALTIME)
        after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        return now - (before + after) // 2
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return int(line.split()[1]) * 1_000_000_000
    except (OSError, ValueError):
        pass
    return time.time_ns() - int(time.monotonic() * 1e9)


# ------------------------------------------------------------------ input


def open_device(path: str, *, from_end: bool = False) -> tuple[int, bool]:
    """Open ``path`` non-blocking; return the fd and whether it is a character device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise KmsgOpenError(path, open_failure_reason(path, exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise KmsgOpenError(path, os.strerror(errno.EISDIR))
        if from_end:
            try:
                os.lseek(fd, 0, os.SEEK_END)
            except OSError as exc:
                if exc.errno != errno.ESPIPE:  # a FIFO has no end to seek to
                    raise KmsgOpenError(path, exc.strerror or str(exc)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd, stat.S_ISCHR(mode)


def open_failure_reason(path: str, exc: OSError, restrict_path: str = DMESG_RESTRICT) -> str:
    """Why ``path`` could not be opened: the system's words, and for a kernel log
    device refused with EPERM while ``kernel.dmesg_restrict`` is set, what it needs."""
    reason = exc.strerror or str(exc)
    if exc.errno != errno.EPERM:
        return reason
    try:
        device = stat.S_ISCHR(os.stat(path).st_mode)
        with open(restrict_path, encoding="ascii") as f:
            restricted = f.read().strip() == "1"
    except (OSError, ValueError):
        return reason
    if device and restricted:
        reason += " (kernel.dmesg_restrict is 1: reading the kernel log needs CAP_SYSLOG)"
    return reason


class KmsgReader:
    """Batches of raw records from an open fd; ``None`` in a batch marks an overrun."""

    def __init__(
        self,
        fd: int,
        path: str,
        *,
        device: bool,
        follow: bool,
        read: Callable[[int, int], bytes] = os.read,
    ) -> None:
        self.fd = fd
        self._read = read  # injectable, so that tests can script EPIPE
        self.path = path
        self.device = device
        self.follow = follow
        self._splitter = None if device else RecordSplitter()
        self._ended = False
        self.caught_up = False  # read to the end once (then a batch, if empty, is returned)

    async def next_batch(self) -> list[bytes | None] | None:
        """Up to MAX_BATCH records; None once the input has ended (``--no-follow``)."""
        await trio.lowlevel.checkpoint()
        if self._ended:
            return None
        batch: list[bytes | None] = []
        while len(batch) < MAX_BATCH:
            try:
                data = self._read(self.fd, READ_SIZE)
            except BlockingIOError:  # EAGAIN: nothing more for now
                batch += self._idle()
                if not self.follow:  # the end of the log as it was: stop there
                    self._ended = self.caught_up = True
                    return batch or None
                if batch or not self.caught_up:
                    self.caught_up = True
                    return batch
                await trio.lowlevel.wait_readable(self.fd)
                continue
            except BrokenPipeError:  # EPIPE: records overwritten before we read them
                batch.append(None)
                continue
            except OSError as exc:
                raise KmsgReadError(self.path, exc.strerror or str(exc)) from None
            if not data:  # end of a file, or a FIFO without writer
                if not self.follow:
                    self._ended = self.caught_up = True
                    if self._splitter is not None:
                        batch += self._splitter.close()
                    return batch or None
                batch += self._idle()
                if batch or not self.caught_up:
                    self.caught_up = True
                    return batch
                await trio.sleep(POLL_S)
                continue
            if self._splitter is None:
                batch.append(data)
            else:
                batch += self._splitter.feed(data)
        return batch

    def _idle(self) -> list[bytes]:
        return [] if self._splitter is None else self._splitter.flush()


# ------------------------------------------------------------------ output


class Output:
    """Where lines go: an fd (:attr:`KmsgConfig.records_fd`) or, with
    --socket-log, a stream into memlogd.

    If memlogd goes away, the lines go to the fd from then on (with a warning).
    """

    def __init__(self, fd: int, stream: trio.SocketStream | None = None) -> None:
        self.out = termio.Output(fd)
        self.stream = stream

    async def write(self, data: bytes) -> None:
        if self.stream is not None:
            try:
                await self.stream.send_all(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("memlogd_gone", fallback=_FD_NAMES.get(self.out.fd, "output"))
                await self.aclose()
        await self.out.write(data)

    async def aclose(self) -> None:
        self.out.close()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            await stream.aclose()


_FD_NAMES = {1: "stdout", 2: "stderr"}


def open_output(config: KmsgConfig, fd: int) -> Output:
    """``fd``, or a stream handed to memlogd (raises ConnectError if it is not there)."""
    if config.socket_log is None:
        return Output(fd)
    sock = open_log_stream(config.socket_log, config.name)
    sock.setblocking(False)
    return Output(fd, trio.SocketStream(trio.socket.from_stdlib_socket(sock)))


# ------------------------------------------------------------------ the loop


class Sink(Protocol):
    """Where records go: :class:`Output`, or memlogd's ring (its in-process role)."""

    async def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


async def run_kmsg(
    config: KmsgConfig,
    output_fd: int | None = None,
    *,
    sink: Sink | None = None,
    done_seq: int | None = None,
) -> None:
    """Copy the kernel log to the output until the input ends or we are cancelled.

    ``sink`` replaces the output; ``done_seq``, when later than the state
    file's, is a record already handed on (memlogd's ring holds it).
    Raises KmsgOpenError, KmsgReadError, ConnectError or OutputClosedError.
    """
    boot_id = read_boot_id()
    saved = None if config.state_file is None else load_state(config.state_file, boot_id)
    after_seq = saved
    if done_seq is not None and (after_seq is None or done_seq > after_seq):
        after_seq = done_seq
    # the state file's seq, until the kernel log showed it is one of its records
    unchecked = saved if saved is not None and saved == after_seq else None
    fd, device = open_device(config.path, from_end=config.from_end and after_seq is None)
    try:
        output: Sink = (
            sink
            if sink is not None
            else open_output(config, config.records_fd if output_fd is None else output_fd)
        )
        decoder = KmsgDecoder(
            boot_time_ns(),
            json=config.json,
            after_seq=after_seq,
            upstream_format=config.upstream_format,
        )
        follow = config.follow
        reader = KmsgReader(fd, config.path, device=device, follow=follow)
        saver = _StateSaver(config.state_file, boot_id, after_seq)
        try:
            while True:
                batch = await reader.next_batch()
                lines = decode_batch(decoder, batch or [])
                # let a batch already read reach the output even when a signal comes now
                with _shielded(WRITE_GRACE_S):
                    if lines:
                        await output.write(("\n".join(lines) + "\n").encode("utf-8", "replace"))
                    saver.save(decoder.last_seq)
                if unchecked is not None and reader.caught_up:
                    claimed, unchecked, seen = unchecked, None, decoder.seen_seq
                    if seen is not None and seen < claimed:
                        log.warning(
                            "state_ignored",
                            path=config.state_file,
                            reason=f"its seq {claimed} is beyond the kernel log's last {seen}",
                        )
                        decoder.last_seq = done_seq
                        if _rewind(fd):
                            reader = KmsgReader(fd, reader.path, device=device, follow=follow)
                            continue
                if batch is None:
                    break
        finally:
            saver.save(decoder.last_seq)
            with _shielded(WRITE_GRACE_S):
                await output.aclose()
    finally:
        os.close(fd)


def _rewind(fd: int) -> bool:
    """Back to the first record (False for a FIFO, which cannot go back)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return False
    return True


def _shielded(seconds: float) -> trio.CancelScope:
    """A scope that outside cancellation cannot enter, but that ends after ``seconds``."""
    scope = trio.move_on_after(seconds)
    scope.shield = True
    return scope


def decode_batch(decoder: KmsgDecoder, batch: list[bytes | None]) -> list[str]:
    lines: list[str] = []
    for raw in batch:
        if raw is None:
            decoder.overrun()
            continue
        try:
            lines += decoder.decode(raw)
        except KmsgParseError as exc:
            log.warning("malformed_record", error=str(exc), record=raw[:200])
    return lines


class _StateSaver:
    """Saves the last sequence number when it changed; warns once per distinct failure."""

    def __init__(self, path: str | None, boot_id: str, saved: int | None) -> None:
        self.path = path
        self.boot_id = boot_id
        self.saved = saved
        self._last_error = ""

    def save(self, seq: int | None) -> None:
        if self.path is None or seq is None or seq == self.saved:
            return
        try:
            save_state(self.path, KmsgState(self.boot_id, seq))
        except StateError as exc:
            if str(exc) != self._last_error:
                log.warning("state_save_failed", error=str(exc))
                self._last_error = str(exc)
            return
        self.saved = seq
        self._last_error = ""
