"""Pure modules import no I/O framework (ARCHITECTURE.md: PURE = no trio, no sockets I/O).

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

# Must exist and be pure.
MEMLOGD_PURE = [
    "memlogd.protocol",
    "memlogd.framing",
    "memlogd.ring",
    "memlogd.fdmsg",
    "memlogd.config",
]
# Pure when they exist (other programs' modules, written in parallel).
OTHER_PURE = ["logread.render", "logwrite.rotation", "kmsg.record"]

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


@pytest.mark.parametrize("module", MEMLOGD_PURE)
def test_memlogd_pure_module_imports_no_io_framework(module: str):
    assert loaded_forbidden(module) == []


@pytest.mark.parametrize("module", OTHER_PURE)
def test_other_pure_module_imports_no_io_framework(module: str):
    package = module.partition(".")[0]
    if importlib.util.find_spec(package) is None or importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet")
    assert loaded_forbidden(module) == []


def test_probe_sees_an_io_module():
    """The probe itself can fail: importing the server loads trio."""
    assert "trio" in loaded_forbidden("memlogd.server")
