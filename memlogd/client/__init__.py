"""The client library every reader and writer of memlogd uses (docs/protocol.md).

``subscription`` reads the query socket (one :class:`Subscription` owns the
connection, the request, the ``(instance, seq)`` cursor, resuming and the
upstream fallback) and yields :mod:`memlogd.wire.events`; ``send_fds`` and
``open_log_stream`` hand memlogd a stream to log.  These names are the public
import paths the README documents.
"""

from memlogd.client.subscription import (
    Connector,
    Subscription,
    fetch_stats,
    open_log_stream,
    send_fds,
)

__all__ = [
    "Connector",
    "Subscription",
    "fetch_stats",
    "open_log_stream",
    "send_fds",
]
