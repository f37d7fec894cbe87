"""``logread -D DIR``: logwrite's files turned back into entries (docs/logread.md,
"Reading a log directory"). PURE: no I/O.

The I/O (opening every file, then reading them) is :mod:`logread.dirfiles`;
this module decides what the bytes mean:

* :func:`plan_directory`: which names in DIR are logs, grouped per file stem
  in the order they were written (``NAME.log.(N-1)`` ... ``NAME.log.0``, then
  ``NAME.log``; a ``NAME.log.K.gz`` takes the place of ``NAME.log.K``).
* :class:`FileParser`: a file's text, a piece of whole lines at a time ->
  times and messages (:func:`parse_file`: a whole text), the source
  recovered exactly (:func:`memlogd.wire.logdir.stem_source`; a cut name from
  its lines, :func:`recover_source`).  Lines that do not parse (a torn last
  line, another format) are kept, with the file's source, and counted.
* :func:`merge_batches`: the sources' lines merged by time, a batch at a time,
  into the entry stream a dump gives: each source's files in their order
  (also where the clock stepped back), equal times in source-name order.
  Only a batch or two per source is held, so memory does not grow with DIR.
* :func:`boot_window`, :class:`BootTally`: ``-b`` and ``--list-boots`` over
  ``DIR/instances``.

Speed (BENCHMARKS.md, "logread -D"): a piece whose lines all parse is read by
one regular expression and a few ``map`` calls; entries are made as tuples
by C code; each round of the merge is one stable sort of the sources' runs
(found by timsort), by time or, for a source whose clock went back, by the
highest time so far (which keeps :func:`heapq.merge`'s order).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import accumulate, chain, compress, islice, repeat
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
    "BootTally",
    "FileLines",
    "FileParser",
    "SourceFiles",
    "boot_window",
    "line_time",
    "list_boots",
    "merge",
    "merge_batches",
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
    """One file's whole text (``TIME SOURCE MSG`` lines) -> :class:`FileLines`.

    ``source`` is the stem's source when known (:func:`stem_source`), else it
    is recovered from the lines (:func:`recover_source`), or is the stem as
    it reads.  A line whose time does not parse is shown whole, at the time of
    the line before it (the file's order is kept); a line with a time but
    another source field is shown from after its time; both are counted in
    ``bad``.  (``logread -D`` reads a file in pieces: :class:`FileParser`.)"""
    if source is None:
        source = stem_source(stem)
    if source is None:
        source = recover_source(stem, _split_lines(text)[0]) or stem
    return FileParser(source).feed(text)


@lru_cache(maxsize=256)
def _line_re(source: str) -> re.Pattern[str]:
    return re.compile(
        r"^" + _TIME + " " + re.escape(source_field(source)) + " (.*)$", re.ASCII | re.MULTILINE
    )


class FileParser:
    """One file's lines parsed a piece at a time, in file order (the state a
    line without a time needs, the time of the line before it, is kept).

    Each piece given to :meth:`feed` is whole lines; only the file's last piece
    may end without a newline (a torn line).  With ``since_ns``, the lines
    before it are left out, unless the file's first line is not before it (a
    file is then shown whole, also where its clock stepped back)."""

    __slots__ = ("_first", "_last", "_line_re", "_since", "source")

    def __init__(self, source: str, since_ns: int | None = None) -> None:
        self.source = source
        self._line_re = _line_re(source)
        self._last = 0  # the time of the line before
        self._since = since_ns
        self._first = True

    def feed(self, text: str) -> FileLines:
        """The lines of ``text`` (with ``bad`` and ``torn`` for these lines)."""
        if not text:
            return FileLines(self.source, [], [])
        lines: FileLines | None = None
        if text.endswith("\n"):  # every line well formed: one regex, the rest in C
            found = self._line_re.findall(text)
            if len(found) == text.count("\n"):
                secs, fracs, msgs = zip(*found, strict=True)
                times = list(
                    map(add, map(_SECONDS.__getitem__, secs), map(int, map(_NANO_DIGITS, fracs)))
                )
                lines = FileLines(self.source, times, list(msgs))
        if lines is None:
            lines = _parse_slow(text, self.source, self._last)
        if lines.times:
            self._last = lines.times[-1]
            since = self._since
            if since is not None:
                if self._first and lines.times[0] >= since:
                    self._since = None
                else:
                    lines.times, lines.msgs = _after(lines.times, lines.msgs, since)
            self._first = False
        return lines


def _parse_slow(text: str, source: str, last: int) -> FileLines:
    lines, torn = _split_lines(text)
    head = source_field(source) + " "
    times: list[int] = []
    msgs: list[str] = []
    bad = 0
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


def _after(times: list[int], msgs: list[str], since_ns: int) -> tuple[list[int], list[str]]:
    """The lines from ``since_ns`` on (selected in C)."""
    if min(times) >= since_ns:
        return times, msgs
    if max(times) < since_ns:
        return [], []
    keep = list(map(since_ns.__le__, times))
    return list(compress(times, keep)), list(compress(msgs, keep))


# ---------------------------------------------------------------------- merging


_MAKE_ENTRY = partial(tuple.__new__, LogEntry)  # a LogEntry made in C (no __new__ call)


def _entries(source: str, times: list[int], msgs: list[str]) -> list[LogEntry]:
    return list(map(_MAKE_ENTRY, zip(times, repeat(source), msgs, repeat(None))))


def _rising(times: Sequence[int]) -> bool:
    return all(map(le, times, islice(times, 1, None)))


class _Run:
    """One source's entries, a batch at a time, each with its merge key: the
    highest time up to it in the source (its time, while the clock never went
    back), so that merging by keys takes the sources' lines exactly as
    :func:`heapq.merge` over whole sources by time does, a batch at a time."""

    __slots__ = ("batches", "entries", "exact", "keys", "more", "pos", "top")

    def __init__(self, batches: Iterable[FileLines]) -> None:
        self.batches = iter(batches)
        self.keys: list[int] = []
        self.entries: list[LogEntry] = []
        self.pos = 0  # keys[:pos] are merged already
        self.exact = True  # keys[pos:] are the entries' times
        self.top: int | None = None  # the last key
        self.more = True  # batches are left

    def held(self) -> bool:
        return self.pos < len(self.keys)

    def load(self) -> bool:
        """The next batch with lines added; False when none is left and none held."""
        for lines in self.batches:
            if lines.times:
                self._add(lines)
                return True
        self.more = False
        return self.held()

    def _add(self, lines: FileLines) -> None:
        times, top = lines.times, self.top
        exact = (top is None or times[0] >= top) and _rising(times)
        if exact:
            keys = times
        else:
            keys = list(accumulate(times, max, initial=top))
            if top is not None:
                del keys[0]
        entries = _entries(lines.source, times, lines.msgs)
        if self.held():
            keys = self.keys[self.pos :] + keys
            entries = self.entries[self.pos :] + entries
            exact = exact and self.exact
        self.keys, self.entries, self.exact, self.pos = keys, entries, exact, 0
        self.top = keys[-1]

    def take(self, bound: int | None) -> tuple[list[int], list[LogEntry], bool] | None:
        """The held entries whose keys are below ``bound`` (None: all)."""
        start = self.pos
        end = len(self.keys) if bound is None else bisect.bisect_left(self.keys, bound, start)
        if end == start:
            return None
        self.pos = end
        return self.keys[start:end], self.entries[start:end], self.exact


def _combine(parts: list[tuple[list[int], list[LogEntry], bool]]) -> list[LogEntry]:
    """Parts (each in key order, in source-name order) as one list by key, equal
    keys in source-name order (stable sorts)."""
    if len(parts) == 1:
        return parts[0][1]
    if all(exact for _, _, exact in parts):
        out = list(chain.from_iterable(entries for _, entries, _ in parts))
        out.sort(key=itemgetter(0))
        return out
    keys = list(chain.from_iterable(keys for keys, _, _ in parts))
    entries = list(chain.from_iterable(entries for _, entries, _ in parts))
    return list(map(entries.__getitem__, sorted(range(len(keys)), key=keys.__getitem__)))


def merge_batches(sources: Iterable[Iterable[FileLines]]) -> Iterator[list[LogEntry]]:
    """The sources' lines (``sources`` in source-name order, each its files'
    lines in file order, a batch at a time) as one stream by time, a batch at
    a time: each source's order kept (also where its clock stepped back),
    equal times in source-name order.  Only a batch or two per source is held:
    each round takes every line below the lowest last key of a source with
    batches left, then reads that source's next batch."""
    runs = [run for run in map(_Run, sources) if run.load()]
    while runs:
        ends = [run.keys[-1] for run in runs if run.more]
        bound = min(ends) if ends else None
        parts = [part for run in runs if (part := run.take(bound)) is not None]
        if parts:
            yield _combine(parts)
        if bound is None:
            return
        runs = [r for r in runs if (r.load() if r.more and r.keys[-1] == bound else r.held())]


def merge(files: Iterable[FileLines], *, since_ns: int | None = None) -> Iterator[LogEntry]:
    """The entries of whole files as one stream by time: each source's files in
    the order given, equal times in source-name order; lines before ``since_ns``
    left out (as :class:`FileParser` does).  (``--until`` is the selector's: the
    first later entry ends the stream.)"""
    per_source: dict[str, list[FileLines]] = {}
    for f in files:
        if since_ns is not None and f.times and f.times[0] < since_ns:
            times, msgs = _after(f.times, f.msgs, since_ns)
            f = FileLines(f.source, times, msgs)
        per_source.setdefault(f.source, []).append(f)
    return chain.from_iterable(merge_batches(per_source[s] for s in sorted(per_source)))


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


class BootTally:
    """``--list-boots``' last times, from the lines' times a batch at a time."""

    def __init__(self, boots: Sequence[Boot]) -> None:
        self.boots = boots
        self.windows = [boot_window(boots, i) for i in range(len(boots))]
        self.last: list[int | None] = [None] * len(boots)

    def add(self, times: Iterable[int]) -> None:
        """Some lines' times, in any order."""
        ordered = sorted(times)
        for i, (start, end) in enumerate(self.windows):
            hi = len(ordered) if end is None else bisect.bisect_right(ordered, end)
            lo = bisect.bisect_left(ordered, start)
            last = self.last[i]
            if hi > lo and (last is None or ordered[hi - 1] > last):
                self.last[i] = ordered[hi - 1]

    def boots_info(self) -> list[BootInfo]:
        n = len(self.boots)
        return [
            BootInfo(i - n + 1, boot.instance, self.windows[i][0], self.last[i])
            for i, boot in enumerate(self.boots)
        ]


def list_boots(boots: Sequence[Boot], times: Iterable[int]) -> list[BootInfo]:
    """``--list-boots``: each boot with its offset and the time of its last line
    among ``times`` (every line's time in the directory, in any order)."""
    tally = BootTally(boots)
    tally.add(times)
    return tally.boots_info()


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
