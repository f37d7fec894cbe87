"""How the worker's restart time grows with the ring (BENCHMARKS.md, SPEC 17).

A new worker rebuilds the ring from the journal before it serves: this runs
our memlogd with rings of a few sizes, fills each, kills the worker a few
times and prints the median time from the SIGKILL to a stats query answered
by the new worker, and the time per entry held.

    python -m bench.restart_by_ring                      # 1k .. 200k entries
    python -m bench.restart_by_ring -n 10000 -n 100000 --kills 3
    python -m bench.restart_by_ring --in-process         # the replay alone, CPU time

``--in-process`` builds a journal here (batches of ``--batch`` lines, as the
intake appends them) and times, in CPU seconds, what a new worker does with
it before it serves: opening the journal (one walk of its records), and the
replay (a second walk, each batch encoded to JSON again and put in a ring).
"""

from __future__ import annotations

import tempfile
import time
import uuid
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
@click.option("--in-process", is_flag=True, help="Time the replay alone, in this process.")
@click.option(
    "--batch", type=click.IntRange(min=1), default=600, show_default=True, help="Lines a batch."
)
def main(sizes: tuple[int, ...], kills: int, line_bytes: int, in_process: bool, batch: int) -> None:
    """Worker restart time (SIGKILL -> a query answered) against the ring's size."""
    if in_process:
        replay_times(sizes, line_bytes, batch)
        return
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


def replay_times(sizes: tuple[int, ...], line_bytes: int, batch: int) -> None:
    from memlogd.config import DaemonConfig
    from memlogd.daemon.journal import Journal, capacity_for, new_header
    from memlogd.daemon.worker import replay

    click.echo("| entries | open ms | replay ms | total ms | us per entry |")
    click.echo("|---|---|---|---|---|")
    for size in sizes:
        config = DaemonConfig(max_lines=size)
        capacity = capacity_for(size, config.max_line_len)
        buf = bytearray(capacity)
        buf[:4096] = new_header(capacity, str(uuid.uuid4())).ljust(4096, b"\0")
        journal = Journal(memoryview(buf))
        line = b"x" * (line_bytes - 1)
        for first in range(1, size + 1, batch):
            count = min(batch, size + 1 - first)
            journal.append(
                first, time.time_ns(), "bench.fill", [b"\n".join([line] * count)], count, 0
            )
        start = time.process_time()
        reopened = Journal(memoryview(buf))
        opened = time.process_time()
        ring = replay(reopened, config)
        done = time.process_time()
        assert ring.next_seq == size + 1
        total = done - start
        click.echo(
            f"| {size:,} | {(opened - start) * 1000:.1f} | {(done - opened) * 1000:.1f} "
            f"| {total * 1000:.1f} | {total * 1e6 / size:.2f} |"
        )


if __name__ == "__main__":
    main()
