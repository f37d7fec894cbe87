"""logwrite's own diagnostics: structlog events, errors rate-limited per kind.

logwrite's stderr usually goes back into memlogd (as its service's source), so
an error that repeats for every entry (a full disk) must not multiply itself:
each kind of error is logged at most once per 10 s, with the count of the ones
held back.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from logwrite.lines import ERROR_PERIOD_S
from memlogd.ratelimit import RateLimiter

log = structlog.get_logger("logwrite")


class Reporter:
    def __init__(self, limiter: RateLimiter | None = None) -> None:
        self.limiter = limiter or RateLimiter(ERROR_PERIOD_S)

    def error(self, event: str, kind: str = "", **kw: Any) -> None:
        """Log ``event`` unless one of the same kind (event + ``kind``) was
        logged in the last period; ``suppressed`` counts the ones held back."""
        self._emit("error", event, kind, kw)

    def warning(self, event: str, kind: str = "", **kw: Any) -> None:
        self._emit("warning", event, kind, kw)

    def info(self, event: str, kind: str = "", **kw: Any) -> None:
        """For events that can repeat with the connection (reconnects)."""
        self._emit("info", event, kind, kw)

    def _emit(self, level: str, event: str, kind: str, kw: dict[str, Any]) -> None:
        held = self.limiter.allow(f"{event}:{kind}", time.monotonic())
        if held is None:
            return
        if kind:
            kw["kind"] = kind
        if held:
            kw["suppressed"] = held
        getattr(log, level)(event, **kw)

    def report_held(self) -> None:
        """Log the count of held-back events whose period is over."""
        for key, count in self.limiter.due(time.monotonic()):
            event, _, kind = key.partition(":")
            log.warning("events_suppressed", kind=event + (f" {kind}" if kind else ""), count=count)
