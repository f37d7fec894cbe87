"""``memlogd-exec``: the init side for one command (docs/memlogd.md, "memlogd-exec").

Runs CMD with its stdout and stderr going through this process, which copies
each to its own stdout/stderr (the console) and to memlogd, as sources
``NAME.out`` and ``NAME``; when CMD ends, one last line in ``NAME`` says how
(``memlogd-exec: NAME exited with status 3``), and ``cannot run CMD: REASON``
goes there too when CMD cannot start.  Exits with CMD's status (128 + N when
CMD was killed by signal N).

memlogd's side never holds the command up: the console copy never waits for
memlogd, sends to memlogd never block, and when memlogd goes away the output
is kept (up to ``BACKLOG_BYTES`` per source) and sent once memlogd is back
(checked every ``RETRY_S``), with one line counting what could not be kept.
A source memlogd refuses (it closes the stream at once although it answers)
is retried with backoff instead.  CMD never gets SIGPIPE because of memlogd.

A ``-socket`` that is not a log socket (a file, memlogd's query socket) is a
usage error: nothing could ever take the output.  CMD runs in its own process
group (unless stdin is a terminal), which gets the signals memlogd-exec is
sent.  memlogd-exec ends when CMD does, once it relayed what is in the pipes
(its background children may hold them: they are not waited for, within
``DRAIN_S``); it gives memlogd the rest for as long as memlogd takes some of
it, and gives up after ``EXIT_WAIT_S`` in which memlogd took nothing (gone, or
stuck), counting on stderr what it could not deliver.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import termios
from typing import Any

import structlog
import trio

from memlogd.client import send_fds
from memlogd.client.reasons import connect_reason
from memlogd.errors import ConnectError
from memlogd.wire import protocol as proto
from memlogd.wire.paths import DEFAULT_LOG_SOCKET

log = structlog.get_logger("memlogd-exec")

CHUNK = 64 * 1024
BACKLOG_BYTES = 1024 * 1024  # kept per source while memlogd is away
RETRY_S = 1.0  # how often a memlogd that went away is looked for again
BUSY_S = (0.01, 0.1)  # a busy memlogd (its fd queue full) is offered a stream again within this
REFUSED_WITHIN_S = 1.0  # a stream memlogd closes this soon after we handed it over: refused
SETTLE_S = 0.1  # after a break, memlogd is looked at again after this
REFUSED_MIN_S = 2.0  # a refused source is retried after this, doubling...
REFUSED_MAX_S = 60.0  # ...up to this
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
EXIT_WAIT_S = 2.0  # at CMD's end, memlogd (maybe restarting) has this to take more of the rest
DRAIN_S = 1.0  # at CMD's end, what is in its pipes is relayed within this
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127
NEWLINE = ord("\n")


def _socket_identity(path: str) -> tuple[int, int, int] | None:
    """The log socket file's identity: a memlogd started again binds a new file
    (its inode number may be the old one's, its creation time is not)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def not_a_log_socket(path: str) -> str | None:
    """Why ``path`` can never be memlogd's log socket (a file, a directory, the
    query socket); None when it may be one, or may become one (not there yet)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not stat.S_ISSOCK(mode):
        return connect_reason(path, OSError(errno.ENOTSOCK, "not a socket"), socket.SOCK_DGRAM)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as probe:
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno == errno.EPROTOTYPE:  # a stream socket: the query socket
                return connect_reason(path, exc, socket.SOCK_DGRAM)
    return None


def _daemon_answers(path: str) -> bool:
    """Is a memlogd listening at ``path``?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class Link:
    """One source in memlogd (``NAME.out`` or ``NAME``): a stream whose other end
    memlogd reads, registered again whenever it breaks."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        self.name = name
        self.sock: socket.socket | None = None
        self.backlog = bytearray()  # waiting for room, or for memlogd
        self.lost = 0  # bytes that did not fit in the backlog
        self.closing = False
        self.mid_line = False  # what the current stream was given ends inside a line
        self._wake = trio.Event()
        self._retry_at = 0.0
        self._registered_at = 0.0
        self._registered_with: tuple[int, int, int] | None = None  # the memlogd we gave it to
        self._broke_soon = False  # the last stream closed soon after it was handed over
        self._refusals = 0
        self._outage = False  # said once per outage
        # at CMD's end: the wait for memlogd to take the rest, moved on by what it takes
        self.grace: trio.CancelScope | None = None

    # -------------------------------------------------------------- connection

    def register(self) -> bool:
        """Hand memlogd a new stream (never waits); False when it cannot."""
        ours, theirs = socket.socketpair()
        _hold_in_the_kernel(ours)
        try:
            send_fds(self.path, self.name, [theirs.fileno()], wait=False)
        except ConnectError as exc:
            ours.close()
            if exc.busy:  # many streams offered at once (a boot): again in a moment,
                self._retry_at = trio.current_time() + random.uniform(*BUSY_S)  # not in step
            else:
                self._unavailable(exc.reason)
            return False
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._registered_at = trio.current_time()
        self._registered_with = _socket_identity(self.path)
        if self._outage:  # resent lines get the time memlogd receives them
            log.info(
                "memlogd_back",
                source=self.name,
                resending_bytes=len(self.backlog),
                resending_lines=self.backlog.count(b"\n"),
            )
        self._outage = False
        # a new stream: only what the backlog passes on to it can leave a line open
        self.mid_line = bool(self.backlog) and self.backlog[-1] != NEWLINE
        self._report_lost()
        self._wake.set()
        return True

    def _report_lost(self) -> None:
        """Once memlogd takes output again: one line counting what was not kept."""
        if self.lost:
            line = f"memlogd-exec: {self.lost} bytes of output were lost while memlogd was away\n"
            self.backlog += line.encode()
            self.lost = 0
            self.mid_line = False

    def _unavailable(self, reason: str) -> None:
        """memlogd cannot be reached: keep the output, and look again soon."""
        if not self._outage:
            log.warning(
                "memlogd_unavailable",
                source=self.name,
                path=self.path,
                reason=reason,
                consequence="output kept (1 MiB), resent if memlogd is back before the end",
            )
        self._outage = True
        self._retry_at = trio.current_time() + RETRY_S

    def _broken(self) -> None:
        """The stream closed.  Whether memlogd refused it or went away is told a
        moment later (a daemon being killed lets go of its sockets in no order)."""
        now = trio.current_time()
        self._broke_soon = now - self._registered_at < REFUSED_WITHIN_S
        self.release()
        self._retry_at = now + SETTLE_S

    def _refused(self) -> bool:
        """After a break: did the memlogd we gave the stream to close it at once,
        and does it still answer?  Then wait before offering it again."""
        if not self._broke_soon or _socket_identity(self.path) != self._registered_with:
            return False
        if not _daemon_answers(self.path):
            return False
        self._broke_soon = False
        delay = min(REFUSED_MIN_S * 2**self._refusals, REFUSED_MAX_S)
        self._refusals += 1
        log.warning(
            "source_refused",
            source=self.name,
            reason="memlogd closed it at once (over its -max-sources?)",
            retry_in_s=delay,
        )
        self._retry_at = trio.current_time() + delay
        return True

    # -------------------------------------------------------------- data

    def write(self, data: bytes | bytearray) -> None:
        """Send without waiting, or keep what cannot be sent now."""
        if self.sock is not None and not self.backlog:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0
                self._broken()
            if sent:
                self.mid_line = data[sent - 1] != NEWLINE
                self._took()
            data = data[sent:]
        if not data:
            return
        if self.lost:  # the backlog overflowed: nothing more is kept until it is sent
            self.lost += len(data)
            return
        room = BACKLOG_BYTES - len(self.backlog)
        if len(data) > room:
            cut = data.rfind(b"\n", 0, room) + 1  # whole lines only
            self.lost += len(data) - cut
            data = data[:cut]
            if not cut:  # a line begun in the backlog cannot be finished: it goes too
                keep = self.backlog.rfind(b"\n") + 1
                self.lost += len(self.backlog) - keep
                del self.backlog[keep:]
        self.backlog += data
        if self.backlog:
            self.mid_line = self.backlog[-1] != NEWLINE
        self._wake.set()

    def write_own_line(self, line: str) -> None:
        """A line of memlogd-exec's own (ending in a newline), always an entry of
        its own: after the command's output when that ended inside a line."""
        self.write(("\n" if self.mid_line else "").encode() + line.encode())

    async def run(self) -> None:
        """Register, flush the backlog, watch the stream; until closed and flushed."""
        while True:
            if self.sock is None:
                if self.closing and not self.undelivered:
                    return
                retry_at = self._retry_at
                if self.closing and self._outage:  # (the caller waits EXIT_WAIT_S at most)
                    retry_at = min(retry_at, trio.current_time() + SETTLE_S)
                await trio.sleep_until(retry_at)
                if not self._refused():
                    self.register()
                continue
            sock = self.sock
            if self.backlog:
                await trio.lowlevel.wait_writable(sock)
                if self.sock is not sock:
                    continue
                try:
                    sent = sock.send(self.backlog)
                except BlockingIOError:
                    continue
                except OSError:
                    self._broken()
                    continue
                del self.backlog[:sent]
                if sent:
                    self._took()
                if not self.backlog:
                    self._report_lost()  # (while connected: memlogd was too slow)
                continue
            if self.closing:
                return
            await self._idle(sock)

    async def _idle(self, sock: socket.socket) -> None:
        """Wait for data to send, or notice memlogd closing the stream."""
        self._wake = trio.Event()
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while True:  # memlogd never writes: readable means the end
                    try:
                        await trio.lowlevel.wait_readable(sock)
                    except trio.ClosedResourceError:
                        return  # closed by write() meanwhile
                    try:
                        if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                            await trio.sleep_forever()  # never: it writes nothing
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    break
                self._broken()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await self._wake.wait()
            nursery.cancel_scope.cancel()

    def _took(self) -> None:
        """memlogd took some output: after CMD's end, it has EXIT_WAIT_S again."""
        if self.grace is not None:
            self.grace.deadline = max(self.grace.deadline, trio.current_time() + EXIT_WAIT_S)

    @property
    def undelivered(self) -> int:
        """Bytes of output memlogd has not been given (kept, or lost)."""
        return len(self.backlog) + self.lost

    def close(self) -> None:
        self.closing = True
        self._wake.set()

    def release(self) -> None:
        if self.sock is not None:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()
            self.sock = None


_SO_SNDBUFFORCE = 32  # Linux: SO_SNDBUF past net.core.wmem_max (CAP_NET_ADMIN; not in socket)


def _hold_in_the_kernel(sock: socket.socket) -> None:
    """Let a stream to memlogd hold as much as the backlog would (as far as
    the kernel allows): CMD's output then waits in the kernel, not here, so a
    memlogd that reads it late (an upgrade under load) still gets what was
    written before memlogd-exec ended.  (The default, about 200 KiB, takes
    only about 90 writes of a few lines each.)"""
    for option in (_SO_SNDBUFFORCE, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, BACKLOG_BYTES)
            return
        except OSError:
            continue


def _pending(fd: int) -> int:
    """Bytes waiting in the pipe ``fd``."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)
    except OSError:
        return 0


class Tee:
    """Copies one of CMD's pipes to the console and to memlogd."""

    def __init__(self, source: trio.lowlevel.FdStream, console_fd: int, link: Link) -> None:
        self.source = source
        self.console_fd = console_fd
        self.link = link
        self._finishing = False
        self._receiving: trio.CancelScope | None = None

    def finish(self) -> None:
        """CMD ended: stop once the pipe holds nothing more (what CMD wrote is
        in it; its background children, which may hold the pipe, are not waited for)."""
        self._finishing = True
        if self._receiving is not None and not _pending(self.source.fileno()):
            self._receiving.cancel()  # waiting for data: nothing was read

    async def run(self) -> None:
        console: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(os.dup(self.console_fd))
        try:
            while not (self._finishing and not _pending(self.source.fileno())):
                data = b""
                with trio.CancelScope() as self._receiving:
                    data = await self.source.receive_some(CHUNK)
                self._receiving = None
                if not data:
                    return
                self.link.write(data)  # never waits
                if console is not None:
                    try:
                        await console.send_all(data)
                    except (trio.BrokenResourceError, OSError):
                        console = None  # the console is gone: memlogd still gets the lines
        finally:
            if console is not None:
                with contextlib.suppress(Exception):
                    await console.aclose()


def ending(name: str, status: int) -> str:
    """The last line of a service (``status`` as ``Popen.returncode``)."""
    if status < 0:
        try:
            how = f"killed by {signal.Signals(-status).name}"
        except ValueError:
            how = f"killed by signal {-status}"
    else:
        how = f"exited with status {status}"
    return f"memlogd-exec: {name} {how}\n"


async def run_command(argv: list[str], path: str, name: str) -> int:
    out_link, err_link = Link(path, f"{name}.out"), Link(path, name)
    for link in (out_link, err_link):
        link.register()
    async with trio.open_nursery() as links:
        for link in (out_link, err_link):
            links.start_soon(link.run)  # each ends once it delivered all (closed)
        try:
            status = await _run(argv, name, out_link, err_link)
        finally:
            for link in (out_link, err_link):
                link.close()
        # memlogd (maybe restarting, or busy) takes what is left: as long as it takes
        # some within each EXIT_WAIT_S (a slow memlogd loses nothing)
        links.cancel_scope.deadline = trio.current_time() + EXIT_WAIT_S
        for link in (out_link, err_link):
            link.grace = links.cancel_scope
    for link in (out_link, err_link):
        link.release()
    _report_undelivered(path, out_link, err_link)
    return status


def _report_undelivered(path: str, *links: Link) -> None:
    """One line on stderr counting the output memlogd never got."""
    total = sum(link.undelivered for link in links)
    if total:
        each = ", ".join(f"{link.name} {link.undelivered}" for link in links)
        sys.stderr.write(
            f"memlogd-exec: {total} bytes of output ({each}) could not be delivered "
            f"to memlogd at {path}\n"
        )


def _on_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):  # no stdin at all
        return False


async def _run(argv: list[str], name: str, out_link: Link, err_link: Link) -> int:
    # a process group of its own, which gets the signals; but on a terminal CMD stays
    # in the foreground group (it may read the terminal; Ctrl-C reaches it anyway)
    own_group = not _on_terminal()
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0 if own_group else None,
        )
    except OSError as exc:
        line = f"memlogd-exec: cannot run {argv[0]}: {exc.strerror}\n"
        sys.stderr.write(line)
        err_link.write_own_line(line)
        return EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_RUN
    assert isinstance(proc.stdout, trio.lowlevel.FdStream)
    assert isinstance(proc.stderr, trio.lowlevel.FdStream)
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def forward() -> None:
                async for signum in signals:  # to CMD and its children
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if own_group:
                            os.killpg(proc.pid, signum)
                        else:
                            proc.send_signal(signum)

            nursery.start_soon(forward)
            tees = (
                Tee(proc.stdout, sys.stdout.fileno(), out_link),
                Tee(proc.stderr, sys.stderr.fileno(), err_link),
            )
            async with trio.open_nursery() as pipes:
                for each in tees:
                    pipes.start_soon(each.run)
                status = await proc.wait()
                for each in tees:
                    each.finish()
                pipes.cancel_scope.deadline = trio.current_time() + DRAIN_S
            for pipe in (proc.stdout, proc.stderr):
                await pipe.aclose()
            nursery.cancel_scope.cancel()
    err_link.write_own_line(ending(name, status))
    return 128 - status if status < 0 else status


HELP_EPILOG = """\b
Examples:
  memlogd-exec -n web -- python3 -m http.server 8080
  memlogd-exec -socket /run/memlogd.sock -name backup -- /usr/local/bin/backup --full
  memlogd-exec -- sh -c 'echo to stdout; echo to stderr >&2'"""


def build_command() -> Any:
    import click

    from memlogd.cliflags import GoCommand, go_command, go_option

    class ExecCommand(GoCommand):
        allow_interspersed_args = False  # `memlogd-exec -n x sh -c 'echo'`: -c is sh's

    @go_command("memlogd-exec", cls=ExecCommand, epilog=HELP_EPILOG)
    @go_option(
        "--socket",
        "socket_path",
        default=DEFAULT_LOG_SOCKET,
        show_default=True,
        metavar="PATH",
        help="memlogd's log socket.",
    )
    @go_option("-n", "--name", default=None, help="Source name (default: the command's name).")
    @go_option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="memlogd-exec's own diagnostics on stderr: text or JSON.",
    )
    @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
    def main(socket_path: str, name: str | None, log_format: str, command: tuple[str, ...]) -> None:
        """Run COMMAND with its stdout and stderr kept by memlogd (as NAME.out and NAME)."""
        from memlogd.logconfig import configure_logging

        configure_logging("memlogd-exec", log_format)
        wrong = not_a_log_socket(socket_path)
        if wrong is not None:  # nothing could ever take the output: before CMD starts
            raise click.BadParameter(wrong, param_hint="'-socket'")
        source = name or os.path.basename(command[0]) or proto.UNNAMED_SOURCE
        sys.exit(trio.run(run_command, list(command), socket_path, source))

    return main


main = build_command()


if __name__ == "__main__":
    main()
