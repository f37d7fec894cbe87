"""How the worker's restart time grows with the ring (BENCHMARKS.md, SPEC 17).

A new worker rebuilds the ring from the journal before it serves: this runs
our memlogd with rings of a few sizes, fills each, kills the worker a few
times and prints the median time from the SIGKILL to a stats query answered
by the new worker, and the time per entry held.

    python -m bench.restart_by_ring                      # 1k .. 200k entries
    python -m bench.restart_by_ring -n 10000 -n 100000 --kills 3
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from bench.measures import measure_restart

SIZES = (1_000, 10_000, 50_000, 100_000, 200_000)


@click.command()
@click.option(
    "-n",
    "--entries",
    "sizes",
    type=click.IntRange(min=1),
    multiple=True,
    default=SIZES,
    show_default=True,
    help="Ring sizes (-max-lines), each filled to the brim (repeatable).",
)
@click.option("--kills", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--line-bytes", type=click.IntRange(min=20), default=100, show_default=True)
def main(sizes: tuple[int, ...], kills: int, line_bytes: int) -> None:
    """Worker restart time (SIGKILL -> a query answered) against the ring's size."""
    click.echo("| entries in the ring | restart ms (median) | all kills, ms | us per entry |")
    click.echo("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rr-", dir="/tmp") as tmp:
        for size in sizes:
            result = measure_restart(Path(tmp), kills, size, size, line_bytes)
            entries = result.get("ring_entries") or size
            ms = result["restart_ms"]
            per = f"{ms * 1000 / entries:.2f}" if ms is not None else "-"
            every = ", ".join(f"{t:.1f}" for t in result["restart_ms_all"])
            click.echo(f"| {entries:,} | {ms:.1f} | {every} | {per} |")


if __name__ == "__main__":
    main()
