"""File naming and rotation for logwrite (docs/logwrite.md). PURE: no I/O.

* :func:`safe_log_name` turns any source name into a file stem that is a
  direct child of the log directory and never hidden (no leading ``.``);
  distinct names never share a file.
* :func:`rotation_plan` lists the renames of one rotation, as upstream does
  them: ``x.log`` -> ``x.log.0`` (newest) ... ``x.log.(N-1)`` (oldest).
* :func:`plan_segments` decides rotation per entry for a batch of lines, so
  batched writes rotate exactly where writing one entry at a time would.
* :func:`choose_victim` picks the file to delete when the disk is full.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LOG_SUFFIX = ".log"
MAX_STEM_BYTES = 200  # of a file stem, hash suffix included
HASH_MARK = "%~"  # starts the hash suffix; '%' never survives in an unchanged name
HASH_HEX = 12  # hex digits of the hash suffix (48 bits)


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


# --------------------------------------------------------------------------- rotation


@dataclass(frozen=True, slots=True)
class Rename:
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class Remove:
    path: str


Step = Rename | Remove


def rotation_plan(stem: str, max_files: int) -> list[Step]:
    """The steps of one rotation of ``stem.log``, in the order to run them.

    With ``max_files`` N >= 1: ``.log.(N-2)`` -> ``.log.(N-1)`` (replacing the
    oldest), ..., ``.log.0`` -> ``.log.1``, ``.log`` -> ``.log.0``.  With N = 0
    the live file is removed (upstream truncates it).  A missing source file
    is not an error for the caller.
    """
    if max_files < 0:
        raise ValueError("max_files must not be negative")
    if max_files == 0:
        return [Remove(log_file_name(stem))]
    steps: list[Step] = [
        Rename(log_file_name(stem, i - 1), log_file_name(stem, i))
        for i in range(max_files - 1, 0, -1)
    ]
    steps.append(Rename(log_file_name(stem), log_file_name(stem, 0)))
    return steps


# --------------------------------------------------------------------------- undo


def undo_plan(
    stem: str, recorded: Mapping[str, int], current: Mapping[str, int]
) -> tuple[list[Step], list[str]]:
    """Steps that put ``stem``'s files back as they were before a batch that was
    not finished (docs/logwrite.md, "A kill between a write and its cursor").

    ``recorded`` and ``current`` map each file name (``stem.log``,
    ``stem.log.K``) to its inode.  A batch only appends and rotates: a file
    whose inode was not recorded was made by it (removed); a recorded file
    found under another name was moved up by rotations (moved back, the
    lowest names first, so that each name is free when its turn comes).
    Also returns the recorded names that are gone (a rotation dropped the
    oldest): those cannot come back.
    """
    known = set(recorded.values())
    where = {ino: name for name, ino in current.items()}
    steps: list[Step] = [Remove(name) for name, ino in current.items() if ino not in known]
    moves = [
        Rename(where[ino], name)
        for name, ino in recorded.items()
        if ino in where and where[ino] != name
    ]
    moves.sort(key=lambda move: _index(stem, move.dst))
    steps += moves
    lost = [name for name, ino in recorded.items() if ino not in where]
    return steps, lost


def _index(stem: str, name: str) -> int:
    """-1 for ``stem.log``, K for ``stem.log.K``."""
    return -1 if name == log_file_name(stem) else int(name.rsplit(".", 1)[1])


def needs_rotation(size: int, limit: int) -> bool:
    """Upstream's rule, checked after each entry: rotate once past the limit."""
    return size > limit


@dataclass(frozen=True, slots=True)
class Segment:
    """Entries ``[start, stop)`` written together; rotate after them if asked."""

    start: int
    stop: int
    rotate_after: bool


def plan_segments(size: int, lengths: Sequence[int], limit: int) -> list[Segment]:
    """Split a batch of entries (byte lengths) for a file now ``size`` bytes long
    into runs written at once, rotating where one-by-one writing would."""
    segments = []
    start = 0
    for i, length in enumerate(lengths):
        size += length
        if needs_rotation(size, limit):
            segments.append(Segment(start, i + 1, True))
            start, size = i + 1, 0
    if start < len(lengths):
        segments.append(Segment(start, len(lengths), False))
    return segments


def choose_victim(sizes: Mapping[str, int]) -> str | None:
    """On a full disk: the oldest rotated file of the largest log (by all its
    files' bytes) that has any; ``sizes`` maps file names in DIR to bytes."""
    totals: dict[str, int] = {}
    oldest: dict[str, tuple[int, str]] = {}
    for name, size in sizes.items():
        parsed = parse_log_file_name(name)
        if parsed is None:
            continue
        stem, index = parsed
        totals[stem] = totals.get(stem, 0) + size
        if index is not None and (stem not in oldest or index > oldest[stem][0]):
            oldest[stem] = (index, name)
    if not oldest:
        return None
    largest = max(oldest, key=lambda stem: (totals[stem], stem))
    return oldest[largest][1]
