"""``logread -D DIR``: logwrite's files turned back into entries (docs/logread.md,
"Reading a log directory"). PURE: no I/O.

The I/O (opening every file, then reading them) is :mod:`logread.dirfiles`;
this module decides what the bytes mean:

* :func:`plan_directory`: which names in DIR are logs, grouped per file stem
  in the order they were written (``NAME.log.(N-1)`` ... ``NAME.log.0``, then
  ``NAME.log``; a ``NAME.log.K.gz`` takes the place of ``NAME.log.K``).
* :func:`parse_file`: one file's text -> its times and messages, the source
  recovered exactly (:func:`memlogd.wire.logdir.stem_source`; a cut name from
  its lines, :func:`recover_source`).  Lines that do not parse (a torn last
  line, another format) are kept, with the file's source, and counted.
* :func:`merge`: the sources' files merged by time into the entry stream a
  dump gives: each source's files in their order (also where the clock stepped
  back), equal times in source-name order.
* :func:`boot_window`, :func:`list_boots`: ``-b`` and ``--list-boots`` over
  ``DIR/instances``.

Speed (BENCHMARKS.md, "logread -D"): a file whose lines all parse is read by
one regular expression over its whole text and a few ``map`` calls; entries
are made as tuples by C code; sources whose times never go back are merged
by one stable sort (runs found by timsort), the others by :func:`heapq.merge`.
"""

from __future__ import annotations

import bisect
import heapq
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice, repeat
from operator import add, itemgetter, le, methodcaller

from memlogd.errors import ProtocolError
from memlogd.wire.logdir import (
    Boot,
    parse_log_file_name,
    safe_log_name,
    source_field,
    source_readings,
    stem_source,
)
from memlogd.wire.protocol import LogEntry
from memlogd.wire.timefmt import format_time, parse_time

__all__ = [
    "BootError",
    "BootInfo",
    "FileLines",
    "SourceFiles",
    "boot_window",
    "line_time",
    "list_boots",
    "merge",
    "parse_file",
    "plan_directory",
    "recover_source",
    "render_boots",
    "select_boot",
]

GZ_SUFFIX = ".gz"

# ---------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class SourceFiles:
    """The files of one stem, in the order logwrite wrote them (oldest first)."""

    stem: str
    names: tuple[str, ...]


def plan_directory(names: Iterable[str]) -> list[SourceFiles]:
    """The log files among ``names`` (a directory's entries), per stem, by stem.

    ``NAME.log`` and ``NAME.log.K`` are logwrite's; ``NAME.log.K.gz`` is a
    rotated file compressed (by logrotate or by hand): used where there is no
    plain ``NAME.log.K``.  Everything else (``instances``, the cursor,
    temporary files) is not a log."""
    found: dict[str, dict[int, str]] = {}
    live = -1  # the key of NAME.log: after every rotated file
    for name in names:
        plain = name.removesuffix(GZ_SUFFIX)
        parsed = parse_log_file_name(plain)
        if parsed is None:
            continue
        stem, index = parsed
        if plain != name and index is None:
            continue  # NAME.log.gz: logwrite never makes one
        key = live if index is None else index
        files = found.setdefault(stem, {})
        if key not in files or plain == name:  # a plain file wins over its .gz
            files[key] = name
    out = []
    for stem in sorted(found):
        files = found[stem]
        order = sorted(files, key=lambda k: (k == live, -k))
        out.append(SourceFiles(stem, tuple(files[k] for k in order)))
    return out


# ---------------------------------------------------------------------- times


class _Seconds(dict[str, int]):
    """``YYYY-MM-DDTHH:MM:SS`` -> ns since the epoch, computed once per second."""

    def __missing__(self, key: str) -> int:
        value = parse_time(key + "Z")
        if len(self) > 100_000:
            self.clear()
        self[key] = value
        return value


_SECONDS = _Seconds()
_NANO_DIGITS = methodcaller("ljust", 9, "0")  # a fraction's digits -> nanoseconds
# Go's RFC3339 / RFC3339Nano in UTC, as logwrite writes them
_TIME = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z"
_TIME_RE = re.compile(_TIME + r"\Z", re.ASCII)


def line_time(line: str) -> int | None:
    """The time at the start of a persisted line (ns), or None when it has none.
    Any RFC 3339 time is taken (a zone, more digits), not only logwrite's."""
    token = line.partition(" ")[0]
    m = _TIME_RE.match(token)
    if m is not None:
        secs, frac = m.groups()
        return _SECONDS[secs] + (int(frac.ljust(9, "0")) if frac else 0)
    try:
        return parse_time(token)
    except (ProtocolError, ValueError, OverflowError):
        return None


# ---------------------------------------------------------------------- one file


@dataclass(slots=True)
class FileLines:
    """One file's lines as entries: ``times[i]`` and ``msgs[i]`` (in file order)."""

    source: str
    times: list[int]
    msgs: list[str]
    bad: int = 0  # lines shown as they are (no time, or not this source's)
    torn: bool = False  # the last line has no newline (cut while written)


def recover_source(stem: str, lines: Iterable[str]) -> str | None:
    """The source of a file whose stem was cut (:func:`stem_source` is None): the
    reading of a line's source field whose file stem is ``stem`` (so its hash
    matches the stem's suffix).  None when no line gives one."""
    for line in islice(lines, 100):
        _, space, rest = line.partition(" ")
        if not space:
            continue
        start = 0
        while (end := rest.find(" ", start)) >= 0:
            for source in source_readings(rest[:end]):
                if safe_log_name(source) == stem:
                    return source
            start = end + 1
    return None


def _split_lines(text: str) -> tuple[list[str], bool]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
        return lines, False
    return lines, True


def parse_file(text: str, stem: str, source: str | None = None) -> FileLines:
    """One file's text (``TIME SOURCE MSG`` lines) -> :class:`FileLines`.

    ``source`` is the stem's source when known (:func:`stem_source`), else it
    is recovered from the lines (:func:`recover_source`), or is the stem as
    it reads.  A line whose time does not parse is shown whole, at the time of
    the line before it (the file's order is kept); a line with a time but
    another source field is shown from after its time; both are counted in
    ``bad``."""
    if source is None:
        source = stem_source(stem)
    if source is None:
        source = recover_source(stem, _split_lines(text)[0]) or stem
    lines_count = text.count("\n")
    torn = bool(text) and not text.endswith("\n")
    if not torn:
        fast = _parse_fast(text, source, lines_count)
        if fast is not None:
            return fast
    return _parse_slow(text, source)


def _line_re(source: str) -> re.Pattern[str]:
    return re.compile(
        r"^" + _TIME + " " + re.escape(source_field(source)) + " (.*)$", re.ASCII | re.MULTILINE
    )


def _parse_fast(text: str, source: str, lines_count: int) -> FileLines | None:
    """Every line well formed: one regex over the text, the rest in C (``map``)."""
    found = _line_re(source).findall(text)
    if len(found) != lines_count:
        return None
    if not found:
        return FileLines(source, [], [])
    secs, fracs, msgs = zip(*found, strict=True)
    times = list(map(add, map(_SECONDS.__getitem__, secs), map(int, map(_NANO_DIGITS, fracs))))
    return FileLines(source, times, list(msgs))


def _parse_slow(text: str, source: str) -> FileLines:
    lines, torn = _split_lines(text)
    head = source_field(source) + " "
    times: list[int] = []
    msgs: list[str] = []
    bad = 0
    last = 0
    for line in lines:
        t = line_time(line)
        if t is None:
            times.append(last)
            msgs.append(line)
            bad += 1
            continue
        last = t
        rest = line.partition(" ")[2]
        times.append(t)
        if rest.startswith(head):
            msgs.append(rest[len(head) :])
        else:
            msgs.append(rest)
            bad += 1
    return FileLines(source, times, msgs, bad, torn)


# ---------------------------------------------------------------------- merging


_MAKE_ENTRY = partial(tuple.__new__, LogEntry)  # a LogEntry made in C (no __new__ call)


def _entries(source: str, times: list[int], msgs: list[str]) -> list[LogEntry]:
    return list(map(_MAKE_ENTRY, zip(times, repeat(source), msgs, repeat(None))))


def _rising(times: Sequence[int]) -> bool:
    return all(map(le, times, islice(times, 1, None)))


def _since(times: list[int], msgs: list[str], since_ns: int) -> tuple[list[int], list[str]]:
    """The lines from ``since_ns`` on (all lines of a file whose time rises are
    cut at one point; otherwise each is checked)."""
    if not times or times[0] >= since_ns:
        return times, msgs
    if _rising(times):
        i = bisect.bisect_left(times, since_ns)
        return times[i:], msgs[i:]
    keep = [i for i, t in enumerate(times) if t >= since_ns]
    return [times[i] for i in keep], [msgs[i] for i in keep]


def merge(files: Iterable[FileLines], *, since_ns: int | None = None) -> Iterator[LogEntry]:
    """The entries of ``files`` as one stream by time: each source's files in the
    order given, equal times in source-name order; lines before ``since_ns`` left
    out.  (``--until`` is the selector's: the first later entry ends the stream.)"""
    per_source: dict[str, tuple[list[int], list[str]]] = {}
    for f in files:
        times, msgs = f.times, f.msgs
        if since_ns is not None:
            times, msgs = _since(times, msgs, since_ns)
        held = per_source.setdefault(f.source, ([], []))
        held[0].extend(times)
        held[1].extend(msgs)
    names = [s for s in sorted(per_source) if per_source[s][0]]
    runs = [_entries(s, *per_source[s]) for s in names]
    if len(runs) <= 1:
        return iter(runs[0] if runs else [])
    if all(_rising(per_source[s][0]) for s in names):
        every = list(chain.from_iterable(runs))
        every.sort(key=itemgetter(0))  # stable: equal times keep source, then file order
        return iter(every)
    return heapq.merge(*runs, key=itemgetter(0))


def time_range(first_line: str | None, last_line: str | None) -> tuple[int, int] | None:
    """A file's first and last time, from its first and last lines (None when
    either has no time: the file is read to be sure)."""
    if first_line is None or last_line is None:
        return None
    first, last = line_time(first_line), line_time(last_line)
    if first is None or last is None:
        return None
    return first, last


def outside(span: tuple[int, int] | None, since_ns: int | None, until_ns: int | None) -> bool:
    """A file whose lines all lie before ``since_ns`` or after ``until_ns``
    (``span`` = its first and last time; a clock that stepped back inside a file
    would fool this, so only a file whose ends are in order is skipped)."""
    if span is None or span[0] > span[1]:
        return False
    first, last = span
    return (since_ns is not None and last < since_ns) or (until_ns is not None and first > until_ns)


# ---------------------------------------------------------------------- boots


class BootError(ValueError):
    """A ``-b`` value that names no boot of the directory (one line)."""


@dataclass(frozen=True, slots=True)
class BootInfo:
    """One row of ``--list-boots``."""

    offset: int  # 0 the last, -1 before it, ...
    instance: str
    first_ns: int
    last_ns: int | None  # None: no line of it is left in the files


def select_boot(boots: Sequence[Boot], which: str) -> int:
    """The index in ``boots`` (oldest first) that ``-b WHICH`` names: an offset
    as journalctl takes it (``0`` or empty the last, ``-1`` before it, ``1`` the
    first, ``2`` the second ...), or an instance (or a unique start of one)."""
    if not boots:
        raise BootError("no boots recorded (DIR/instances is missing or empty)")
    text = which.strip()
    if text == "" or re.fullmatch(r"[+-]?[0-9]+", text):
        offset = int(text or "0")
        index = len(boots) - 1 + offset if offset <= 0 else offset - 1
        if not 0 <= index < len(boots):
            raise BootError(f"no boot at offset {offset} ({len(boots)} recorded)")
        return index
    matches = [i for i, boot in enumerate(boots) if boot.instance.startswith(text)]
    exact = [i for i in matches if boots[i].instance == text]
    if exact:
        return exact[-1]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise BootError(f"{text!r} is the start of {len(matches)} instances: give more of it")
    raise BootError(f"no boot with instance {text!r}")


def boot_window(boots: Sequence[Boot], index: int) -> tuple[int, int | None]:
    """The times of boot ``index``'s lines: from its first time up to (not
    including) the next boot's first time (None: the last boot, no end)."""
    start = boots[index].first_ns
    end = boots[index + 1].first_ns - 1 if index + 1 < len(boots) else None
    return start, end


def list_boots(boots: Sequence[Boot], times: Iterable[int]) -> list[BootInfo]:
    """``--list-boots``: each boot with its offset and the time of its last line
    among ``times`` (every line's time in the directory, in any order)."""
    ordered = sorted(times)
    out = []
    for i, boot in enumerate(boots):
        start, end = boot_window(boots, i)
        hi = len(ordered) if end is None else bisect.bisect_right(ordered, end)
        lo = bisect.bisect_left(ordered, start)
        last = ordered[hi - 1] if hi > lo else None
        out.append(BootInfo(i - len(boots) + 1, boot.instance, start, last))
    return out


@dataclass
class Report:
    """What went wrong while reading, said on stderr at the end."""

    bad_lines: int = 0
    torn: list[str] = field(default_factory=list)  # files whose last line is cut

    def add(self, name: str, lines: FileLines) -> None:
        self.bad_lines += lines.bad
        if lines.torn:
            self.torn.append(name)


def render_boots(boots: Sequence[BootInfo], *, output: str = "short") -> str:
    """``--list-boots`` as journalctl lays it out (``IDX``, the instance, the
    first and the last time, RFC 3339 in UTC; ``-`` when no line is left), or
    one JSON object per boot with ``-o json``/``json-pretty``."""
    if output in ("json", "json-pretty"):
        indent = 2 if output == "json-pretty" else None
        separators = (",", ": ") if indent else (",", ":")
        return "".join(
            json.dumps(
                {
                    "offset": b.offset,
                    "instance": b.instance,
                    "first": format_time(b.first_ns),
                    "last": None if b.last_ns is None else format_time(b.last_ns),
                },
                indent=indent,
                separators=separators,
            )
            + "\n"
            for b in boots
        )
    rows = [
        (
            str(b.offset),
            b.instance,
            format_time(b.first_ns),
            "-" if b.last_ns is None else format_time(b.last_ns),
        )
        for b in boots
    ]
    header = ("IDX", "INSTANCE", "FIRST ENTRY", "LAST ENTRY")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return "".join(
        "  ".join(
            (r[0].rjust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3])
        ).rstrip()
        + "\n"
        for r in [header, *rows]
    )
