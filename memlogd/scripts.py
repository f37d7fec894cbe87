"""The console scripts' entry points (README, "Exit status").

A program's command-line module imports trio, click and structlog, which
takes a good part of a second on a small machine; a Ctrl-C in that time
would print a ``KeyboardInterrupt`` traceback.  So each entry point first
makes SIGINT end the process quietly with status 130, and only then imports
the program.  Programs take SIGINT over with their own handling (trio signal
receivers) once they run.  Nothing heavy is imported here.
"""

from __future__ import annotations

import importlib
import os
import signal

from memlogd.deferred import defer
from memlogd.errors import EXIT_INTERRUPTED
from memlogd.record import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType


def _interrupted(_signum: int, _frame: FrameType | None) -> None:
    os._exit(EXIT_INTERRUPTED)


def _start(module: str) -> None:
    signal.signal(signal.SIGINT, _interrupted)
    defer()  # asyncio and ssl: imported by trio and structlog, used by no program here
    importlib.import_module(module).main()


def memlogd() -> None:
    _start("memlogd.cli")


def memlogd_exec() -> None:
    _start("memlogd.exec")


def logread() -> None:
    _start("logread.cli")


def logwrite() -> None:
    _start("logwrite.cli")


def kmsg() -> None:
    _start("kmsg.cli")


def logship() -> None:
    _start("logship.cli")
