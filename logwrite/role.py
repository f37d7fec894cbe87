"""logwrite's job inside memlogd (``-persist-dir``; docs/memlogd.md, "Roles").

The same :func:`logwrite.persister.persist` as the program, reading the ring
over the daemon's in-process connection: every source to ``DIR/SOURCE.log``,
once ``DIR`` exists (a disk mounted later), with its cursor in ``DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import structlog
import trio

from logwrite.lines import TimeFormat
from logwrite.persister import Config, persist
from memlogd.daemon.host import IN_PROCESS, RoleHost, RoleKind

DIR_POLL_S = 1.0  # how often a persist directory that is not there yet is looked for


@dataclass(frozen=True)
class PersistRole:
    directory: str
    max_files: int
    max_size: int
    time_format: TimeFormat
    skip_sources: tuple[str, ...]
    name: str = "persist"
    kind: RoleKind = "reader"

    async def run(self, host: RoleHost) -> None:
        if not os.path.isdir(self.directory):
            structlog.get_logger("memlogd").info("persist_waiting", dir=self.directory)
            while not os.path.isdir(self.directory):
                await trio.sleep(DIR_POLL_S)
        config = Config(
            socket=IN_PROCESS,
            log_dir=self.directory,
            max_files=self.max_files,
            max_size=self.max_size,
            time_format=self.time_format,
            skip_sources=self.skip_sources,
        )
        await persist(config, host.connect)


def role(
    directory: str,
    *,
    max_files: int,
    max_size: int,
    time_format: str,
    skip_sources: tuple[str, ...],
) -> PersistRole:
    """logwrite as a role of memlogd (its flags ``-persist-*``)."""
    return PersistRole(directory, max_files, max_size, TimeFormat(time_format), skip_sources)
