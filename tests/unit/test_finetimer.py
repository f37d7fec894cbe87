"""logship.finetimer: a timerfd that trio waits on, for pauses under a millisecond."""

from __future__ import annotations

import time

import pytest
import trio

from logship.finetimer import open_fine_timer

pytestmark = pytest.mark.unit


async def test_a_fine_timer_waits_at_least_what_it_is_asked_again_and_again() -> None:
    timer = open_fine_timer()
    assert timer is not None  # Linux: the project's only platform
    try:
        for seconds in (0.0002, 0.000_001, 0.0015, 0.0002):
            start = time.monotonic()
            await timer.sleep(seconds)
            assert time.monotonic() - start >= seconds
    finally:
        timer.close()
        timer.close()  # twice: nothing more happens


async def test_a_fine_timer_is_cancelled_as_trio_sleep_is_and_is_reusable() -> None:
    timer = open_fine_timer()
    assert timer is not None
    try:
        with trio.move_on_after(0.001) as scope:
            await timer.sleep(3600)
        assert scope.cancelled_caught
        start = time.monotonic()
        await timer.sleep(0.0003)  # re-armed: the hour is forgotten, no early expiry either
        assert 0.0003 <= time.monotonic() - start < 60
    finally:
        timer.close()
