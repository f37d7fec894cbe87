"""Reading memlogd's answers, sans I/O (docs/protocol.md, "Reading answers"). PURE.

:class:`AnswerParser` is the only code that splits and decodes what memlogd
sends; :class:`memlogd.client.Subscription` drives it over a socket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, cast

from memlogd.errors import NotExtendedError, ProtocolError, RequestRefusedError
from memlogd.wire import protocol as proto
from memlogd.wire.timefmt import parse_time

# (text, index) -> (value, end), as json.loads scans (C when it can)
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

# _plain_entries: an entry line split at its quotes, as memlogd writes it
# (docs/protocol.md, "Entries"): {"time":"T","source":"S","msg":"M","seq":N}
_FIELDS = 14  # pieces a line adds to the split (the first line's "{" aside)
_KEYS = (
    *((1, "time"), (2, ":"), (4, ","), (5, "source"), (6, ":"), (8, ",")),
    *((9, "msg"), (10, ":"), (12, ","), (13, "seq")),
)  # pieces 3, 7, 11: T, S, M
_SEQ_TAILS = re.compile(r"(?::(?:0|[1-9][0-9]{0,18})\}\n\{)*:(?:0|[1-9][0-9]{0,18})\}")
_NOT_CONTROL = bytes(range(0x20, 0x100))  # deleted: the control bytes are left
_new_tuple = tuple.__new__  # a LogEntry from a tuple of its fields, without its Python __new__


class AnswerParser:
    """Reads one answer of memlogd, sans I/O (as h11 reads HTTP): ``feed`` it
    the bytes received, in any chunks, and get the replies they complete.

    In extended mode the first line must be the :class:`~memlogd.wire.protocol.Header`
    (or an :class:`~memlogd.wire.protocol.ErrorReply`, memlogd's refusal of the request);
    a line out of place,
    or one that does not decode, is a :class:`~memlogd.wire.protocol.Malformed` reply, never an
    exception, so that the caller decides what it means.  Base modes (0-2)
    carry entries only.
    """

    __slots__ = ("_decode", "_from_obj", "_tail", "extended", "header")

    def __init__(self, *, extended: bool) -> None:
        self.extended = extended
        self.header: proto.Header | None = None
        self._tail = b""
        self._decode = proto.decode_reply if extended else proto.decode_entry
        self._from_obj = proto.reply_from_obj if extended else proto.entry_from_obj

    def feed(self, data: bytes) -> list[proto.Answer]:
        """The replies completed by ``data`` (lines ending in ``\\n``), in order."""
        end = data.rfind(b"\n")
        if end < 0:
            self._tail += data
            return []
        complete = self._tail + data[:end] if self._tail else data[:end]
        self._tail = data[end + 1 :]
        try:
            text = complete.decode("utf-8")
        except UnicodeDecodeError:  # some line is not UTF-8: each line on its own
            return self._parse(complete.split(b"\n"))
        if not (self.extended and self.header is None):
            entries = _plain_entries(complete, text)
            if entries is not None:
                return entries
        return self._scan(text)

    def _scan(self, text: str) -> list[proto.Answer]:
        """Complete lines of valid UTF-8: as one JSON array when every line is
        a reply (:meth:`_scan_all`), else line by line (:meth:`_scan_lines`)."""
        if not (self.extended and self.header is None):
            replies = _scan_all(text, self._from_obj, self.extended)
            if replies is not None:
                return replies
        return self._scan_lines(text)

    def _scan_lines(self, text: str) -> list[proto.Answer]:
        """Complete lines of valid UTF-8, decoded in one go: each line's JSON
        value scanned in place (no split, no ``json.loads`` per line); a line
        the scan does not take whole goes through :meth:`_parse`, which gives
        exactly what decoding it alone gives (BENCHMARKS.md, "Clients")."""
        out: list[proto.Answer] = []
        scan, from_obj, size, pos = _scan_json, self._from_obj, len(text), 0
        header_first = self.extended and self.header is None
        while pos < size:
            nl = text.find("\n", pos)
            stop = size if nl < 0 else nl
            try:
                obj, end = scan(text, pos)
            except (StopIteration, ValueError, RecursionError):
                end = -1
            if end == stop and not header_first:
                try:
                    reply = from_obj(obj)
                except ProtocolError:
                    pass
                else:
                    if not isinstance(reply, proto.Header):
                        out.append(reply)
                        pos = stop + 1
                        continue
            out += self._parse([text[pos:stop].encode("utf-8")])
            header_first = self.extended and self.header is None
            pos = stop + 1
        return out

    def close(self) -> int:
        """At the end of the answer: the bytes of a last line without its newline
        are dropped (memlogd ends every line; a line cut short is what a daemon
        killed while sending left), and their count returned."""
        dropped, self._tail = len(self._tail), b""
        return dropped

    @property
    def pending(self) -> int:
        """Bytes received of a line not yet complete."""
        return len(self._tail)

    def _parse(self, lines: list[bytes]) -> list[proto.Answer]:
        out: list[proto.Answer] = []
        decode = self._decode
        for line in lines:
            if not line:
                continue
            try:
                reply = decode(line)
            except ProtocolError as exc:
                out.append(proto.Malformed(line, str(exc)))
                continue
            if self.extended:
                if isinstance(reply, proto.Header):
                    if self.header is not None:
                        out.append(proto.Malformed(line, "a second header line"))
                        continue
                    self.header = reply
                elif self.header is None and not isinstance(reply, proto.ErrorReply):
                    out.append(proto.Malformed(line, "expected the header line first"))
                    continue
            out.append(reply)
        return out


def _plain_entries(data: bytes, text: str) -> list[proto.Answer] | None:
    """The entries of the complete lines ``data`` (``text`` decoded) when every
    line is an entry with a seq exactly as memlogd writes it and its strings
    hold no backslash (so no escape to undo), else None: a few C calls for
    the whole chunk and the entries built by ``map`` and ``zip``, no dict and
    no Python code per line (BENCHMARKS.md, "logship: the answer in bulk").

    Without a backslash a quote can only delimit a string, so ``text`` split
    at its quotes gives each line's pieces in place: the keys and the
    punctuation between them (each checked in one ``list.count``), the
    strings' values (T, S, M), and what joins a seq to the next line
    (``:N}\\n{``, all checked by one regex).  With no control byte but those
    newlines (JSON refuses them raw in a string; ``parse_time`` refuses any
    in T), each line is the JSON object with those values, and the entry is
    what :func:`_scan_all` and decoding the line alone make of it."""
    if "\\" in text:
        return None
    lines = text.count("\n") + 1
    pieces = text.split('"')
    if len(pieces) != _FIELDS * lines + 1 or pieces[0] != "{":
        return None
    for column, want in _KEYS:
        if pieces[column::_FIELDS].count(want) != lines:
            return None
    tails = "".join(pieces[_FIELDS::_FIELDS])
    if _SEQ_TAILS.fullmatch(tails) is None or len(data.translate(None, _NOT_CONTROL)) != lines - 1:
        return None
    try:
        times = list(map(parse_time, pieces[3::_FIELDS]))
    except ProtocolError:  # a time that is not RFC 3339: what each line alone gives
        return None
    seqs = map(int, tails[1:-1].split("}\n{:"))  # ':N}\n{:N}': each N
    fields = zip(times, pieces[7::_FIELDS], pieces[11::_FIELDS], seqs, strict=True)
    return cast(list[proto.Answer], list(map(_new_tuple, repeat(proto.LogEntry), fields)))


def _scan_all(
    text: str, from_obj: Callable[[Any], Any], extended: bool
) -> list[proto.Answer] | None:
    """The replies of ``text`` (complete lines) decoded as one JSON array, in one
    C call instead of a scan per line (BENCHMARKS.md, "logship as an outbox"),
    or None when that does not give what decoding each line alone gives.

    Each newline becomes ``,\n``: outside a string a separator, inside one (a
    raw newline is not allowed there) an error; so no value can span two
    lines, every line holds at least one value, and as many values as lines
    means one value per line.  A header (it needs :meth:`AnswerParser._parse`'s
    check) or anything :func:`~memlogd.wire.protocol.reply_from_obj` refuses
    sends the caller line by line."""
    try:
        values = json.loads("[" + text.replace("\n", ",\n") + "]")
    except (ValueError, RecursionError):
        return None
    if len(values) != text.count("\n") + 1:
        return None
    replies: list[proto.Answer] = []
    append = replies.append
    entry = proto.LogEntry
    try:
        for value in values:
            # an entry (the bulk) as entry_from_obj makes it, without its calls
            if type(value) is dict and not (
                extended
                and (
                    "memlogd" in value or "dropped" in value or "stats" in value or "error" in value
                )
            ):
                get = value.get
                when, source, msg, seq = get("time"), get("source"), get("msg"), get("seq")
                if (
                    type(when) is str
                    and type(source) is str
                    and type(msg) is str
                    and (seq is None or type(seq) is int)
                ):
                    append(entry(parse_time(when), source, msg, seq))
                    continue
            reply = from_obj(value)
            if type(reply) is proto.Header:
                return None
            append(reply)
    except ProtocolError:
        return None
    return replies


def stats_in(answers: Iterable[proto.Answer]) -> dict[str, Any]:
    """The statistics an answer to ``{"stats": true}`` carries: memlogd's refusal
    is a :class:`RequestRefusedError`, a malformed reply a :class:`ProtocolError`,
    no statistics at all (upstream's memlogd) a :class:`NotExtendedError`."""
    for reply in answers:
        if isinstance(reply, proto.ErrorReply):
            raise RequestRefusedError(reply.message)
        if isinstance(reply, proto.Malformed):
            raise ProtocolError(f"malformed reply from memlogd: {reply.reason}")
        if isinstance(reply, proto.Stats):
            return dict(reply.values)
    raise NotExtendedError("memlogd sent no statistics (upstream's memlogd?)")
