"""Records of the kernel log device ``/dev/kmsg`` (docs/kmsg.md). PURE: no I/O.

One ``read(2)`` of ``/dev/kmsg`` returns one record (kernel
``Documentation/ABI/testing/dev-kmsg``)::

    PRIO,SEQ,USEC,FLAGS[,MORE...];TEXT\\n
     KEY=VALUE\\n                      (zero or more dictionary lines)

* ``PRIO`` is ``facility << 3 | level``; ``SEQ`` a 64-bit counter; ``USEC``
  microseconds since boot; ``FLAGS`` ``-`` or ``c`` (continuation);
* the kernel escapes every byte of TEXT and VALUE below ``0x20``, from
  ``0x7f`` on, and the backslash itself, as ``\\xNN``.  Those escapes are kept
  as they are, so that a record stays one line wherever it goes.  Bytes that
  did not come from a kernel (a fake device) get the same treatment here:
  invalid UTF-8 and control characters become ``\\xNN``.

``parse_record`` raises :class:`KmsgParseError` and nothing else, whatever
the bytes.  ``RecordSplitter`` groups a byte stream of records (a regular file
or FIFO standing in for the device) into one record per item.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from memlogd.errors import MemlogdError
from memlogd.wire.timefmt import format_time

READ_SIZE = 16 * 1024  # bytes per read(2); the kernel's longest record is 8 KiB
MAX_NUMBER_DIGITS = 20  # a u64 has at most 20 decimal digits
MAX_TIME_NS = 253_402_300_799 * 1_000_000_000  # 9999-12-31T23:59:59Z, the last RFC 3339 second

_NUMBER_RE = re.compile(rf"[0-9]{{1,{MAX_NUMBER_DIGITS}}}\Z")
_KEY_RE = re.compile(r"[^=\s]+\Z")
# what the kernel itself would have escaped (besides the backslash, kept as is)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class KmsgParseError(MemlogdError):
    """Bytes that are not a kmsg record."""


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    """One kernel log record; ``time_ns`` is boot time + ``usec``, in ns since the epoch."""

    seq: int
    usec: int
    priority: int
    flags: str
    text: str
    time_ns: int
    fields: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def facility(self) -> int:
        return self.priority >> 3

    @property
    def level(self) -> int:
        return self.priority & 7

    @property
    def time(self) -> str:
        return format_time(self.time_ns)


def _escape_controls(text: str) -> str:
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _decode(raw: bytes) -> str:
    """Bytes as text the way the kernel prints them: invalid UTF-8 and control
    characters as ``\\xNN``; everything else (including ``\\xNN`` text) as is."""
    text = raw.decode("utf-8", "backslashreplace")
    return _escape_controls(text) if _CONTROL_RE.search(text) else text


def _number(text: str, what: str) -> int:
    if _NUMBER_RE.match(text) is None:
        raise KmsgParseError(f"{what} is not a decimal number: {text[:40]!r}")
    return int(text)


def parse_record(data: bytes, boot_time_ns: int) -> KmsgRecord:
    """Parse one record (as one read of ``/dev/kmsg`` returns it)."""
    if data.endswith(b"\n"):
        data = data[:-1]
    first, *dict_lines = data.split(b"\n")
    semi = first.find(b";")
    if semi < 0:
        raise KmsgParseError("record has no ';' between header and text")
    header = _decode(first[:semi]).split(",")
    if len(header) < 4:
        raise KmsgParseError("record header is not PRIO,SEQ,USEC,FLAGS")
    priority = _number(header[0], "priority")
    seq = _number(header[1], "sequence number")
    usec = _number(header[2], "timestamp")
    time_ns = boot_time_ns + usec * 1000
    if not 0 <= time_ns <= MAX_TIME_NS:
        raise KmsgParseError(f"timestamp out of range: {usec} us after boot")
    fields: dict[str, str] = {}
    for raw in dict_lines:
        if not raw.startswith(b" "):
            raise KmsgParseError("dictionary line does not start with a space")
        key, sep, value = _decode(raw[1:]).partition("=")
        if not sep or _KEY_RE.match(key) is None:
            raise KmsgParseError(f"dictionary line is not KEY=VALUE: {key[:40]!r}")
        fields[key] = value
    return KmsgRecord(
        seq=seq,
        usec=usec,
        priority=priority,
        flags=header[3],
        text=_decode(first[semi + 1 :]),
        time_ns=time_ns,
        fields=fields,
    )


def encode_record(record: KmsgRecord) -> bytes:
    """The record as the kernel writes it (the inverse of ``parse_record``)."""
    lines = [f"{record.priority},{record.seq},{record.usec},{record.flags};{record.text}"]
    lines.extend(f" {key}={value}" for key, value in record.fields.items())
    return ("\n".join(lines) + "\n").encode("utf-8")


def render_text(record: KmsgRecord, *, upstream: bool = False) -> str:
    """``<L>(SEQ) - TIME: TEXT`` (TIME in UTC, RFC 3339 with ns), no newline: the
    record's level in front as ``dmesg -r`` prints it, so that memlogd's readers
    see it (SPEC 15); with ``upstream``, upstream's exact ``(SEQ) - TIME: TEXT``."""
    line = f"({record.seq}) - {format_time(record.time_ns)}: {record.text}"
    return line if upstream else f"<{record.priority & 7}>{line}"


_TEXT_SEQ = re.compile(r"(?:<[0-7]>)?\(([0-9]{1,20})\) - ")


def text_seq(line: str) -> int | None:
    """The record's sequence number in a line of :func:`render_text`, in either
    format (None for another line, such as the count of records lost)."""
    m = _TEXT_SEQ.match(line)
    return int(m.group(1)) if m else None


def render_json(record: KmsgRecord) -> str:
    """Every field of the record as one JSON object; no newline."""
    return json.dumps(
        {
            "seq": record.seq,
            "time": format_time(record.time_ns),
            "usec": record.usec,
            "priority": record.priority,
            "facility": record.facility,
            "level": record.level,
            "flags": record.flags,
            "text": record.text,
            "fields": record.fields,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


# ------------------------------------------------------------------ lost records


def records_lost(last_seq: int | None, seq: int) -> int:
    """How many records lie between the last one read and ``seq`` (0 if none or unknown)."""
    if last_seq is None:
        return 0
    return max(0, seq - last_seq - 1)


def render_lost_text(count: int | None) -> str:
    if count is None:
        return "kmsg: records lost (count unknown)"
    return f"kmsg: {count} record{'' if count == 1 else 's'} lost"


def render_lost_json(count: int | None, first_missing: int | None) -> str:
    return json.dumps({"lost": count, "seq": first_missing}, separators=(",", ":"))


class KmsgDecoder:
    """Raw records in, output lines out: the reader's bookkeeping, without I/O.

    * records with ``seq <= after_seq`` (already written before a restart)
      are skipped;
    * a gap in the sequence numbers, which the device reports as ``EPIPE``
      (:meth:`overrun`) and a resumed state can reveal, becomes a line
      ``kmsg: N records lost`` (or a JSON object ``{"lost":N,"seq":FIRST}``)
      before the next record;
    * ``last_seq`` is the last record turned into a line, ``seen_seq`` the
      highest record seen (skipped or not).
    """

    __slots__ = ("_json", "_overrun", "_upstream", "boot_time_ns", "last_seq", "lost", "seen_seq")

    def __init__(
        self,
        boot_time_ns: int,
        *,
        json: bool = False,
        after_seq: int | None = None,
        upstream_format: bool = False,
    ):
        self.boot_time_ns = boot_time_ns
        self._json = json
        self._upstream = upstream_format
        self._overrun = False
        self.last_seq = after_seq
        self.seen_seq: int | None = None
        self.lost = 0  # records counted as lost so far

    def overrun(self) -> None:
        """The device said records were overwritten before they could be read."""
        self._overrun = True

    def decode(self, raw: bytes) -> list[str]:
        """The output lines for one raw record (none when it was already written).

        A malformed record raises :class:`KmsgParseError`; nothing changes then.
        """
        record = parse_record(raw, self.boot_time_ns)
        if self.seen_seq is None or record.seq > self.seen_seq:
            self.seen_seq = record.seq
        last = self.last_seq
        if last is not None and record.seq <= last:
            return []
        lines = []
        lost = records_lost(last, record.seq)
        if lost:
            self.lost += lost
            lines.append(self._lost_line(lost, record.seq - lost))
        elif self._overrun and last is None:
            lines.append(self._lost_line(None, None))
        self._overrun = False
        if self._json:
            lines.append(render_json(record))
        else:
            lines.append(render_text(record, upstream=self._upstream))
        self.last_seq = record.seq
        return lines

    def _lost_line(self, count: int | None, first: int | None) -> str:
        return render_lost_json(count, first) if self._json else render_lost_text(count)


# ------------------------------------------------------------------ byte streams


class RecordSplitter:
    """Records from a byte stream (a file or FIFO in place of the device).

    A record is a line that does not start with a space plus the dictionary
    lines (starting with a space) after it.  ``feed`` returns the records
    known to be complete: those followed by the start of another record.
    ``flush`` also returns the last complete line's record, when the writer
    is idle or gone.  Held bytes are bounded: a record longer than
    ``max_record`` is returned cut there (it will not parse if its header was
    lost; that is reported, not fatal).
    """

    __slots__ = ("_buf", "_max", "_record")

    def __init__(self, max_record: int = READ_SIZE) -> None:
        self._max = max_record
        self._record = b""  # complete lines of the record being collected
        self._buf = b""  # a partial line

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        data = self._buf + chunk
        last = data.rfind(b"\n")
        if last < 0:
            self._buf = data
        else:
            self._buf = data[last + 1 :]
            for part in data[:last].split(b"\n"):
                line = part + b"\n"
                if self._record and not line.startswith(b" "):
                    out.append(self._record)
                    self._record = b""
                self._record += line
                if len(self._record) > self._max:
                    out.append(self._record[: self._max])
                    self._record = b""
        if self._record and self._buf and not self._buf.startswith(b" "):
            out.append(self._record)  # the next record has begun: this one is whole
            self._record = b""
        if len(self._buf) > self._max:
            if self._record:
                out.append(self._record)
                self._record = b""
            out.append(self._buf[: self._max])
            self._buf = b""
        return out

    def flush(self) -> list[bytes]:
        """The record collected so far, if its last line is complete."""
        if self._record and not self._buf.startswith(b" "):
            record, self._record = self._record, b""
            return [record]
        return []

    def close(self) -> list[bytes]:
        """Everything held, at the end of the stream."""
        out = [r for r in (self._record, self._buf) if r]
        self._record = self._buf = b""
        return out
