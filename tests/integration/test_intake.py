"""The intake's end (memlogd.daemon.intake): sources the keeper hands over after it."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from memlogd.config import DaemonConfig
from memlogd.daemon.intake import Intake
from memlogd.daemon.readers import IntakeHold
from memlogd.daemon.state import LogState
from memlogd.wire.fdmsg import FdGrant


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


@pytest.mark.parametrize("handing_over", [True, False])
def test_a_source_handed_over_after_the_intake_stopped_is_left_to_the_keeper(
    handing_over: bool,
) -> None:
    """The keeper's link outlives the intake while a worker stops: a source it
    hands over then used to crash the worker (the intake's epoll was closed:
    'Intake.run() is not running').  Now our copy is closed, nothing of it is
    read, and it is released to the keeper only when no next worker takes it."""
    released: list[list[int]] = []
    state = LogState(DaemonConfig(), "test")
    intake = Intake(state, IntakeHold(), on_released=released.append)
    ours, theirs = socket.socketpair()
    ours.sendall(b"for the next worker\n")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.run)
            intake.handing_over = handing_over
            nursery.cancel_scope.cancel()

    trio.run(main)
    fd = theirs.detach()
    assert intake.accept(FdGrant("late", (fd,)), keys=[7]) is False
    assert _closed(fd)
    assert released == ([] if handing_over else [[7]])
    assert state.received == 0 and intake.open_fds == 0  # nothing of it was read
    ours.close()
