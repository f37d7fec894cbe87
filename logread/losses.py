"""logread's loss report: ``N entries lost (seq A-B)``, at most one line per
second (docs/logread.md, "Losses").  PURE: no I/O, no clock (the caller passes
``now``, in seconds of one monotonic clock).

A burst of gaps is summed into one line: N is the number of entries lost, A the
first missing seq and B the last (so N < B-A+1 when the gaps were not
contiguous).  A gap a second or more after the last line is reported at once;
gaps within that second are held, and the caller asks for them at
:meth:`LossReport.deadline` (:meth:`LossReport.due`), so the summed line comes
out even when no further gap arrives, and at exit (:meth:`LossReport.flush`).

Not :class:`memlogd.ratelimit.RateLimiter`: that one counts events held back,
while this report sums counts and seq ranges, and needs the exact moment a held
line is due so that a timer can print it (the limiter compares ``now - start``,
a sum scheduled as ``start + period`` can round below it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["PERIOD_S", "Loss", "LossReport"]

PERIOD_S = 1.0


@dataclass(frozen=True, slots=True)
class Loss:
    """Entries lost: ``count`` of them, from seq ``first`` to seq ``last``."""

    count: int
    first: int
    last: int

    def line(self) -> str:
        """The report, without the program name: ``N entries lost (seq A-B)``."""
        return f"{self.count} entries lost (seq {self.first}-{self.last})"

    def add(self, other: Loss) -> Loss:
        return Loss(
            self.count + other.count, min(self.first, other.first), max(self.last, other.last)
        )


class LossReport:
    __slots__ = ("_last_line", "_pending", "period_s")

    def __init__(self, period_s: float = PERIOD_S) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.period_s = period_s
        self._pending: Loss | None = None
        self._last_line: float | None = None  # when the last line was let out

    def gap(self, seq: int, count: int, now: float, last: int | None = None) -> Loss | None:
        """``count`` entries from ``seq`` on were lost, the last of them ``last``
        (``seq + count - 1`` when they ran on; further when the runs of one
        answer chunk came as one gap).  The loss to report now (this gap with
        any held ones), or None: held until :meth:`deadline`."""
        if count <= 0:
            return None
        loss = Loss(count, seq, seq + count - 1 if last is None else max(last, seq))
        self._pending = loss if self._pending is None else self._pending.add(loss)
        return self.due(now)

    def deadline(self) -> float | None:
        """When the held loss is due (None: nothing held)."""
        if self._pending is None:
            return None
        return -math.inf if self._last_line is None else self._last_line + self.period_s

    def due(self, now: float) -> Loss | None:
        """The held loss if a line may go out at ``now`` (else None)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        self._last_line = now
        return self.flush()

    def flush(self) -> Loss | None:
        """The held loss, whatever the time (at exit)."""
        pending, self._pending = self._pending, None
        return pending
