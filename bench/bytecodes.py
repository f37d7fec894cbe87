"""Bytecodes a line that the ring and the journal execute: a count, not a time.

``python -m bench.bytecodes``: each config's writers' lines are read as the
daemon reads them (the writers in turn, one read of up to 64 KiB each, cut
into lines by the daemon's own :class:`~memlogd.daemon.framing.LineSplitter`,
with memlogd's own event when a source opens and when it closes), then
appended to a ``LogState`` with a journal (``-max-lines`` of the config, no
follower) under ``-evict fair`` and ``-evict oldest``.  The figure is the
Python bytecodes executed per line (``sys.settrace`` with opcode events,
counted per function): the same on every run and every machine (but for
the time's text, made once a second), so a change
to the ring or the journal shows its effect at once, where the daemon's CPU
per line moves by 10-20% from run to run on a shared machine (BENCHMARKS.md,
"The fair ring", round 5).  C code (encoding, copies, searches) is one
bytecode a call: this measures the Python work only, beside the daemon's CPU.

``--replay POLICY`` only appends the first config's batches, untraced, for a
counter of machine instructions that sees the C work too (BENCHMARKS.md,
"The fair ring", round 9): ``valgrind --tool=cachegrind --cache-sim=no
python -m bench.bytecodes --config b --replay fair``, less the same with
``--replay none`` (the start, the imports and the batches made).
"""

from __future__ import annotations

import gc
import json
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from bench.configs import CONFIGS, Load
from bench.record import Batches, BatchFileError, read_batches
from memlogd.config import READ_CHUNK, DaemonConfig
from memlogd.daemon.framing import LineSplitter
from memlogd.daemon.journal import Journal, capacity_for, new_header
from memlogd.daemon.lines import Lines
from memlogd.daemon.state import LogState


def reads(load: Load, read: int = READ_CHUNK) -> Iterator[tuple[str, Lines]]:
    """The batches a daemon reads from the load's writers, in turn, and the
    events of their sources opening and closing."""
    streams = {
        f"w{w}": b"".join(
            b"%03d %08d " % (w, i) + b"x" * (load.line_bytes - 14) + b"\n"
            for i in range(load.lines)
        )
        for w in range(load.writers)
    }
    splitters = {name: LineSplitter() for name in streams}
    for name in streams:
        yield "memlogd", Lines.of([b'source_opened source="%s"' % name.encode()])
    at = 0
    while streams:
        for name in list(streams):
            chunk = streams[name][at : at + read]
            if not chunk:
                del streams[name]
                yield "memlogd", Lines.of([b'source_closed source="%s"' % name.encode()])
                continue
            lines = splitters[name].feed(chunk)
            if lines:
                yield name, lines
        at += read


def new_state(load: Load, policy: str) -> LogState:
    """A ``LogState`` with a journal, as the daemon's (no follower)."""
    config = DaemonConfig(max_lines=load.max_lines, evict=policy)
    size = capacity_for(config.max_lines, config.max_line_len)
    buf = bytearray(size)
    header = new_header(size, str(uuid.uuid4()))
    buf[: len(header)] = header
    return LogState(config, str(uuid.uuid4()), journal=Journal(memoryview(buf)))


def replay(load: Load, policy: str | None, batches: Batches | None = None) -> int:
    """The load's batches (or ``batches``: bench.record's) appended without
    tracing (``policy`` None: only read, for the run that a CPU counter
    subtracts); returns the lines."""
    if batches is None:
        batches = list(reads(load))
    if policy is None:
        return 0
    state = new_state(load, policy)
    gc.collect()
    return sum(state.append(source, batch) for source, batch in batches)


def count(load: Load, policy: str, batches: Batches | None = None) -> tuple[int, Counter[str]]:
    """Lines appended (the load's, or ``batches``: bench.record's), and the
    bytecodes each function executed appending them."""
    state = new_state(load, policy)
    if batches is None:
        batches = list(reads(load))
    ops: Counter[str] = Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        name = frame.f_code.co_filename.rsplit("/", 1)[-1] + ":" + frame.f_code.co_name

        def opcodes(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                ops[name] += 1
            return opcodes

        return opcodes

    lines = 0
    gc.collect()
    gc.disable()  # (a collection's callbacks would be counted, when it happens)
    sys.settrace(trace)
    try:
        for source, batch in batches:
            lines += state.append(source, batch)
    finally:
        sys.settrace(None)
        gc.enable()
    return lines, ops


@click.command()
@click.option(
    "--config",
    "configs",
    multiple=True,
    type=click.Choice(sorted(CONFIGS)),
    default=("a", "b", "c", "e"),
    show_default=True,
    help="A load of BENCHMARKS.md (repeatable).",
)
@click.option("--top", type=int, default=8, show_default=True, help="Functions listed a policy.")
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as JSON.")
@click.option(
    "--replay",
    "replay_policy",
    type=click.Choice(["fair", "oldest", "none"]),
    help="Only append the first config's batches under this policy, untraced "
    "(none: only make them), for a CPU counter: valgrind --tool=cachegrind.",
)
@click.option(
    "--batches",
    "batches_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Append the batches a daemon's run appended (python -m bench.record), "
    "not the config's writers' lines: with the first config's -max-lines.",
)
def main(
    configs: tuple[str, ...],
    top: int,
    as_json: bool,
    replay_policy: str | None,
    batches_file: str | None,
) -> None:
    """Bytecodes a line of the ring and the journal, fair against oldest."""
    batches = None
    if batches_file is not None:
        try:
            batches = read_batches(batches_file)
        except BatchFileError as e:
            raise click.ClickException(f"{batches_file}: {e}") from None
        configs = configs[:1]
    if replay_policy is not None:
        policy = None if replay_policy == "none" else replay_policy
        lines = replay(CONFIGS[configs[0]], policy, batches)
        click.echo(f"{configs[0]} {replay_policy}: {lines} lines appended")
        return
    report: dict[str, dict[str, float]] = {}
    for name in configs:
        load = CONFIGS[name]
        report[name] = {}
        for policy in ("fair", "oldest"):
            lines, ops = count(load, policy, batches)
            per_line = sum(ops.values()) / lines
            report[name][policy] = round(per_line, 2)
            what = load.describe() if batches is None else f"{len(batches)} recorded batches"
            click.echo(f"{name} ({what}) {policy}: {per_line:.2f} bytecodes a line")
            for function, n in ops.most_common(top):
                click.echo(f"    {n / lines:7.3f}  {function}")
        fair, oldest = report[name]["fair"], report[name]["oldest"]
        click.echo(f"{name}: fair / oldest {fair / oldest:.2f}")
    if as_json:
        click.echo(json.dumps(report))


if __name__ == "__main__":
    main()
