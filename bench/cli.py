"""``python -m bench``: the command line (see docs/bench.md)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench import procfs
from bench.configs import CONFIGS, DEFAULT_MAX_LINES, UPSTREAM, Load, LoadError, custom_load
from bench.daemon import DaemonError, check_template, start_daemon
from bench.load import LoadRunError, fill_ring, run_load
from bench.report import combine, problems_of, render_table, summarise

DEFAULT_OUTPUT = "bench-results/latest.json"
STARTUPS = 5  # daemon starts whose median is the startup time
FULL_RING_LINE_BYTES = 1000
FILL_TIMEOUT_S = 60.0


def _say(text: str) -> None:
    click.echo(f"bench: {text}", err=True)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def choose_loads(
    configs: tuple[str, ...], run_all: bool, overrides: dict[str, int | None]
) -> list[Load]:
    names = list(CONFIGS) if run_all else list(dict.fromkeys(configs))
    if not names:
        if any(v is not None for v in overrides.values()):
            return [custom_load(None, **overrides)]
        names = list(CONFIGS)
    return [custom_load(CONFIGS[n], **overrides) for n in names]


def run_config(
    load: Load, template: str | None, workdir: Path, repeat: int, timeout_s: float
) -> dict[str, Any]:
    summaries = []
    for i in range(repeat):
        _say(f"config {load.name}: {load.describe()}, {load.followers} follower(s), run {i + 1}")
        daemon = start_daemon(template, workdir, load.max_lines)
        try:
            raw = run_load(load, daemon, timeout_s)
        finally:
            daemon.stop()
        summaries.append(summarise(load, raw))
    summary = combine(summaries)
    return {
        "load": {
            "writers": load.writers,
            "lines": load.lines,
            "bytes": load.line_bytes,
            "followers": load.followers,
            "max_lines": load.max_lines,
        },
        "load_text": load.describe(),
        "summary": summary,
        "problems": problems_of(load, summary),
        "runs": summaries,
        "upstream": _upstream(load.name),
    }


def _upstream(name: str) -> dict[str, Any] | None:
    up = UPSTREAM.get(name)
    if up is None:
        return None
    return {
        "offered_lines_per_s": up.offered,
        "delivered_lines_per_s": up.delivered,
        "lost_fraction": up.lost_fraction,
        "latency_p50_ms": up.p50_ms,
        "latency_p99_ms": up.p99_ms,
        "daemon_peak_rss_mb": up.peak_rss_mb,
        "ingest_lines_per_s": up.ingest,
    }


def measure_memory(template: str | None, workdir: Path) -> dict[str, Any]:
    """Startup time (median of several), idle RSS, RSS with a full default ring."""
    _say(f"startup x{STARTUPS}, idle RSS, full ring of 1 KB lines")
    startups = []
    idle = None
    for _ in range(STARTUPS):
        daemon = start_daemon(template, workdir, DEFAULT_MAX_LINES)
        try:
            startups.append(daemon.startup_s * 1000)
            if idle is None:
                idle = procfs.rss_kib(daemon.pid)
        finally:
            daemon.stop()
    daemon = start_daemon(template, workdir, DEFAULT_MAX_LINES)
    try:
        lines = DEFAULT_MAX_LINES + DEFAULT_MAX_LINES // 5  # overwrite the oldest too
        if not fill_ring(daemon, lines, FULL_RING_LINE_BYTES, FILL_TIMEOUT_S):
            raise LoadRunError("the daemon did not read the ring-filling lines in time")
        rss = procfs.rss_kib(daemon.pid)
        peak = procfs.peak_rss_kib(daemon.pid)
    finally:
        daemon.stop()
    return {
        "startup_ms": statistics.median(startups),
        "startup_ms_all": startups,
        "idle_rss_kib": idle,
        "ring_lines": DEFAULT_MAX_LINES,
        "lines_written": lines,
        "line_bytes": FULL_RING_LINE_BYTES,
        "full_ring_rss_kib": rss,
        "full_ring_peak_rss_kib": peak,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "configs",
    type=click.Choice(sorted(CONFIGS)),
    multiple=True,
    help="A load of BENCHMARKS.md (repeatable). Default: all of them.",
)
@click.option("--all", "run_all", is_flag=True, help="Run configs a-f.")
@click.option("--writers", type=int, default=None, help="Writer processes (overrides the config).")
@click.option("--lines", type=int, default=None, help="Lines per writer.")
@click.option(
    "--bytes", "line_bytes", type=int, default=None, help="Bytes per line, newline included."
)
@click.option("--followers", type=int, default=None, help="Followers (query mode 1).")
@click.option("--max-lines", type=int, default=None, help="The daemon's ring size (-max-lines).")
@click.option(
    "--daemon",
    "template",
    default=None,
    metavar="'CMD {log} {query}'",
    help="Benchmark this command instead of our memlogd ({max_lines} is replaced too).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs per config; the report gives medians (and the worst loss).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Hard deadline of one run, in seconds.",
)
@click.option("--no-memory", is_flag=True, help="Skip startup time, idle and full-ring RSS.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="Where the JSON report is written.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the JSON report on stdout (table on stderr)."
)
def main(
    configs: tuple[str, ...],
    run_all: bool,
    writers: int | None,
    lines: int | None,
    line_bytes: int | None,
    followers: int | None,
    max_lines: int | None,
    template: str | None,
    repeat: int,
    timeout_s: float,
    no_memory: bool,
    output: str,
    as_json: bool,
) -> None:
    """Benchmark memlogd: writers -> daemon -> followers; report as JSON and a table."""
    overrides = {
        "writers": writers,
        "lines": lines,
        "line_bytes": line_bytes,
        "followers": followers,
        "max_lines": max_lines,
    }
    try:
        loads = choose_loads(configs, run_all, overrides)
        if template is not None:
            check_template(template)
    except (LoadError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    workdir = Path(tempfile.mkdtemp(prefix="mlb-", dir="/tmp"))
    results: dict[str, Any] = {
        "bench": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "daemon": template or "python -m memlogd (this checkout)",
        "configs": {},
    }
    try:
        for load in loads:
            results["configs"][load.name] = run_config(load, template, workdir, repeat, timeout_s)
        if not no_memory:
            results["memory"] = measure_memory(template, workdir)
    except (DaemonError, LoadRunError) as exc:
        click.echo(f"bench: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(results, indent=1)
    out = Path(output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    except OSError as exc:
        click.echo(f"bench: cannot write {output}: {exc.strerror}", err=True)
        sys.exit(1)
    click.echo(render_table(results), err=as_json)
    if as_json:
        click.echo(text)
    else:
        click.echo(f"(JSON report in {output})")
