"""The console scripts' entry points (README, "Exit status").

A program's command-line module imports trio, click and structlog, which
takes a good part of a second on a small machine; a Ctrl-C in that time
would print a ``KeyboardInterrupt`` traceback.  So each entry point first
makes SIGINT end the process quietly with status 130, and only then imports
the program.  Programs take SIGINT over with their own handling (trio signal
receivers) once they run.  The signals a program must never die of (SPEC 19:
SIGHUP for logwrite and logship, and SIGHUP, SIGUSR1, SIGALRM, SIGPIPE for
memlogd) are ignored from here on, also during the imports.  Nothing heavy is
imported here.
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


def _start(module: str, *, ignore: tuple[signal.Signals, ...] = ()) -> None:
    signal.signal(signal.SIGINT, _interrupted)
    for signum in ignore:  # never die of a signal an admin sends by habit (SPEC 19)
        signal.signal(signum, signal.SIG_IGN)
    defer()  # asyncio and ssl: imported by trio and structlog, used by no program here
    importlib.import_module(module).main()


def memlogd() -> None:
    _start("memlogd.cli", ignore=(signal.SIGHUP, signal.SIGUSR1, signal.SIGALRM, signal.SIGPIPE))


def memlogd_exec() -> None:
    _start("memlogd.exec")


def _require_stdout(program: str) -> None:
    """A program started with its stdout closed (``logread >&-``) says so in one
    line and exits 1, before any file it opens could take fd 1 (SPEC 19)."""
    try:
        os.fstat(1)
    except OSError:
        os.write(2, f"{program}: standard output is closed\n".encode())
        os._exit(1)


def logread() -> None:
    _require_stdout("logread")
    _start("logread.cli")


def logwrite() -> None:
    _start("logwrite.cli", ignore=(signal.SIGHUP,))  # until it takes SIGHUP over: reopen


def kmsg() -> None:
    _start("kmsg.cli")


def logship() -> None:
    _start("logship.cli", ignore=(signal.SIGHUP,))  # it holds no file to reopen
