"""kmsg's job inside memlogd (``-kmsg``; docs/memlogd.md, "Roles").

The same :func:`kmsg.reader.run_kmsg` as the program, its records appended
to the ring as source ``kmsg`` (counted in stats like any source), from where
the ring (or the state file under ``-state-dir``) says the last worker stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from kmsg.reader import KmsgConfig, run_kmsg
from kmsg.record import text_seq
from memlogd.daemon.host import HostedSource, RoleHost, RoleKind
from memlogd.daemon.statelock import ensure_state_dir, owning

KMSG_SOURCE = "kmsg"  # the ring's source of the kernel log
STATE_FILE_NAME = "kmsg.state"


class _RingSink:
    """kmsg's records, as lines of the ring (a :class:`kmsg.reader.Sink`)."""

    def __init__(self, source: HostedSource, live: dict[str, Any]) -> None:
        self.source = source
        self.live = live  # the role's records and last record (its status)

    async def write(self, data: bytes) -> None:
        self.source.append(data)
        lines = data.rstrip(b"\n").split(b"\n")
        self.live["records"] = self.live.get("records", 0) + len(lines)
        self.live["last"] = lines[-1]

    async def aclose(self) -> None:
        pass


@dataclass(frozen=True)
class KmsgRole:
    path: str  # the kernel log device
    state_dir: str
    name: str = "kmsg"
    kind: RoleKind = "source"
    live: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    async def run(self, host: RoleHost) -> None:
        ensure_state_dir(self.state_dir)
        last = host.last_entry(KMSG_SOURCE)
        done = None if last is None else text_seq(last.msg)
        config = KmsgConfig(
            path=self.path, state_file=os.path.join(self.state_dir, STATE_FILE_NAME)
        )
        with host.source(KMSG_SOURCE) as source:
            async with owning(config.state_file):  # not with an orphaned worker's at once
                await run_kmsg(config, sink=_RingSink(source, self.live), done_seq=done)

    def status(self, host: RoleHost) -> dict[str, Any]:
        """The device, the records appended by this worker, the last one."""
        last = self.live.get("last")
        return {
            "device": self.path,
            "records": self.live.get("records", 0),
            "last_record": None if last is None else last.decode("utf-8", "replace"),
        }


def role(path: str, *, state_dir: str) -> KmsgRole:
    """kmsg as a role of memlogd (``-kmsg``, ``-kmsg-path``, ``-state-dir``)."""
    return KmsgRole(path, state_dir)
