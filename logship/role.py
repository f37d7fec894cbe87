"""logship's job inside memlogd (``-ship-to``; docs/memlogd.md, "Roles").

The same :func:`logship.shipper.run_shipper` as the program, reading the
ring over the daemon's in-process connection, its state file under
``-state-dir``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from logship.rfc5424 import DEFAULT_SD_ID
from logship.shipper import ShipConfig, Shipper
from memlogd.daemon.host import RoleHost, RoleKind
from memlogd.daemon.statelock import ensure_state_dir, owning

STATE_FILE_NAME = "logship.state"


@dataclass(frozen=True)
class ShipRole:
    target: str  # relp://HOST:PORT or tcp://HOST:PORT
    state_dir: str
    window: int
    hostname: str | None
    sd_id: str | None
    sources: tuple[str, ...]
    name: str = "ship"
    kind: RoleKind = "reader"
    live: dict[str, Shipper] = field(default_factory=dict, compare=False, repr=False)

    async def run(self, host: RoleHost) -> None:
        ensure_state_dir(self.state_dir)
        config = ShipConfig(
            target=self.target,
            state_file=os.path.join(self.state_dir, STATE_FILE_NAME),
            sources=self.sources,
            hostname=self.hostname or socket.gethostname(),
            window=self.window,
            sd_id=self.sd_id or DEFAULT_SD_ID,
        )
        async with owning(config.state_file):  # not with an orphaned worker's at once
            shipper = self.live["shipper"] = Shipper(config, host.connect)
            await shipper.run()

    def status(self, host: RoleHost) -> dict[str, Any]:
        """Connected, the last acknowledged seq, the outage, entries sent again."""
        shipper = self.live.get("shipper")
        if shipper is None:
            return {"to": self.target, "connected": False}
        return shipper.status()


def role(
    target: str,
    *,
    state_dir: str,
    window: int,
    hostname: str | None,
    sd_id: str | None,
    sources: tuple[str, ...],
) -> ShipRole:
    """logship as a role of memlogd (its flags ``-ship-*``, ``-state-dir``)."""
    return ShipRole(target, state_dir, window, hostname, sd_id, sources)
