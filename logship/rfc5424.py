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

tests/rfc5424.py reads exactly these messages back (``parse_message``), and
holds the one-message reference ``format_message`` that
:class:`logship.messages.MessageFormatter` matches byte for byte.
"""

from __future__ import annotations

import functools
import re

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
_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_BOM = "\ufeff"
# Bytes that are not PRINTUSASCII (33-126): removed from HOSTNAME and APP-NAME.
_UNPRINTABLE = bytes(range(33)) + bytes(range(127, 256))


class Rfc5424Error(ProtocolError, ValueError):
    """A value RFC 5424 cannot carry, or bytes that are not such a message."""


class SdIdError(Rfc5424Error):
    """An SD-ID (``--sd-id``) that RFC 5424 does not allow for our parameters."""


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


# --------------------------------------------------------------------------- framing


def frame_octet_counted(msg: bytes) -> bytes:
    """RFC 6587 octet counting: ``b"LEN SP MSG"`` (no trailer)."""
    if not msg:
        raise Rfc5424Error("an octet-counted frame cannot be empty")
    return b"%d %s" % (len(msg), msg)
