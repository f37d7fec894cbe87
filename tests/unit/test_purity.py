"""What the daemon defers stays unloaded (memlogd.deferred).

Which modules may import what (layers, and the pure modules that import no
trio, structlog or click) is checked by import-linter: the contracts in
pyproject.toml, run by ``make lint`` (``lint-imports``).

Each probe runs in a fresh interpreter, so that nothing imported by the test
process itself can hide an import."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from memlogd.deferred import DEFERRED

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_daemon_never_loads_what_it_defers():
    """memlogd.deferred: trio and structlog import them, nothing here uses them
    at start (BENCHMARKS.md: asyncio and ssl about 3 MB and 30 ms of every
    process; hmac and hashlib load OpenSSL's libcrypto, about 4 MB of PSS)."""
    probe = (
        "import sys; from memlogd.deferred import DEFERRED, defer, loaded; defer(); "
        "import memlogd.daemon.worker, memlogd.cli, logwrite.role, kmsg.role, logship.role; "
        "print(*(loaded(name) for name in DEFERRED))"
    )
    assert run_probe(probe).split() == ["False"] * len(DEFERRED)


def test_no_program_loads_what_a_test_tool_brings():
    """rich comes with import-linter (a test tool) and structlog.dev imports it
    when installed: with defer(), a program configured for logging runs without
    it, as where only the runtime dependencies are installed."""
    probe = (
        "import sys; from memlogd.deferred import ABSENT, defer; defer(); "
        "import logread.cli, memlogd.cli; from memlogd.logconfig import configure_logging; "
        "configure_logging('logread', level='warning'); "
        "print(*(sys.modules.get(name) is None for name in ABSENT))"
    )
    assert run_probe(probe).split() == ["True"]


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
