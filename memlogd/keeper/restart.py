"""When memlogd's keeper starts a worker again (docs/memlogd.md, "The keeper"). PURE.

At once after a worker that served a while; with a doubling delay in a crash
loop; never after ``MAX_FAILED_STARTS`` failed starts in a row.
"""

from __future__ import annotations

import signal

MAX_FAILED_STARTS = 10  # in a row: then the keeper gives up (exit 1)
MIN_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
STABLE_S = 1.0  # a worker that served this long before dying is restarted at once


class RestartPolicy:
    """When to start a worker again: at once after a worker that served a while;
    with a doubling delay in a crash loop; never after ``MAX_FAILED_STARTS``
    failed starts (exits, or not ready in time) in a row."""

    def __init__(self) -> None:
        self.failed_starts = 0
        self.backoff = 0.0

    def ready(self) -> None:
        self.failed_starts = 0

    def ended(self, now: float, ready_at: float | None) -> float | None:
        """The delay before the next start, or None: give up."""
        if ready_at is None:
            self.failed_starts += 1
            if self.failed_starts >= MAX_FAILED_STARTS:
                return None
        if ready_at is not None and now - ready_at >= STABLE_S:
            self.backoff = 0.0
        else:
            self.backoff = min(max(self.backoff * 2, MIN_BACKOFF_S), MAX_BACKOFF_S)
        return self.backoff


def describe_exit(code: int) -> str:
    """A worker's end in words: ``exit status 3``, ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
