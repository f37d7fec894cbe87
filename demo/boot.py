"""Simulate a LinuxKit boot against the real programs, as subprocesses.

A private rsyslog stands in for the central log server (when rsyslogd with
RELP is installed).  memlogd starts first, as one process with its roles:
persist to a directory that does not exist yet, the kernel log (when
/dev/kmsg is readable), ship to the rsyslog.  Two on-boot actions run in
sequence and two services start, each through memlogd-exec (one chatty, one
writing to stderr).  memlogd's worker is then killed: its keeper starts
another with the ring and the pipes intact.  Only then does the directory
appear ("the disk is mounted"), and memlogd persists every line written
before it existed.  `python -m demo` narrates it; the system test calls
:func:`simulate_boot` and checks the files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from kmsg.role import KMSG_SOURCE as KERNEL_SOURCE
from memlogd.client import Subscription, fetch_stats
from memlogd.errors import ConnectError, MemlogdError
from memlogd.wire import protocol as proto
from memlogd.wire.events import Entries

READY_TIMEOUT_S = 10.0
PERSIST_TIMEOUT_S = 20.0
CHATTY_LINES = 400  # written before logwrite starts; ~60 bytes each
MAX_LOG_SIZE = 4096  # small, so that the chatty service's log rotates
MAX_LOG_FILES = 10  # enough that nothing written in the demo is rotated away
NOT_SERVICES = (proto.INTERNAL_SOURCE, KERNEL_SOURCE)  # the sources memlogd writes itself

Say = Callable[[str], None]


@dataclass
class Boot:
    run_dir: Path
    log_dir: Path
    log_sock: str
    query_sock: str
    kmsg: bool
    expected: dict[str, list[str]] = field(default_factory=dict)  # source -> lines
    central: Central | None = None  # the private rsyslog the lines are shipped to


def _py(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def kmsg_readable(path: str = "/dev/kmsg") -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def onboot_actions() -> list[tuple[str, list[str]]]:
    """(name, lines) of the on-boot actions; each writes its lines to stdout."""
    return [
        (
            "onboot.000-sysctl",
            [f"sysctl: set net.ipv4.ip_forward = 1 (step {i})" for i in range(3)],
        ),
        ("onboot.001-format", ["format: /dev/sda has no partition table", "format: created ext4"]),
    ]


def _echo_script(lines: list[str], fd: int = 1) -> str:
    redirect = "" if fd == 1 else f" >&{fd}"
    return "; ".join(f"echo '{line}'{redirect}" for line in lines)


def _exec(boot: Boot, name: str, *command: str) -> list[str]:
    """memlogd-exec running ``command`` as source ``name``."""
    return _py("memlogd.exec", "-socket", boot.log_sock, "-n", name, "--", *command)


async def _start(nursery: trio.Nursery, command: list[str], **kw: Any) -> trio.Process:
    """A background process (reaped by the nursery)."""
    process: trio.Process = await nursery.start(
        partial(trio.run_process, command, check=False, **kw)
    )
    return process


async def _wait_ready(fd: int) -> None:
    async with trio.lowlevel.FdStream(fd) as stream:
        with trio.fail_after(READY_TIMEOUT_S):
            if await stream.receive_some(1) != b"\n":
                raise RuntimeError("memlogd did not start; see memlogd.stderr")


async def _held(boot: Boot) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    async with Subscription(boot.query_sock, proto.QueryRequest(), upstream=True) as dump:
        async for event in dump:
            if isinstance(event, Entries):
                for entry in event.entries:
                    held.setdefault(entry.source, []).append(entry.msg)
    return held


async def _wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.05)
        return
    raise RuntimeError(f"timed out waiting for {what}")


def persisted(log_dir: Path, source: str) -> list[str]:
    """Messages of ``source`` in its files, oldest rotated file first."""
    files = sorted(log_dir.glob(f"{source}.log.*"), key=lambda p: -int(p.suffix[1:]))
    files.append(log_dir / f"{source}.log")
    prefix = f" {source} "
    out = []
    for path in files:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                _, sep, msg = line.partition(prefix)
                if sep:
                    out.append(msg)
    return out


def all_persisted(boot: Boot) -> bool:
    """Every expected line is on disk (and some kernel lines, when kmsg runs)."""
    if boot.kmsg and not persisted(boot.log_dir, KERNEL_SOURCE):
        return False
    return all(
        set(lines) <= set(persisted(boot.log_dir, source))
        for source, lines in boot.expected.items()
    )


async def simulate_boot(
    run_dir: Path,
    say: Say,
    *,
    show_seconds: float = 0.0,
    kmsg: bool | None = None,
    ship: bool | None = None,
) -> Boot:
    """Run the whole boot; returns where the logs went and what must be in them.
    ``ship``: forward to a private rsyslog (None: when rsyslogd with RELP is here)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    boot = Boot(
        run_dir,
        run_dir / "log",
        str(run_dir / "log.sock"),
        str(run_dir / "query.sock"),
        kmsg_readable() if kmsg is None else kmsg,
    )
    quiet = subprocess.DEVNULL
    out = None if show_seconds else quiet  # the console shows the tee'd output in the demo
    async with trio.open_nursery() as nursery:
        if ship is False:
            central = None
            say("0. (No central log server in this run: nothing is shipped.)")
        else:
            central = await _central_rsyslog(nursery, run_dir, say)
        if ship and central is None:
            raise RuntimeError("rsyslogd with imrelp is needed to ship (see central.stderr)")
        boot.central = central
        roles = ["-persist-dir", str(boot.log_dir), "-state-dir", str(run_dir / "state")]
        roles += ["-persist-max-log-size", str(MAX_LOG_SIZE)]
        roles += ["-persist-max-log-files", str(MAX_LOG_FILES)]
        if boot.kmsg:
            roles.append("-kmsg")
        if central is not None:
            roles += ["-ship-to", central.url, "-ship-hostname", "demo-vm"]
        say(
            "1. memlogd starts first, before any disk exists: it will hold every line in RAM.\n"
            "   One process with its roles: "
            + ", ".join(
                what
                for what, on in (
                    (f"persist to {boot.log_dir} once it exists", True),
                    ("the kernel log", boot.kmsg),
                    ("ship to the central rsyslog", central is not None),
                )
                if on
            )
            + "."
        )
        r, w = os.pipe()
        started = time.monotonic()
        with open(run_dir / "memlogd.stderr", "wb") as err:
            memlogd = await _start(
                nursery,
                _py(
                    "memlogd",
                    "-socket-log",
                    boot.log_sock,
                    "-socket-query",
                    boot.query_sock,
                    "--no-console",
                    "--ready-fd",
                    str(w),
                    "-log-format",
                    "json",
                    *roles,
                ),
                pass_fds=(w,),
                stdout=quiet,
                stderr=err,
            )
        os.close(w)
        await _wait_ready(r)
        say(
            f"   ready {1000 * (time.monotonic() - started):.0f} ms after it was started: "
            f"log socket {boot.log_sock}, query socket {boot.query_sock}"
        )

        say("2. On-boot actions run one after the other, their output handed to memlogd:")
        for name, lines in onboot_actions():
            await trio.run_process(
                _exec(boot, name, "sh", "-c", _echo_script(lines)), stdout=out, stderr=out
            )
            boot.expected[f"{name}.out"] = lines

        say("3. Services start, each through memlogd-exec:")
        chatty = [f"chatty: request {i:04d} served in {i % 97} ms" for i in range(CHATTY_LINES)]
        stderr_lines = ["worker: warning: cache is cold", "worker: error: retrying upstream"]
        boot.expected["chatty.out"] = chatty
        boot.expected["worker"] = stderr_lines
        heartbeat = 'i=0; while :; do i=$((i+1)); echo "chatty: heartbeat $i"; sleep 0.3; done'
        services = [
            ("chatty", ["sh", "-c", _echo_script(chatty) + "; " + heartbeat]),
            (
                "worker",
                ["sh", "-c", _echo_script(stderr_lines, fd=2) + "; while :; do sleep 1; done"],
            ),
        ]
        procs = []
        for name, command in services:
            say(f"   - {name}")
            procs.append(
                await _start(nursery, _exec(boot, name, *command), stdout=quiet, stderr=quiet)
            )

        await _wait_until_held(boot)
        held = await _held(boot)
        say(f"   memlogd now holds {_describe_held(held)}; nothing is on disk yet.")
        # from now on, every line the programs wrote so far must reach the disk (and rsyslog)
        boot.expected = {src: v for src, v in held.items() if src not in NOT_SERVICES}

        stats = await fetch_stats(boot.query_sock)
        say(
            f"4. memlogd's worker (pid {stats['pid']}) is killed with SIGKILL. Its keeper "
            f"(pid {stats['keeper_pid']}) holds the ring and every source's pipe:"
        )
        os.kill(stats["pid"], signal.SIGKILL)
        after = await _wait_restarted(boot, stats["pid"])
        held_after = await _held(boot)
        kept = all(set(v) <= set(held_after.get(k, [])) for k, v in held.items())
        say(
            f"   a new worker (pid {after['pid']}) serves the same ring: "
            f"{'every line is still there' if kept else 'LINES WERE LOST'}, and the services "
            "never noticed."
        )
        if not kept:
            raise RuntimeError("lines were lost across the worker restart")

        say(f"5. The disk is ready ({boot.log_dir} appears): memlogd persists everything it held.")
        boot.log_dir.mkdir()

        if show_seconds:
            say(
                f"6. `logread -F -n 25` for {show_seconds:g} seconds: the newest 25 lines held, "
                "then new lines as they come (TIME;SOURCE;MSG):"
            )
            reader = await _start(
                nursery, _py("logread", "-socket", boot.query_sock, "-F", "-n", "25")
            )
            await trio.sleep(show_seconds)
            reader.send_signal(signal.SIGINT)
            await reader.wait()

        await _wait_until(
            lambda: all_persisted(boot), "memlogd to persist the boot", PERSIST_TIMEOUT_S
        )
        if central is not None:
            await _wait_until(
                lambda: central.holds(boot.expected), "the lines at rsyslog", PERSIST_TIMEOUT_S
            )
            say(
                f"   The central rsyslog received {central.count()} messages over RELP "
                f"({central.output}); the first of the chatty service's:\n"
                f"   {central.first('chatty.out')}"
            )
        say("7. Shutting down: the services, then memlogd (its roles flush and save their state).")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await proc.wait()
        memlogd.send_signal(signal.SIGTERM)
        if await memlogd.wait() != 0:
            raise RuntimeError("memlogd did not exit cleanly; see memlogd.stderr")
        if central is not None:
            central.process.send_signal(signal.SIGTERM)
            await central.process.wait()
    return boot


def _describe_held(held: dict[str, list[str]]) -> str:
    lines = sum(len(v) for v in held.values())
    services = sum(len(v) for src, v in held.items() if src not in NOT_SERVICES)
    parts = [f"{services} from the on-boot actions and services"]
    if own := len(held.get(proto.INTERNAL_SOURCE, [])):
        parts.append(f"{own} of memlogd's own events")
    if kernel := len(held.get(KERNEL_SOURCE, [])):
        parts.append(f"{kernel} from the kernel log")
    return f"{lines} lines from {len(held)} sources: {', '.join(parts)}"


async def _wait_restarted(boot: Boot, old_pid: int) -> dict[str, Any]:
    """memlogd's stats once a worker other than ``old_pid`` answers."""
    with trio.fail_after(READY_TIMEOUT_S):
        while True:
            with contextlib.suppress(MemlogdError):
                stats = await fetch_stats(boot.query_sock)
                if stats["pid"] != old_pid:
                    return stats
            await trio.sleep(0.02)


@dataclass
class Central:
    """A private rsyslogd standing in for the central log server."""

    process: trio.Process
    url: str
    output: Path

    def _messages(self) -> list[tuple[str, str]]:
        """(APP-NAME, MSG) of every message written so far."""
        try:
            text = self.output.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            # <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
            parts = line.split(" ", 6)
            if len(parts) == 7:
                _, _, msg = parts[6].rpartition("] ")
                out.append((parts[3], msg))
        return out

    def count(self) -> int:
        return len(self._messages())

    def holds(self, expected: dict[str, list[str]]) -> bool:
        got = set(self._messages())
        return all((source, line) in got for source, lines in expected.items() for line in lines)

    def first(self, app: str) -> str:
        text = self.output.read_text(errors="replace")
        return next((line for line in text.splitlines() if f" {app} " in line), "")


async def _central_rsyslog(nursery: trio.Nursery, run_dir: Path, say: Say) -> Central | None:
    """A private rsyslogd listening for RELP on loopback, or None (said why)."""
    exe = shutil.which("rsyslogd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if exe is None:
        say("0. (No rsyslogd here, so nothing is shipped: `apt-get install rsyslog rsyslog-relp`.)")
        return None
    directory = run_dir / "central"
    (directory / "work").mkdir(parents=True)
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = directory / "messages.log"
    conf = directory / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{directory / "work"}" net.enableDNS="off")\n'
        'module(load="imrelp")\n'
        f'input(type="imrelp" address="127.0.0.1" port="{port}" ruleset="central")\n'
        'ruleset(name="central") {\n'
        f'  action(type="omfile" file="{output}" template="RSYSLOG_SyslogProtocol23Format")\n'
        "}\n"
    )
    with open(directory / "central.stderr", "wb") as err:
        process = await _start(
            nursery,
            [exe, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    with trio.move_on_after(READY_TIMEOUT_S):
        while process.poll() is None:
            try:
                (await trio.open_tcp_stream("127.0.0.1", port)).socket.close()
            except OSError:
                await trio.sleep(0.05)
                continue
            say(f"0. A central rsyslog listens for RELP on 127.0.0.1:{port} (the log server).")
            return Central(process, f"relp://127.0.0.1:{port}", output)
    if process.poll() is None:
        process.kill()
    say(f"0. (rsyslogd did not start, so nothing is shipped: see {directory}/central.stderr.)")
    return None


async def _wait_until_held(boot: Boot) -> None:
    """Until memlogd holds every line written so far (reads are asynchronous)."""
    with trio.fail_after(PERSIST_TIMEOUT_S):
        while True:
            try:
                held = await _held(boot)
            except ConnectError:
                held = {}
            kernel = held.get(KERNEL_SOURCE) if boot.kmsg else True
            if kernel and all(
                set(lines) <= set(held.get(src, [])) for src, lines in boot.expected.items()
            ):
                return
            await trio.sleep(0.05)


def listing(log_dir: Path) -> list[str]:
    rows = []
    for path in sorted(log_dir.iterdir()):
        if path.is_file():
            rows.append(f"   {path.stat().st_size:>8}  {path.name}")
    return rows


def main() -> None:
    run_dir = Path(os.environ.get("MEMLOGD_DEMO_DIR", Path.cwd() / ".run" / "demo"))

    def say(text: str) -> None:
        print(f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text, flush=True)

    say("memlogd demo: a simulated VM boot, run with the real programs (no root needed).\n")
    try:
        boot = trio.run(partial(simulate_boot, run_dir, say, show_seconds=3.0))
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"demo: failed: {exc}", file=sys.stderr)
        sys.exit(1)
    say(
        f"\n8. What memlogd persisted in {boot.log_dir} (bytes, file); the chatty service's "
        f"log rotated at {MAX_LOG_SIZE} bytes into .log.0 (newest) ... .log.N (oldest):"
    )
    for row in listing(boot.log_dir):
        print(row)
    lines = sum(len(v) for v in boot.expected.values())
    where = "those files" + (" and at the central rsyslog" if boot.central else "")
    say(
        f"\nEvery one of the {lines} lines the on-boot actions and services wrote before the "
        f"disk existed is in "
        f"{where}, once, although a worker was killed on the way. Read them as after a "
        f"reboot, merged in time order: `.venv/bin/logread -D {boot.log_dir} -u chatty` "
        f"(or `-p err`, `--list-boots`)."
    )
