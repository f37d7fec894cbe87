"""What a :class:`memlogd.client.Subscription` hands its consumer. PURE: no I/O.

Entries in batches, gaps, a restart notice and the connection's state
(docs/protocol.md, "Reading answers").
"""

from __future__ import annotations

from dataclasses import dataclass

from memlogd.errors import ConnectError
from memlogd.wire import protocol as proto

__all__ = [
    "Connected",
    "Disconnected",
    "Entries",
    "Event",
    "Gap",
    "Restarted",
    "Waiting",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """An answer started: ``header`` is memlogd's, None for upstream's memlogd
    (base mode: no seq, no cursor, no gap reports); ``after_seq`` is where the
    answer resumes (None: it starts afresh)."""

    header: proto.Header | None
    after_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Entries:
    """Entries received together, in order."""

    entries: list[proto.LogEntry]


@dataclass(frozen=True, slots=True)
class Gap:
    """``count`` entries from ``seq`` on could not be had (overwritten, or
    dropped because the reader was a ring behind).  The runs an answer chunk
    reported come as one gap (the fair ring has holes between entries held):
    ``through`` is then the last seq missing, and ``count`` the total."""

    seq: int
    count: int
    through: int = 0

    @property
    def last(self) -> int:
        return self.through or self.seq + self.count - 1


@dataclass(frozen=True, slots=True)
class Restarted:
    """The daemon is a new instance: the cursor meant nothing to it, and the
    subscription starts again with its whole ring.  Also when the cursor named
    this very instance but a seq it never reached (``cursor_seq`` at or beyond
    its ``next_seq``): a cursor memlogd never gave, not obeyed (SPEC 19)."""

    old_instance: str
    instance: str
    cursor_seq: int | None = None  # set for a cursor beyond the instance's next_seq
    next_seq: int | None = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended or broke (with ``retry``, a reconnect follows)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """memlogd cannot be reached; retrying.  ``first``: the first of an outage."""

    error: ConnectError
    first: bool


Event = Connected | Entries | Gap | Restarted | Disconnected | Waiting | proto.Malformed
