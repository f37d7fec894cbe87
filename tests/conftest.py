"""Shared fixtures: short socket paths, a real memlogd subprocess, logging reset."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings

from tests.helpers import MemlogdProcess

pytest_plugins = ["tests.rsyslog"]  # the rsyslog and start_rsyslog fixtures

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.fixture(name="short_tmp")
def fixture_short_tmp() -> Iterator[Path]:
    """A fresh directory with a short path (AF_UNIX paths must be < 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ml-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


StartMemlogd = Callable[..., MemlogdProcess]


@pytest.fixture(name="start_memlogd")
def fixture_start_memlogd(short_tmp: Path) -> Iterator[StartMemlogd]:
    """Start a memlogd with extra flags (``start_memlogd("-max-lines", "100")``); each
    one must exit 0 on SIGTERM at the end of the test."""
    started: list[MemlogdProcess] = []

    def start(*args: str, console: bool = False) -> MemlogdProcess:
        proc = MemlogdProcess(short_tmp, args=list(args), console=console)
        proc.start()
        started.append(proc)
        return proc

    yield start
    codes = [proc.stop() for proc in started]
    assert all(code == 0 for code in codes), f"memlogd exit statuses: {codes}"


@pytest.fixture(name="memlogd")
def fixture_memlogd(short_tmp: Path) -> Iterator[MemlogdProcess]:
    """A running `python -m memlogd` on sockets in short_tmp (ready when yielded)."""
    proc = MemlogdProcess(short_tmp)
    proc.start()
    try:
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, f"memlogd exited with status {code}: {proc.stderr()[-2000:]}"


LOCAL_USER = "memlogd-hostile"  # made once with useradd, kept (other runs may use it)


@pytest.fixture(name="local_user", scope="session")
def fixture_local_user() -> pwd.struct_passwd:
    """A real unprivileged local user (created with ``useradd`` if missing), for
    the hostile-user cases of SPEC 19; skipped where that cannot be done."""
    if os.geteuid() != 0:
        pytest.skip("not root: cannot act as another local user")
    try:
        return pwd.getpwnam(LOCAL_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        pytest.skip("no useradd on this machine")
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", LOCAL_USER],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    try:
        return pwd.getpwnam(LOCAL_USER)
    except KeyError:
        pytest.skip(f"useradd failed: {result.stderr.strip()}")
