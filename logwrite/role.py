"""logwrite's job inside memlogd (``-persist-dir``; docs/memlogd.md, "Roles").

The same :func:`logwrite.persister.persist` as the program, reading the ring
over the daemon's in-process connection: every source to ``DIR/SOURCE.log``,
once ``DIR`` exists (a disk mounted later), with its cursor in ``DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

from logwrite.lines import TimeFormat
from logwrite.persister import Config, Persister, persist
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
    live: dict[str, Persister] = field(default_factory=dict, compare=False, repr=False)

    async def run(self, host: RoleHost) -> None:
        self.live.clear()
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
        await persist(config, host.connect, started=self._started)

    def _started(self, persister: Persister) -> None:
        self.live["persister"] = persister

    def status(self, host: RoleHost) -> dict[str, Any]:
        """waiting (for DIR) or writing, DIR, lines written, the ring's entries not
        written yet (``lag_seq``)."""
        persister = self.live.get("persister")
        if persister is None:
            return {"state": "waiting", "dir": self.directory, "lines_written": 0, "lag_seq": None}
        header, cursor = host.header(), persister.cursor
        done = header.first_seq - 1  # nothing of this instance written yet
        if cursor is not None and cursor.instance == header.instance:
            done = cursor.seq
        return {
            "state": "writing" if persister.files.held else "waiting",  # (DIR gone, read-only)
            "dir": self.directory,
            "lines_written": persister.written,
            "lag_seq": max(0, header.next_seq - 1 - done),
        }


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
