"""Record the batches a daemon's worker appends, for ``bench.bytecodes --batches``.

    python -m bench --no-memory --config b --daemon \\
        'python -m bench.record /tmp/b.batches -socket-log {log} -socket-query {query} \\
         -max-lines {max_lines} --no-console --ready-fd {ready_fd} -evict fair'
    python -m bench.bytecodes --config b --batches /tmp/b.batches

``python -m bench.record FILE ARGS...`` runs memlogd with ``ARGS`` and, as
its worker ends, writes to ``FILE`` every batch the worker appended to the
ring (``LogState.append``: the source, and the lines as read), in order.
The writers, the intake and the follower decide a daemon's batches: which
sources write in turn, how much each read takes, memlogd's own events; a
replay of the batches of a real run is the load a change of the ring or the
journal meets in the daemon (BENCHMARKS.md, "The fair ring", round 10: a
journal cost the synthetic batches of ``bench.bytecodes`` never met).

The file is the batches one after another, each a header (``HEADER``: the
lengths of the source's name, of the head and of the body, where the lines
stop in the body, and whether the daemon knew where each line ends) and
those bytes.  :func:`encode` and :func:`decode` do no I/O.
"""

from __future__ import annotations

import os
import runpy
import struct
import sys
from collections.abc import Iterator
from typing import Any

import click

from memlogd.daemon.lines import Lines

HEADER = struct.Struct("<BIIII")  # ends known, name, head, body, stop

Batches = list[tuple[str, Lines]]  # each batch's source and lines, in order


class BatchFileError(ValueError):
    """A batches file that is not one bench.record wrote."""


def encode(source: str, lines: Lines) -> bytes:
    """One batch, as the file holds it."""
    name = source.encode("utf-8", "surrogateescape")
    known = lines.known_ends is not None
    head = HEADER.pack(known, len(name), len(lines.head), len(lines.body), lines.stop)
    return b"".join((head, name, lines.head, lines.body))


def decode(data: bytes) -> Iterator[tuple[str, Lines]]:
    """The batches of a file's bytes, in order."""
    at = 0
    while at < len(data):
        if len(data) - at < HEADER.size:
            raise BatchFileError(f"a batch header is cut short at byte {at}")
        known, name_len, head_len, body_len, stop = HEADER.unpack_from(data, at)
        at += HEADER.size
        end = at + name_len + head_len + body_len
        if known > 1 or end > len(data) or stop > body_len:
            raise BatchFileError(f"a batch at byte {at - HEADER.size} is damaged")
        name = data[at : at + name_len].decode("utf-8", "surrogateescape")
        head = data[at + name_len : at + name_len + head_len]
        body = data[at + name_len + head_len : end]
        ends = Lines(head, body, stop, None).ends if known else None  # (as the daemon had it)
        yield name, Lines(head, body, stop, ends)
        at = end


def read_batches(path: str) -> Batches:
    with open(path, "rb") as f:
        return list(decode(f.read()))


def _recording(path: str) -> None:
    """Make the worker keep each batch it appends, and write them as it ends."""
    from memlogd.daemon import worker
    from memlogd.daemon.state import LogState, SourceInfo

    kept: list[bytes] = []
    append = LogState.append

    def recorded(self: LogState, source: str, lines: Lines, info: SourceInfo | None = None) -> int:
        kept.append(encode(source, lines))
        return append(self, source, lines, info)

    run_worker = worker.run_worker

    def run(*args: Any, **kwargs: Any) -> Any:
        LogState.append = recorded  # type: ignore[method-assign]
        try:
            return run_worker(*args, **kwargs)
        finally:
            with open(path, "wb") as f:
                f.write(b"".join(kept))

    worker.run_worker = run  # (the keeper imports it after this)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def main(path: str, args: tuple[str, ...]) -> None:
    """Run memlogd with ARGS; its worker's batches are written to PATH as it ends."""
    _recording(os.path.abspath(path))
    sys.argv = ["memlogd", *args]
    runpy.run_module("memlogd", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
