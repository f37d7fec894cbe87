"""logwrite's own diagnostics: structlog events, errors rate-limited per kind.

logwrite's stderr usually goes back into memlogd (as its service's source), so
an error that repeats for every entry (a full disk) must not multiply itself:
each kind of error is logged at most once per 10 s, with the count of the ones
held back.
"""

from __future__ import annotations

import structlog

from logwrite.lines import ERROR_PERIOD_S
from memlogd.ratelimit import LimitedLog

log = structlog.get_logger("logwrite")


def new_reporter() -> LimitedLog:
    """logwrite's errors, each kind (event and ``kind``) at most once a period."""
    return LimitedLog(log, ERROR_PERIOD_S)
