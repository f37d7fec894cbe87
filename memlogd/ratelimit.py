"""The one rate limiter of every program's own diagnostics. PURE: no I/O.

A warning a hostile peer can trigger, or an error that repeats for every
entry (a full disk), must not multiply itself: each *kind* of event is let
through at most ``burst`` times per ``period_s``; the ones held back are
counted, and the count is reported with the next event let through or, once
the period is over, on its own (:meth:`RateLimiter.due`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


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


class LimitedLog:
    """A structlog logger whose events pass through one :class:`RateLimiter`:
    each kind (the event, or ``event:kind``) at most ``burst`` times per
    period, with ``suppressed=N`` on the next one let through, and
    :meth:`report_held` for the counts whose period is over.  The logger is
    handed in (this module imports no logging)."""

    def __init__(
        self,
        logger: Any,
        period_s: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = RateLimiter(period_s, burst)
        self._log = logger
        self._clock = clock

    def error(self, event: str, kind: str = "", **kw: Any) -> None:
        self.emit("error", event, kind, **kw)

    def warning(self, event: str, kind: str = "", **kw: Any) -> None:
        self.emit("warning", event, kind, **kw)

    def info(self, event: str, kind: str = "", **kw: Any) -> None:
        self.emit("info", event, kind, **kw)

    def emit(self, level: str, event: str, kind: str = "", **kw: Any) -> None:
        held = self.limiter.allow(f"{event}:{kind}" if kind else event, self._clock())
        if held is None:
            return
        if kind:
            kw["kind"] = kind
        if held:
            kw["suppressed"] = held
        getattr(self._log, level)(event, **kw)

    def report_held(self) -> None:
        """A ``warnings_suppressed`` event for each kind whose held-back count's
        period is over (and forget the kinds that went quiet)."""
        now = self._clock()
        for key, count in self.limiter.due(now):
            self._log.warning("warnings_suppressed", kind=key.replace(":", " "), count=count)
        self.limiter.forget_idle(now)
