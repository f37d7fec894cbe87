"""``python -m bench.directory``: ``logread -D`` reading speed (BENCHMARKS.md,
"logread -D").

One run:

1. writes a log directory as logwrite writes it (``--time-format
   rfc3339nano``, :class:`logwrite.lines.LineFormatter`): SOURCES sources, each
   with ROTATIONS files (``NAME.log.(R-2)`` ... ``NAME.log.0``, ``NAME.log``)
   of LINES_PER_FILE lines of about BYTES bytes; the sources' lines interleave
   in time (one line every microsecond, round robin over the sources), as a
   ring's do;
2. runs ``python -m logread -D DIR`` with stdout to ``/dev/null`` (the whole
   merge, every line rendered), then with ``--since`` at the start of the
   last tenth of the lines (so nine files in ten are skipped unread), and
   checks what each printed by counting its lines once (a separate run to a
   pipe, not timed).

Reported per case: ``wall_s`` of the whole process (interpreter start
included), ``lines_per_s`` (lines shown / wall_s) and ``max_rss_kib``; the
``since_speedup`` is the plain run's wall time over the ``--since`` one
(``_cpu``: CPU time; ``_cpu_net``: less the ``start_up`` case's, ``logread
-D`` of an empty directory, which both pay).  With
``--runs R`` the median of R runs is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from logwrite.lines import LineFormatter, TimeFormat
from memlogd.wire.logdir import log_file_name, safe_log_name
from memlogd.wire.timefmt import format_time

START_NS = 1_796_000_000_000_000_000  # 2026-11-29
STEP_NS = 1_000  # one line every microsecond, round robin over the sources


@dataclass(frozen=True)
class Layout:
    sources: int = 10
    rotations: int = 10  # files per source, the live one included
    lines_per_file: int = 10_000
    line_bytes: int = 100

    @property
    def lines(self) -> int:
        return self.sources * self.rotations * self.lines_per_file


def write_directory(path: Path, layout: Layout) -> int:
    """The log directory of ``layout`` in ``path``; the time of the first line of
    the last tenth (for ``--since``)."""
    formatter = LineFormatter(TimeFormat.RFC3339NANO)
    names = [f"service-{i}" + (".out" if i % 2 else "") for i in range(layout.sources)]
    per_source = layout.rotations * layout.lines_per_file
    for s, source in enumerate(names):
        stem = safe_log_name(source)
        head = formatter.line(START_NS, source, "")
        pad = "x" * max(1, layout.line_bytes - len(head) - 12)
        for r in range(layout.rotations):
            index = layout.rotations - 2 - r  # oldest first; the last one is NAME.log
            name = log_file_name(stem, None if index < 0 else index)
            chunk = []
            for k in range(layout.lines_per_file):
                n = r * layout.lines_per_file + k
                time_ns = START_NS + (n * layout.sources + s) * STEP_NS
                chunk.append(formatter.line(time_ns, source, f"line {n:07d} {pad}"))
            (path / name).write_bytes(b"".join(chunk))
    tenth = per_source * 9 // 10
    return START_NS + tenth * layout.sources * STEP_NS


@dataclass
class Case:
    name: str
    lines_shown: int
    wall_s: float
    lines_per_s: float  # lines shown / wall_s
    cpu_s: float  # logread's user + system CPU
    lines_per_cpu_s: float  # what an idle machine's wall clock would show
    max_rss_kib: int


def _run_logread(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) of one ``logread`` run to
    /dev/null (the child's own, from ``wait4``)."""
    cmd = [sys.executable, "-m", "logread", *args]
    with open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with status {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _count(args: list[str]) -> int:
    """The lines ``logread`` prints, counted as they come (never held: a forked
    child's peak RSS counts its parent's pages at the fork)."""
    cmd = [sys.executable, "-m", "logread", *args]
    count = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1 << 20):
            count += chunk.count(b"\n")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with status {proc.returncode}")
    return count


def measure(layout: Layout, runs: int, keep: Path | None = None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-dir-")) if keep is None else keep
    empty = Path(tempfile.mkdtemp(prefix="bench-dir-empty-"))  # logread -D's start-up
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        since_ns = write_directory(tmp, layout)
        cases = {
            "all": ["-D", str(tmp)],
            "since_last_tenth": ["-D", str(tmp), "--since", format_time(since_ns)],
            "start_up": ["-D", str(empty)],  # interpreter and imports only
        }
        results: dict[str, Case] = {}
        for name, args in cases.items():
            shown = _count(args)
            walls, cpus, rss = [], [], 0
            for _ in range(runs):
                wall, cpu, peak = _run_logread(args)
                walls.append(wall)
                cpus.append(cpu)
                rss = max(rss, peak)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            results[name] = Case(
                name, shown, round(wall, 3), round(shown / wall), round(cpu, 3),
                round(shown / cpu) if cpu else 0, rss,
            )  # fmt: skip
        expected = layout.lines
        if results["all"].lines_shown != expected:
            shown = results["all"].lines_shown
            raise SystemExit(f"logread -D showed {shown} lines, not {expected}")
        return {
            "layout": asdict(layout),
            "cases": {name: asdict(case) for name, case in results.items()},
            "since_speedup": round(results["all"].wall_s / results["since_last_tenth"].wall_s, 2),
            "since_speedup_cpu": round(results["all"].cpu_s / results["since_last_tenth"].cpu_s, 2),
            # without the start-up both pay: what skipping the files saves
            "since_speedup_cpu_net": round(
                (results["all"].cpu_s - results["start_up"].cpu_s)
                / max(1e-3, results["since_last_tenth"].cpu_s - results["start_up"].cpu_s),
                2,
            ),
            "load_average": os.getloadavg()[0],
        }
    finally:
        empty.rmdir()
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


@click.command()
@click.option("--sources", default=10, show_default=True, help="Sources (files per rotation).")
@click.option("--rotations", default=10, show_default=True, help="Files per source.")
@click.option("--lines-per-file", default=10_000, show_default=True, help="Lines per file.")
@click.option("--bytes", "line_bytes", default=100, show_default=True, help="Bytes per line.")
@click.option("--runs", default=3, show_default=True, help="Runs per case (median reported).")
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Write DIR here.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only.")
def main(
    sources: int,
    rotations: int,
    lines_per_file: int,
    line_bytes: int,
    runs: int,
    keep: Path | None,
    as_json: bool,
) -> None:
    """Measure ``logread -D`` over a directory of logwrite's files."""
    layout = Layout(sources, rotations, lines_per_file, line_bytes)
    result = measure(layout, runs, keep)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"logread -D: {layout.lines} lines in {sources * rotations} files")
    click.echo(
        f"{'case':<18} {'shown':>9} {'wall s':>8} {'lines/s':>10} {'cpu s':>7} "
        f"{'lines/cpu s':>12} {'rss KiB':>9}"
    )
    for case in result["cases"].values():
        click.echo(
            f"{case['name']:<18} {case['lines_shown']:>9} {case['wall_s']:>8.3f} "
            f"{case['lines_per_s']:>10} {case['cpu_s']:>7.3f} {case['lines_per_cpu_s']:>12} "
            f"{case['max_rss_kib']:>9}"
        )
    click.echo(
        f"--since speed-up: {result['since_speedup']}x (wall), "
        f"{result['since_speedup_cpu']}x (CPU), {result['since_speedup_cpu_net']}x "
        f"(CPU without the start-up); load average {result['load_average']:.2f}"
    )
    click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
