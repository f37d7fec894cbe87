"""Where memlogd's two sockets are when no flag says otherwise: upstream's
paths, which the daemon and every client must agree on (docs/protocol.md). PURE.
"""

DEFAULT_LOG_SOCKET = "/var/run/linuxkit-external-logging.sock"  # fds are handed over here
DEFAULT_QUERY_SOCKET = "/var/run/memlogdq.sock"  # queries are answered here
