"""A real, private rsyslogd for the logship tests, and pytest fixtures for it.

``Rsyslog(directory)`` writes ``rsyslog.conf`` into ``directory`` and runs
``rsyslogd -C -n -f CONF -i PIDFILE``: no ``imuxsock``/``imklog``, no system includes, its own
``workDirectory``, internal messages written to ``internal.log`` in ``directory`` (never sent to
/dev/log). It listens on 127.0.0.1 with ``imrelp`` (``relp_port``) and ``imtcp`` (``tcp_port``,
RFC 6587 octet-counted framing accepted), both bound to a ruleset whose own queue is
``queue.type="Direct"``, so an acknowledgement means written: its single ``omfile`` action writes
every message to ``messages.jsonl`` as one JSON object a line (``option.jsonf``; ``records()``
parses them back into :class:`Record`).

How a test gets one::

    from tests.rsyslog import Rsyslog, StartRsyslog, fixture_rsyslog, fixture_start_rsyslog

    def test_x(rsyslog: Rsyslog) -> None:                 # started, ready
        send_to(f"relp://127.0.0.1:{rsyslog.relp_port}")  # or rsyslog.relp_url / tcp_url
        [rec] = rsyslog.wait_records(1)
        rsyslog.kill()      # SIGKILL
        rsyslog.restart()   # same ports, ready again

    def test_y(start_rsyslog: StartRsyslog) -> None:
        small = start_rsyslog(max_message_size=2048)

Both fixtures skip the test ("rsyslogd not installed: ...") when ``rsyslogd`` or its ``imrelp``
module is missing (``tests/ensure_rsyslog.sh`` installs them as root), and end every rsyslogd they
started at teardown, also when the test failed.

What rsyslog 8.2302 (Debian 12, librelp 1.11.0) does to what it receives, as configured here:

- ``parser.escapeControlCharactersOnReceive="off"``: control characters (tab, LF, CR, 0x01, DEL,
  C1 such as U+0085) in the message and in structured-data values arrive verbatim. With rsyslog's
  default ("on") a tab would arrive as ``#011`` and a newline as ``#012``.
- NUL is the exception: it is always replaced by the four characters ``#000``.
- ``parser.dropTrailingLFOnReception="off"``: a trailing LF stays in ``msg`` (rsyslog drops one
  by default).
- A UTF-8 BOM at the start of MSG is kept: ``msg`` starts with U+FEFF (and so does the MSG part
  of ``rawmsg``). Nothing else is stripped: leading spaces after the single separating SP stay.
- ``structured_data`` is the SD exactly as sent, escapes included (``\\"``, ``\\\\``, ``\\]``
  stay two characters); an unescaped ``]`` inside a quoted value is accepted too.
- Invalid UTF-8 is written raw; ``records()`` decodes with ``surrogateescape``, so
  ``value.encode("utf-8", "surrogateescape")`` gives back the exact bytes.
- rsyslog does not enforce RFC 5424's 48-character APP-NAME limit (49 are accepted).
- A TIMESTAMP with more than 6 fractional digits is mangled (``.1234567`` came out as ``.`` and a
  stray byte): RFC 5424 allows at most 6, and so must senders.
- ``maxMessageSize`` (``max_message_size``; rsyslog's default is 8096 bytes, not 8192) limits the
  whole syslog message (``rawmsg``). Over RELP a longer message is cut to that size, still
  acknowledged ``200 OK``, the rest discarded, and an error logged (``oversizeMode="truncate"``).
  Over imtcp it is cut too, but the remainder of the frame is then parsed as another message
  (with the reception time as its timestamp).
- ``jsonf`` escapes ``/`` as ``\\/``: harmless, ``json.loads`` undoes it.

imrelp as observed (librelp 1.11.0): ``open`` is answered ``1 rsp 93 200 OK\\nrelp_version=0\\n
relp_software=librelp,1.11.0,http://librelp.adiscon.com\\ncommands=syslog``; each ``syslog``
``N rsp 6 200 OK`` once written; ``close`` ``N rsp 0`` followed by ``0 serverclose 0`` and EOF;
SIGTERM with a client connected sends ``0 serverclose 0`` then EOF (SIGKILL: just EOF); a
``syslog`` before ``open`` gets ``rsp 20 500 command disabled``; a frame whose length is wrong gets
``0 serverclose 0``. start() probes each port with a bare TCP connect, so ``rsyslogd.stderr`` and
``internal.log`` show one harmless "server closed relp session, session broken" per start.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypedDict, cast

import pytest

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 10.0
OUTPUT_NAME = "messages.jsonl"
_SEARCH_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
# Environment variables through which a systemd-aware rsyslogd would talk to an init system.
_INIT_VARS = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC")
# What rsyslog 8.2302 writes to stderr when imrelp or imtcp cannot bind its port.
_BIND_ERRORS = (
    "error while binding",
    "could not activate relp listener",
    "could not create tcp listener",
)
_PR_SET_PDEATHSIG = 1
_TCP_LISTEN = "0A"


class Record(TypedDict):
    """One message as rsyslog wrote it (all values are strings, as rsyslog's properties are)."""

    pri: str
    severity: str  # %syslogseverity%: PRI & 7
    protocol_version: str
    timestamp: str  # TIMESTAMP as received (RFC 3339, its fraction and offset as sent)
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: str  # the SD as sent, escapes included; "-" if none
    msg: str  # MSG, BOM kept
    rawmsg: str  # the whole syslog message as received (the RELP/TCP frame's data)
    input: str  # "imrelp" or "imtcp"
    fromhost_ip: str


_FIELDS: tuple[tuple[str, str], ...] = (
    ("pri", "pri"),
    ("severity", "syslogseverity"),
    ("protocol_version", "protocol-version"),
    ("timestamp", "timereported"),
    ("hostname", "hostname"),
    ("app_name", "app-name"),
    ("procid", "procid"),
    ("msgid", "msgid"),
    ("structured_data", "structured-data"),
    ("msg", "msg"),
    ("rawmsg", "rawmsg"),
    ("input", "inputname"),
    ("fromhost_ip", "fromhost-ip"),
)


def _quote(value: str | Path) -> str:
    """A RainerScript string literal; test paths never need escaping, so refuse what would."""
    text = str(value)
    if any(c in text for c in '"\\\n'):
        raise ValueError(f"refusing to put {text!r} into an rsyslog config")
    return f'"{text}"'


def render_config(
    directory: Path, relp_port: int, tcp_port: int, max_message_size: int | None = None
) -> str:
    """The whole rsyslog.conf of a private instance (see the module docstring)."""
    size = f"\n       maxMessageSize={_quote(str(max_message_size))}" if max_message_size else ""
    properties = "\n".join(
        f'  property(outname="{out}" name="{name}" format="jsonf"'
        + (' dateFormat="rfc3339")' if name == "timereported" else ")")
        for out, name in _FIELDS
    )
    return f"""\
# Generated by tests/rsyslog.py: a private rsyslogd for one test. No imuxsock, no imklog,
# no includes of the system's config; internal messages stay in this directory.
global(workDirectory={_quote(directory / "work")}{size}
       processInternalMessages="on"
       net.enableDNS="off"
       parser.escapeControlCharactersOnReceive="off"
       parser.dropTrailingLFOnReception="off")

module(load="imrelp")
module(load="imtcp")

template(name="memlogd_test_record" type="list" option.jsonf="on") {{
{properties}
}}

# The ruleset's own queue is Direct: a message is written before imrelp acknowledges it.
ruleset(name="memlogd_test_in" queue.type="Direct") {{
  action(type="omfile" file={_quote(directory / OUTPUT_NAME)} template="memlogd_test_record")
}}

input(type="imrelp" address="{HOST}" port="{relp_port}" ruleset="memlogd_test_in")
input(type="imtcp" address="{HOST}" port="{tcp_port}" ruleset="memlogd_test_in"
      supportOctetCountedFraming="on")

# Default ruleset: only rsyslogd's own messages (processInternalMessages="on") reach it.
*.* action(type="omfile" file={_quote(directory / "internal.log")})
"""


def find_rsyslogd() -> str | None:
    """rsyslogd's path (also where /usr/sbin is not on a non-root PATH), or None."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SEARCH_DIRS])
    return shutil.which("rsyslogd", path=search)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _INIT_VARS}


@functools.cache
def unavailable_reason() -> str | None:
    """Why rsyslog tests cannot run here (None if they can): rsyslogd or imrelp is missing."""
    hint = "run tests/ensure_rsyslog.sh as root, or apt-get install rsyslog rsyslog-relp"
    exe = find_rsyslogd()
    if exe is None:
        return (
            f"rsyslogd not installed: no rsyslogd on PATH nor in {', '.join(_SEARCH_DIRS)} ({hint})"
        )
    with tempfile.TemporaryDirectory(prefix="rsyslog-probe-") as tmp:
        # Validate (-N1: loads the modules, binds nothing) the very config the tests will use.
        conf = Path(tmp) / "rsyslog.conf"
        (Path(tmp) / "work").mkdir()
        conf.write_text(render_config(Path(tmp), 1, 2))
        try:
            check = subprocess.run(
                [exe, "-N1", "-f", str(conf)],
                capture_output=True,
                timeout=DEFAULT_TIMEOUT,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"rsyslogd not installed: {exe} -N1 failed: {exc} ({hint})"
    out = (check.stderr + check.stdout).decode(errors="replace")
    if check.returncode != 0 and "could not load module" in out:
        detail = " | ".join(line for line in out.splitlines() if "could not load module" in line)
        return f"rsyslogd not installed: the imrelp or imtcp module is missing ({hint}): {detail}"
    # Any other failure is a bug of this file, not a missing package: Rsyslog.start() shows it.
    return None


def skip_unless_available() -> str:
    """pytest.skip with the reason when rsyslog cannot run; else rsyslogd's path."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    exe = find_rsyslogd()
    assert exe is not None
    return exe


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (bind port 0, close)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` itself has a listening IPv4 socket."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports: set[int] = set()
    with contextlib.suppress(OSError), open(f"/proc/{pid}/net/tcp") as table:
        next(table, None)
        for row in table:
            fields = row.split()
            if len(fields) > 9 and fields[3] == _TCP_LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        return cast("Callable[..., int]", ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the test process dies without a teardown."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _BindFailed(Exception):
    pass


class Rsyslog:
    """A private rsyslogd in ``directory`` on free loopback ports (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_message_size: int | None = None,
        exe: str | None = None,
    ) -> None:
        self.directory = directory
        self.max_message_size = max_message_size
        self.exe = exe or find_rsyslogd() or "rsyslogd"
        self.host = HOST
        self.relp_port, self.tcp_port = free_ports(2)
        self.config_path = directory / "rsyslog.conf"
        self.pid_path = directory / "rsyslogd.pid"
        self.output_path = directory / OUTPUT_NAME
        self.internal_log_path = directory / "internal.log"
        self.stderr_path = directory / "rsyslogd.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ports_fixed = False  # once it has listened, restarts keep its ports

    @property
    def relp_url(self) -> str:
        return f"relp://{self.host}:{self.relp_port}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://{self.host}:{self.tcp_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [self.exe, "-C", "-n", "-f", str(self.config_path), "-i", str(self.pid_path)]

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start rsyslogd and wait until it listens on both ports; on the first start only, pick
        other ports once if rsyslog could not bind them."""
        if self.running:
            raise AssertionError("rsyslogd is already running")
        try:
            self._start_once(timeout)
        except _BindFailed as exc:
            if self._ports_fixed:
                raise AssertionError(f"rsyslogd could not bind its ports again: {exc}") from None
            self.relp_port, self.tcp_port = free_ports(2)
            try:
                self._start_once(timeout)
            except _BindFailed as again:
                raise AssertionError(f"rsyslogd could not bind its ports: {again}") from None
        self._ports_fixed = True

    def _start_once(self, timeout: float) -> None:
        (self.directory / "work").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(self.directory, self.relp_port, self.tcp_port, self.max_message_size)
        )
        with open(self.stderr_path, "ab") as err:
            offset = err.tell()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=_clean_env(),
                preexec_fn=_die_with_parent,
            )
        ports = {self.relp_port, self.tcp_port}
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"rsyslogd exited with {code}: {self.stderr(offset)}")
            errors = self.stderr(offset)
            if any(pattern in errors.lower() for pattern in _BIND_ERRORS):
                self.kill()
                raise _BindFailed(errors.strip())
            if ports <= _listening_ports(self.proc.pid) and all(map(_connectable, ports)):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"rsyslogd did not listen on {sorted(ports)} within {timeout}s: "
                    f"{self.stderr(offset)}"
                )
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL it (as a crash would) and reap it; its ports stay reserved for restart()."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEFAULT_TIMEOUT)
        self.pid_path.unlink(missing_ok=True)

    def stop(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """SIGTERM it and wait; its exit status (None if never started). If it does not exit in
        time it is killed and this fails."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    f"rsyslogd did not exit within {timeout}s of SIGTERM"
                ) from None
        return self.proc.returncode

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start it again on the same ports (stopping it first if it still runs)."""
        if self.running:
            self.stop(timeout)
        self.start(timeout)

    def records(self) -> list[Record]:
        """Every message written so far, in order (a line still being written is left out)."""
        try:
            data = self.output_path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")[:-1]
        return [cast(Record, json.loads(line.decode("utf-8", "surrogateescape"))) for line in lines]

    def wait_records(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Record]:
        """Wait until at least ``count`` messages are written; return all of them."""
        deadline = time.monotonic() + timeout
        while len(records := self.records()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} records, have "
                    f"{len(records)}: {records!r}; internal log: {self.internal_log()}"[:4000]
                )
            time.sleep(0.01)
        return records

    def stderr(self, offset: int = 0) -> str:
        try:
            with open(self.stderr_path, "rb") as err:
                err.seek(offset)
                return err.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def internal_log(self) -> str:
        """rsyslogd's own messages (start, exit, errors such as oversize frames)."""
        try:
            return self.internal_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Rsyslog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.kill()


StartRsyslog = Callable[..., Rsyslog]


@pytest.fixture(name="start_rsyslog")
def fixture_start_rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartRsyslog]:
    """A factory: ``start_rsyslog(max_message_size=None)`` returns a started, listening
    :class:`Rsyslog` in a fresh directory. Skips when rsyslog is not installed. At teardown
    every one is stopped (SIGTERM, then SIGKILL) and must have exited 0."""
    exe = skip_unless_available()
    started: list[Rsyslog] = []

    def start(*, max_message_size: int | None = None) -> Rsyslog:
        instance = Rsyslog(
            tmp_path_factory.mktemp("rsyslog"), max_message_size=max_message_size, exe=exe
        )
        started.append(instance)
        instance.start()
        return instance

    yield start
    problems: list[str] = []
    for instance in started:
        try:
            code = instance.stop()
            if code not in (0, None, -signal.SIGKILL):
                problems.append(f"rsyslogd in {instance.directory} exited with {code}")
        except AssertionError as exc:
            problems.append(str(exc))
        finally:
            instance.kill()
    assert not problems, "; ".join(problems)


@pytest.fixture(name="rsyslog")
def fixture_rsyslog(start_rsyslog: StartRsyslog) -> Rsyslog:
    """A started rsyslog with the default maxMessageSize (see :class:`Rsyslog`)."""
    return start_rsyslog()
