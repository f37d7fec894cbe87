"""How logread shows entries, stats and times. PURE: no I/O.

* :func:`render_text`: upstream's ``TIME;SOURCE;MSG`` (``;`` in SOURCE as ``\\;``),
  optionally with the source coloured (:func:`source_color`);
* :func:`render_json`: the entry object with ``seq``, byte for byte as memlogd
  sends it in extended mode;
* :func:`render_raw`: the message only;
* :func:`render_stats`: a readable table of the daemon's statistics;
* :func:`parse_since`: ``--since`` values (``10m``, ``2h``, ``1d``, ``1h30m``, or an
  RFC 3339 time) to nanoseconds since the epoch.

Every renderer returns one line *with* its ``\\n``, so a batch is one join.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

from memlogd.errors import ProtocolError
from memlogd.protocol import LogEntry, entry_prefix
from memlogd.timefmt import format_time, parse_time

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

_UNIT_NS = {
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
    "w": 7 * 86400 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+\Z")


class SinceError(ValueError):
    """A ``--since`` value that is neither a duration nor an RFC 3339 time."""


def escape_source(source: str) -> str:
    """A source as upstream logread writes it: every ``;`` as ``\\;``."""
    return source.replace(";", "\\;")


def source_color(source: str) -> str:
    """The ANSI colour of a source: a stable hash, the same in every run."""
    return PALETTE[zlib.crc32(source.encode("utf-8", "surrogatepass")) % len(PALETTE)]


@lru_cache(maxsize=64)
def _time_text(time_ns: int) -> str:
    """format_time, remembered: the lines of one memlogd batch share their time."""
    return format_time(time_ns)


def render_text(entry: LogEntry, *, color: bool = False) -> str:
    """``TIME;SOURCE;MSG\\n`` (Go's RFC3339Nano time); with ``color`` the source
    (and only it) is wrapped in its ANSI colour."""
    source = escape_source(entry.source)
    if color:
        source = source_color(entry.source) + source + RESET
    return _time_text(entry.time_ns) + ";" + source + ";" + entry.msg + "\n"


def render_json(entry: LogEntry) -> str:
    """The entry object as memlogd sends it (keys ``time, source, msg[, seq]``)."""
    text = _prefix(entry.time_ns, entry.source) + encode_basestring(entry.msg)
    if entry.seq is not None:
        text += ',"seq":' + str(entry.seq)
    return text + "}\n"


@lru_cache(maxsize=64)
def _prefix(time_ns: int, source: str) -> str:
    return entry_prefix(time_ns, source)


def render_raw(entry: LogEntry) -> str:
    """The message alone."""
    return entry.msg + "\n"


def parse_since(text: str, now_ns: int) -> int:
    """``--since`` -> ns since the epoch: a duration before ``now_ns`` (``30s``, ``10m``,
    ``2h``, ``1d``, ``1w``, ``500ms``, combined as ``1h30m``) or an RFC 3339 time."""
    value = text.strip()
    if _DURATION.match(value):
        total = 0
        for number, unit in _DURATION_PART.findall(value):
            whole, _, frac = number.partition(".")
            scale = _UNIT_NS[unit]
            total += int(whole) * scale
            if frac:
                total += int(frac) * scale // 10 ** len(frac)
        return now_ns - total
    try:
        return parse_time(value)
    except ProtocolError:
        raise SinceError(
            f"{text!r} is neither a duration (like 30s, 10m, 2h, 1d) nor an RFC 3339 time"
        ) from None


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
    scalar = [(k, v) for k, v in stats.items() if k not in ("limits", "sources")]
    width = max((len(k) for k, _ in scalar), default=0)
    lines += [f"  {key.ljust(width)}  {_cell(value)}" for key, value in scalar]
    limits = stats.get("limits")
    if isinstance(limits, Mapping) and limits:
        lines.append("limits")
        width = max(len(k) for k in limits)
        lines += [f"  {key.ljust(width)}  {_cell(value)}" for key, value in limits.items()]
    sources = stats.get("sources")
    if isinstance(sources, Mapping):
        columns = ["entries", "received", "open", "pid", "uid"]
        rows = []
        for name in sorted(sources):
            info = sources[name]
            info = info if isinstance(info, Mapping) else {}
            rows.append([_printable(name), *(_cell(info.get(c)) for c in columns)])
        lines.append("sources")
        header = ["SOURCE", *(c.upper() for c in columns)]
        lines += ["  " + line for line in _table(header, rows, {1, 2, 3, 4, 5})]
    return "\n".join(lines) + "\n"
