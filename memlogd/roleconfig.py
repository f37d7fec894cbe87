"""The roles' flags, validated at boot (docs/memlogd.md, "Roles").

``-persist-dir DIR`` runs logwrite's job in memlogd's worker, ``-kmsg``
kmsg's and ``-ship-to URL`` logship's, with their own code: each program's
``role()`` factory (logwrite/role.py, kmsg/role.py, logship/role.py), built
by :mod:`memlogd.cli` from a :class:`RoleConfig`.  Each keeps its state so
that a new worker neither replays nor loses: logwrite's cursor in DIR,
kmsg's and logship's state files under ``-state-dir``.  One process instead
of three interpreters is most of the memory a VM saves (BENCHMARKS.md).

This module is light to import: the boot validates :class:`RoleConfig`
before memlogd says it is ready (only logship's pure modules, and only when
a ``-ship`` flag is given); the roles' code is imported after.
"""

from __future__ import annotations

import os

from memlogd.errors import ConfigError
from memlogd.record import record

STATE_DIR_NAME = "memlogd.d"  # beside the query socket, when -state-dir is not given
DEFAULT_STATE_DIR = "/var/run/memlogd.d"  # with an inherited query socket
DEFAULT_SHIP_WINDOW = 128  # logship's -window default (docs/logship.md)
# -persist-time-format: nanoseconds, so that logread -D merges sources exactly
# (SPEC 16); logwrite keeps upstream's whole seconds
DEFAULT_PERSIST_TIME_FORMAT = "rfc3339nano"


@record
class RoleConfig:
    persist_dir: str | None = None
    persist_max_files: int = 10
    persist_max_size: int = 1048576
    persist_time_format: str = DEFAULT_PERSIST_TIME_FORMAT
    persist_skip_sources: tuple[str, ...] = ("logwrite*",)
    kmsg: bool = False
    kmsg_path: str = "/dev/kmsg"
    ship_to: str | None = None
    ship_window: int = DEFAULT_SHIP_WINDOW
    ship_hostname: str | None = None
    ship_sd_id: str | None = None
    ship_sources: tuple[str, ...] = ()
    state_dir: str = DEFAULT_STATE_DIR

    def __post_init__(self) -> None:
        if self.persist_max_files < 0:
            raise ConfigError("-persist-max-log-files must not be negative")
        if self.persist_max_size < 1:
            raise ConfigError("-persist-max-log-size must be at least 1")
        if self.ship_to is not None or self.ship_window != DEFAULT_SHIP_WINDOW:
            # logship's modules only when a -ship flag is given: not on the boot path
            from logship.relp import MAX_WINDOW

            if not 1 <= self.ship_window <= MAX_WINDOW:
                raise ConfigError(f"-ship-window must be within 1..{MAX_WINDOW}")
        if self.ship_to is not None:
            from logship.target import TargetError, parse_target

            try:
                parse_target(self.ship_to)
            except TargetError as exc:
                raise ConfigError(f"-ship-to: {exc}") from None
        if self.ship_sd_id is not None:
            from logship.rfc5424 import validate_sd_id

            try:
                validate_sd_id(self.ship_sd_id)
            except ValueError as exc:
                raise ConfigError(f"-ship-sd-id: {exc}") from None


def state_dir_for(query_path: str | None, given: str | None) -> str:
    """``-state-dir``, or a directory beside the query socket."""
    if given:
        return given
    if query_path:
        return os.path.join(os.path.dirname(os.path.abspath(query_path)), STATE_DIR_NAME)
    return DEFAULT_STATE_DIR
