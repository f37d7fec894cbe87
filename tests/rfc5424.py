"""RFC 5424 code only the tests use (production: logship/rfc5424.py, logship/messages.py).

* :func:`format_message`: one entry's message, the plain reference that
  :class:`logship.messages.MessageFormatter` matches byte for byte;
* :func:`parse_message`: the fields of a message as logship writes it (and as
  a receiver stored it), read back;
* :class:`OctetCountedParser`: messages out of an octet-counted stream (RFC 6587),
  what a TCP receiver reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from logship.rfc5424 import (
    DEFAULT_SD_ID,
    MAX_PRI,
    NS_PER_S,
    Rfc5424Error,
    _message,  # the builder format_gap uses too
    entry_pri,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MessageParseError(Rfc5424Error):
    """Bytes that are not a message as :func:`format_message` writes them."""


class OctetCountError(Rfc5424Error):
    """A stream that is not octet-counted RFC 6587 framing."""


def format_message(
    *,
    time_ns: int,
    hostname: str,
    source: str,
    msg: str,
    instance: str,
    seq: int,
    pri: int | None = None,
    sd_id: str = DEFAULT_SD_ID,
) -> bytes:
    """One memlogd entry as an RFC 5424 message (without framing).

    ``time_ns`` is the entry's time (ns since the epoch, UTC); ``instance`` and
    ``seq`` its place in memlogd.  ``pri`` is :func:`entry_pri` unless given.
    Leading U+FEFF (BOMs) of ``msg`` are removed; an empty message has no MSG part.
    """
    return _message(
        pri=entry_pri(msg) if pri is None else pri,
        time_ns=time_ns,
        hostname=hostname,
        app_name=source,
        sd_id=sd_id,
        seq=seq,
        params=(("instance", instance), ("seq", str(seq)), ("source", source)),
        msg=msg,
    )


_UNESCAPE_RE = re.compile(rb'\\([\\"\]])')


def unescape_param_value(raw: bytes) -> str:
    """The inverse of :func:`escape_param_value`; a backslash before any other
    character is kept, as RFC 5424 says.  Invalid UTF-8 becomes U+FFFD."""
    if b"\\" in raw:
        raw = _UNESCAPE_RE.sub(rb"\1", raw)
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A message as :func:`format_message` or :func:`format_gap` wrote it."""

    pri: int
    time_ns: int  # microsecond precision
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd_id: str
    params: tuple[tuple[str, str], ...]  # in order, values unescaped
    msg: str

    def param(self, name: str) -> str | None:
        """The value of the last SD-PARAM called ``name``, if any."""
        value = None
        for key, val in self.params:
            if key == name:
                value = val
        return value

    @property
    def instance(self) -> str | None:
        return self.param("instance")

    @property
    def source(self) -> str | None:
        return self.param("source")

    @property
    def seq(self) -> int | None:
        return _int_param(self.param("seq"))

    @property
    def dropped(self) -> int | None:
        """Entries lost, in a gap message; None in an entry's message."""
        return _int_param(self.param("dropped"))


def _int_param(value: str | None) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    return int(value)


_PRINT = rb"[\x21-\x7e]"
_HEADER_RE = re.compile(
    rb"<(0|[1-9][0-9]{0,2})>1 "
    rb"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    rb"(?:\.([0-9]{1,6}))?(Z|[+-][0-9]{2}:[0-9]{2}) "
    rb"(" + _PRINT + rb"{1,255}) (" + _PRINT + rb"{1,48}) "
    rb"(" + _PRINT + rb"{1,128}) (" + _PRINT + rb"{1,32}) "
    rb"\[([!#-<>-\\^-~]{1,32})"
)
_PARAM_RE = re.compile(rb' ([!#-<>-\\^-~]{1,32})="((?:[^"\\]|\\.)*)"', re.DOTALL)


def _parse_time(m: re.Match[bytes]) -> int:
    year, month, day, hour, minute, second = (int(m[i]) for i in range(2, 8))
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise MessageParseError(f"bad RFC 5424 TIMESTAMP: {m[0][:60]!r}") from None
    offset = m[9]
    offset_s = 0
    if offset != b"Z":
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise MessageParseError(f"bad RFC 5424 TIMESTAMP offset {offset!r}")
        offset_s = (hours * 3600 + minutes * 60) * (-1 if offset[:1] == b"-" else 1)
    secs = (dt - _EPOCH) // timedelta(seconds=1) - offset_s
    return secs * NS_PER_S + int((m[8] or b"0").ljust(6, b"0")) * 1000


def parse_message(data: bytes) -> ParsedMessage:
    """The fields of one message (no framing, no trailing newline), with the
    SD-PARAM values unescaped; :class:`MessageParseError` if it is not one
    SD-ELEMENT message as :func:`format_message` writes it.  TIME may have
    0-6 fractional digits and any offset (a receiver may write ``+00:00``)."""
    m = _HEADER_RE.match(data)
    if m is None:
        raise MessageParseError(f"not an RFC 5424 message as logship writes it: {data[:60]!r}")
    pri = int(m[1])
    if pri > MAX_PRI:
        raise MessageParseError(f"PRI {pri} is outside 0..{MAX_PRI}")
    time_ns = _parse_time(m)
    params: list[tuple[str, str]] = []
    pos = m.end()
    while (p := _PARAM_RE.match(data, pos)) is not None:
        params.append((p[1].decode("ascii"), unescape_param_value(p[2])))
        pos = p.end()
    if data[pos : pos + 1] != b"]":
        raise MessageParseError(f"bad SD-PARAM in RFC 5424 message at {data[pos : pos + 40]!r}")
    pos += 1
    if pos < len(data) and data[pos : pos + 1] != b" ":
        raise MessageParseError(f"RFC 5424 message: {data[pos : pos + 20]!r} after the SD-ELEMENT")
    return ParsedMessage(
        pri=pri,
        time_ns=time_ns,
        hostname=m[10].decode("ascii"),
        app_name=m[11].decode("ascii"),
        procid=m[12].decode("ascii"),
        msgid=m[13].decode("ascii"),
        sd_id=m[14].decode("ascii"),
        params=tuple(params),
        msg=data[pos + 1 :].decode("utf-8", "replace"),
    )


_MSG_LEN_RE = re.compile(rb"[1-9][0-9]{0,8} ")
_MSG_LEN_PREFIX_RE = re.compile(rb"(?:[1-9][0-9]{0,8})?")


class OctetCountedParser:
    """Messages out of an octet-counted stream (what a TCP receiver reads),
    sans I/O: :meth:`feed` bytes in any chunks, :meth:`next_message` until
    None.  A bad length, or one over ``max_len``, raises
    :class:`OctetCountError`, now and on every later call."""

    __slots__ = ("_buf", "_error", "max_len")

    def __init__(self, max_len: int = 64 * 1024) -> None:
        self.max_len = max_len
        self._buf = bytearray()
        self._error: str | None = None

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        if self._error is not None:
            raise OctetCountError(self._error)
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received and not yet part of a returned message."""
        return len(self._buf)

    def next_message(self) -> bytes | None:
        """The next complete message, or None until more bytes are fed."""
        if self._error is not None:
            raise OctetCountError(self._error)
        buf = self._buf
        m = _MSG_LEN_RE.match(buf)
        if m is None:
            if _MSG_LEN_PREFIX_RE.fullmatch(buf[:10]):
                return None
            valid = _MSG_LEN_PREFIX_RE.match(buf)
            bad = bytes(buf[: (valid.end() if valid else 0) + 1])
            self._error = f"bad octet-counted frame: {bad!r} is not LEN SP"
            raise OctetCountError(self._error)
        length = int(m[0])
        if length > self.max_len:
            self._error = f"octet-counted frame of {length} bytes is over {self.max_len}"
            raise OctetCountError(self._error)
        end = m.end() + length
        if len(buf) < end:
            return None
        msg = bytes(buf[m.end() : end])
        del buf[:end]
        return msg
