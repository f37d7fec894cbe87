"""memlogd entries as RFC 5424 messages, a batch at a time. PURE: no I/O.

docs/logship.md, "Messages". :class:`MessageFormatter` writes, byte for byte,
what the one-message reference ``format_message`` (tests/rfc5424.py) and
:func:`~logship.rfc5424.format_gap` write (tests/unit/test_logship_messages.py
checks it), but keeps what repeats from one message to the next:

* ``TIME HOSTNAME`` per entry time (a batch read by memlogd at once shares
  its time), and ``<PRI>1`` per level (PRI = facility * 8 + the entry's
  level, :func:`logship.rfc5424.entry_pri`);
* per source, APP-NAME, the SD-ID with the instance, and the escaped
  ``source=`` value;

so that one message costs a lookup, the encoding of its text and one join.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby, repeat
from operator import itemgetter, methodcaller

from logship.rfc5424 import (
    DEFAULT_SD_ID,
    GAP_PRI,
    MAX_APP_NAME,
    MAX_HOSTNAME,
    MAX_PRI,
    USER_FACILITY,
    Rfc5424Error,
    escape_param_value,
    format_gap,
    format_time,
    safe_name,
    validate_sd_id,
)
from memlogd.wire.protocol import LogEntry
from memlogd.wire.severity import DEFAULT_LEVEL, level_or_default, levels_or_default

SOURCE_CACHE_MAX = 4096  # source names whose message parts are kept; then the cache starts over
_BOM = "\ufeff"
_TIME_SOURCE = itemgetter(0, 1)  # of a LogEntry: the run it belongs to
_MSG = itemgetter(2)
_SEQ = itemgetter(3)
_STARTS_WITH_BOM = methodcaller("startswith", _BOM)
_ENCODE = methodcaller("encode", "utf-8", "replace")
_SAME_PRI = b"%s%d%s %s".__mod__  # (PRI + prefix, seq, after, body): a message
_OWN_PRI = b"%s%s%d%s %s".__mod__  # (PRI, prefix, seq, after, body)


class MessageFormatter:
    """Formats the entries of one memlogd ``instance`` (or several, one after
    the other) for one HOSTNAME, SD-ID and syslog facility (PRI = facility * 8
    + each entry's level).  Raises :class:`Rfc5424Error` for an SD-ID or
    facility that RFC 5424 does not allow, as the functions do."""

    __slots__ = (
        "_head",
        "_host",
        "_instance",
        "_pris",
        "_sd_open",
        "_sources",
        "_time_ns",
        "facility",
        "hostname",
        "sd_id",
    )

    def __init__(
        self, hostname: str, sd_id: str = DEFAULT_SD_ID, facility: int = USER_FACILITY
    ) -> None:
        if not 0 <= facility <= MAX_PRI // 8:
            raise Rfc5424Error(f"facility {facility} is outside 0..{MAX_PRI // 8}")
        self.hostname = hostname
        self.sd_id = validate_sd_id(sd_id)
        self.facility = facility
        self._pris = tuple(b"<%d>1 " % (facility * 8 + level) for level in range(8))
        self._host = b" " + safe_name(hostname, MAX_HOSTNAME).encode("ascii") + b" "
        self._sd_open = b" - - [" + sd_id.encode("ascii") + b' instance="'
        self._instance: str | None = None
        # source -> (APP-NAME ... seq=", the bytes after the seq number)
        self._sources: dict[str, tuple[bytes, bytes]] = {}
        self._time_ns = -1
        self._head = b""

    def _parts(self, instance: str, source: str) -> tuple[bytes, bytes]:
        if instance != self._instance:
            self._sources.clear()
            self._instance = instance
        elif len(self._sources) >= SOURCE_CACHE_MAX:
            self._sources.clear()
        before = (
            safe_name(source, MAX_APP_NAME).encode("ascii")
            + self._sd_open
            + escape_param_value(instance)
            + b'" seq="'
        )
        after = b'" source="' + escape_param_value(source) + b'"]'
        parts = self._sources[source] = (before, after)
        return parts

    def _time_head(self, time_ns: int) -> bytes:
        self._time_ns = time_ns
        self._head = head = format_time(time_ns).encode("ascii") + self._host
        return head

    def message(self, instance: str, entry: LogEntry) -> bytes:
        """The message of one entry (its ``seq`` must be set)."""
        return self.messages(instance, (entry,))[0]

    def messages(self, instance: str, entries: Sequence[LogEntry]) -> list[bytes]:
        """The messages of ``entries`` of ``instance``, in order: each exactly
        ``format_message(time_ns=e.time_ns, hostname=..., source=e.source,
        msg=e.msg, instance=instance, seq=e.seq, pri=entry_pri(e.msg, facility),
        sd_id=...)``.

        A run of entries sharing their time and source (a batch memlogd read
        at once: the bulk) shares everything but the PRI, the seq and the
        text; its messages are made by ``map`` over the run, with no Python
        code per message (:meth:`_run`)."""
        out: list[bytes] = []
        for (time_ns, source), group in groupby(entries, _TIME_SOURCE):
            run = list(group)
            seqs = list(map(_SEQ, run))
            if None in seqs or min(seqs) < 0:
                bad = next(s for s in seqs if s is None or s < 0)
                raise Rfc5424Error(f"seq {bad} is not a sequence number")
            head = self._head if time_ns == self._time_ns else self._time_head(time_ns)
            before, after = self._source_parts(instance, source)
            out += self._run(head + before, after, seqs, list(map(_MSG, run)))
        return out

    def _source_parts(self, instance: str, source: str) -> tuple[bytes, bytes]:
        if instance == self._instance:
            parts = self._sources.get(source)
            if parts is not None:
                return parts
        return self._parts(instance, source)

    def _run(self, prefix: bytes, after: bytes, seqs: list[int], msgs: list[str]) -> list[bytes]:
        """The messages ``PRI prefix SEQ after[ TEXT]`` of one run."""
        pris = self._pris
        if all(msgs) and not any(map(_STARTS_WITH_BOM, msgs)):  # every one has a text to add
            levels = levels_or_default(msgs)
            bodies = map(_ENCODE, msgs)
            if levels.count(DEFAULT_LEVEL) == len(levels):
                fields = zip(repeat(pris[DEFAULT_LEVEL] + prefix), seqs, repeat(after), bodies)
                return list(map(_SAME_PRI, fields))
            own = zip(map(pris.__getitem__, levels), repeat(prefix), seqs, repeat(after), bodies)
            return list(map(_OWN_PRI, own))
        out: list[bytes] = []
        for seq, msg in zip(seqs, msgs, strict=True):
            pri = pris[level_or_default(msg)]
            if msg.startswith(_BOM):
                msg = msg.lstrip(_BOM)
            if msg:
                out.append(b"%s%s%d%s %s" % (pri, prefix, seq, after, _ENCODE(msg)))
            else:
                out.append(b"%s%s%d%s" % (pri, prefix, seq, after))
        return out

    def gap(self, *, time_ns: int, instance: str, seq: int, dropped: int) -> bytes:
        """The message of a gap: ``dropped`` entries of ``instance`` lost from ``seq``."""
        return format_gap(
            time_ns=time_ns,
            hostname=self.hostname,
            instance=instance,
            seq=seq,
            dropped=dropped,
            pri=GAP_PRI + (self.facility - USER_FACILITY) * 8,
            sd_id=self.sd_id,
        )
