"""logread: show what memlogd holds, and follow it (SPEC section 4).

Upstream flags (``-socket``, ``-f``, ``-F``) speak only the base query modes
0/1/2, so logread also works against LinuxKit's Go memlogd.  Our flags
(``-s``, ``-n``, ``--since``, ``-o json``, ``--stats``, ``--retry``) use the
extended query (mode 3): entries carry a ``seq``, losses arrive as
``dropped`` records (reported on stderr), and ``--retry`` resumes a follow
across memlogd restarts from the last ``(instance, seq)`` it printed.

Output is written one batch per received chunk.  Closed stdout (``| head``)
ends logread quietly with status 0; Ctrl-C ends it quietly with status 130.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import NoReturn

import click
import structlog
import trio

from logread.render import (
    SinceError,
    parse_since,
    render_json,
    render_raw,
    render_stats,
    render_text,
)
from memlogd import protocol as proto
from memlogd.client import RECV_CHUNK, ConnectError, connect_query
from memlogd.logconfig import configure_logging

log = structlog.get_logger("logread")

RETRY_INITIAL_S = 0.05  # first reconnect delay with --retry; doubles up to RETRY_MAX_S
RETRY_MAX_S = 2.0
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

Renderer = Callable[[proto.LogEntry], str]


class Fatal(Exception):
    """An expected failure: one line on stderr, exit 1."""


class _ConnectionLost(Exception):
    """The query connection ended or broke (only an error with --retry off)."""


@dataclass(frozen=True)
class Options:
    socket: str
    dump: bool
    follow: bool
    extended: bool
    request: proto.QueryRequest
    output: str
    color: bool
    retry: bool
    stats: bool


@dataclass
class Cursor:
    """Where a follow stands: the daemon instance and the last seq accounted for
    (printed, filtered out, or reported lost); ``seq`` None = nothing yet."""

    instance: str | None = None
    seq: int | None = None


@dataclass
class Outcome:
    code: int = 0
    interrupted: bool = False
    stdout_closed: bool = False


def say(message: str) -> None:
    """One line for the user on stderr (not a log event)."""
    sys.stderr.write(f"logread: {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------- stdout


class Output:
    """Writes whole batches to fd 1; a pipe or socket is made non-blocking (and
    restored at exit) so that Ctrl-C works while a reader is not reading."""

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self._restore: bool | None = None
        with contextlib.suppress(OSError):
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                self._restore = os.get_blocking(fd)
                os.set_blocking(fd, False)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self.fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.fd)
                continue
            view = view[sent:]

    def close(self) -> None:
        if self._restore is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(self.fd, self._restore)
            self._restore = None


async def watch_stdout(fd: int, outcome: Outcome, scope: trio.CancelScope) -> None:
    """End logread as soon as the reader of stdout goes away (``| head``), even when
    nothing is being written: an epoll set with no events still reports the
    write end's error/hang-up, and is itself readable then."""
    with select.epoll() as ep:
        try:
            ep.register(fd, 0)
        except OSError:
            return  # a regular file or /dev/null: never closes under us
        while not ep.poll(0):
            await trio.lowlevel.wait_readable(ep.fileno())
    outcome.stdout_closed = True
    scope.cancel()


async def watch_sigint(outcome: Outcome, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            outcome.interrupted = True
            scope.cancel()
            return


# ---------------------------------------------------------------------- reading


async def line_batches(stream: trio.SocketStream) -> AsyncIterator[list[bytes]]:
    """The answer's complete lines, one list per received chunk; ends at EOF."""
    buf = b""
    while True:
        try:
            data = await stream.receive_some(RECV_CHUNK)
        except (trio.BrokenResourceError, OSError) as exc:
            raise _ConnectionLost(str(exc)) from None
        if not data:
            if buf:
                yield [buf]
            return
        buf += data
        if b"\n" not in data:
            continue
        *lines, buf = buf.split(b"\n")
        yield lines


async def send_request(stream: trio.SocketStream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, OSError) as exc:
        raise _ConnectionLost(str(exc)) from None


def make_renderer(output: str, color: bool) -> Renderer:
    if output == "json":
        return render_json
    if output == "raw":
        return render_raw
    if color:
        return lambda entry: render_text(entry, color=True)
    return render_text


async def connect(path: str) -> trio.SocketStream:
    try:
        return await connect_query(path)
    except ConnectError as exc:
        raise Fatal(str(exc)) from None


async def run_base(opts: Options, out: Output, render: Renderer) -> None:
    """Upstream's modes 0/1/2: what upstream memlogd understands too."""
    if opts.dump and opts.follow:
        mode = proto.QueryMode.DUMP_FOLLOW
    elif opts.follow:
        mode = proto.QueryMode.FOLLOW
    else:
        mode = proto.QueryMode.DUMP
    stream = await connect(opts.socket)
    async with stream:
        try:
            await send_request(stream, bytes([mode]))
            async for lines in line_batches(stream):
                texts = []
                try:
                    for line in lines:
                        if line:
                            texts.append(render(proto.decode_entry(line)))
                except proto.ProtocolError as exc:
                    await out.write("".join(texts).encode("utf-8", "replace"))
                    raise Fatal(f"malformed reply from memlogd: {exc}") from None
                await out.write("".join(texts).encode("utf-8", "replace"))
        except _ConnectionLost:
            return  # as upstream: the stream ended


async def run_stats(opts: Options, out: Output) -> None:
    stream = await connect(opts.socket)
    async with stream:
        await send_request(stream, proto.encode_request(proto.QueryRequest(stats=True)))
        stats: proto.Stats | None = None
        async for lines in line_batches(stream):
            for line in lines:
                if not line:
                    continue
                reply = _decode(line)
                if isinstance(reply, proto.ErrorReply):
                    raise Fatal(f"memlogd refused the query: {reply.message}")
                if isinstance(reply, proto.Stats):
                    stats = reply
    if stats is None:
        raise Fatal(f"memlogd at {opts.socket} sent no statistics (is it upstream's memlogd?)")
    if opts.output == "json":
        text = json.dumps(dict(stats.values), separators=(",", ":")) + "\n"
    else:
        text = render_stats(stats.values)
    await out.write(text.encode("utf-8", "replace"))


def _decode(line: bytes) -> proto.Reply:
    try:
        return proto.decode_reply(line)
    except proto.ProtocolError as exc:
        raise Fatal(f"malformed reply from memlogd: {exc}") from None


class Session:
    """Extended queries, one connection after the other when following with --retry."""

    def __init__(self, opts: Options, out: Output, render: Renderer) -> None:
        self.opts = opts
        self.out = out
        self.render = render
        self.cursor = Cursor()
        self.answered = False  # the current connection sent its header
        self.base = replace(opts.request, after_seq=None)
        self.fresh = opts.request  # what to ask an instance nothing was read from yet

    def resume_request(self) -> proto.QueryRequest:
        """After a lost connection to the same instance: carry on from the cursor."""
        if self.cursor.seq is None:
            return self.fresh  # nothing accounted for yet: ask again
        return replace(self.base, dump=False, follow=True, tail=None, after_seq=self.cursor.seq)

    def whole_ring_request(self) -> proto.QueryRequest:
        """After a restart: the new daemon's whole ring (filtered), then follow."""
        return replace(self.base, dump=True, follow=True, tail=None)

    async def run(self) -> None:
        request = self.fresh
        expect: str | None = None  # the instance a resume request is valid for
        delay = RETRY_INITIAL_S
        outage = False
        while True:
            try:
                stream = await connect_query(self.opts.socket)
            except ConnectError as exc:
                if not self.opts.retry:
                    raise Fatal(str(exc)) from None
                if not outage:
                    say(f"{exc}; retrying")
                    outage = True
                log.debug("reconnect_failed", path=self.opts.socket, reason=exc.reason)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self.answered = False
            broken = False
            try:
                async with stream:
                    await send_request(stream, proto.encode_request(request))
                    restarted = await self.receive(stream, request, expect)
            except _ConnectionLost:
                restarted, broken = False, True
            if restarted:
                say("memlogd restarted (new instance); printing its whole ring")
                request, expect = self.whole_ring_request(), None
                self.fresh = request
                continue  # at once: the daemon is there
            # a daemon that closes a mode 3 query without a word is upstream's memlogd
            upstream = not self.answered and not broken and self.cursor.instance is None
            if upstream or not (self.opts.follow and self.opts.retry):
                if not self.answered:
                    raise Fatal(
                        f"memlogd at {self.opts.socket} closed the connection without "
                        "answering the extended query (is it upstream's memlogd?)"
                    )
                return
            if self.answered:  # the connection had worked: a new outage starts
                delay = RETRY_INITIAL_S
                outage = False
            if not outage:
                say(f"lost connection to memlogd at {self.opts.socket}; reconnecting")
                outage = True
            if self.cursor.instance is not None:
                request, expect = self.resume_request(), self.cursor.instance
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def receive(
        self, stream: trio.SocketStream, request: proto.QueryRequest, expect: str | None
    ) -> bool:
        """Print one answer; True when its daemon is not the instance ``expect``."""
        header: proto.Header | None = None
        async for lines in line_batches(stream):
            texts: list[str] = []
            for line in lines:
                if not line:
                    continue
                reply = _decode(line)
                if header is None:
                    if isinstance(reply, proto.ErrorReply):
                        raise Fatal(f"memlogd refused the query: {reply.message}")
                    if not isinstance(reply, proto.Header):
                        raise Fatal("malformed reply from memlogd: no header line")
                    header = reply
                    self.answered = True
                    if expect is not None and header.instance != expect:
                        return True
                    if self.cursor.instance != header.instance:
                        self.cursor = Cursor(header.instance)
                    if self.cursor.seq is None and not request.dump:
                        self.cursor.seq = header.next_seq - 1  # a follow starts there
                    continue
                if isinstance(reply, proto.LogEntry):
                    texts.append(self.render(reply))
                    if reply.seq is not None:
                        self.cursor.seq = reply.seq
                elif isinstance(reply, proto.Dropped):
                    await self.flush(texts)
                    last = reply.seq + reply.count - 1
                    say(f"{reply.count} entries lost (seq {reply.seq}-{last})")
                    self.cursor.seq = max(self.cursor.seq or 0, last)
                elif isinstance(reply, proto.ErrorReply):
                    await self.flush(texts)
                    raise Fatal(f"memlogd: {reply.message}")
                else:
                    await self.flush(texts)
                    raise Fatal("malformed reply from memlogd: unexpected line")
            await self.flush(texts)
        return False

    async def flush(self, texts: list[str]) -> None:
        if texts:
            await self.out.write("".join(texts).encode("utf-8", "replace"))
            texts.clear()


async def run(opts: Options) -> int:
    outcome = Outcome()
    out = Output()
    render = make_renderer(opts.output, opts.color)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_sigint, outcome, nursery.cancel_scope)
            nursery.start_soon(watch_stdout, out.fd, outcome, nursery.cancel_scope)
            try:
                if opts.stats:
                    await run_stats(opts, out)
                elif opts.extended:
                    await Session(opts, out, render).run()
                else:
                    await run_base(opts, out, render)
            except Fatal as exc:
                say(str(exc))
                outcome.code = 1
            except BrokenPipeError:
                outcome.stdout_closed = True
            nursery.cancel_scope.cancel()
    finally:
        out.close()
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.stdout_closed:
        return 0
    return outcome.code


# ---------------------------------------------------------------------- command line


def quiet_exit(code: int) -> NoReturn:
    """Exit without Python's final flush of stdout failing on a closed pipe."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()  # what click printed (help, usage)
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    sys.exit(code)


def build_options(
    socket: str,
    follow: bool,
    dump_follow: bool,
    sources: tuple[str, ...],
    tail: int | None,
    since: str | None,
    output: str | None,
    stats: bool,
    retry: bool,
    color: str,
) -> Options:
    if stats and (follow or dump_follow or sources or tail is not None or since or retry):
        raise click.UsageError("--stats cannot be combined with -f, -F, -s, -n, --since or --retry")
    since_ns = None
    if since is not None:
        try:
            since_ns = parse_since(since, time.time_ns())
        except SinceError as exc:
            raise click.BadParameter(str(exc), param_hint="'--since'") from None
    output = output or "short"
    follow_any = follow or dump_follow
    # -n with -f shows the last N entries, then follows (as tail -n N -f does)
    dump = dump_follow or not follow or tail is not None
    extended = bool(sources) or tail is not None or since is not None
    extended = extended or output == "json" or stats or retry
    use_color = color == "always" or (
        color == "auto"
        and output == "short"
        and sys.stdout.isatty()
        and not os.environ.get("NO_COLOR")
    )
    request = proto.QueryRequest(
        dump=dump, follow=follow_any, sources=sources, tail=tail, since_ns=since_ns
    )
    return Options(
        socket=socket,
        dump=dump,
        follow=follow_any,
        extended=extended,
        request=request,
        output=output,
        color=use_color and output == "short",
        retry=retry,
        stats=stats,
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-socket",
    "--socket",
    "socket",
    default=proto.DEFAULT_QUERY_SOCKET,
    show_default=True,
    metavar="PATH",
    help="memlogd's query socket.",
)
@click.option("-f", "follow", is_flag=True, help="Follow: print new entries as they arrive.")
@click.option("-F", "dump_follow", is_flag=True, help="Print what is held, then follow.")
@click.option(
    "-s",
    "--source",
    "sources",
    multiple=True,
    metavar="GLOB",
    help="Only sources matching this shell glob (repeatable; OR-ed).",
)
@click.option(
    "-n",
    "--tail",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Only the last N matching entries held (then follow, with -f/-F).",
)
@click.option(
    "--since",
    metavar="WHEN",
    help="Only entries from WHEN on: a duration ago (30s, 10m, 2h, 1d) or an RFC 3339 time.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["short", "json", "raw"]),
    default=None,
    help="short = TIME;SOURCE;MSG (default), json = entry objects with seq, raw = messages.",
)
@click.option(
    "--stats", is_flag=True, help="Show memlogd's statistics (a table; JSON with -o json)."
)
@click.option(
    "--retry",
    is_flag=True,
    help="Wait for memlogd, and follow across its restarts (resuming where it stopped).",
)
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour sources (auto: when stdout is a terminal and NO_COLOR is unset).",
)
def command(
    socket: str,
    follow: bool,
    dump_follow: bool,
    sources: tuple[str, ...],
    tail: int | None,
    since: str | None,
    output: str | None,
    stats: bool,
    retry: bool,
    color: str,
) -> None:
    """Show the log lines memlogd holds (and follow them with -f/-F)."""
    opts = build_options(
        socket, follow, dump_follow, sources, tail, since, output, stats, retry, color
    )
    configure_logging(level="warning")
    try:
        code = trio.run(run, opts)
    except BaseException as exc:
        if not _is_interrupt(exc):
            raise
        code = EXIT_INTERRUPTED
    quiet_exit(code)


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(KeyboardInterrupt)
        return rest is None
    return False


def main() -> None:
    try:
        result = command.main(prog_name="logread", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        quiet_exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        quiet_exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):  # Ctrl-C before trio took over SIGINT
        quiet_exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        quiet_exit(0)
    quiet_exit(result if isinstance(result, int) else 0)
