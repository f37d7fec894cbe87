"""Syslog messages (RFC 5424) and their octet-counted framing (RFC 6587). PURE: no I/O.

docs/logship.md, "Messages". One entry of memlogd becomes::

    <14>1 2026-11-29T10:00:01.123456Z vm1 myservice.out - - [memlogd@32473
    instance="..." seq="42" source="myservice.out"] the message

(on one line): PRI 8 + the entry's level (facility user; :func:`entry_pri`,
SPEC 15: 14, user.info, for a line that says no level); the entry's time in UTC with exactly six
fractional digits, truncated; HOSTNAME and APP-NAME reduced to the bytes RFC
5424 allows there (APP-NAME is the source, at most 48 of them; ``-`` when
nothing is left); no PROCID or MSGID; one SD-ELEMENT with the entry's place in
memlogd (``instance``, ``seq``) and the full source name; then the message as
UTF-8 without a BOM.  A gap (entries memlogd could not send) is a message of
its own from source ``logship``, with ``dropped`` in its structured data, at
PRI 12 (user.warning).

:func:`parse_message` reads exactly these messages back (tests, and what a
receiver stored).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from memlogd.errors import ProtocolError
from memlogd.wire.severity import WARNING, level_or_default
from memlogd.wire.timefmt import format_time_micros

USER_FACILITY = 1
DEFAULT_PRI = 14  # facility user (1) * 8 + severity info (6): a line that says no level
GAP_PRI = USER_FACILITY * 8 + WARNING  # 12: entries were lost
DEFAULT_SD_ID = "memlogd@32473"  # 32473: RFC 5612's enterprise number for documentation
GAP_SOURCE = "logship"  # the source (and APP-NAME) of a gap message
NILVALUE = "-"
MAX_PRI = 191
MAX_HOSTNAME = 255
MAX_APP_NAME = 48
MAX_SD_NAME = 32
IANA_SD_IDS = frozenset({"timeQuality", "origin", "meta"})  # registered, each with its params

NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_BOM = "\ufeff"
# Bytes that are not PRINTUSASCII (33-126): removed from HOSTNAME and APP-NAME.
_UNPRINTABLE = bytes(range(33)) + bytes(range(127, 256))


class Rfc5424Error(ProtocolError, ValueError):
    """A value RFC 5424 cannot carry, or bytes that are not such a message."""


class SdIdError(Rfc5424Error):
    """An SD-ID (``--sd-id``) that RFC 5424 does not allow for our parameters."""


class MessageParseError(Rfc5424Error):
    """Bytes that are not a message as :func:`format_message` writes them."""


class OctetCountError(Rfc5424Error):
    """A stream that is not octet-counted RFC 6587 framing."""


# --------------------------------------------------------------------------- fields


def format_time(time_ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: UTC, six fractional digits, truncated."""
    if not _MIN_SECONDS <= time_ns // NS_PER_S <= _MAX_SECONDS:
        raise Rfc5424Error(f"time {time_ns} ns is outside the years 0001-9999")
    return format_time_micros(time_ns)


def safe_name(name: str, limit: int) -> str:
    """``name`` reduced to a HOSTNAME or APP-NAME: its UTF-8 bytes 33-126 only,
    at most ``limit`` of them; ``-`` (the NILVALUE) if none is left."""
    kept = name.encode("utf-8", "replace").translate(None, _UNPRINTABLE)[:limit]
    return kept.decode("ascii") if kept else NILVALUE


def escape_param_value(value: str) -> bytes:
    """A PARAM-VALUE: UTF-8 with ``"``, ``\\`` and ``]`` escaped by a backslash
    (RFC 5424 6.3.3); lone surrogates become ``?``."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    if "]" in value:
        value = value.replace("]", "\\]")
    return value.encode("utf-8", "replace")


_UNESCAPE_RE = re.compile(rb'\\([\\"\]])')


def unescape_param_value(raw: bytes) -> str:
    """The inverse of :func:`escape_param_value`; a backslash before any other
    character is kept, as RFC 5424 says.  Invalid UTF-8 becomes U+FFFD."""
    if b"\\" in raw:
        raw = _UNESCAPE_RE.sub(rb"\1", raw)
    return raw.decode("utf-8", "replace")


_SD_NAME_RE = re.compile(r"[!#-<>-\\^-~]{1,32}\Z")  # PRINTUSASCII except = ] " (and SP)
_PEN_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*\Z")


@functools.lru_cache(maxsize=16)
def validate_sd_id(sd_id: str) -> str:
    """``sd_id`` if it can carry our parameters, else :class:`SdIdError`.

    An SD-NAME is 1-32 printable US-ASCII characters other than ``=``, space,
    ``]`` and ``"``.  Ours must be ``name@number`` (an organisation's private
    enterprise number, RFC 5424 7.2.2); the IANA-registered IDs without ``@``
    (``timeQuality``, ``origin``, ``meta``) define their own parameters and
    cannot carry ``instance``, ``seq`` and ``source``.
    """
    if _SD_NAME_RE.match(sd_id) is None:
        raise SdIdError(
            f"SD-ID {sd_id!r} must be 1-32 printable US-ASCII characters "
            "without '=', ']', '\"' or space"
        )
    name, at, number = sd_id.partition("@")
    if not at:
        if sd_id in IANA_SD_IDS:
            raise SdIdError(
                f"SD-ID {sd_id!r} is registered with IANA for other parameters; "
                "use NAME@ENTERPRISE-NUMBER"
            )
        raise SdIdError(f"SD-ID {sd_id!r} must be NAME@ENTERPRISE-NUMBER, e.g. memlogd@32473")
    if not name or _PEN_RE.match(number) is None:
        raise SdIdError(f"SD-ID {sd_id!r} must be NAME@ENTERPRISE-NUMBER, e.g. memlogd@32473")
    return sd_id


def _check_pri(pri: int) -> None:
    if not 0 <= pri <= MAX_PRI:
        raise Rfc5424Error(f"PRI {pri} is outside 0..{MAX_PRI}")


def entry_pri(msg: str, facility: int = USER_FACILITY) -> int:
    """The PRI of an entry: ``facility * 8`` + the level its message says it
    has (info when none; :func:`memlogd.wire.severity.level`)."""
    return facility * 8 + level_or_default(msg)


# --------------------------------------------------------------------------- messages


def _message(
    *,
    pri: int,
    time_ns: int,
    hostname: str,
    app_name: str,
    sd_id: str,
    seq: int,
    params: tuple[tuple[str, str], ...],
    msg: str,
) -> bytes:
    _check_pri(pri)
    if seq < 0:
        raise Rfc5424Error(f"seq {seq} is negative")
    header = (
        f"<{pri}>1 {format_time(time_ns)} {safe_name(hostname, MAX_HOSTNAME)} "
        f"{safe_name(app_name, MAX_APP_NAME)} - - [{validate_sd_id(sd_id)}"
    )
    parts = [header.encode("ascii")]
    for name, value in params:
        parts.append(b' %s="%s"' % (name.encode("ascii"), escape_param_value(value)))
    parts.append(b"]")
    body = msg.lstrip(_BOM).encode("utf-8", "replace")
    if body:
        parts.append(b" ")
        parts.append(body)
    return b"".join(parts)


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


def gap_text(seq: int, dropped: int) -> str:
    """``lost N entries (seq A-B)``: the MSG of a gap of ``dropped`` entries from ``seq``."""
    return f"lost {dropped} entries (seq {seq}-{seq + dropped - 1})"


def format_gap(
    *,
    time_ns: int,
    hostname: str,
    instance: str,
    seq: int,
    dropped: int,
    pri: int = GAP_PRI,
    sd_id: str = DEFAULT_SD_ID,
) -> bytes:
    """The message for ``dropped`` entries of ``instance`` lost from ``seq`` on:
    source ``logship``, ``seq="A" dropped="N"`` in its structured data, a
    warning (``pri`` 12)."""
    if dropped < 1:
        raise Rfc5424Error(f"a gap of {dropped} entries")
    return _message(
        pri=pri,
        time_ns=time_ns,
        hostname=hostname,
        app_name=GAP_SOURCE,
        sd_id=sd_id,
        seq=seq,
        params=(
            ("instance", instance),
            ("seq", str(seq)),
            ("dropped", str(dropped)),
            ("source", GAP_SOURCE),
        ),
        msg=gap_text(seq, dropped),
    )


# --------------------------------------------------------------------------- parsing


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


# --------------------------------------------------------------------------- framing


def frame_octet_counted(msg: bytes) -> bytes:
    """RFC 6587 octet counting: ``b"LEN SP MSG"`` (no trailer)."""
    if not msg:
        raise Rfc5424Error("an octet-counted frame cannot be empty")
    return b"%d %s" % (len(msg), msg)


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
