"""Simulate a LinuxKit boot against the real programs, as subprocesses.

memlogd starts first; two on-boot actions run in sequence and three services
start, each through memlogd-exec (one chatty, one writing to stderr, and kmsg
when /dev/kmsg is readable); only then does logwrite start ("the disk is
mounted"), and it still persists every line written before it existed,
because memlogd kept them.  `python -m demo` narrates it; the system test
calls :func:`simulate_boot` and checks the files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from memlogd import protocol as proto
from memlogd.client import Subscription
from memlogd.errors import ConnectError
from memlogd.events import Entries

READY_TIMEOUT_S = 10.0
PERSIST_TIMEOUT_S = 20.0
CHATTY_LINES = 400  # written before logwrite starts; ~60 bytes each
MAX_LOG_SIZE = 4096  # small, so that the chatty service's log rotates
MAX_LOG_FILES = 10  # enough that nothing written in the demo is rotated away

Say = Callable[[str], None]


@dataclass
class Boot:
    run_dir: Path
    log_dir: Path
    log_sock: str
    query_sock: str
    kmsg: bool
    expected: dict[str, list[str]] = field(default_factory=dict)  # source -> lines


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
    if boot.kmsg and not persisted(boot.log_dir, "kmsg"):
        return False
    return all(
        set(lines) <= set(persisted(boot.log_dir, source))
        for source, lines in boot.expected.items()
    )


async def simulate_boot(
    run_dir: Path, say: Say, *, show_seconds: float = 0.0, kmsg: bool | None = None
) -> Boot:
    """Run the whole boot; returns where the logs went and what must be in them."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    boot = Boot(
        run_dir,
        run_dir / "log",
        str(run_dir / "log.sock"),
        str(run_dir / "query.sock"),
        kmsg_readable() if kmsg is None else kmsg,
    )
    boot.log_dir.mkdir()
    quiet = subprocess.DEVNULL
    out = None if show_seconds else quiet  # the console shows the tee'd output in the demo
    async with trio.open_nursery() as nursery:
        say("1. memlogd starts first, before any disk exists: it will hold every line in RAM.")
        r, w = os.pipe()
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
                ),
                pass_fds=(w,),
                stdout=quiet,
                stderr=err,
            )
        os.close(w)
        await _wait_ready(r)
        say(f"   serving: log socket {boot.log_sock}, query socket {boot.query_sock}")

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
        if boot.kmsg:
            services.append(("kmsg", _py("kmsg")))
        procs = []
        for name, command in services:
            say(f"   - {name}")
            procs.append(
                await _start(nursery, _exec(boot, name, *command), stdout=quiet, stderr=quiet)
            )
        if not boot.kmsg:
            say("   - (no kmsg: /dev/kmsg is not readable here)")

        await _wait_until_held(boot)
        held = await _held(boot)
        say(
            f"   memlogd now holds {sum(len(v) for v in held.values())} lines from "
            f"{len(held)} sources; nothing is on disk yet."
        )

        say("4. The disk is ready: logwrite starts and persists everything memlogd held.")
        with open(run_dir / "logwrite.stderr", "wb") as err:
            logwrite = await _start(
                nursery,
                _py(
                    "logwrite",
                    "-socket",
                    boot.query_sock,
                    "-log-dir",
                    str(boot.log_dir),
                    "-max-log-size",
                    str(MAX_LOG_SIZE),
                    "-max-log-files",
                    str(MAX_LOG_FILES),
                ),
                stdout=quiet,
                stderr=err,
            )

        if show_seconds:
            say(
                f"5. `logread -F -n 25` for {show_seconds:g} seconds: the newest 25 lines held, "
                "then new lines as they come (TIME;SOURCE;MSG):"
            )
            reader = await _start(
                nursery, _py("logread", "-socket", boot.query_sock, "-F", "-n", "25")
            )
            await trio.sleep(show_seconds)
            reader.send_signal(signal.SIGINT)
            await reader.wait()

        await _wait_until(
            lambda: all_persisted(boot), "logwrite to persist the boot", PERSIST_TIMEOUT_S
        )
        say("6. Shutting down: services, then logwrite (it flushes), then memlogd.")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            await proc.wait()
        for proc, name in ((logwrite, "logwrite"), (memlogd, "memlogd")):
            proc.send_signal(signal.SIGTERM)
            if await proc.wait() != 0:
                raise RuntimeError(f"{name} did not exit cleanly; see {name}.stderr")
    return boot


async def _wait_until_held(boot: Boot) -> None:
    """Until memlogd holds every line written so far (reads are asynchronous)."""
    with trio.fail_after(PERSIST_TIMEOUT_S):
        while True:
            try:
                held = await _held(boot)
            except ConnectError:
                held = {}
            kernel = held.get("kmsg") if boot.kmsg else True
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
        f"\n7. What logwrite persisted in {boot.log_dir} (bytes, file); the chatty service's "
        f"log rotated at {MAX_LOG_SIZE} bytes into .log.0 (newest) ... .log.N (oldest):"
    )
    for row in listing(boot.log_dir):
        print(row)
    lines = sum(len(v) for v in boot.expected.values())
    say(
        f"\nEvery one of the {lines} lines written before logwrite started is in those files. "
        f"Read them with e.g. `cat {boot.log_dir}/chatty.out.log`."
    )
