"""The wire protocol, defined once for every program (SPEC section 2). PURE: no I/O.

Two sockets:

* the *log socket* (``SOCK_DGRAM``): a datagram is a source name plus one or
  more fds in ``SCM_RIGHTS`` (the ancillary side lives in :mod:`memlogd.fdmsg`);
* the *query socket* (``SOCK_STREAM``): the client sends one mode byte; the
  server answers with JSON lines.  Modes 0-2 are upstream's; mode 3 (extended)
  is ours and is followed by one JSON request line.

Entries on the wire are ``{"time":...,"source":...,"msg":...}`` with exactly
those keys in that order (upstream clients parse them), plus ``"seq"`` at the
end in extended mode.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

DEFAULT_LOG_SOCKET = "/var/run/linuxkit-external-logging.sock"
DEFAULT_QUERY_SOCKET = "/var/run/memlogdq.sock"

DEFAULT_MAX_LINES = 5000
DEFAULT_MAX_LINE_LEN = 1024  # bytes
DEFAULT_MAX_SOURCES = 1024  # fds open at once
DEFAULT_MAX_CLIENTS = 256  # query connections at once
DEFAULT_SOCKET_MODE = 0o600

MAX_NAME_BYTES = 512  # of a source name, as received
UNNAMED_SOURCE = "unnamed"
MAX_FDS_PER_DATAGRAM = 253  # Linux SCM_MAX_FD
MODE_TIMEOUT_S = 5.0  # a query client must send its mode (and request) within this
MAX_REQUEST_BYTES = 64 * 1024  # extended request line, newline included
INTERNAL_SOURCE = "memlogd"  # the daemon's own events


class MemlogdError(Exception):
    """Root of every error this project raises on purpose."""


class ProtocolError(MemlogdError):
    """Bytes that do not follow the wire protocol."""


class QueryMode(IntEnum):
    DUMP = 0
    FOLLOW = 1
    DUMP_FOLLOW = 2
    EXTENDED = 3


# --------------------------------------------------------------------------- names


def decode_name(raw: bytes) -> str:
    """A source name as memlogd keeps it: at most 512 bytes, cut at a UTF-8
    boundary, decoded with replacement; empty -> ``unnamed``."""
    if len(raw) > MAX_NAME_BYTES:
        raw = raw[: utf8_boundary(raw, MAX_NAME_BYTES)]
    name = raw.decode("utf-8", "replace")
    return name or UNNAMED_SOURCE


def utf8_boundary(data: bytes, limit: int) -> int:
    """The largest cut point ``<= limit`` that does not split a UTF-8 sequence.

    Continuation bytes (``0b10xxxxxx``) are stepped over backwards, at most
    three of them (a UTF-8 sequence is at most four bytes), so invalid input
    still yields a cut near the limit.
    """
    if limit >= len(data):
        return len(data)
    cut = limit
    while cut > 0 and limit - cut < 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    if (data[cut] & 0xC0) == 0x80:
        return limit  # not UTF-8 here: any cut is as good as another
    return cut


# --------------------------------------------------------------------------- time

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,  # Unicode digits such as "٢٠١٩" are not RFC 3339
)


def _format_seconds(secs: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC; the year always has four digits, as in Go
    (``strftime("%Y")`` does not pad years before 1000 on glibc)."""
    d = _EPOCH + timedelta(seconds=secs)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"


@functools.lru_cache(maxsize=8)  # a batch's time is formatted for its JSON and its echo
def format_time(time_ns: int) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction removed,
    no fraction at all when it is zero."""
    secs, frac = divmod(time_ns, 1_000_000_000)
    text = _format_seconds(secs)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def format_time_seconds(time_ns: int) -> str:
    """Go's ``time.RFC3339`` in UTC (whole seconds)."""
    return _format_seconds(time_ns // 1_000_000_000) + "Z"


@functools.lru_cache(maxsize=256)  # the lines of one batch share their time text
def parse_time(text: str) -> int:
    """An RFC 3339 time (any offset) -> ns since the epoch.

    As Go does, digits of the fraction beyond nanoseconds are ignored, and a
    leap second ``:60`` is accepted (it is the next minute's ``:00``).
    """
    m = _TIME_RE.match(text)
    if m is None:
        raise ProtocolError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    offset = 0
    if m.group(9):
        off_h, off_m = int(m.group(10)), int(m.group(11))
        offset = off_h * 3600 + off_m * 60
        if m.group(9) == "-":
            offset = -offset
        if off_h > 23 or off_m > 59:
            raise ProtocolError(f"not an RFC 3339 time (offset out of range): {text!r}")
    if second > 60:
        raise ProtocolError(f"not an RFC 3339 time (second out of range): {text!r}")
    leap = second - 59 if second == 60 else 0
    try:
        dt = datetime(year, month, day, hour, minute, second - leap, tzinfo=UTC)
    except ValueError:
        raise ProtocolError(f"not an RFC 3339 time: {text!r}") from None
    secs = (dt - _EPOCH) // timedelta(seconds=1) + leap - offset
    frac = int((m.group(7) or "0")[:9].ljust(9, "0"))
    return secs * 1_000_000_000 + frac


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One line as memlogd keeps it. ``seq`` is set only in extended mode."""

    time_ns: int
    source: str
    msg: str
    seq: int | None = None

    @property
    def time(self) -> str:
        return format_time(self.time_ns)


try:  # the C accelerated encoder of a str as a JSON string (keeps non-ASCII)
    from _json import encode_basestring as _encode_str
except ImportError:  # pragma: no cover - CPython always has it
    from json.encoder import py_encode_basestring as _encode_str


def entry_prefix(time_ns: int, source: str) -> str:
    """The JSON text of an entry up to its message: shared by a whole batch."""
    return '{"time":"' + format_time(time_ns) + '","source":' + _encode_str(source) + ',"msg":'


_JSON_SPECIAL = bytes(c for c in range(32) if c != 10) + b'"\\'
_JSON_PLAIN = bytes(
    c for c in range(256) if c not in _JSON_SPECIAL
)  # deleted: what is left needs work


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_batch(time_ns: int, source: str, lines: Sequence[bytes]) -> list[bytes]:
    """Encode lines read together from one source as JSON objects (no newline).

    The work is done per batch, by C code.  When the batch has nothing to
    escape and is valid UTF-8 (the common case), the lines' bytes are their
    JSON text and are joined with the shared prefix directly.  Otherwise the
    lines are decoded together (invalid UTF-8 -> U+FFFD, which is the same as
    decoding each line since ``\\n`` never belongs to a multi-byte sequence),
    JSON-escaped by one ``map``, joined and split once.
    """
    if not lines:
        return []
    head = entry_prefix(time_ns, source)
    block = b"\n".join(lines)
    if not block.translate(None, _JSON_PLAIN) and (block.isascii() or _valid_utf8(block)):
        # nothing to escape or replace: the lines' bytes are their JSON text
        # joined with a leading empty line, so the whole batch is copied once: the
        # first piece is then a stray '"}' and the last entry lacks its '"}'
        sep = b'"}\n' + head.encode("utf-8", "replace") + b'"'
        entries = sep.join([b"", *lines]).split(b"\n")
        del entries[0]
        entries[-1] += b'"}'
        return entries
    texts = block.decode("utf-8", "replace").split("\n")
    body = ("}\n" + head).join(map(_encode_str, texts))
    return (head + body + "}").encode("utf-8", "replace").split(b"\n")


def encode_entry(entry: LogEntry) -> bytes:
    """One entry as a JSON line (with ``\\n``); ``seq`` last when set."""
    text = entry_prefix(entry.time_ns, entry.source) + _encode_str(entry.msg)
    if entry.seq is not None:
        text += ',"seq":' + str(entry.seq)
    return (text + "}\n").encode("utf-8", "replace")


def add_seq(encoded: bytes, seq: int) -> bytes:
    """An encoded entry (without newline) with ``"seq"`` appended as its last key."""
    return b'%s,"seq":%d}' % (encoded[:-1], seq)


def _expect_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"entry field {key!r} is not a string")
    return value


def _load_json(line: bytes | str) -> Any:
    """``json.loads`` with every failure as a ProtocolError: bad syntax, bad
    UTF-8, an integer of too many digits, and nesting too deep for the parser
    (which raises RecursionError, e.g. for 64 KiB of ``[``)."""
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON line: {exc}") from None


def decode_entry(line: bytes | str) -> LogEntry:
    """Parse one JSON entry line (base or extended)."""
    obj = _load_json(line)
    if not isinstance(obj, dict):
        raise ProtocolError("entry is not a JSON object")
    return _entry_from_obj(obj)


def _entry_from_obj(obj: Mapping[str, Any]) -> LogEntry:
    seq = obj.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
        raise ProtocolError("entry field 'seq' is not an integer")
    return LogEntry(
        time_ns=parse_time(_expect_str(obj, "time")),
        source=_expect_str(obj, "source"),
        msg=_expect_str(obj, "msg"),
        seq=seq,
    )


# --------------------------------------------------------------------------- extended query

_REQUEST_KEYS = {
    "dump": bool,
    "follow": bool,
    "sources": list,
    "after_seq": int,
    "tail": int,
    "since": str,
    "stats": bool,
}


_SET_OPS = re.compile(r"([&~|])")
_STAR = "*"  # a run of stars among the pieces of a glob (no other piece is "*")


def _glob_class(body: str) -> str:
    """The regex of a bracket expression's body (between ``[`` and ``]``), with
    fnmatch's meaning: ``!`` negates, ``a-z`` is a range, an empty range such
    as ``z-a`` matches nothing.  Linear in ``len(body)``."""
    if "-" not in body:
        text = body.replace("\\", "\\\\")
    else:
        # Split at every hyphen that can make a range, as fnmatch does: a piece
        # between two such hyphens has at least two characters.
        pieces = []
        start = 0
        k = 2 if body[0] == "!" else 1
        while (k := body.find("-", k)) >= 0:
            pieces.append(body[start:k])
            start = k + 1
            k += 3
        if start < len(body):
            pieces.append(body[start:])
        else:
            pieces[-1] += "-"
        # A range whose ends are in the wrong order is empty: drop it (its two
        # ends and the hyphen). Each join is decided on the original pieces,
        # which gives the same answer as fnmatch's repeated merging.
        joined = [pieces[i - 1][-1] > pieces[i][0] for i in range(1, len(pieces))]
        out = []
        for i, piece in enumerate(pieces):
            lo = 1 if i > 0 and joined[i - 1] else 0
            hi = len(piece) - 1 if i < len(joined) and joined[i] else len(piece)
            if i > 0 and not joined[i - 1]:
                out.append("-")
            out.append(piece[lo:hi].replace("\\", "\\\\").replace("-", "\\-"))
        text = "".join(out)
    text = _SET_OPS.sub(r"\\\1", text)
    if not text:
        return "(?!)"  # an empty range never matches
    if text == "!":
        return "."  # a negated empty range matches any character
    if text[0] == "!":
        return "[^" + text[1:] + "]"
    if text[0] in "^[":
        return "[\\" + text + "]"
    return "[" + text + "]"


def glob_regex(glob: str) -> str:
    """A shell-style glob as a regular expression with exactly the meaning of
    :func:`fnmatch.fnmatchcase` (``*``, ``?``, ``[...]``, ``[!...]``).

    ``fnmatch.translate`` is quadratic in the worst case (every unclosed ``[``
    scans to the end, and ranges are merged one by one), so 64 KiB of request
    could stall the daemon for a minute; this translation is linear.  Runs of
    fixed text after a ``*`` are matched atomically, as fnmatch does, so that
    matching is never exponential.
    """
    parts: list[str] = []  # regex pieces, and _STAR for each run of stars
    i, n = 0, len(glob)
    last_close = glob.rfind("]")
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            if not parts or parts[-1] != _STAR:
                parts.append(_STAR)
        elif c == "?":
            parts.append(".")
        elif c == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            close = glob.find("]", j) if j <= last_close else -1
            if close < 0:
                parts.append("\\[")
            else:
                parts.append(_glob_class(glob[i:close]))
                i = close + 1
        else:
            parts.append(re.escape(c))
    out: list[str] = []
    k = 0
    while k < len(parts) and parts[k] != _STAR:
        out.append(parts[k])
        k += 1
    while k < len(parts):
        k += 1  # the star
        fixed: list[str] = []
        while k < len(parts) and parts[k] != _STAR:
            fixed.append(parts[k])
            k += 1
        if k == len(parts):
            out.append(".*" + "".join(fixed))
        else:
            out.append("(?>.*?" + "".join(fixed) + ")")
    return "(?s:" + "".join(out) + ")\\Z"


_MATCH_CACHE_SIZE = 4096  # source names remembered per request


@dataclass(frozen=True)
class QueryRequest:
    """An extended (mode 3) query. Defaults: dump everything, do not follow."""

    dump: bool = True
    follow: bool = False
    sources: tuple[str, ...] = ()
    after_seq: int | None = None
    tail: int | None = None
    since_ns: int | None = None
    stats: bool = False
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _matched: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.sources:
            joined = "|".join(glob_regex(glob) for glob in self.sources)
            object.__setattr__(self, "_pattern", re.compile(joined))

    def matches_source(self, source: str) -> bool:
        """Whether ``source`` matches one of the globs (any source if there are none).

        Answers are remembered per name: a ring holds few distinct sources, and
        thousands of globs cost milliseconds per match."""
        if self._pattern is None:
            return True
        known = self._matched.get(source)
        if known is None:
            known = self._pattern.match(source) is not None
            if len(self._matched) >= _MATCH_CACHE_SIZE:
                self._matched.clear()
            self._matched[source] = known
        return known


def parse_request(line: bytes) -> QueryRequest:
    """Parse the JSON line after mode byte 3; any deviation is a ProtocolError."""
    if len(line) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    try:
        obj = _load_json(line)
    except ProtocolError:
        raise ProtocolError("request is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("request is not a JSON object")
    for key, value in obj.items():
        want = _REQUEST_KEYS.get(key)
        if want is None:
            raise ProtocolError(f"unknown request key {key!r}")
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ProtocolError(f"request key {key!r} must be of type {want.__name__}")
    sources = obj.get("sources", [])
    if not all(isinstance(s, str) for s in sources):
        raise ProtocolError("request key 'sources' must be a list of strings")
    for key in ("after_seq", "tail"):
        if key in obj and obj[key] < 0:
            raise ProtocolError(f"request key {key!r} must not be negative")
    since = obj.get("since")
    try:
        since_ns = None if since is None else parse_time(since)
    except ProtocolError as exc:
        raise ProtocolError(f"request key 'since' is {exc}") from None
    return QueryRequest(
        dump=obj.get("dump", True),
        follow=obj.get("follow", False),
        sources=tuple(sources),
        after_seq=obj.get("after_seq"),
        tail=obj.get("tail"),
        since_ns=since_ns,
        stats=obj.get("stats", False),
    )


def encode_request(request: QueryRequest) -> bytes:
    """Mode byte 3 and the request line, ready to send."""
    obj: dict[str, Any] = {"dump": request.dump, "follow": request.follow}
    if request.sources:
        obj["sources"] = list(request.sources)
    if request.after_seq is not None:
        obj["after_seq"] = request.after_seq
    if request.tail is not None:
        obj["tail"] = request.tail
    if request.since_ns is not None:
        obj["since"] = format_time(request.since_ns)
    if request.stats:
        obj["stats"] = True
    return bytes([QueryMode.EXTENDED]) + json.dumps(obj, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Header:
    """First line of every extended answer."""

    instance: str
    first_seq: int
    next_seq: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """``count`` entries from ``seq`` on that the client asked for and cannot get."""

    seq: int
    count: int


@dataclass(frozen=True, slots=True)
class Stats:
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorReply:
    message: str


Reply = Header | LogEntry | Dropped | Stats | ErrorReply


def encode_header(header: Header) -> bytes:
    obj = {
        "memlogd": {
            "instance": header.instance,
            "first_seq": header.first_seq,
            "next_seq": header.next_seq,
        }
    }
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def encode_dropped(seq: int, count: int) -> bytes:
    return b'{"seq":%d,"dropped":%d}\n' % (seq, count)


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode() + b"\n"


def encode_stats(values: Mapping[str, Any]) -> bytes:
    return json.dumps({"stats": values}, separators=(",", ":")).encode() + b"\n"


def decode_reply(line: bytes | str) -> Reply:
    """Parse one line of an extended answer into its kind."""
    obj = _load_json(line)
    if not isinstance(obj, dict):
        raise ProtocolError("reply is not a JSON object")
    if "memlogd" in obj:
        head = obj["memlogd"]
        if not isinstance(head, dict) or not isinstance(head.get("instance"), str):
            raise ProtocolError("malformed header line")
        return Header(head["instance"], _reply_int(head, "first_seq"), _reply_int(head, "next_seq"))
    if "dropped" in obj:
        return Dropped(_reply_int(obj, "seq"), _reply_int(obj, "dropped"))
    if "stats" in obj:
        if not isinstance(obj["stats"], dict):
            raise ProtocolError("malformed stats line")
        return Stats(obj["stats"])
    if "error" in obj:
        return ErrorReply(str(obj["error"]))
    return _entry_from_obj(obj)


def _reply_int(obj: Mapping[str, Any], key: str) -> int:
    """An integer field of a reply (a JSON float, bool or string is malformed)."""
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(f"reply field {key!r} is not an integer")
    return value


def join_lines(encoded: Iterable[bytes]) -> bytes:
    """Encoded entries (without newlines) as the bytes to send: one copy."""
    parts = list(encoded)
    if not parts:
        return b""
    parts.append(b"")  # the last entry's newline, without copying the whole again
    return b"\n".join(parts)
