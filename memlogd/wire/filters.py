"""An extended request's filters (sources, since, priority), compiled once. PURE: no I/O.

memlogd applies them to what it sends (:mod:`memlogd.daemon.answers`); a
client applies them itself when the daemon is upstream's, which filters
nothing (:class:`memlogd.client.Subscription`).  docs/protocol.md, "Extended query".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from memlogd.wire.events import Entries
from memlogd.wire.globs import SourceMatcher
from memlogd.wire.protocol import LogEntry, QueryRequest


def _level_of() -> Callable[[str], int]:
    """memlogd.wire.severity's level_or_default, imported for the first reader that
    asks for a priority: its regular expressions are not compiled on memlogd's
    way to its first answer."""
    from memlogd.wire.severity import level_or_default

    return level_or_default


class RequestFilter:
    """Sources and since (:meth:`keeps`, per source and time: memlogd applies it
    to a whole block of entries), and the ``priority`` range
    (:meth:`keeps_level`, per message)."""

    __slots__ = ("_level", "_matches", "_since", "priority")

    def __init__(self, request: QueryRequest) -> None:
        self._matches = SourceMatcher(request.sources)
        self._since = request.since_ns
        self.priority = request.priority
        self._level = None if request.priority is None else _level_of()

    @property
    def everything(self) -> bool:
        return self._matches.everything and self._since is None and self.priority is None

    def keeps(self, source: str, time_ns: int) -> bool:
        since = self._since
        return self._matches(source) and (since is None or time_ns >= since)

    def keeps_level(self, msg: str) -> bool:
        """Whether ``msg``'s level (info when it says none) is within the
        request's ``priority`` (every message is, without one)."""
        priority, level = self.priority, self._level
        if priority is None or level is None:
            return True
        return priority[0] <= level(msg) <= priority[1]


class ClientFilter:
    """The request's filters applied by the client, for upstream's memlogd
    (base mode carries everything): sources, since, priority, and then the
    tail of a dump."""

    def __init__(self, request: QueryRequest) -> None:
        self._keep = RequestFilter(request)
        self._tail = request.tail if not request.follow else None
        self._kept: deque[LogEntry] = deque(maxlen=self._tail or None)

    def reset(self) -> None:
        self._kept.clear()

    def __call__(self, entry: LogEntry) -> bool:
        keep = self._keep
        return keep.keeps(entry.source, entry.time_ns) and keep.keeps_level(entry.msg)

    def batch(self, entries: list[LogEntry]) -> list[Entries]:
        """Entries to hand on now (with a tail, none until the dump ends)."""
        if self._tail is None:
            return [Entries(entries)]
        if self._tail:
            self._kept.extend(entries)
        return []

    def finish(self) -> list[Entries]:
        """At the end of a dump: the tail kept."""
        if not self._kept:
            return []
        kept = list(self._kept)
        self._kept.clear()
        return [Entries(kept)]
