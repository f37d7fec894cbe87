"""Pure modules import no I/O framework (README, "Layout": PURE = no trio, no socket I/O).

Each module is imported alone in a fresh interpreter, so that nothing imported
by the test process itself can hide an import."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from memlogd.deferred import DEFERRED

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# Every PURE module of README's layout: each must exist and be pure.
PURE = [
    "memlogd.errors",
    "memlogd.wire.timefmt",
    "memlogd.wire.globs",
    "memlogd.wire.filters",
    "memlogd.wire.severity",
    "memlogd.wire.events",
    "memlogd.daemon.journal",
    "memlogd.wire.handover",
    "memlogd.flags",
    "memlogd.wire.answerparser",
    "memlogd.wire.protocol",
    "memlogd.keeper.restart",
    "memlogd.record",
    "memlogd.daemon.framing",
    "memlogd.daemon.lines",
    "memlogd.wire.fdmsg",
    "memlogd.daemon.ring",
    "memlogd.config",
    "memlogd.ratelimit",
    "memlogd.daemon.answers",
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


def run_probe(code: str, *args: str) -> str:
    """What ``python -c code args`` prints, in a fresh interpreter (exit 0)."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def loaded_forbidden(module: str) -> list[str]:
    loaded: list[str] = json.loads(run_probe(PROBE, module, *FORBIDDEN))
    return loaded


@pytest.mark.parametrize("module", PURE)
def test_pure_module_exists_and_imports_no_io_framework(module: str):
    assert importlib.util.find_spec(module) is not None, f"{module} is missing"
    assert loaded_forbidden(module) == []


def test_probe_sees_an_io_module():
    """The probe itself can fail: importing the server loads trio."""
    assert "trio" in loaded_forbidden("memlogd.daemon.serve")


def test_the_daemon_never_loads_what_it_defers():
    """memlogd.deferred: trio and structlog import them, nothing here uses them
    at start (BENCHMARKS.md: asyncio and ssl about 3 MB and 30 ms of every
    process; hmac and hashlib load OpenSSL's libcrypto, about 4 MB of PSS)."""
    probe = (
        "import sys; from memlogd.deferred import DEFERRED, defer, loaded; defer(); "
        "import memlogd.daemon.worker, memlogd.cli, logwrite.persister, kmsg.reader; "
        "import logship.shipper; "
        "print(*(loaded(name) for name in DEFERRED))"
    )
    assert run_probe(probe).split() == ["False"] * len(DEFERRED)


def test_a_deferred_module_works_when_first_used():
    """The stand-in imports the real module at its first attribute (logwrite's
    long names use hashlib.blake2b; trio's getaddrinfo uses idna)."""
    probe = (
        "from memlogd.deferred import defer, loaded; defer(); import hashlib, idna; "
        "print(loaded('hashlib'), hashlib.blake2b(b'x', digest_size=4).hexdigest(), "
        "loaded('hashlib'), idna.encode('b\\u00fccher.example').decode())"
    )
    expected = hashlib.blake2b(b"x", digest_size=4).hexdigest()
    assert run_probe(probe).split() == ["False", expected, "True", "xn--bcher-kva.example"]
