"""The client's tuning (docs/protocol.md, "Clients"). PURE: no I/O."""

RECV_CHUNK = 256 * 1024  # bytes asked of the query socket at once
# an extended query unanswered this long: upstream's memlogd (the Subscription's
# default, what logread waits; programs that must not mistake a busy memlogd wait longer)
DEFAULT_HEADER_TIMEOUT_S = 0.5
# of it, at most, the extended query may still answer after the base-mode probe did
PROBE_GRACE_S = 0.1
RECONNECT_MIN_S = 0.05  # first reconnect delay; doubles up to the caller's maximum
RECONNECT_MAX_S = 2.0  # the default maximum
