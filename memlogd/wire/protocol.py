"""The wire protocol, defined once for every program (docs/protocol.md). PURE: no I/O.

Two sockets:

* the *log socket* (``SOCK_DGRAM``): a datagram is a source name plus one or
  more fds in ``SCM_RIGHTS`` (the ancillary side lives in :mod:`memlogd.wire.fdmsg`);
* the *query socket* (``SOCK_STREAM``): the client sends one mode byte; the
  server answers with JSON lines.  Modes 0-2 are upstream's; mode 3 (extended)
  is ours and is followed by one JSON request line.

Entries on the wire are ``{"time":...,"source":...,"msg":...}`` with exactly
those keys in that order (upstream clients parse them), plus ``"seq"`` at the
end in extended mode.  :class:`memlogd.wire.answerparser.AnswerParser` reads any
answer: it is the only code that splits and decodes what memlogd sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from memlogd.errors import ProtocolError
from memlogd.wire.timefmt import format_time, parse_time

MAX_NAME_BYTES = 512  # of a source name, as received
UNNAMED_SOURCE = "unnamed"
MAX_FDS_PER_DATAGRAM = 253  # Linux SCM_MAX_FD
MAX_REQUEST_BYTES = 64 * 1024  # extended request line, newline included
MAX_REQUEST_GLOBS = 64  # source globs in one request (SPEC 19: a query's cost is bounded)
MAX_GLOB_BYTES = 256  # UTF-8 bytes of one glob
INTERNAL_SOURCE = "memlogd"  # the daemon's own events


class QueryMode(IntEnum):
    DUMP = 0
    FOLLOW = 1
    DUMP_FOLLOW = 2
    EXTENDED = 3

    @classmethod
    def base(cls, *, dump: bool, follow: bool) -> QueryMode:
        """The upstream mode that asks for the same: dump, follow, or both."""
        if dump and follow:
            return cls.DUMP_FOLLOW
        return cls.FOLLOW if follow else cls.DUMP


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


# --------------------------------------------------------------------------- entries


class LogEntry(NamedTuple):
    """One line as memlogd keeps it. ``seq`` is set only in extended mode.

    A named tuple: made once per entry a client reads, it costs a third of
    a frozen dataclass (BENCHMARKS.md, "Clients")."""

    time_ns: int
    source: str
    msg: str
    seq: int | None = None

    @property
    def time(self) -> str:
        return format_time(self.time_ns)


try:  # the C accelerated encoder of a str as a JSON string (keeps non-ASCII)
    from _json import encode_basestring as _encode_basestring
except ImportError:  # pragma: no cover - CPython always has it
    from json.encoder import py_encode_basestring as _encode_basestring

json_string = _encode_basestring  # a str as JSON text, quotes included (shared with the daemon)


def entry_prefix(time_ns: int, source: str) -> str:
    """The JSON text of an entry up to its message: shared by a whole batch."""
    return '{"time":"' + format_time(time_ns) + '","source":' + json_string(source) + ',"msg":'


def entry_message(encoded: bytes, skip: int) -> str:
    """The message of an encoded entry (without newline, without ``seq``) whose
    :func:`entry_prefix` is ``skip`` bytes long."""
    text = encoded[skip:-1]  # the message as a JSON string
    if b"\\" not in text:
        return text[1:-1].decode("utf-8", "replace")
    msg: str = json.loads(text)
    return msg


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
    return entry_from_obj(_load_json(line))


def entry_from_obj(obj: Any) -> LogEntry:
    if type(obj) is not dict:
        raise ProtocolError("entry is not a JSON object")
    get = obj.get
    time_text: Any = get("time")
    source: Any = get("source")
    msg: Any = get("msg")
    seq: Any = get("seq")
    if type(time_text) is not str or type(source) is not str or type(msg) is not str:
        for key in ("time", "source", "msg"):
            _expect_str(obj, key)
    if seq is not None and type(seq) is not int:  # a bool is not a seq either
        raise ProtocolError("entry field 'seq' is not an integer")
    return LogEntry(parse_time(time_text), source, msg, seq)


# --------------------------------------------------------------------------- extended query

_REQUEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "dump": bool,
    "follow": bool,
    "sources": list,
    "after_seq": int,
    "tail": int,
    "since": str,
    "stats": bool,
    "priority": (int, list),
}


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
    priority: tuple[int, int] | None = None  # levels FROM..TO (0 emerg .. 7 debug), FROM <= TO


def _parse_priority(value: int | list[Any]) -> tuple[int, int]:
    """The ``priority`` key: a level N (N and more severe: 0..N) or ``[FROM, TO]``
    in either order, each 0-7 (SPEC 15)."""
    ends = [0, value] if isinstance(value, int) else value
    if len(ends) != 2 or not all(type(end) is int and 0 <= end <= 7 for end in ends):
        raise ProtocolError("request key 'priority' must be a level 0-7 or [FROM, TO] of them")
    lo, hi = ends
    return (lo, hi) if lo <= hi else (hi, lo)


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
        if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
            names = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ProtocolError(f"request key {key!r} must be of type {names}")
    sources = obj.get("sources", [])
    if not all(isinstance(s, str) for s in sources):
        raise ProtocolError("request key 'sources' must be a list of strings")
    if len(sources) > MAX_REQUEST_GLOBS:
        raise ProtocolError(f"request key 'sources' holds more than {MAX_REQUEST_GLOBS} globs")
    if any(len(s.encode("utf-8", "surrogatepass")) > MAX_GLOB_BYTES for s in sources):
        raise ProtocolError(f"request key 'sources' holds a glob over {MAX_GLOB_BYTES} bytes")
    for key in ("after_seq", "tail"):
        if key in obj and obj[key] < 0:
            raise ProtocolError(f"request key {key!r} must not be negative")
    since = obj.get("since")
    try:
        since_ns = None if since is None else parse_time(since)
    except ProtocolError as exc:
        raise ProtocolError(f"request key 'since' is {exc}") from None
    priority = obj.get("priority")
    return QueryRequest(
        dump=obj.get("dump", True),
        follow=obj.get("follow", False),
        sources=tuple(sources),
        after_seq=obj.get("after_seq"),
        tail=obj.get("tail"),
        since_ns=since_ns,
        stats=obj.get("stats", False),
        priority=None if priority is None else _parse_priority(priority),
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
    if request.priority is not None:
        lo, hi = request.priority
        obj["priority"] = hi if lo == 0 else [lo, hi]
    return bytes([QueryMode.EXTENDED]) + json.dumps(obj, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Every entry of daemon ``instance`` up to ``seq`` has been accounted for:
    a reader that saved it resumes with ``after_seq`` (docs/protocol.md)."""

    instance: str
    seq: int


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
    return reply_from_obj(_load_json(line))


def reply_from_obj(obj: Any) -> Reply:
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
    return entry_from_obj(obj)


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


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line of an answer that is not what the protocol allows there."""

    line: bytes
    reason: str


Answer = Reply | Malformed
