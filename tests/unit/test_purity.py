"""Pure modules import no I/O framework (README, "Layout": PURE = no trio, no socket I/O).

Each module is imported alone in a fresh interpreter, so that nothing imported
by the test process itself can hide an import."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Every PURE module of README's layout: each must exist and be pure.
PURE = [
    "memlogd.errors",
    "memlogd.timefmt",
    "memlogd.globs",
    "memlogd.filters",
    "memlogd.events",
    "memlogd.journal",
    "memlogd.handover",
    "memlogd.flags",
    "memlogd.answerparser",
    "memlogd.protocol",
    "memlogd.restart",
    "memlogd.record",
    "memlogd.framing",
    "memlogd.fdmsg",
    "memlogd.ring",
    "memlogd.config",
    "memlogd.ratelimit",
    "memlogd.server.answers",
    "logread.render",
    "logread.when",
    "logread.selection",
    "logread.losses",
    "logread.hints",
    "logwrite.rotation",
    "logwrite.lines",
    "kmsg.record",
    "logship.messages",
    "logship.relp",
    "logship.rfc5424",
    "logship.target",
]

# Neither the I/O framework nor the programs' own diagnostics and CLI machinery.
FORBIDDEN = ["trio", "structlog", "click"]

PROBE = (
    "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in sys.argv[2:])))"
)


def loaded_forbidden(module: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module, *FORBIDDEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("module", PURE)
def test_pure_module_exists_and_imports_no_io_framework(module: str):
    assert importlib.util.find_spec(module) is not None, f"{module} is missing"
    assert loaded_forbidden(module) == []


def test_probe_sees_an_io_module():
    """The probe itself can fail: importing the server loads trio."""
    assert "trio" in loaded_forbidden("memlogd.server.serve")


def test_the_daemon_never_loads_asyncio_or_ssl():
    """memlogd.deferred: trio and structlog import them, nothing here uses them
    (BENCHMARKS.md: about 3 MB and 30 ms of every process)."""
    probe = (
        "import sys; from memlogd.deferred import defer, loaded; defer(); "
        "import memlogd.worker, memlogd.cli, logwrite.persister, kmsg.reader; "
        "print(loaded('asyncio'), loaded('ssl'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
