"""System test: a whole simulated boot (the demo's), checked file by file (issue 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from demo.boot import MAX_LOG_FILES, MAX_LOG_SIZE, persisted, simulate_boot
from kmsg.record import text_seq
from tests.rsyslog import unavailable_reason

pytestmark = pytest.mark.e2e


def _rsyslog_here() -> bool:
    """Ship when the rsyslog tests can run (rsyslogd with imrelp), else not."""
    return unavailable_reason() is None


async def test_every_boot_line_is_persisted_and_chatty_rotates(short_tmp: Path) -> None:
    said: list[str] = []
    with trio.fail_after(60):
        boot = await simulate_boot(short_tmp / "run", said.append, ship=_rsyslog_here())
    assert said[0].startswith("0. ")  # the central rsyslog, or why there is none
    assert said[1].startswith("1. memlogd starts first")
    for source, lines in boot.expected.items():
        got = persisted(boot.log_dir, source)
        # everything written before logwrite started, in order, nothing twice
        assert got[: len(lines)] == lines, source
        assert len(set(got)) == len(got), source
    chatty = sorted(p.name for p in boot.log_dir.glob("chatty.out.log*"))
    assert "chatty.out.log.0" in chatty and "chatty.out.log.1" in chatty
    assert f"chatty.out.log.{MAX_LOG_FILES}" not in chatty
    for path in boot.log_dir.glob("chatty.out.log.*"):
        size = path.stat().st_size
        assert MAX_LOG_SIZE < size < MAX_LOG_SIZE + 200  # rotated by the entry that crossed
    if boot.kmsg:  # memlogd's -kmsg role: the kernel's records, each once
        kernel = persisted(boot.log_dir, "kmsg")
        assert kernel and all(text_seq(line) is not None for line in kernel)
        assert len(set(kernel)) == len(kernel)
    assert any(line.startswith("4. memlogd's worker") for line in said)  # killed on the way
    if boot.central is not None:  # shipped too: every line the services wrote, at rsyslog
        assert boot.central.holds(boot.expected)
    # sockets cleaned up by memlogd's clean exit
    assert not Path(boot.log_sock).exists() and not Path(boot.query_sock).exists()
