"""The daemon's configuration, validated once, and its defaults and tuning
(worker and keeper alike). PURE: no I/O.

What a flag sets is documented in docs/memlogd.md; the tuning constants with
their measured reasons in BENCHMARKS.md.  The client's tuning is in
:mod:`memlogd.client.config`, the default socket paths in :mod:`memlogd.wire.paths`.
"""

from __future__ import annotations

from memlogd.errors import ConfigError
from memlogd.record import record
from memlogd.wire.paths import DEFAULT_LOG_SOCKET, DEFAULT_QUERY_SOCKET

# ---------------------------------------------------------------- defaults of flags
DEFAULT_MAX_LINES = 5000
DEFAULT_MAX_LINE_LEN = 1024  # bytes
DEFAULT_MAX_SOURCES = 1024  # fds open at once
DEFAULT_MAX_CLIENTS = 256  # query connections at once
DEFAULT_SOCKET_MODE = 0o600
MODE_TIMEOUT_S = 5.0  # a query client must send its mode (and request) within this
UID_SHARE = 2  # a uid but root may hold at most 1/UID_SHARE of -max-sources, -max-clients


def uid_share(limit: int, uid: int | None) -> int:
    """How much of ``limit`` (``-max-sources``, ``-max-clients``) one local user
    may take (SPEC 19): half of it, at least one; root all of it."""
    return limit if uid == 0 else max(1, limit // UID_SHARE)


# ---------------------------------------------------------------- the daemon's hot path
READ_CHUNK = 64 * 1024  # bytes read from a source fd at once: one batch
READ_BURST = 256 * 1024  # ... from a source whose last read gave at least READ_CHUNK of long lines
BURST_LINE_BYTES = 512  # long lines: at least this many bytes a line on average
READS_ALONE = 4  # reads in one intake pass of the only ready source, while each gives READ_CHUNK+
FOLLOW_BATCH = 1024  # entries sent to a reader in one write at most
FOLLOWER_SNDBUF = 1024 * 1024  # bytes asked for a follower's socket send buffer (kernel memory)
CONSOLE_BUFFER = 1024 * 1024  # bytes of console echo held before lines are dropped
HOLD_S = 0.1  # intake waits at most this long, per episode, for a follower a half ring behind
LISTEN_BACKLOG = 128  # query connections waiting to be accepted
FD_DATAGRAMS_PER_PASS = 64  # fd datagrams taken at once before other work gets a turn

# ---------------------------------------------------------------- the daemon's housekeeping
DROP_REPORT_S = 10.0  # period of the summary of dropped lines and suppressed warnings
WARN_BURST = 5  # warnings of one kind let through per DROP_REPORT_S; the rest are counted
GRACE_S = 2.0  # on shutdown, followers get this long to receive what the ring holds
DAEMONIZE_READY_TIMEOUT_S = 30.0  # -daemonize's parent waits this long for the child


@record
class DaemonConfig:
    socket_log: str = DEFAULT_LOG_SOCKET
    socket_query: str = DEFAULT_QUERY_SOCKET
    fd_log: int | None = None  # inherited, bound datagram socket (overrides socket_log)
    fd_query: int | None = None  # inherited, listening stream socket (overrides socket_query)
    max_lines: int = DEFAULT_MAX_LINES
    max_line_len: int = DEFAULT_MAX_LINE_LEN  # bytes
    max_bytes: int = 0  # message bytes held; 0 = bounded by lines only
    evict: str = "fair"  # which entries go when full: fair, or oldest (upstream's)
    max_sources: int = DEFAULT_MAX_SOURCES
    max_clients: int = DEFAULT_MAX_CLIENTS
    socket_mode: int = DEFAULT_SOCKET_MODE
    console: bool = True
    mode_timeout_s: float = MODE_TIMEOUT_S
    unlink_inherited: bool = False  # a -daemonize child owns the socket files it inherited

    def __post_init__(self) -> None:
        for name in ("max_lines", "max_line_len", "max_sources", "max_clients"):
            if getattr(self, name) < 1:
                raise ConfigError(f"-{name.replace('_', '-')} must be at least 1")
        if self.max_bytes < 0:
            raise ConfigError("-max-bytes must not be negative")
        if 0 < self.max_bytes < self.max_line_len:
            raise ConfigError("-max-bytes must be 0 or at least -max-line-len")
        if self.evict not in ("fair", "oldest"):
            raise ConfigError("-evict must be fair or oldest")
        if not 0 <= self.socket_mode <= 0o777:
            raise ConfigError("-socket-mode must be an octal mode between 0 and 0777")
        if self.mode_timeout_s <= 0:
            raise ConfigError("the mode timeout must be positive")

    def limits(self) -> dict[str, int]:
        """The configured limits, as reported by stats."""
        return {
            "max_lines": self.max_lines,
            "max_line_len": self.max_line_len,
            "max_bytes": self.max_bytes,
            "max_sources": self.max_sources,
            "max_clients": self.max_clients,
        }
