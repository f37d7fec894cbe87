"""RELP (the Reliable Event Logging Protocol) as librelp speaks it. PURE: no I/O.

docs/logship.md, "RELP". Every frame, in both directions, is::

    TXNR SP COMMAND SP DATALEN [SP DATA] LF

TXNR is 1-9 digits, COMMAND 1-32 ASCII letters, DATALEN 1-9 digits; with a
DATALEN of 0 there is neither the SP nor DATA.  The client sends ``open`` (its
offers), then ``syslog`` frames, then ``close``; the server answers each with
``rsp`` carrying the same TXNR, and may send ``serverclose`` (TXNR 0) before it
drops the connection.  A session's transaction numbers start at 1 and each
frame takes exactly the next one (librelp's server tears the session down on
any gap); after 999,999,999 comes 1.

This module only turns values into bytes and bytes into values:

* :func:`encode_frame`, :func:`open_offers`, :func:`syslog_frame` (and
  :func:`syslog_frames`, a batch of them);
* :class:`FrameParser` and :class:`ResponseParser`, fed bytes in any chunks
  (as h11 is), giving :class:`Frame`, :class:`Response` and
  :class:`ServerClose`;
* :class:`TxnrCounter`, the numbering rule;
* :class:`AckWindow`, the messages sent and not yet acknowledged.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from memlogd.errors import ProtocolError

MAX_TXNR = 999_999_999  # the next one after it is 1
MAX_DATALEN = 999_999_999  # DATALEN has at most 9 digits
DEFAULT_MAX_DATA = 128 * 1024  # bytes of DATA accepted in one frame (librelp's default)
DEFAULT_WINDOW = 128  # messages sent and not yet acknowledged (librelp's default)
MAX_WINDOW = 1_000_000  # far below MAX_TXNR, so outstanding numbers never collide
RELP_VERSION = 0  # the version librelp offers (its documentation's "1" is not used)

CMD_OPEN = "open"
CMD_SYSLOG = "syslog"
CMD_CLOSE = "close"
CMD_RSP = "rsp"
CMD_SERVERCLOSE = "serverclose"
OK = 200  # the response code of success; anything else is an error

_LF = 0x0A


class RelpError(ProtocolError):
    """Something about RELP went wrong (the root of this module's errors)."""


class RelpFrameError(RelpError):
    """Bytes received that are not a RELP frame this side accepts."""


class RelpOpenError(RelpError):
    """The server refused the session, or its offers do not allow ``syslog``."""


class AckError(RelpError):
    """An acknowledgement of a transaction number that is not outstanding."""


class RelpUsageError(RelpError, ValueError):
    """A call with a value RELP cannot carry (a mistake of the caller)."""


# --------------------------------------------------------------------------- encoding

_COMMAND_RE = re.compile(r"[A-Za-z]{1,32}\Z")


def encode_frame(txnr: int, command: str, data: bytes = b"") -> bytes:
    """One frame: ``b"1 syslog 2 hi\\n"``; ``b"3 close 0\\n"`` without data."""
    if not 0 <= txnr <= MAX_TXNR:
        raise RelpUsageError(f"transaction number {txnr} is outside 0..{MAX_TXNR}")
    if _COMMAND_RE.match(command) is None:
        raise RelpUsageError(f"command {command!r} is not 1-32 ASCII letters")
    if len(data) > MAX_DATALEN:
        raise RelpUsageError(f"{len(data)} bytes of data is more than a frame can carry")
    if not data:
        return b"%d %s 0\n" % (txnr, command.encode("ascii"))
    return b"%d %s %d %s\n" % (txnr, command.encode("ascii"), len(data), data)


def syslog_frame(txnr: int, message: bytes) -> bytes:
    """A ``syslog`` frame carrying one formatted syslog message (logship's hot
    path: what :func:`encode_frame` checks, without the command's)."""
    if message and 0 <= txnr <= MAX_TXNR and len(message) <= MAX_DATALEN:
        return b"%d syslog %d %s\n" % (txnr, len(message), message)
    return encode_frame(txnr, CMD_SYSLOG, message)


def syslog_frames(first_txnr: int, messages: Sequence[bytes]) -> bytes:
    """The ``syslog`` frames of ``messages``, numbered from ``first_txnr`` on:
    exactly ``b"".join(syslog_frame(first_txnr + i, m) ...)``, built in one go
    (logship sends a window's worth at once)."""
    last = first_txnr + len(messages) - 1
    if (
        first_txnr < 0
        or last > MAX_TXNR
        or not all(messages)
        or max(map(len, messages), default=0) > MAX_DATALEN
    ):
        return b"".join([syslog_frame(first_txnr + i, m) for i, m in enumerate(messages)])
    return b"".join(
        [b"%d syslog %d %s\n" % (t, len(m), m) for t, m in enumerate(messages, first_txnr)]
    )


def _offer_value(value: str) -> bytes:
    raw = value.encode("utf-8", "replace")
    if not raw or len(raw) > 255 or b"," in raw or b"\n" in raw:
        raise RelpUsageError(f"offer value {value!r} must be 1-255 bytes without ',' or newline")
    return raw


def open_offers(
    software: Sequence[str] = ("logship",), commands: Sequence[str] = (CMD_SYSLOG,)
) -> bytes:
    """The data of our ``open``, in librelp's order and syntax (offers joined by
    ``\\n``, values by ``,``)::

        relp_version=0
        relp_software=logship
        commands=syslog

    ``software`` is the name, then optionally a version and a URL.
    """
    if not software:
        raise RelpUsageError("relp_software needs at least a name")
    return b"\n".join(
        (
            b"relp_version=%d" % RELP_VERSION,
            b"relp_software=" + b",".join(_offer_value(v) for v in software),
            b"commands=" + b",".join(_offer_value(c) for c in commands),
        )
    )


def open_frame(offers: bytes | None = None, txnr: int = 1) -> bytes:
    """The ``open`` frame (a session's first, so normally transaction number 1)."""
    return encode_frame(txnr, CMD_OPEN, open_offers() if offers is None else offers)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class Frame:
    """Any RELP frame, as received."""

    txnr: int
    command: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """The server's ``rsp`` to our frame ``txnr``.

    ``code`` is ``200`` on success (``text`` is then ``"OK"``); ``data`` is what
    follows the first line (the server's offers in the reply to ``open``).  The
    reply to ``close`` is a bare ``rsp`` with no data at all: ``code`` is None.
    """

    txnr: int
    code: int | None
    text: str
    data: bytes

    @property
    def ok(self) -> bool:
        return self.code == OK


@dataclass(frozen=True, slots=True)
class ServerClose:
    """The server's hint that it is closing the session: reconnect."""


ServerEvent = Response | ServerClose

# A whole header: TXNR SP COMMAND SP DATALEN, then SP (data follows) or LF (no data).
_HEADER_RE = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})([ \n])")
# Every proper prefix of a header; it is at most 52 bytes long.
_HEADER_PREFIX_RE = re.compile(
    rb"[0-9]{0,9}|[0-9]{1,9} [A-Za-z]{0,32}|[0-9]{1,9} [A-Za-z]{1,32} [0-9]{0,9}"
)
_MAX_HEADER = 53
# A plain acknowledgement, the bulk of what a server sends: "N rsp 6 200 OK\n".
_OK_RE = re.compile(rb"([0-9]{1,9}) rsp 6 200 OK\n")
_OK_RUN_RE = re.compile(rb"(?:[0-9]{1,9} rsp 6 200 OK\n)+")  # a run of them
_DIGITS_RE = re.compile(rb"[0-9]*")
_LETTERS_RE = re.compile(rb"[A-Za-z]*")
_COMPACT_AT = 64 * 1024  # consumed bytes dropped from the buffer's front beyond this


def _diagnose(head: bytes) -> str:
    """Why ``head`` (the start of a frame, at most 53 bytes) is not a header."""
    n = _match_len(_DIGITS_RE, head)
    if n == 0:
        return f"expected a transaction number, got {head[:1]!r}"
    if n > 9:
        return "transaction number longer than 9 digits"
    if head[n : n + 1] != b" ":
        return f"transaction number followed by {head[n : n + 1]!r}, not a space"
    rest = head[n + 1 :]
    n = _match_len(_LETTERS_RE, rest)
    if n == 0:
        return f"expected a command, got {rest[:1]!r}"
    if n > 32:
        return "command longer than 32 letters"
    if rest[n : n + 1] != b" ":
        return f"command followed by {rest[n : n + 1]!r}, not a space"
    rest = rest[n + 1 :]
    n = _match_len(_DIGITS_RE, rest)
    if n == 0:
        return f"expected a data length, got {rest[:1]!r}"
    if n > 9:
        return "data length longer than 9 digits"
    return f"data length followed by {rest[n : n + 1]!r}, not a space or the trailer"


def _match_len(pattern: re.Pattern[bytes], data: bytes) -> int:
    m = pattern.match(data)
    return 0 if m is None else m.end()


class FrameParser:
    """RELP frames out of a byte stream, sans I/O: :meth:`feed` the bytes as they
    arrive, in any chunks, then call :meth:`next_frame` until it returns None.

    A malformed frame raises :class:`RelpFrameError` as soon as the bytes seen
    prove it (a bad header does not wait for more data), and so does every
    later call: after an error the stream is not trusted again.  ``commands``,
    if given, are the only ones accepted; ``max_data`` bounds DATALEN, so at
    most one frame of that size is buffered beyond what the caller feeds.
    """

    __slots__ = ("_buf", "_commands", "_error", "_pos", "max_data")

    def __init__(
        self, max_data: int = DEFAULT_MAX_DATA, commands: Iterable[str] | None = None
    ) -> None:
        if not 0 <= max_data <= MAX_DATALEN:
            raise RelpUsageError(f"max_data must be within 0..{MAX_DATALEN}")
        self.max_data = max_data
        self._commands = None if commands is None else frozenset(commands)
        self._buf = bytearray()
        self._pos = 0
        self._error: str | None = None

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._error is not None:
            raise RelpFrameError(self._error)
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of a returned frame."""
        return len(self._buf) - self._pos

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes are fed."""
        if self._error is not None:
            raise RelpFrameError(self._error)
        try:
            return self._next()
        except RelpFrameError as exc:
            self._error = str(exc)
            raise

    def _next(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        m = _HEADER_RE.match(buf, pos)
        if m is None:
            head = bytes(buf[pos : pos + _MAX_HEADER])
            if _HEADER_PREFIX_RE.fullmatch(head):
                return None
            raise RelpFrameError(f"bad RELP frame: {_diagnose(head)}")
        txnr, command = int(m[1]), m[2].decode("ascii")
        if self._commands is not None and command not in self._commands:
            raise RelpFrameError(f"bad RELP frame: unexpected command {command!r}")
        datalen = int(m[3])
        if datalen == 0:
            if m[4] != b"\n":
                raise RelpFrameError("bad RELP frame: data length 0 followed by a space")
            data, end = b"", m.end()
        else:
            if m[4] != b" ":
                raise RelpFrameError(f"bad RELP frame: data length {datalen} but no data")
            if datalen > self.max_data:
                raise RelpFrameError(
                    f"bad RELP frame: data length {datalen} is over the maximum {self.max_data}"
                )
            start = m.end()
            stop = start + datalen
            if len(buf) <= stop:
                return None
            if buf[stop] != _LF:
                raise RelpFrameError(
                    f"bad RELP frame: {bytes(buf[stop : stop + 1])!r} where the trailer "
                    f"'\\n' should follow {datalen} bytes of data"
                )
            data, end = bytes(buf[start:stop]), stop + 1
        self._consume(end)  # after which ``m`` no longer sees the bytes
        return Frame(txnr, command, data)

    def take_oks(self) -> list[int]:
        """The transaction numbers of the plain ``N rsp 6 200 OK`` frames next in
        the stream, in order, taken in one pass without a :class:`Frame` each;
        it stops before anything else (and before TXNR 0), which
        :meth:`next_frame` then returns or refuses.  Empty when ``rsp`` is not
        among the accepted commands."""
        if self._error is not None:
            raise RelpFrameError(self._error)
        if self._commands is not None and CMD_RSP not in self._commands:
            return []  # next_frame() refuses them
        buf, pos = self._buf, self._pos
        run = _OK_RUN_RE.match(buf, pos)
        if run is None:
            return []
        out = list(map(int, _OK_RE.findall(buf, pos, run.end())))
        if 0 not in out:  # the usual case: the whole run at once
            self._consume(run.end())
            return out
        match = _OK_RE.match
        out = []
        while (m := match(buf, pos)) is not None:
            txnr = int(m[1])
            if txnr == 0:
                break
            out.append(txnr)
            pos = m.end()
        if out:
            self._consume(pos)
        return out

    def _consume(self, end: int) -> None:
        if end == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif end > _COMPACT_AT:
            del self._buf[:end]
            self._pos = 0
        else:
            self._pos = end


_RSP_CODE_RE = re.compile(rb"([0-9]{3})(?:[ \n]|\Z)")


def parse_response(txnr: int, data: bytes) -> Response:
    """The DATA of an ``rsp``: ``CODE [SP TEXT] [LF DATA]``, or nothing at all."""
    if not data:
        return Response(txnr, None, "", b"")
    m = _RSP_CODE_RE.match(data)
    if m is None:
        raise RelpFrameError(f"bad RELP rsp: data starts {data[:8]!r}, not a 3-digit code")
    code = int(m[1])
    sep = data[3:4]
    if sep == b" ":
        text, _, rest = data[4:].partition(b"\n")
    elif sep == b"\n":
        text, rest = b"", data[4:]
    else:
        text, rest = b"", b""
    return Response(txnr, code, text.decode("utf-8", "replace"), rest)


class ResponseParser:
    """What a RELP server sends to its client, sans I/O: :meth:`feed` the bytes
    in any chunks, then take :meth:`next_event` until None (or iterate
    :meth:`events`).  Anything but a well-formed ``rsp`` (TXNR 1 or more) or
    ``serverclose`` (TXNR 0) raises :class:`RelpFrameError`, now and on every
    later call."""

    __slots__ = ("_error", "_frames")

    def __init__(self, max_data: int = DEFAULT_MAX_DATA) -> None:
        self._frames = FrameParser(max_data, (CMD_RSP, CMD_SERVERCLOSE))
        self._error: str | None = None

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._error is not None:
            raise RelpFrameError(self._error)
        self._frames.feed(data)

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of a returned event."""
        return self._frames.pending

    def next_event(self) -> ServerEvent | None:
        """The next complete response or hint, or None until more bytes are fed."""
        if self._error is not None:
            raise RelpFrameError(self._error)
        try:
            frame = self._frames.next_frame()
            return None if frame is None else _server_event(frame)
        except RelpFrameError as exc:
            self._error = str(exc)
            raise

    def take_oks(self) -> list[int]:
        """The transaction numbers of the ``200 OK`` responses next in the stream
        (each what :meth:`next_event` would give as ``Response(txnr, 200, "OK",
        b"")``), taken at once: a busy session's acknowledgements cost a regex
        match each.  Then :meth:`next_event` gives whatever else comes first."""
        if self._error is not None:
            raise RelpFrameError(self._error)
        return self._frames.take_oks()

    def events(self) -> Iterator[ServerEvent]:
        """Every event complete so far, in order (an error is raised in its place)."""
        while (event := self.next_event()) is not None:
            yield event


def _server_event(frame: Frame) -> ServerEvent:
    if frame.command == CMD_SERVERCLOSE:
        if frame.txnr != 0:
            raise RelpFrameError(f"bad RELP frame: serverclose with txnr {frame.txnr}, not 0")
        return ServerClose()
    if frame.txnr == 0:
        raise RelpFrameError("bad RELP frame: rsp with transaction number 0")
    return parse_response(frame.txnr, frame.data)


# --------------------------------------------------------------------------- offers

Offers = dict[str, tuple[str, ...]]


def parse_offers(data: bytes) -> Offers:
    """Offers (``name[=value[,value]...]``, one a line) -> {name: values}.

    Empty values are skipped, as librelp does; a repeated name keeps its last
    line."""
    offers: Offers = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        name, _, values = line.partition(b"=")
        if not name or len(name) > 32:
            raise RelpOpenError(f"bad RELP offer {line[:40]!r}: name must be 1-32 bytes")
        offers[name.decode("utf-8", "replace")] = tuple(
            v.decode("utf-8", "replace") for v in values.split(b",") if v
        )
    return offers


def check_open_reply(response: Response) -> Offers:
    """The server's offers if its reply to ``open`` lets us send ``syslog``;
    :class:`RelpOpenError` otherwise (refused, no version, no ``syslog``)."""
    if not response.ok:
        code = "no code" if response.code is None else str(response.code)
        raise RelpOpenError(f"RELP server refused the session: {code} {response.text}".rstrip())
    offers = parse_offers(response.data)
    version = offers.get("relp_version", ())
    if len(version) != 1 or not version[0].isdigit() or not version[0].isascii():
        raise RelpOpenError(f"RELP server sent no valid relp_version offer: {version!r}")
    if int(version[0]) > RELP_VERSION:
        raise RelpOpenError(f"RELP server speaks version {version[0]}, we speak {RELP_VERSION}")
    if CMD_SYSLOG not in offers.get("commands", ()):
        raise RelpOpenError("RELP server does not offer the syslog command")
    return offers


# --------------------------------------------------------------------------- numbering


def next_txnr(txnr: int) -> int:
    """The transaction number after ``txnr``: one more, and 1 after 999,999,999."""
    return 1 if txnr >= MAX_TXNR else txnr + 1


class TxnrCounter:
    """A session's transaction numbers: 1, 2, ..., 999,999,999, 1, ...

    librelp itself cannot pass 999,999,999 (its successor there has ten
    digits, which its parser refuses), so a client that wants to stay clear
    of that starts a new session before :attr:`remaining` runs out."""

    __slots__ = ("_next",)

    def __init__(self, start: int = 1) -> None:
        if not 1 <= start <= MAX_TXNR:
            raise RelpUsageError(f"transaction number {start} is outside 1..{MAX_TXNR}")
        self._next = start

    @property
    def peek(self) -> int:
        """The number the next :meth:`take` returns."""
        return self._next

    @property
    def remaining(self) -> int:
        """Numbers left before the wrap back to 1 (:attr:`peek` included)."""
        return MAX_TXNR - self._next + 1

    def take(self) -> int:
        txnr = self._next
        self._next = next_txnr(txnr)
        return txnr

    def take_run(self, count: int) -> int:
        """``count`` consecutive numbers at once (a batch of frames): the first.
        A run may not wrap (:class:`RelpUsageError`): see :attr:`remaining`."""
        first = self._next
        if count > MAX_TXNR - first + 1:
            raise RelpUsageError(f"{count} transaction numbers from {first} would wrap")
        self._next = next_txnr(first + count - 1) if count else first
        return first

    def reset(self) -> None:
        """Back to 1, as at the start of every session."""
        self._next = 1


# --------------------------------------------------------------------------- the window

T = TypeVar("T")


class _Slot(Generic[T]):
    __slots__ = ("acked", "data", "item", "txnr")

    def __init__(self, item: T, data: bytes, txnr: int) -> None:
        self.item = item
        self.data = data
        self.txnr = txnr
        self.acked = False


class SessionStart(NamedTuple):
    """What to send on a new connection: ``open_frame`` first (its reply is the
    :class:`Response` with ``open_txnr``), then every frame of ``resend``."""

    open_txnr: int
    open_frame: bytes
    resend: tuple[bytes, ...]


class AckWindow(Generic[T]):
    """The messages sent and not yet acknowledged, at most ``capacity`` of them.

    Each message is an opaque ``item`` (say ``(instance, seq)``) plus the data
    of its ``syslog`` frame.  The window owns the session's
    :class:`TxnrCounter` (``open`` and ``close`` take their numbers from it
    too, so that no number is skipped).  Use:

    * :meth:`reconnect` on every new connection, the first one included;
    * while not :attr:`full`: ``txnr = add(item, data)``, send
      ``syslog_frame(txnr, data)``;
    * on a 200 ``rsp``: :meth:`ack`; then :meth:`pop_acked` gives, in send
      order, the items now delivered together with everything before them.

    An acknowledged item keeps its place until every item before it is
    acknowledged too, and counts towards ``capacity`` until then.
    """

    __slots__ = ("_by_txnr", "_capacity", "_slots", "counter")

    def __init__(self, capacity: int = DEFAULT_WINDOW) -> None:
        if not 1 <= capacity <= MAX_WINDOW:
            raise RelpUsageError(f"window {capacity} is outside 1..{MAX_WINDOW}")
        self._capacity = capacity
        self.counter = TxnrCounter()
        self._slots: deque[_Slot[T]] = deque()  # send order
        self._by_txnr: dict[int, _Slot[T]] = {}  # the unacknowledged ones

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def full(self) -> bool:
        """No :meth:`add` until an acknowledgement (and :meth:`pop_acked`)."""
        return len(self._slots) >= self._capacity

    @property
    def held(self) -> int:
        """Items held: unacknowledged, or acknowledged behind an unacknowledged one."""
        return len(self._slots)

    def __len__(self) -> int:
        """Items not yet acknowledged."""
        return len(self._by_txnr)

    def __contains__(self, txnr: object) -> bool:
        """Whether ``txnr`` is an item's outstanding transaction number."""
        return txnr in self._by_txnr

    def add(self, item: T, data: bytes) -> int:
        """Take the next transaction number for ``item``; its frame is
        ``syslog_frame(txnr, data)``, to be sent before any later number."""
        if self.full:
            raise RelpUsageError(f"the window is full ({self._capacity} messages)")
        if len(data) > MAX_DATALEN:
            raise RelpUsageError(f"{len(data)} bytes of data is more than a frame can carry")
        txnr = self.counter.take()
        slot = _Slot(item, data, txnr)
        self._slots.append(slot)
        self._by_txnr[txnr] = slot
        return txnr

    def command(self, command: str, data: bytes = b"") -> tuple[int, bytes]:
        """``(txnr, frame)`` of a command outside the window, such as ``close``."""
        encode_frame(0, command, data)  # check it before a number is taken
        txnr = self.counter.take()
        return txnr, encode_frame(txnr, command, data)

    def ack(self, txnr: int) -> T:
        """Mark the item sent as ``txnr`` acknowledged, and return it."""
        slot = self._by_txnr.pop(txnr, None)
        if slot is None:
            raise AckError(f"RELP rsp for transaction number {txnr}, which is not outstanding")
        slot.acked = True
        return slot.item

    def unacked(self) -> list[T]:
        """The unacknowledged items, in send order."""
        return [slot.item for slot in self._slots if not slot.acked]

    def first_unacked(self) -> T | None:
        """The oldest unacknowledged item: everything before it is delivered."""
        for slot in self._slots:
            if not slot.acked:
                return slot.item
        return None

    def pop_acked(self) -> list[T]:
        """Remove and return the acknowledged items before the first
        unacknowledged one, in send order."""
        done: list[T] = []
        slots = self._slots
        while slots and slots[0].acked:
            done.append(slots.popleft().item)
        return done

    def reconnect(self, offers: bytes | None = None) -> SessionStart:
        """Start a new session: numbers restart at 1, which ``open`` takes; every
        unacknowledged item gets the next number, in send order, and its frame
        is in ``resend``.  Old numbers are forgotten (their acknowledgements
        can no longer come).  Send ``resend`` before any frame of a later
        :meth:`add`; waiting for the reply to ``open`` first is what librelp does.
        """
        self.counter.reset()
        open_txnr = self.counter.take()
        frame = open_frame(offers, open_txnr)
        self._by_txnr.clear()
        resend: list[bytes] = []
        for slot in self._slots:
            if not slot.acked:
                slot.txnr = self.counter.take()
                self._by_txnr[slot.txnr] = slot
                resend.append(syslog_frame(slot.txnr, slot.data))
        return SessionStart(open_txnr, frame, tuple(resend))
