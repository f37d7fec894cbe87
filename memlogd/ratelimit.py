"""The one rate limiter of every program's own diagnostics. PURE: no I/O.

A warning a hostile peer can trigger, or an error that repeats for every
entry (a full disk), must not multiply itself: each *kind* of event is let
through at most ``burst`` times per ``period_s``; the ones held back are
counted, and the count is reported with the next event let through or, once
the period is over, on its own (:meth:`RateLimiter.due`).
"""

from __future__ import annotations


class RateLimiter:
    __slots__ = ("_held", "_passed", "_start", "burst", "period_s")

    def __init__(self, period_s: float, burst: int = 1) -> None:
        if period_s <= 0 or burst < 1:
            raise ValueError("period_s must be positive and burst at least 1")
        self.period_s = period_s
        self.burst = burst
        self._start: dict[str, float] = {}  # when the kind's current period began
        self._passed: dict[str, int] = {}  # events let through in it
        self._held: dict[str, int] = {}  # events held back, not reported yet

    def allow(self, kind: str, now: float) -> int | None:
        """None: hold this event back.  Otherwise let it through; the value is
        how many events of this kind were held back and not reported yet."""
        start = self._start.get(kind)
        if start is None or now - start >= self.period_s:
            self._start[kind] = now
            self._passed[kind] = 1
            return self._held.pop(kind, 0)
        if self._passed[kind] < self.burst:
            self._passed[kind] += 1
            return self._held.pop(kind, 0)
        self._held[kind] = self._held.get(kind, 0) + 1
        return None

    def due(self, now: float) -> list[tuple[str, int]]:
        """Held-back counts whose period is over, to report now; each report
        starts a new period for its kind (it counts as that kind's event)."""
        out = []
        for kind, count in list(self._held.items()):
            if now - self._start[kind] >= self.period_s:
                out.append((kind, count))
                del self._held[kind]
                self._start[kind] = now
                self._passed[kind] = 1
        return out

    def forget_idle(self, now: float) -> None:
        """Drop the kinds with nothing held whose period is over (bounded memory)."""
        for kind, start in list(self._start.items()):
            if kind not in self._held and now - start >= self.period_s:
                del self._start[kind], self._passed[kind]
