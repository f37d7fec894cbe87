"""An extended request's filters (sources, since), compiled once. PURE: no I/O.

memlogd applies them to what it sends (:mod:`memlogd.server.answers`); a
client applies them itself when the daemon is upstream's, which filters
nothing (:class:`memlogd.client.Subscription`).  docs/protocol.md, "Extended query".
"""

from __future__ import annotations

from memlogd.globs import SourceMatcher
from memlogd.protocol import QueryRequest


class RequestFilter:
    __slots__ = ("_matches", "_since")

    def __init__(self, request: QueryRequest) -> None:
        self._matches = SourceMatcher(request.sources)
        self._since = request.since_ns

    @property
    def everything(self) -> bool:
        return self._matches.everything and self._since is None

    def keeps(self, source: str, time_ns: int) -> bool:
        since = self._since
        return self._matches(source) and (since is None or time_ns >= since)
