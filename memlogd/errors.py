"""Every error this project raises on purpose. PURE: no I/O.

An expected failure is one of these, caught where a program turns it into a
one-line message and an exit status (README, "The programs").
"""

from __future__ import annotations

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C (every program)


class MemlogdError(Exception):
    """Root of every error this project raises on purpose."""


class ProtocolError(MemlogdError):
    """Bytes that do not follow the wire protocol (docs/protocol.md)."""


class ConfigError(MemlogdError):
    """An invalid setting or combination of settings (a usage error)."""


class SocketError(MemlogdError):
    """A socket path or inherited fd that cannot be used; the message names it."""


class ConnectError(MemlogdError):
    """memlogd cannot be reached at a path; ``reason`` says why, in words.
    ``busy``: it is there, but its queue of handed-over fds is full (a moment
    later it has room)."""

    def __init__(self, path: str, reason: str, *, busy: bool = False) -> None:
        super().__init__(f"cannot connect to memlogd at {path}: {reason}")
        self.path = path
        self.reason = reason
        self.busy = busy


class RequestRefusedError(MemlogdError):
    """memlogd answered a query with ``{"error": ...}``."""

    def __init__(self, message: str) -> None:
        super().__init__(f"memlogd refused the query: {message}")
        self.message = message


class NotExtendedError(MemlogdError):
    """The daemon does not answer the extended query (upstream's memlogd)."""
