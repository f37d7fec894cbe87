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
from dataclasses import replace
from itertools import islice
from typing import TYPE_CHECKING

import trio

from logread.directory import (
    BootError,
    FileLines,
    Report,
    boot_window,
    list_boots,
    merge,
    parse_file,
    render_boots,
    select_boot,
)
from logread.dirfiles import LogDir, open_log_dir
from logread.hints import stdout_hint
from memlogd.wire.globs import SourceMatcher

if TYPE_CHECKING:
    from logread.program import Session

BATCH = 8192  # entries rendered and written at once


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
            await _sources(session, log_dir)
        else:
            await _entries(session, log_dir, matcher)


def _say_all(lines: list[str]) -> None:
    from logread.program import say

    for line in lines:
        say(line)


async def _read(
    log_dir: LogDir,
    report: Report,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    matcher: SourceMatcher | None = None,
) -> list[FileLines]:
    """Every open file that may hold lines in ``[since_ns, until_ns]``, parsed."""
    out = []
    for stem in log_dir.stems:
        for f in stem.files:
            if log_dir.outside(f, since_ns, until_ns):
                log_dir.skip(f)
                continue
            text = log_dir.read(f)
            await trio.lowlevel.checkpoint()  # Ctrl-C, a closed stdout
            if text is None:
                continue
            lines = parse_file(text, stem.stem, stem.source)
            if matcher is not None and stem.source is None and not matcher(lines.source):
                continue  # a cut name: its source is known only now
            report.add(f"{log_dir.path}/{f.name}", lines)
            out.append(lines)
    _say_all(log_dir.warnings)
    log_dir.warnings = []
    return out


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
    files = await _read(log_dir, report, since_ns=since, until_ns=until, matcher=matcher)
    entries = merge(files, since_ns=since)
    while batch := list(islice(entries, BATCH)):
        await session.show(selector.feed(batch))
        if selector.done:
            break
    await session.show(selector.finish())
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


async def _sources(session: Session, log_dir: LogDir) -> None:
    """``--list-sources``: the lines of each source in DIR (of one boot with ``-b``)."""
    from logread.render import render_sources

    since, until = _window(log_dir, session.opts.boot, None, None)
    report = Report()
    counts: dict[str, int] = {}
    for lines in await _read(log_dir, report, since_ns=since, until_ns=until):
        times = lines.times
        if since is not None:
            inside = sum(since <= t and (until is None or t <= until) for t in times)
        else:
            inside = len(times)
        if inside:
            counts[lines.source] = counts.get(lines.source, 0) + inside
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
    times = [t for lines in await _read(log_dir, report) for t in lines.times]
    _say_report(report)
    text = render_boots(list_boots(boots, times), output=session.opts.output)
    await session.write_text(text)
