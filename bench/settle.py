"""Waiting for a condition with a deadline: the benchmark's only way to wait.

Memory is read once the daemon *settled*: a sample of its state (the ring's
``next_seq``, the bytes persisted or shipped, the pids of its tree) has not
changed for a while.  The clock and the pause are parameters, so the logic is
tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

SAMPLE_EVERY_S = 0.05


@dataclass(frozen=True, slots=True)
class Settled(Generic[T]):
    stable: bool  # False: the deadline passed while the sample still changed
    value: T  # the last sample
    waited_s: float


def wait_stable(
    sample: Callable[[], T],
    quiet_s: float,
    timeout_s: float,
    every_s: float = SAMPLE_EVERY_S,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> Settled[T]:
    """Sample until the value stayed equal for ``quiet_s``, or ``timeout_s`` passed."""
    start = clock()
    value = sample()
    since = start
    while True:
        now = clock()
        if now - since >= quiet_s:
            return Settled(True, value, now - start)
        if now - start >= timeout_s:
            return Settled(False, value, now - start)
        pause(every_s)
        new = sample()
        if new != value:
            value = new
            since = clock()


def wait_until(
    done: Callable[[], T],
    timeout_s: float,
    every_s: float = SAMPLE_EVERY_S,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> T | None:
    """``done()``'s first truthy value, or None once ``timeout_s`` passed."""
    deadline = clock() + timeout_s
    while True:
        value = done()
        if value:
            return value
        if clock() >= deadline:
            return None
        pause(every_s)
