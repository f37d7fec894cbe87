"""The console echo: every entry as ``TIME;SOURCE;MSG`` on stdout, as upstream
does (docs/memlogd.md).  It never stalls the daemon: a console nobody reads
drops echo lines, counted (stats ``console_dropped``)."""

from __future__ import annotations

from memlogd.config import CONSOLE_BUFFER
from memlogd.daemon.lines import Lines
from memlogd.termio import Output


class Console:
    def __init__(self, fd: int, limit: int = CONSOLE_BUFFER) -> None:
        self.output = Output(fd, limit=limit)

    @property
    def dropped(self) -> int:
        return self.output.dropped

    def echo(self, time_text: str, source: str, lines: Lines) -> None:
        """One batch's lines, written (or queued, or dropped) at once."""
        prefix = f"{time_text};{source};".encode("utf-8", "replace")
        self.output.write_nowait(*lines.joined_with(prefix, b"\n" + prefix, b"\n"))

    async def run(self) -> None:
        """Drain what the console could not take at once (cancel to stop)."""
        try:
            await self.output.run()
        finally:
            self.output.close()
