"""``python -m bench.logship``: forwarding throughput (BENCHMARKS.md, "Forwarding").

One run:

1. starts our memlogd with a ring big enough for the load (``-max-lines`` =
   lines + room for memlogd's own events) and fills it from one writer: LINES
   lines of exactly BYTES bytes (newline included), in ~64 KiB writes, through
   a source handed over the log socket; waits until the ring holds them all;
2. starts a private rsyslog (tests/rsyslog.py's :class:`Rsyslog`: imrelp on
   loopback, the ruleset's queue Direct so an acknowledgement means written),
   writing each message with the built-in ``RSYSLOG_SyslogProtocol23Format``
   (``--jsonf``: the tests' 12-property JSON template, which costs rsyslog
   about 25% more per message);
3. runs ``python -m logship -once`` over RELP (``--window``, optionally a
   ``--state-dir`` for ``-state-file``) and waits for it;
4. checks that rsyslog wrote every entry.

Reported per run: ``lines_per_s`` (entries delivered / the time between
logship's ``receiver_connected`` and ``stopped`` events: the transfer),
``wall_lines_per_s`` (the same over logship's whole process, interpreter start
included) and the CPU seconds per million lines of logship, memlogd and
rsyslog.  With ``--runs R`` the medians are reported too.  Needs rsyslogd
with imrelp (``tests/ensure_rsyslog.sh``) and the test extras (pytest, for
tests/rsyslog.py).  ``--py-spy FILE`` records logship's profile (py-spy must
be installed).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from bench.daemon import Daemon, start_daemon
from bench.precompile import precompile
from bench.query import QueryError, stats
from memlogd.client import open_log_stream

try:
    from tests.rsyslog import HOST, Rsyslog, unavailable_reason
except ImportError as exc:  # pragma: no cover - without the test extras
    raise SystemExit(f"bench.logship needs the test extras (tests/rsyslog.py): {exc}") from None

RING_SLACK = 1000  # ring entries beyond the load: memlogd's own events
WRITE_BYTES = 64 * 1024
FILL_TIMEOUT_S = 60.0
SHIP_TIMEOUT_S = 300.0
OUTPUT_NAME = "bench-messages.log"


class BenchError(RuntimeError):
    """A run could not be made (the message says why)."""


class BenchRsyslog(Rsyslog):
    """:class:`tests.rsyslog.Rsyslog` with an output that costs rsyslog less than
    the tests' JSON records: each message as ``RSYSLOG_SyslogProtocol23Format``.
    Same inputs (imrelp and imtcp on loopback), same Direct ruleset queue."""

    def command(self) -> list[str]:
        work = self.directory / "work"
        config = self.directory / "bench-rsyslog.conf"
        config.write_text(
            f'global(workDirectory="{work}" net.enableDNS="off")\n'
            'module(load="imrelp")\nmodule(load="imtcp")\n'
            'ruleset(name="bench_in" queue.type="Direct") {\n'
            f'  action(type="omfile" file="{self.directory / OUTPUT_NAME}"'
            ' template="RSYSLOG_SyslogProtocol23Format")\n}\n'
            f'input(type="imrelp" address="{HOST}" port="{self.relp_port}" ruleset="bench_in")\n'
            f'input(type="imtcp" address="{HOST}" port="{self.tcp_port}" ruleset="bench_in")\n'
        )
        return [self.exe, "-C", "-n", "-f", str(config), "-i", str(self.pid_path)]

    @property
    def written(self) -> int:
        try:
            with open(self.directory / OUTPUT_NAME, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0


@dataclass
class RunResult:
    lines: int  # entries delivered (the load and memlogd's own events)
    transfer_s: float
    wall_s: float
    lines_per_s: float
    wall_lines_per_s: float
    logship_cpu_s_per_m: float
    memlogd_cpu_s_per_m: float
    rsyslog_cpu_s_per_m: float
    written_by_rsyslog: int
    exit_status: int


def _cpu_s(pid: int) -> float:
    """utime + stime of a running process and its children (memlogd's worker)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_s(int(child)) for child in children)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fill(daemon: Daemon, lines: int, size: int) -> None:
    """Write ``lines`` lines of ``size`` bytes into memlogd; wait until it holds them."""
    if size < 16:
        raise BenchError("lines must be at least 16 bytes")
    with open_log_stream(daemon.log_path, "bench.ship") as stream:
        per_write = max(1, WRITE_BYTES // size)
        for start in range(0, lines, per_write):
            stop = min(lines, start + per_write)
            stream.sendall(
                b"".join(b"L%09d " % i + b"x" * (size - 12) + b"\n" for i in range(start, stop))
            )
    deadline = time.monotonic() + FILL_TIMEOUT_S
    while _held(daemon.query_path, "bench.ship") < lines:
        if time.monotonic() > deadline:
            raise BenchError(f"memlogd did not hold {lines} lines within {FILL_TIMEOUT_S:g} s")
        time.sleep(0.05)


def _held(query_path: str, source: str) -> int:
    """Entries of ``source`` memlogd holds (its statistics)."""
    try:
        held = stats(query_path)["sources"].get(source, {}).get("entries", 0)
    except (QueryError, OSError) as exc:
        raise BenchError(f"memlogd's statistics: {exc}") from None
    return int(held)


def _events(stderr: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            out.setdefault(str(event["event"]), event)
    return out


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def run_once(
    workdir: Path,
    *,
    lines: int,
    size: int,
    window: int,
    state_dir: Path | None = None,
    jsonf: bool = False,
    py_spy: str | None = None,
) -> RunResult:
    """One run (see the module docstring) in ``workdir``."""
    daemon = start_daemon(None, workdir, lines + RING_SLACK)
    rsyslog: Rsyslog | None = None
    state_file: Path | None = None
    try:
        fill(daemon, lines, size)
        rs_dir = workdir / f"rsyslog-{time.monotonic_ns()}"
        rs_dir.mkdir()
        rsyslog = Rsyslog(rs_dir) if jsonf else BenchRsyslog(rs_dir)
        rsyslog.start()
        assert rsyslog.proc is not None
        argv = [
            sys.executable,
            "-m",
            "logship",
            "-log-format",
            "json",
            "-socket",
            daemon.query_path,
            "-to",
            rsyslog.relp_url,
            "-window",
            str(window),
            "-once",
            "-timeout",
            str(SHIP_TIMEOUT_S),
        ]
        if state_dir is not None:
            state_file = state_dir / f"bench-logship-{os.getpid()}-{time.monotonic_ns()}.state"
            argv += ["-state-file", str(state_file)]
        if py_spy:
            venv_bin = os.path.dirname(sys.executable)  # pip installs it beside python
            spy = shutil.which("py-spy") or shutil.which("py-spy", path=venv_bin)
            if spy is None:
                raise BenchError("py-spy is not installed (pip install py-spy)")
            raw = ["-f", "raw"] if py_spy.endswith(".txt") else []  # FILE.txt: collapsed stacks
            argv = [spy, "record", "--idle", *raw, "-o", py_spy, "--", *argv]
        cpu_memlogd, cpu_rsyslog = _cpu_s(daemon.pid), _cpu_s(rsyslog.proc.pid)
        cpu_children = _children_cpu_s()
        start = time.perf_counter()
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=SHIP_TIMEOUT_S + 30, check=False
        )
        wall = time.perf_counter() - start
        cpu_logship = _children_cpu_s() - cpu_children
        cpu_memlogd = _cpu_s(daemon.pid) - cpu_memlogd
        cpu_rsyslog = _cpu_s(rsyslog.proc.pid) - cpu_rsyslog
        events = _events(proc.stderr)
        if proc.returncode != 0 or "stopped" not in events or "receiver_connected" not in events:
            raise BenchError(f"logship exited {proc.returncode}: {proc.stderr[-2000:]}")
        delivered = int(events["stopped"]["delivered"])
        transfer = _ts(events["stopped"]) - _ts(events["receiver_connected"])
        written = len(rsyslog.records()) if jsonf else getattr(rsyslog, "written", 0)
        per_m = 1e6 / max(1, delivered)
        return RunResult(
            lines=delivered,
            transfer_s=round(transfer, 3),
            wall_s=round(wall, 3),
            lines_per_s=round(delivered / max(transfer, 1e-9)),
            wall_lines_per_s=round(delivered / wall),
            logship_cpu_s_per_m=round(cpu_logship * per_m, 2),
            memlogd_cpu_s_per_m=round(cpu_memlogd * per_m, 2),
            rsyslog_cpu_s_per_m=round(cpu_rsyslog * per_m, 2),
            written_by_rsyslog=written,
            exit_status=proc.returncode,
        )
    finally:
        if state_file is not None:
            state_file.unlink(missing_ok=True)
        if rsyslog is not None:
            rsyslog.stop()
            rsyslog.kill()
        daemon.stop()


def bench_logship(
    *,
    lines: int = 200_000,
    size: int = 100,
    window: int = 128,
    runs: int = 3,
    state_dir: Path | None = None,
    jsonf: bool = False,
    py_spy: str | None = None,
) -> dict[str, Any]:
    """``runs`` runs; their results and medians (a JSON-ready dict)."""
    reason = unavailable_reason()
    if reason is not None:
        raise BenchError(reason)
    results: list[RunResult] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-ship-", dir="/tmp"))
    try:
        for _ in range(runs):
            result = run_once(
                workdir,
                lines=lines,
                size=size,
                window=window,
                state_dir=state_dir,
                jsonf=jsonf,
                py_spy=py_spy,
            )
            if result.written_by_rsyslog < result.lines:
                raise BenchError(
                    f"rsyslog wrote {result.written_by_rsyslog} of {result.lines} messages"
                )
            results.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    keys = ("lines_per_s", "wall_lines_per_s", "logship_cpu_s_per_m", "rsyslog_cpu_s_per_m")
    return {
        "load": {"lines": lines, "bytes": size, "window": window, "jsonf": jsonf},
        "state_file": None if state_dir is None else str(state_dir),
        "runs": [asdict(r) for r in results],
        "median": {k: statistics.median(getattr(r, k) for r in results) for k in keys},
    }


WIDE_WINDOW = 1024  # logship --window N also measured: the default (128) is librelp's


def measure_logship(runs: int = 3) -> dict[str, Any]:
    """``python -m bench --logship``: the medians of ``runs`` runs at the default
    load and window, and (``wide``) with ``--window 1024``; or ``{"skipped": why}``
    when rsyslog cannot run here."""
    try:
        report = bench_logship(runs=runs)
        wide = bench_logship(runs=runs, window=WIDE_WINDOW)
    except BenchError as exc:
        return {"skipped": str(exc)}
    return {
        **report["median"],
        "load": report["load"],
        "runs": len(report["runs"]),
        "wide": {**wide["median"], "window": WIDE_WINDOW},
    }


@click.command("bench.logship")
@click.option("--lines", type=click.IntRange(min=1), default=200_000, show_default=True)
@click.option("--bytes", "size", type=click.IntRange(min=16), default=100, show_default=True)
@click.option("--window", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Give logship a -state-file in this directory (tmpfs or disk: compare).",
)
@click.option("--jsonf", is_flag=True, help="rsyslog writes the tests' JSON records.")
@click.option(
    "--py-spy",
    metavar="FILE",
    help="Record logship's profile with py-spy: an SVG, or collapsed stacks for FILE.txt.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON only.")
@click.option(
    "--no-precompile",
    is_flag=True,
    help="Do not compile the project's modules to .pyc first (logship's CPU then "
    "includes compiling them at every start where PYTHONDONTWRITEBYTECODE is set).",
)
def main(
    lines: int,
    size: int,
    window: int,
    runs: int,
    state_dir: Path | None,
    jsonf: bool,
    py_spy: str | None,
    as_json: bool,
    no_precompile: bool,
) -> None:
    """Forwarding: logship -once over RELP from a full memlogd ring to a local rsyslog."""
    precompiled = None if no_precompile else precompile()
    try:
        report = bench_logship(
            lines=lines,
            size=size,
            window=window,
            runs=runs,
            state_dir=state_dir,
            jsonf=jsonf,
            py_spy=py_spy,
        )
    except BenchError as exc:
        raise click.ClickException(str(exc)) from None
    report["precompiled"] = precompiled
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"logship -once over RELP: {lines} x {size} B, window {window}, "
        f"state file {'in ' + str(state_dir) if state_dir else 'none'}, "
        f"rsyslog output {'jsonf' if jsonf else 'RSYSLOG_SyslogProtocol23Format'}"
    )
    click.echo(
        f"{'run':>3} {'lines/s':>9} {'wall/s':>9} {'logship':>8} {'memlogd':>8} {'rsyslog':>8}"
        "   (CPU s per million lines)"
    )
    for i, run in enumerate(report["runs"], 1):
        click.echo(
            f"{i:>3} {run['lines_per_s']:>9} {run['wall_lines_per_s']:>9} "
            f"{run['logship_cpu_s_per_m']:>8} {run['memlogd_cpu_s_per_m']:>8} "
            f"{run['rsyslog_cpu_s_per_m']:>8}"
        )
    median = report["median"]
    click.echo(
        f"median {median['lines_per_s']:.0f} lines/s (target >= 100000), "
        f"logship {median['logship_cpu_s_per_m']} CPU s per million lines"
    )


if __name__ == "__main__":
    main()
