"""The log directory's names and records, shared by logwrite and ``logread -D``
(docs/logwrite.md, docs/logread.md). PURE: no I/O.

* :func:`safe_log_name` turns any source name into a file stem that is a
  direct child of the log directory and never hidden (no leading ``.``);
  distinct names never share a file.  :func:`log_file_name` and
  :func:`parse_log_file_name` go between stems and file names.
* :func:`source_field` is how a source is written in a persisted line
  ``TIME SOURCE MSG``, and :func:`source_readings` the sources a field may
  have been written from (its inverse: one function each, so that a change of
  the escaping is made in one place for writer and reader).
* ``DIR/instances`` (:data:`INSTANCES_NAME`): one line ``INSTANCE FIRST_TIME``
  per memlogd instance followed, the last :data:`MAX_INSTANCES` kept
  (:func:`encode_instances`, :func:`decode_instances`, :func:`add_instance`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from memlogd.errors import ProtocolError
from memlogd.wire.textescape import CONTROL_ESCAPES, escape_name
from memlogd.wire.timefmt import parse_time

LOG_SUFFIX = ".log"
MAX_STEM_BYTES = 200  # of a file stem, hash suffix included
HASH_MARK = "%~"  # starts the hash suffix; '%' never survives in an unchanged name
HASH_HEX = 12  # hex digits of the hash suffix (48 bits)

INSTANCES_NAME = "instances"  # not a .log file: never rotated, never a source's
MAX_INSTANCES = 100


# --------------------------------------------------------------------------- names


def _unsafe(char: str) -> bool:
    """Characters escaped in a stem: '/', '%' (our escape), control characters
    (NUL, C0, DEL, C1), surrogates, and Unicode line/paragraph separators."""
    return char in "/%" or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


def _escape(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))


def _utf8_cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits in ``limit`` bytes,
    not ending inside a ``%XX`` escape."""
    out = text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")
    pct = out.rfind("%", max(0, len(out) - 2))
    return out[:pct] if pct >= 0 else out


def name_hash(source: str) -> str:
    digest = hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=HASH_HEX // 2)
    return digest.hexdigest()


def safe_log_name(source: str) -> str:
    """A file stem for ``source``: ``DIR/<stem>.log`` is always a direct child of DIR,
    and never a hidden file (it never starts with ``.``).

    A name that is safe as it is stays unchanged (upstream's file names).
    Otherwise unsafe characters are percent-escaped (``/`` -> ``%2F``), the
    names ``""``, ``.`` and ``..`` are escaped whole, a leading ``.`` (which
    ``ls`` would hide) is escaped as ``%2E``, the result is cut to
    :data:`MAX_STEM_BYTES`, and ``%~`` plus a hash of the original name is
    appended.  An unchanged name never contains ``%``; a changed one always
    does, so the two kinds never meet, and changed names differ by their
    escaped text (escaping is reversible) or, when cut, by the hash of the
    whole name.
    """
    if source in ("", ".", ".."):
        escaped = "".join(_escape(c) for c in source)
    else:
        escaped = "".join(_escape(c) if _unsafe(c) else c for c in source)
        if escaped.startswith("."):
            escaped = _escape(".") + escaped[1:]
        elif escaped == source and len(source.encode("utf-8")) <= MAX_STEM_BYTES:
            return source
    suffix = HASH_MARK + name_hash(source)
    return _utf8_cut(escaped, MAX_STEM_BYTES - len(suffix)) + suffix


_ESCAPED_STEM_RE = re.compile(
    r"(?:[^%/]|%[0-9A-F]{2})*" + re.escape(HASH_MARK) + f"[0-9a-f]{{{HASH_HEX}}}", re.DOTALL
)


def is_log_stem(stem: str) -> bool:
    """Whether :func:`safe_log_name` returns ``stem`` for some source name: a
    name found in a file (logwrite's cursor) is used only if it is one that
    logwrite itself would write, so never a path outside DIR (SPEC 19)."""
    if len(stem.encode("utf-8", "surrogatepass")) > MAX_STEM_BYTES:
        return False
    if "%" not in stem:
        return safe_log_name(stem) == stem
    if stem.startswith(".") or _ESCAPED_STEM_RE.fullmatch(stem) is None:
        return False
    return not any(_unsafe(c) for c in stem if c not in "%")


def log_file_name(stem: str, index: int | None = None) -> str:
    """``stem.log`` (the live file) or ``stem.log.INDEX`` (a rotated one)."""
    return stem + LOG_SUFFIX if index is None else f"{stem}{LOG_SUFFIX}.{index}"


_ROTATED_RE = re.compile(r"(.+)\.log\.(0|[1-9][0-9]{0,8})", re.DOTALL)


def parse_log_file_name(name: str) -> tuple[str, int | None] | None:
    """``(stem, index)`` of a file name written by logwrite, else None."""
    m = _ROTATED_RE.fullmatch(name)
    if m is not None:
        return m.group(1), int(m.group(2))
    if name.endswith(LOG_SUFFIX) and len(name) > len(LOG_SUFFIX):
        return name[: -len(LOG_SUFFIX)], None
    return None


_PERCENT_RE = re.compile(r"%([0-9A-F]{2})")


def stem_source(stem: str) -> str | None:
    """The source whose file stem is ``stem``, when the stem alone says it: an
    unchanged name is the source, an escaped one is decoded (and checked
    against its hash).  None for a name that was cut (the hash names the
    source, which only a line of the file can give: :func:`source_readings`).
    A stem logwrite never writes (a ``%`` without a valid hash suffix) is
    taken as the source it spells."""
    if "%" not in stem:
        return stem
    body, mark, digest = stem.rpartition(HASH_MARK)
    if not mark or len(digest) != HASH_HEX or not _is_hex(digest):
        return stem
    raw = bytearray()
    for i, part in enumerate(_PERCENT_RE.split(body)):  # text, hex, text, hex, ...
        if i % 2:
            raw.append(int(part, 16))
        else:
            raw += part.encode("utf-8", "surrogatepass")
    try:
        source = raw.decode("utf-8", "surrogatepass")
    except UnicodeError:
        return None
    if name_hash(source) == digest and safe_log_name(source) == stem:
        return source
    return None  # cut: the whole name is in the file's lines


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


# --------------------------------------------------------------------------- lines


def source_field(source: str) -> str:
    """``source`` as it is written in a persisted line ``TIME SOURCE MSG``: its
    control characters but tab as ``\\xNN``, as logread writes them (SPEC 19),
    so that one entry stays one line and a name cannot drive a terminal.  A
    name that needs escaping has its backslashes written as ``\\x5c`` too, so
    that reading it back is exact (a name without a control character is
    written as it is, as upstream writes it)."""
    escaped = escape_name(source)
    if escaped == source:
        return source
    return escape_name(source.replace("\\", "\\x5c"))


_HEX_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")
_DECODED = {f"{c:02x}" for c in (*CONTROL_ESCAPES, 0x5C)}  # what source_field escapes


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    return chr(int(code, 16)) if code in _DECODED else match.group(0)


def source_readings(field: str) -> list[str]:
    """The sources that :func:`source_field` may have written as ``field`` (the
    field as written first): the field itself, and where it holds an escape of
    a control character or of a backslash, the field decoded (exact, since such
    a name had its backslashes escaped); a ``\\n`` may also be a newline
    (files written before ``\\xNN``).  The file name decides between them."""
    readings = [field]
    decoded = _HEX_ESCAPE.sub(_unescape, field)
    if decoded != field:
        readings.append(decoded)
    if "\\n" in field:
        readings.append(field.replace("\\n", "\n"))
    return readings


# --------------------------------------------------------------------------- instances


@dataclass(frozen=True, slots=True)
class Boot:
    """One memlogd instance followed into the directory, and the time text of
    its first entry written there (as the files write times)."""

    instance: str
    first_time: str

    @property
    def first_ns(self) -> int:
        return parse_time(self.first_time)


def _token(text: str) -> bool:
    return bool(text) and text.isprintable() and " " not in text


def decode_instances(data: bytes) -> tuple[list[Boot], int]:
    """The boots of an ``instances`` file, oldest first, and the number of its
    lines that are not ``INSTANCE FIRST_TIME`` (skipped)."""
    boots: list[Boot] = []
    bad = 0
    for line in data.decode("utf-8", "replace").splitlines():
        instance, _, first = line.partition(" ")
        if not (_token(instance) and _token(first)):
            bad += 1
            continue
        try:
            parse_time(first)
        except ProtocolError:
            bad += 1
            continue
        boots.append(Boot(instance, first))
    return boots, bad


def encode_instances(boots: Sequence[Boot]) -> bytes:
    """The ``instances`` file holding the last :data:`MAX_INSTANCES` of ``boots``."""
    kept = boots[-MAX_INSTANCES:] if boots else []
    return "".join(f"{boot.instance} {boot.first_time}\n" for boot in kept).encode()


def add_instance(boots: Sequence[Boot], instance: str, first_time: str) -> list[Boot] | None:
    """``boots`` with ``instance`` added (the last :data:`MAX_INSTANCES` kept),
    or None when it is there already (a restarted logwrite or worker re-following
    the same instance adds nothing)."""
    if any(boot.instance == instance for boot in boots):
        return None
    if not (_token(instance) and _token(first_time)):
        raise ValueError("an instance and its first time are single printable words")
    return [*boots, Boot(instance, first_time)][-MAX_INSTANCES:]
