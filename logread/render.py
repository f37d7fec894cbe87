"""How logread shows entries, sources and stats (docs/logread.md, "Output"). PURE: no I/O.

Entries, one renderer per ``-o`` value (:data:`OUTPUTS`), each returning one line
*with* its ``\\n`` so that a batch is one join (:func:`make_renderer` gives the
batch renderer logread uses):

* :func:`render_text` (``short``): upstream's ``TIME;SOURCE;MSG`` (``;`` in SOURCE
  as ``\\;``), TIME as Go's RFC3339Nano in UTC; optionally coloured: the source
  in its colour (:func:`source_color`), or an err-or-worse line's source and
  message bold red and a warning's yellow (:func:`severity_color`);
* :func:`render_short_iso` (``short-iso``): the same line with TIME as journalctl's
  ``short-iso`` writes it (whole seconds, ``+0000``);
* :func:`render_json` (``json``): the entry object as memlogd sends it, with
  ``"priority"`` (the line's level, SPEC 15; 6 when it says none) added last;
* :func:`render_json_pretty` (``json-pretty``): the same object, indented as ``jq .`` does;
* :func:`render_raw` (``raw``, ``cat``): the message only.

On a terminal (unless ``-a``) control characters are escaped so that a service
cannot drive the terminal: :func:`escape_controls` in text (``\\x1b``; tab kept),
:func:`escape_json_controls` in JSON (``\\u009b``: the same JSON value).

Also :func:`render_sources` (``--list-sources``) and :func:`render_stats` (``--stats``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache, partial
from itertools import chain, repeat
from json.encoder import encode_basestring
from operator import floordiv, itemgetter, methodcaller, mod
from typing import Any, Final

from memlogd.wire.protocol import LogEntry, entry_prefix
from memlogd.wire.severity import level_or_default
from memlogd.wire.textescape import TERMINAL_ESCAPES, escape_name
from memlogd.wire.timefmt import NS_PER_S, format_seconds, format_time

__all__ = [
    "OUTPUTS",
    "PALETTE",
    "RESET",
    "BatchRenderer",
    "escape_controls",
    "escape_json_controls",
    "escape_source",
    "make_renderer",
    "render_json",
    "render_json_pretty",
    "render_raw",
    "render_short_iso",
    "render_sources",
    "render_stats",
    "render_text",
    "render_text_batch",
    "severity_color",
    "source_color",
]

#: The ``-o`` values; ``cat`` is ``raw`` (journalctl's name for it).
OUTPUTS: Final = ("short", "short-iso", "json", "json-pretty", "raw", "cat")

BatchRenderer = Callable[[Sequence[LogEntry]], str]

RESET = "\x1b[0m"
# Readable on dark and light backgrounds alike: the normal and bright colours, minus
# black, white and their bright forms.
PALETTE = (
    "\x1b[31m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[34m",
    "\x1b[35m",
    "\x1b[36m",
    "\x1b[91m",
    "\x1b[92m",
    "\x1b[93m",
    "\x1b[94m",
    "\x1b[95m",
    "\x1b[96m",
)
ERR_COLOR = "\x1b[1;31m"  # err and worse: bold red
WARNING_COLOR = "\x1b[33m"  # warning: yellow
_SEVERITY_COLORS: Final = (ERR_COLOR,) * 4 + (WARNING_COLOR,)  # by level 0..4

# Unicode's control characters (category Cc): C0, DEL and C1.  A terminal acts on
# them (ESC and CSI start sequences that move the cursor, retitle the window, ...).
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
#: text: every control but tab as ``\xNN``, and the bidirectional overrides as
#: ``\uNNNN`` (they reorder what a terminal shows after them)
_TEXT_ESCAPES: Final = TERMINAL_ESCAPES
#: JSON: what a JSON encoder leaves raw (DEL, C1) as ``\u00NN``, which means the same
_JSON_ESCAPES: Final = {c: f"\\u{c:04x}" for c in _CONTROLS if c >= 0x7F}


# ---------------------------------------------------------------------- escaping


def escape_controls(text: str) -> str:
    """``text`` safe for a terminal: each control character but tab (C0, DEL, C1)
    as ``\\xNN``, each bidirectional override (U+202A-U+202E, U+2066-U+2069) as
    ``\\uNNNN``; everything else, backslashes included, as it is."""
    if text.isprintable():  # no control character (the common case, at C speed)
        return text
    return text.translate(_TEXT_ESCAPES)


def escape_json_controls(text: str) -> str:
    """JSON text safe for a terminal: DEL and the C1 controls, which JSON encoders
    leave raw, as ``\\u00NN`` (the same JSON value).  Only for JSON text: those
    characters can only occur inside its strings."""
    if text.isascii() and "\x7f" not in text:
        return text
    return text.translate(_JSON_ESCAPES)


def escape_source(source: str) -> str:
    """A source as upstream logread writes it: every ``;`` as ``\\;``; and, terminal
    or not, its control characters escaped (:func:`escape_name`: a newline in a
    name must not forge a second line)."""
    return escape_name(source).replace(";", "\\;")


def source_color(source: str) -> str:
    """The ANSI colour of a source: a stable hash, the same in every run."""
    return PALETTE[zlib.crc32(source.encode("utf-8", "surrogatepass")) % len(PALETTE)]


def severity_color(msg: str) -> str | None:
    """The colour of a line by its level (SPEC 15): bold red for err and worse,
    yellow for warning, None for the rest (which keep their source's colour)."""
    found = level_or_default(msg)
    return _SEVERITY_COLORS[found] if found <= 4 else None


# ---------------------------------------------------------------------- entries


@lru_cache(maxsize=64)
def _time_text(time_ns: int) -> str:
    """format_time, remembered: the lines of one memlogd batch share their time."""
    return format_time(time_ns)


@lru_cache(maxsize=64)
def _iso_time_text(time_ns: int) -> str:
    """journalctl's ``short-iso`` time (``%Y-%m-%dT%H:%M:%S%z``) in UTC."""
    return format_seconds(time_ns // NS_PER_S) + "+0000"


def _line(time: str, entry: LogEntry, color: bool, escape: bool) -> str:
    source = escape_source(entry.source)
    msg = entry.msg
    if escape:
        source = escape_controls(source)
        msg = escape_controls(msg)
    if color:
        severe = severity_color(entry.msg)
        if severe is not None:  # the line's source and message in its severity's colour
            return time + ";" + severe + source + ";" + msg + RESET + "\n"
        source = source_color(entry.source) + source + RESET
    return time + ";" + source + ";" + msg + "\n"


def render_text(entry: LogEntry, *, color: bool = False, escape: bool = False) -> str:
    """``TIME;SOURCE;MSG\\n`` (Go's RFC3339Nano time); with ``color`` the source
    (and only it) is wrapped in its ANSI colour, or for a warning or worse
    ``SOURCE;MSG`` in its severity's colour (:func:`severity_color`); with
    ``escape`` control characters in SOURCE and MSG are escaped
    (:func:`escape_controls`)."""
    if not (color or escape):  # the hot path
        source = escape_source(entry.source)
        return _time_text(entry.time_ns) + ";" + source + ";" + entry.msg + "\n"
    return _line(_time_text(entry.time_ns), entry, color, escape)


class _SecondsText(dict[int, str]):
    """Whole seconds -> ``YYYY-MM-DDTHH:MM:SS``, each second formatted once."""

    def __missing__(self, secs: int) -> str:
        if len(self) >= 4096:
            self.clear()
        text = self[secs] = format_seconds(secs)
        return text


class _SourceText(dict[str, str]):
    """A source -> ``;SOURCE;`` as :func:`render_text` writes it."""

    def __missing__(self, source: str) -> str:
        if len(self) >= 4096:
            self.clear()
        text = self[source] = ";" + escape_source(source) + ";"
        return text


_SECONDS_TEXT = _SecondsText()
_SOURCE_TEXT = _SourceText()
_FRACTION = ".%09d".__mod__
# ".500000000" -> ".5", ".000000000" -> "": format_time's fraction in one rstrip
_STRIP_ZEROS = methodcaller("rstrip", "0.")
_TIMES = itemgetter(0)
_SOURCES = itemgetter(1)
_MSGS = itemgetter(2)


def render_text_batch(entries: Sequence[LogEntry]) -> str:
    """:func:`render_text` of every entry (neither colour nor escaping), joined:
    the same text, made by C code (``map``) instead of a call per entry."""
    times = list(map(_TIMES, entries))
    seconds = map(_SECONDS_TEXT.__getitem__, map(floordiv, times, repeat(NS_PER_S)))
    fractions = map(_STRIP_ZEROS, map(_FRACTION, map(mod, times, repeat(NS_PER_S))))
    sources = map(_SOURCE_TEXT.__getitem__, map(_SOURCES, entries))
    parts = zip(seconds, fractions, repeat("Z"), sources, map(_MSGS, entries), repeat("\n"))
    return "".join(chain.from_iterable(parts))


def render_short_iso(entry: LogEntry, *, color: bool = False, escape: bool = False) -> str:
    """As :func:`render_text`, with TIME as journalctl's ``-o short-iso`` shows it:
    ``2026-11-29T10:00:00+0000`` (whole seconds, the UTC offset without a colon)."""
    return _line(_iso_time_text(entry.time_ns), entry, color, escape)


def render_json(entry: LogEntry) -> str:
    """The entry object as memlogd sends it (keys ``time, source, msg[, seq]``),
    then ``priority``: the line's level (6 when it says none)."""
    text = _prefix(entry.time_ns, entry.source) + encode_basestring(entry.msg)
    if entry.seq is not None:
        text += ',"seq":' + str(entry.seq)
    return text + ',"priority":' + _DIGITS[level_or_default(entry.msg)] + "}\n"


_DIGITS: Final = tuple(map(str, range(8)))


@lru_cache(maxsize=64)
def _prefix(time_ns: int, source: str) -> str:
    return entry_prefix(time_ns, source)


def render_json_pretty(entry: LogEntry) -> str:
    """The object of :func:`render_json` indented by two spaces, one key per line
    (as ``jq .`` shows it), followed by a newline."""
    obj: dict[str, Any] = {"time": _time_text(entry.time_ns), "source": entry.source}
    obj["msg"] = entry.msg
    if entry.seq is not None:
        obj["seq"] = entry.seq
    obj["priority"] = level_or_default(entry.msg)
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def render_raw(entry: LogEntry) -> str:
    """The message alone."""
    return entry.msg + "\n"


def _render_raw_escaped(entry: LogEntry) -> str:
    return escape_controls(entry.msg) + "\n"


def make_renderer(output: str, *, color: bool = False, escape: bool = False) -> BatchRenderer:
    """The renderer of a whole batch (one join) for ``-o output``.  ``color``
    applies to the ``short`` forms only; ``escape``: for a terminal."""
    one: Callable[[LogEntry], str]
    if output in ("json", "json-pretty"):
        one = render_json if output == "json" else render_json_pretty
        if escape:
            return lambda entries: escape_json_controls("".join(map(one, entries)))
    elif output in ("raw", "cat"):
        one = _render_raw_escaped if escape else render_raw
    elif output == "short":
        if not (color or escape):
            return render_text_batch
        one = partial(render_text, color=color, escape=escape)
    elif output == "short-iso":
        one = partial(render_short_iso, color=color, escape=escape)
    else:
        raise ValueError(f"unknown output {output!r}")
    return lambda entries: "".join(map(one, entries))


# ---------------------------------------------------------------------- sources


def source_counts(stats: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``(source, entries held)`` for every source in memlogd's stats, by name."""
    sources = stats.get("sources")
    if not isinstance(sources, Mapping):
        return []
    out = []
    for name in sorted(sources):
        info = sources[name]
        count = info.get("entries") if isinstance(info, Mapping) else None
        out.append((str(name), count if isinstance(count, int) else 0))
    return out


def source_evicted(stats: Mapping[str, Any]) -> dict[str, int]:
    """Each source's count of entries the ring evicted (memlogd's stats since
    the fair ring, SPEC 14; absent from older daemons' and upstream's)."""
    sources = stats.get("sources")
    if not isinstance(sources, Mapping):
        return {}
    out = {}
    for name, info in sources.items():
        count = info.get("evicted") if isinstance(info, Mapping) else None
        if isinstance(count, int):
            out[str(name)] = count
    return out


def render_sources(stats: Mapping[str, Any], *, output: str = "short", escape: bool = False) -> str:
    """``--list-sources``: one source per line with the entries memlogd holds of it,
    and how many of its entries the full ring evicted, when any.

    Text: ``NAME  COUNT``, names left-aligned, counts right-aligned, then
    ``  evicted N`` when N > 0; with ``output`` ``json`` one
    ``{"source":...,"entries":N,"evicted":N}`` object per line (``json-pretty``:
    indented; no ``evicted`` from a daemon that does not count it)."""
    counts = source_counts(stats)
    evicted = source_evicted(stats)
    if output in ("json", "json-pretty"):
        indent = 2 if output == "json-pretty" else None
        separators = (",", ": ") if indent else (",", ":")
        objects = []
        for name, count in counts:
            obj: dict[str, Any] = {"source": name, "entries": count}
            if name in evicted:
                obj["evicted"] = evicted[name]
            objects.append(obj)
        text = "".join(
            json.dumps(obj, ensure_ascii=False, indent=indent, separators=separators) + "\n"
            for obj in objects
        )
        return escape_json_controls(text) if escape else text
    names = [escape_controls(name) if escape else name for name, _ in counts]
    name_width = max(map(len, names), default=0)
    count_width = max((len(str(count)) for _, count in counts), default=0)
    return "".join(
        f"{name.ljust(name_width)}  {str(count).rjust(count_width)}"
        + (f"  evicted {evicted[raw]}" if evicted.get(raw) else "")
        + "\n"
        for name, (raw, count) in zip(names, counts, strict=True)
    )


# ---------------------------------------------------------------------- stats


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _printable(name: str) -> str:
    """A source name on one table row: control characters as ``\\xNN``."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def render_stats(stats: Mapping[str, Any]) -> str:
    """memlogd's statistics as a readable text table (totals, limits, sources)."""
    lines = ["memlogd"]
    scalar = [(k, v) for k, v in stats.items() if k not in ("limits", "sources", "roles")]
    width = max((len(k) for k, _ in scalar), default=0)
    lines += [f"  {key.ljust(width)}  {_cell(value)}" for key, value in scalar]
    limits = stats.get("limits")
    if isinstance(limits, Mapping) and limits:
        lines.append("limits")
        width = max(len(k) for k in limits)
        lines += [f"  {key.ljust(width)}  {_cell(value)}" for key, value in limits.items()]
    sources = stats.get("sources")
    if isinstance(sources, Mapping):
        columns = ["entries", "received", "evicted", "open", "pid", "uid"]
        rows = []
        for name in sorted(sources):
            info = sources[name]
            info = info if isinstance(info, Mapping) else {}
            rows.append([_printable(name), *(_cell(info.get(c)) for c in columns)])
        lines.append("sources")
        header = ["SOURCE", *(c.upper() for c in columns)]
        lines += ["  " + line for line in _table(header, rows, {1, 2, 3, 4, 5, 6})]
    roles = stats.get("roles")
    if isinstance(roles, Mapping) and roles:  # memlogd's in-process roles, each its state
        lines.append("roles")
        for name, fields in roles.items():
            lines.append(f"  {_printable(str(name))}")
            fields = fields if isinstance(fields, Mapping) else {}
            width = max((len(k) for k in fields), default=0)
            lines += [f"    {k.ljust(width)}  {_printable(_cell(v))}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"
