"""``logread -D DIR``: a dump read from logwrite's files instead of memlogd
(docs/logread.md, "Reading a log directory").

The files are opened and read by :mod:`logread.dirfiles`, parsed and merged
by :mod:`logread.directory`; the entries then go through the session's
:class:`logread.selection.Selector` and renderer exactly as a dump from
memlogd does, so every filter and output works alike.  What memlogd does for
a dump (``-s``/``-u``, ``--since``, ``-p``, ``-n``) is done here: a source that does
not match is never opened, a file wholly before ``--since`` or after
``--until`` is never read.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain, islice
from typing import TYPE_CHECKING

import trio

from logread.directory import (
    BootError,
    BootTally,
    FileLines,
    FileParser,
    Report,
    boot_window,
    merge_batches,
    recover_source,
    render_boots,
    select_boot,
)
from logread.dirfiles import CHUNK_BYTES, LogDir, open_log_dir
from logread.hints import stdout_hint
from memlogd.wire.globs import SourceMatcher

if TYPE_CHECKING:
    from logread.program import Session

BATCH = 8192  # entries rendered and written at once
HELD_BYTES = 1 << 19  # read ahead, over all the sources (each file read a piece at a time)
MIN_CHUNK_BYTES = 32 << 10
HEAD_LINES = 100  # read to recover the source of a file whose name was cut


async def from_directory(session: Session) -> None:
    """``-D DIR`` with the session's options: entries, ``--list-sources`` or
    ``--list-boots``.  Raises :class:`logread.dirfiles.DirectoryError` (exit 1)
    and :class:`logread.program.Fatal` for a ``-b`` that names no boot."""
    opts = session.opts
    assert opts.directory is not None
    # A million entries are a million tuples: the cyclic GC would walk them again
    # and again while they are made (a third of the time) and finds no cycle in
    # them.  logread exits when this is done.
    gc.disable()
    matcher = SourceMatcher(opts.request.sources if opts.action == "entries" else ())
    with open_log_dir(opts.directory, matcher) as log_dir:
        if opts.action == "boots":
            await _boots(session, log_dir)
        elif opts.action == "sources":
            await _list_sources(session, log_dir)
        else:
            await _entries(session, log_dir, matcher)


def _say_all(lines: list[str]) -> None:
    from logread.program import say

    for line in lines:
        say(line)


def _chunk_bytes(sources: int) -> int:
    """Bytes read at once from a file: a file per source is being read at a time,
    its lines held as entries (about 3.5 times their bytes) until merged."""
    return max(MIN_CHUNK_BYTES, min(CHUNK_BYTES, HELD_BYTES // max(1, sources)))


def _head(pieces: Iterable[str]) -> list[str]:
    """The first pieces of a file, up to :data:`HEAD_LINES` lines."""
    head: list[str] = []
    lines = 0
    for piece in pieces:
        head.append(piece)
        lines += piece.count("\n")
        if lines >= HEAD_LINES:
            break
    return head


def _parsed(
    pieces: Iterable[str], parser: FileParser, report: Report, name: str
) -> Iterator[FileLines]:
    for piece in pieces:
        lines = parser.feed(piece)
        report.add(name, lines)
        yield lines


def _sources(
    log_dir: LogDir,
    report: Report,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    matcher: SourceMatcher | None = None,
) -> list[Iterator[FileLines]]:
    """Every open file that may hold lines in ``[since_ns, until_ns]``, as lines
    parsed a piece at a time when asked for: per source, in source-name order,
    its files in the order written.  (A file whose name was cut has its first
    lines read now: its source is known only from them.)"""
    size = _chunk_bytes(len(log_dir.stems))
    per_source: dict[str, list[Iterator[FileLines]]] = {}
    for stem in log_dir.stems:
        for f in stem.files:
            if log_dir.outside(f, since_ns, until_ns):
                log_dir.skip(f)
                continue
            pieces = log_dir.chunks(f, size)
            head: list[str] = []
            source = stem.source
            if source is None:
                head = _head(pieces)
                source = recover_source(stem.stem, "".join(head).split("\n")) or stem.stem
                if matcher is not None and not matcher(source):
                    pieces.close()
                    continue
            parser = FileParser(source, since_ns)
            lines = _parsed(chain(head, pieces), parser, report, f"{log_dir.path}/{f.name}")
            per_source.setdefault(source, []).append(lines)
    _say_warnings(log_dir)
    return [chain.from_iterable(per_source[source]) for source in sorted(per_source)]


def _say_warnings(log_dir: LogDir) -> None:
    _say_all(log_dir.warnings)
    log_dir.warnings = []


def _say_report(report: Report) -> None:
    from logread.program import say

    if report.bad_lines:
        n = report.bad_lines
        say(
            f"{n} line{'' if n == 1 else 's'} not in logwrite's format "
            "(shown as they are, with their file's source)"
        )
    for name in report.torn:
        say(f"{name}: its last line has no end (cut while it was written); shown as it is")


async def _entries(session: Session, log_dir: LogDir, matcher: SourceMatcher) -> None:
    from logread.program import NO_ENTRIES

    opts = session.opts
    since, until = _window(log_dir, opts.boot, opts.request.since_ns, opts.until_ns)
    # memlogd's tail (-n alone) is kept here, as the one with -g or --until is
    tail = opts.request.tail if opts.request.tail is not None else opts.local_tail
    # -p too: memlogd's key, applied here as for a memlogd that refuses it
    priority = opts.local_priority or opts.request.priority
    session.opts = replace(opts, until_ns=until, local_priority=priority)
    selector = session.selector(tail=tail, reverse=opts.reverse)
    report = Report()
    sources = _sources(log_dir, report, since_ns=since, until_ns=until, matcher=matcher)
    entries = chain.from_iterable(merge_batches(sources))
    while batch := list(islice(entries, BATCH)):
        await session.show(selector.feed(batch))
        if selector.done:
            break
    await session.show(selector.finish())
    _say_warnings(log_dir)
    _say_report(report)
    if not selector.shown:
        session.losses.flush()
        sys.stderr.write(NO_ENTRIES + "\n")
        if opts.source_globs:
            names = sorted({stem.source for stem in log_dir.stems if stem.source is not None})
            line = stdout_hint(opts.source_globs, names)
            if line is not None:
                _say_all([line])


def _window(
    log_dir: LogDir, boot: str | None, since: int | None, until: int | None
) -> tuple[int | None, int | None]:
    """``--since``/``--until`` narrowed to the lines of ``-b BOOT``."""
    from logread.program import Fatal

    if boot is None:
        return since, until
    boots = log_dir.boots()
    try:
        index = select_boot(boots, boot)
    except BootError as exc:
        _say_all(log_dir.warnings)
        raise Fatal(f"{log_dir.path}: {exc}") from None
    start, end = boot_window(boots, index)
    since = start if since is None else max(since, start)
    if end is not None:
        until = end if until is None else min(until, end)
    return since, until


async def _list_sources(session: Session, log_dir: LogDir) -> None:
    """``--list-sources``: the lines of each source in DIR (of one boot with ``-b``)."""
    from logread.render import render_sources

    since, until = _window(log_dir, session.opts.boot, None, None)
    report = Report()
    counts: dict[str, int] = {}
    for lines in chain.from_iterable(_sources(log_dir, report, since_ns=since, until_ns=until)):
        await trio.lowlevel.checkpoint()  # Ctrl-C
        times = lines.times
        if since is not None:
            inside = sum(since <= t and (until is None or t <= until) for t in times)
        else:
            inside = len(times)
        if inside:
            counts[lines.source] = counts.get(lines.source, 0) + inside
    _say_warnings(log_dir)
    _say_report(report)
    stats = {"sources": {name: {"entries": count} for name, count in counts.items()}}
    opts = session.opts
    await session.write_text(render_sources(stats, output=opts.output, escape=opts.escape))


async def _boots(session: Session, log_dir: LogDir) -> None:
    from logread.program import Fatal

    boots = log_dir.boots()
    if not boots:
        _say_all(log_dir.warnings)
        raise Fatal(f"{log_dir.path}: no boots recorded (DIR/instances is missing or empty)")
    report = Report()
    tally = BootTally(boots)
    for lines in chain.from_iterable(_sources(log_dir, report)):
        await trio.lowlevel.checkpoint()  # Ctrl-C
        tally.add(lines.times)
    _say_warnings(log_dir)
    _say_report(report)
    text = render_boots(tally.boots_info(), output=session.opts.output)
    await session.write_text(text)
