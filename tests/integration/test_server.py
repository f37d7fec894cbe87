"""serve() in-process under trio, over real Unix sockets and real fds."""

from __future__ import annotations

import contextlib
import os
import socket
from functools import partial
from pathlib import Path

import pytest
import trio

from memlogd import client
from memlogd.config import DROP_REPORT_S, DaemonConfig
from memlogd.daemon.serve import Daemon, serve
from memlogd.logconfig import configure_logging
from memlogd.wire import protocol as proto
from memlogd.wire.answerparser import AnswerParser
from tests.helpers import wait_until
from tests.wire import register_fd

pytestmark = pytest.mark.integration


def make_config(tmp: Path, max_lines: int = 5000) -> DaemonConfig:
    return DaemonConfig(
        socket_log=str(tmp / "l.sock"),
        socket_query=str(tmp / "q.sock"),
        console=False,
        max_lines=max_lines,
    )


async def collect(path: str, what: proto.QueryMode | proto.QueryRequest) -> list[proto.Answer]:
    """A whole answer, read until memlogd closes it."""
    extended = isinstance(what, proto.QueryRequest)
    request = proto.encode_request(what) if isinstance(what, proto.QueryRequest) else bytes([what])
    parser = AnswerParser(extended=extended)
    replies: list[proto.Answer] = []
    async with await trio.open_unix_socket(path) as stream:
        await stream.send_all(request)
        while data := await stream.receive_some(1 << 16):
            replies += parser.feed(bytes(data))
    assert parser.close() == 0  # memlogd ends every line
    return replies


async def wait_entries(daemon: Daemon, count: int) -> None:
    await wait_until(lambda: daemon.state.received >= count)


async def stuck_follower(daemon: Daemon, config: DaemonConfig) -> socket.socket:
    """A follower (mode 1) with a tiny receive buffer that reads nothing (yet)."""
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stuck.connect(config.socket_query)
    stuck.sendall(bytes([proto.QueryMode.FOLLOW]))
    while not daemon.readers.active:
        await trio.sleep(0.005)
    return stuck


async def new_writer(config: DaemonConfig, name: str) -> trio.SocketStream:
    """A stream whose bytes memlogd reads as source ``name``."""
    ours, theirs = socket.socketpair()
    await register_fd(config.socket_log, name, [theirs.fileno()])
    theirs.close()
    return trio.SocketStream(trio.socket.from_stdlib_socket(ours))


async def test_serve_dump_and_shutdown(short_tmp: Path) -> None:
    configure_logging("memlogd", "json")
    config = make_config(short_tmp)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(serve, config)
            r, w = os.pipe()
            await register_fd(config.socket_log, "pipe", [r])
            os.close(r)
            os.write(w, b"a\nb\n")
            os.close(w)
            await wait_entries(daemon, 4)  # memlogd started, fd_registered, a, b
            entries = await collect(config.socket_query, proto.QueryMode.DUMP)
            assert [(e.source, e.msg) for e in entries if isinstance(e, proto.LogEntry)][-2:] == [
                ("pipe", "a"),
                ("pipe", "b"),
            ]
            daemon.begin_shutdown()
    assert not os.path.exists(config.socket_query)
    assert not os.path.exists(config.socket_log)


async def test_follower_a_ring_behind_loses_oldest_and_it_is_counted(short_tmp: Path) -> None:
    """Also: Readers.blocked is the followers whose socket is full, none while
    they keep up (the ring's eviction asks twice a batch, and then looks at
    no reader), and none again once the stuck one hangs up."""
    configure_logging("memlogd", "json")
    config = make_config(short_tmp, max_lines=50)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(serve, config)
            stuck = await stuck_follower(daemon, config)
            (reader,) = daemon.readers.active
            assert daemon.readers.blocked == set() and daemon.readers.protect() is None
            follow_start = daemon.ring.next_seq  # the follower's cursor: nothing came since
            # more than the follower's socket buffers hold (a follower that keeps
            # up is handed each batch before the ring makes room: SPEC 14)
            writer = await new_writer(config, "fast")
            await writer.send_all(b"".join(b"line %d %s\n" % (i, b"x" * 100) for i in range(20000)))
            await writer.aclose()
            await wait_entries(daemon, 20000)
            assert daemon.readers.blocked == {reader}
            # now read everything the stuck follower can still get
            stuck.setblocking(False)
            data = b""
            seen_end = False
            while not seen_end:
                await trio.lowlevel.wait_readable(stuck)
                chunk = stuck.recv(65536)
                data += chunk
                seen_end = b"line 19999 " in data
            got = [proto.decode_entry(x) for x in data.splitlines()]
            fast = [int(e.msg.split()[1]) for e in got if e.source == "fast"]
            # what it got is in order, ends at the last line, and the rest is counted as lost
            assert fast == sorted(fast) and fast[-1] == 19999
            assert reader.dropped > 0
            assert daemon.readers.dropped == reader.dropped
            # every entry since it started is either received or counted as dropped
            assert len(got) + reader.dropped == daemon.ring.next_seq - follow_start
            stuck.close()
            await wait_until(lambda: not daemon.readers.active)
            assert daemon.readers.blocked == set() and daemon.readers.protect() is None
            daemon.begin_shutdown()


async def test_extended_stats_reports_sources(short_tmp: Path) -> None:
    configure_logging("memlogd", "json")
    config = make_config(short_tmp)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(serve, config)
            stream = client.open_log_stream(config.socket_log, "svc")
            stream.sendall(b"1\n2\n3\n")
            await wait_entries(daemon, 5)
            replies = await collect(config.socket_query, proto.QueryRequest(stats=True))
            assert isinstance(replies[0], proto.Header)
            assert replies[0].instance == daemon.state.instance
            stats = replies[1]
            assert isinstance(stats, proto.Stats)
            svc = stats.values["sources"]["svc"]
            assert svc == {
                "entries": 3,
                "received": 3,
                "evicted": 0,
                "open": 1,
                "pid": os.getpid(),
                "uid": os.getuid(),
            }
            assert stats.values["limits"]["max_lines"] == 5000
            stream.close()
            daemon.begin_shutdown()


async def test_ready_before_started_and_sockets_serve(short_tmp: Path) -> None:
    configure_logging("memlogd", "json")
    config = make_config(short_tmp)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            daemon = await nursery.start(partial(serve, config))
            # as soon as start() returns, both sockets answer
            (first,) = await collect(config.socket_query, proto.QueryMode.DUMP)
            assert isinstance(first, proto.LogEntry)
            assert (first.source, first.msg.split()[:2]) == ("memlogd", ["memlogd", "started"])
            devnull = os.open(os.devnull, os.O_RDONLY)
            await register_fd(config.socket_log, "x", [devnull])
            os.close(devnull)
            while "x" not in daemon.state.sources or daemon.state.sources["x"].open:
                await trio.sleep(0.005)  # /dev/null: read to its (immediate) end and closed
            assert daemon.intake.open_fds == 0
            daemon.begin_shutdown()


async def test_shutdown_does_not_wait_for_clients_that_sent_nothing(short_tmp: Path) -> None:
    """A connection still waiting for its mode byte is closed at once on shutdown
    (it has nothing to finish), not after the followers' grace period."""
    configure_logging("memlogd", "json")
    config = make_config(short_tmp)
    silent = socket.socket(socket.AF_UNIX)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(serve, config)
            silent.connect(config.socket_query)
            while daemon.queries.clients < 1:
                await trio.sleep(0.005)
            daemon.begin_shutdown()
            # well inside the 2 s grace period followers would get
            with trio.fail_after(1.5):
                while daemon.queries.clients:
                    await trio.sleep(0.005)
    silent.settimeout(5)
    assert silent.recv(1) == b""
    silent.close()


async def test_periodic_summary_reports_drops_and_holds(
    short_tmp: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Every DROP_REPORT_S, what readers lost and how often intake was held is
    logged into the ring as memlogd's own lines (virtual time: no real wait)."""
    configure_logging("memlogd", "json")
    config = make_config(short_tmp)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(serve, config)
            stuck = await stuck_follower(daemon, config)
            writer = await new_writer(config, "fast")
            # more than the follower's 1 MiB send buffer: it blocks, falls half a ring
            # behind, and holds the intake once (for 0.1 s of virtual time)
            for _ in range(80):
                await writer.send_all(
                    b"".join(b"line %d %s\n" % (i, b"x" * 100) for i in range(500))
                )
            await writer.aclose()
            while daemon.state.received < 40_000:
                await trio.sleep(0.01)
            assert daemon.hold.episodes >= 1
            stuck.setblocking(False)
            while daemon.readers.dropped == 0:  # the follower reads again: its loss is counted
                with contextlib.suppress(BlockingIOError):
                    stuck.recv(65536)
                await trio.sleep(0.01)

            def own_lines() -> list[str]:
                return [
                    proto.decode_entry(line).msg
                    for line in daemon.ring.snapshot().data
                    if b'"source":"memlogd"' in line
                ]

            started = trio.current_time()
            while not any(m.startswith("readers_dropped") for m in own_lines()):
                await trio.sleep(0.5)  # virtual time: the clock jumps while all wait
            assert trio.current_time() - started <= DROP_REPORT_S + 1  # one period at most
            own = own_lines()
            assert any(m.startswith("readers_dropped level=warning count=") for m in own), own
            assert any(m.startswith("intake_held count=") for m in own), own
            stuck.close()
            daemon.begin_shutdown()
