"""``python -m bench``: the command line (see docs/bench.md)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bench import measures, stack
from bench.configs import CONFIGS, UPSTREAM, Load, LoadError, custom_load
from bench.daemon import DaemonError, check_template, start_daemon
from bench.load import LoadRunError, run_load
from bench.precompile import precompile
from bench.query import QueryError
from bench.report import combine, problems_of, render_table, summarise, targets_of

DEFAULT_OUTPUT = "bench-results/latest.json"
STARTS = 10  # daemon starts whose median is the boot time
KILLS = 5  # worker kills whose median is the restart time


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


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_section(
    results: dict[str, Any],
    name: str,
    measure: Callable[[], dict[str, Any]],
    into: dict[str, Any] | None = None,
    label: str | None = None,
) -> None:
    """One measurement: its figures (in ``into[name]``, by default
    ``results[name]``), or its error (reported, and the exit status is 1, but
    the other figures are kept)."""
    try:
        (results if into is None else into)[name] = measure()
    except (DaemonError, LoadRunError, QueryError, OSError) as exc:
        results.setdefault("errors", {})[label or name] = str(exc)
        _say(f"{label or name}: {exc}")


def run_configs(
    results: dict[str, Any],
    loads: list[Load],
    template: str | None,
    workdir: Path,
    repeat: int,
    timeout_s: float,
) -> None:
    """Every load; with several, one that fails is reported and the others go on."""
    configs: dict[str, Any] = results["configs"]
    if len(loads) == 1:  # its failure is the run's: exit 1 at once
        configs[loads[0].name] = run_config(loads[0], template, workdir, repeat, timeout_s)
        return
    for load in loads:

        def measure(load: Load = load) -> dict[str, Any]:
            return run_config(load, template, workdir, repeat, timeout_s)

        run_section(results, load.name, measure, into=configs, label=f"config {load.name}")


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
@click.option(
    "--no-memory",
    is_flag=True,
    help="Skip every figure that is not per config: boot, memory, restart, stack.",
)
@click.option(
    "--no-configs", is_flag=True, help="Skip the loads: only boot, memory, restart, stack."
)
@click.option("--no-boot", is_flag=True, help="Skip the boot times.")
@click.option("--no-restart", is_flag=True, help="Skip the worker restart time.")
@click.option("--no-stack", is_flag=True, help="Skip the whole stack's memory.")
@click.option(
    "--no-separate", is_flag=True, help="Skip the stack as separate programs (for comparison)."
)
@click.option(
    "--starts",
    type=click.IntRange(min=1),
    default=STARTS,
    show_default=True,
    help="Daemon starts whose median is the boot time.",
)
@click.option(
    "--kills",
    type=click.IntRange(min=1),
    default=KILLS,
    show_default=True,
    help="Worker kills whose median is the restart time.",
)
@click.option(
    "--stack-lines",
    type=click.IntRange(min=1),
    default=stack.STACK_LINES,
    show_default=True,
    help="Lines of ~100 bytes written to the whole stack.",
)
@click.option(
    "--logship",
    "with_logship",
    is_flag=True,
    help="Also measure logship --once over RELP to a local rsyslog (bench/logship.py).",
)
@click.option(
    "--directory",
    "with_directory",
    is_flag=True,
    help="Also measure logread -D over 1 M lines in 100 files (bench/directory.py).",
)
@click.option(
    "--no-precompile",
    is_flag=True,
    help="Do not compile the project's modules to .pyc before measuring.",
)
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
    no_configs: bool,
    no_boot: bool,
    no_restart: bool,
    no_stack: bool,
    no_separate: bool,
    starts: int,
    kills: int,
    stack_lines: int,
    with_logship: bool,
    with_directory: bool,
    no_precompile: bool,
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
        "bench": 2,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_average": {"start": load_average()},
        "daemon": template or "python -m memlogd (this checkout)",
        "configs": {},
    }
    try:
        if not no_precompile:
            results["precompiled"] = pre = precompile()
            if not pre["ok"]:
                _say(f"compileall failed: {pre['output']}")
        if not no_configs:
            run_configs(results, loads, template, workdir, repeat, timeout_s)
        if not no_memory:
            run_independent(
                results, template, workdir, starts, kills, no_boot, no_restart, no_stack,
                no_separate, stack_lines,
            )  # fmt: skip
        if with_logship:
            _say("logship --once over RELP to a local rsyslog")
            run_section(results, "logship", _measure_logship)
        if with_directory:
            _say("logread -D: 1 M lines in 100 files, all and --since the last tenth")
            run_section(results, "directory", _measure_directory)
    except (DaemonError, LoadRunError) as exc:
        click.echo(f"bench: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average"]["end"] = load_average()
    results["targets"] = targets_of(results)
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
    if results.get("errors"):
        sys.exit(1)


def run_independent(
    results: dict[str, Any],
    template: str | None,
    workdir: Path,
    starts: int,
    kills: int,
    no_boot: bool,
    no_restart: bool,
    no_stack: bool,
    no_separate: bool,
    stack_lines: int,
) -> None:
    """Boot, memory, worker restart and the whole stack (the last two: only for
    our memlogd)."""
    if not no_boot:
        _say(f"boot: {starts} starts (+1 not counted)")
        run_section(results, "boot", lambda: measures.measure_boot(template, workdir, starts))
    _say("memory: idle, and with a full ring of 1 KB lines")
    run_section(results, "memory", lambda: measures.measure_memory(template, workdir))
    if not no_restart:
        if template is None:
            _say(f"worker restart: {kills} kills")
            run_section(results, "restart", lambda: measures.measure_restart(workdir, kills))
        else:
            results["restart"] = {"skipped": "only for our memlogd (its keeper)"}
    if not no_stack:
        if template is None:
            _say(f"whole stack: idle, then {stack_lines:,} lines")
            run_section(
                results,
                "stack",
                lambda: stack.measure_stack(workdir, stack_lines, separate=not no_separate),
            )
        else:
            results["stack"] = {"skipped": "only for our memlogd (-persist-dir, -kmsg, -ship-to)"}


def _measure_directory() -> dict[str, Any]:
    from bench.directory import Layout, measure

    return measure(Layout(), runs=3)


def _measure_logship() -> dict[str, Any]:
    try:  # needs the test extras (tests/rsyslog.py starts the rsyslog)
        from bench.logship import measure_logship
    except SystemExit as exc:
        return {"skipped": str(exc)}
    return measure_logship()
