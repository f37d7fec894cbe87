"""The ring's eviction cost per dropped block, by number of sources (SPEC 14).

``python -m bench.evict``: a full ring of ``-max-lines 5000`` takes batches
from S sources in turn (S = 1, 50, 500; each batch one block of L lines of
100 bytes) while each append makes room, under the ``fair`` and ``oldest``
policies; the figure is the time per appended block (the append, and the
eviction of about one block) over the encode-free path: blocks are made
beforehand, so only the ring's work is timed.  Policies alternate run by run
and the median is reported.
"""

from __future__ import annotations

import gc
import json
import statistics
import time

import click

from memlogd.daemon.encoding import encode_block
from memlogd.daemon.lines import Lines
from memlogd.daemon.ring import Block, Ring

LINE = b"x" * 99


def blocks(sources: int, count: int, lines: int) -> list[Block]:
    out = []
    for i in range(count):
        batch = Lines.of([LINE] * lines)
        out.append(encode_block(i, f"svc{i % sources}", batch))
    return out


def per_block_us(policy: str, sources: int, lines: int, appends: int) -> float:
    """Microseconds per appended block once the ring is full."""
    ring = Ring(5000, policy=policy)
    fill = blocks(sources, 2 * 5000 // lines + sources, lines)
    for block in fill:
        ring.extend(block)
    work = blocks(sources, appends, lines)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for block in work:
            ring.extend(block)
        took = time.perf_counter() - start
    finally:
        gc.enable()
    return took / appends * 1e6


@click.command()
@click.option("--sources", "-s", multiple=True, type=int, default=(1, 50, 500), show_default=True)
@click.option("--lines", type=int, default=1, show_default=True, help="Lines per block.")
@click.option("--appends", type=int, default=100_000, show_default=True)
@click.option("--repeat", type=int, default=5, show_default=True)
def main(sources: tuple[int, ...], lines: int, appends: int, repeat: int) -> None:
    """Time per appended block (append + eviction) for each policy."""
    results: dict[str, dict[str, float]] = {}
    for n in sources:
        runs: dict[str, list[float]] = {"fair": [], "oldest": []}
        for r in range(repeat):
            order = ("fair", "oldest") if r % 2 == 0 else ("oldest", "fair")
            for policy in order:
                runs[policy].append(per_block_us(policy, n, lines, appends))
        results[str(n)] = {p: round(statistics.median(v), 3) for p, v in runs.items()}
        click.echo(
            f"{n:>4} sources, {lines} line(s) a block: "
            f"fair {results[str(n)]['fair']:.2f} us, oldest {results[str(n)]['oldest']:.2f} us"
            " per block appended and evicted",
            err=True,
        )
    click.echo(json.dumps(results))


if __name__ == "__main__":
    main()
