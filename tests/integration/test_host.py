"""The daemon's roles (memlogd/daemon/host.py): what a program's role gets of the
daemon, in-process under trio, with two made-up roles (no program involved)."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from memlogd.client import Subscription
from memlogd.daemon.host import RoleHost, RoleKind
from memlogd.daemon.serve import Daemon, serve
from memlogd.logconfig import configure_logging
from memlogd.wire import protocol as proto
from memlogd.wire.events import Entries
from tests.integration.test_server import make_config

pytestmark = pytest.mark.integration


class Writer:
    """A source role: two lines of source ``made-up``, then it waits."""

    name = "writer"
    kind: RoleKind = "source"

    def __init__(self) -> None:
        self.before: proto.LogEntry | None = None
        self.written = trio.Event()

    async def run(self, host: RoleHost) -> None:
        self.before = host.last_entry("made-up")
        with host.source("made-up") as source:
            source.append(b"one\ntwo\n")
            self.written.set()
            await trio.sleep_forever()

    def status(self, host: RoleHost) -> dict[str, Any]:
        return {"written": self.written.is_set(), "next_seq": host.header().next_seq}


class Reader:
    """A reader role: follows source ``made-up`` through the one client."""

    name = "reader"
    kind: RoleKind = "reader"

    def __init__(self) -> None:
        self.got: list[str] = []
        self.done = trio.Event()

    async def run(self, host: RoleHost) -> None:
        request = proto.QueryRequest(follow=True, sources=("made-up",))
        async with Subscription(host.connect, request) as sub:
            async for event in sub:
                if isinstance(event, Entries):
                    self.got += [entry.msg for entry in event.entries]
                    if len(self.got) >= 2:
                        self.done.set()

    def status(self, host: RoleHost) -> dict[str, Any]:
        return {"got": len(self.got)}


async def test_roles_write_and_read_the_ring_through_their_host(short_tmp: Path) -> None:
    configure_logging("memlogd", "json")
    writer, reader = Writer(), Reader()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            daemon: Daemon = await nursery.start(
                partial(serve, make_config(short_tmp), roles=(writer, reader))
            )
            await writer.written.wait()
            await reader.done.wait()
            host = RoleHost(daemon.state, daemon.queries)
            last = host.last_entry("made-up")
            source = daemon.stats()["sources"]["made-up"]
            roles = daemon.stats()["roles"]  # each role's own status (SPEC 18)
            daemon.begin_shutdown()
    assert writer.before is None  # nothing of it in the ring at its start
    assert reader.got == ["one", "two"]
    assert last is not None and last.msg == "two"
    assert (source["open"], source["received"], source["pid"]) == (1, 2, os.getpid())
    assert roles["writer"]["written"] is True and roles["writer"]["next_seq"] > 2
    assert roles["reader"] == {"got": 2}
    assert daemon.stats()["sources"]["made-up"]["open"] == 0  # the role ended with the daemon
