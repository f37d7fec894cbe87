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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from memlogd.wire.logdir import (
    HASH_HEX,
    HASH_MARK,
    LOG_SUFFIX,
    MAX_STEM_BYTES,
    is_log_stem,
    log_file_name,
    name_hash,
    parse_log_file_name,
    safe_log_name,
)

__all__ = [
    "HASH_HEX",
    "HASH_MARK",
    "LOG_SUFFIX",
    "MAX_STEM_BYTES",
    "Remove",
    "Rename",
    "Segment",
    "Step",
    "choose_victim",
    "is_log_stem",
    "log_file_name",
    "name_hash",
    "needs_rotation",
    "parse_log_file_name",
    "plan_segments",
    "rotation_plan",
    "safe_log_name",
    "undo_plan",
]

# The names (safe_log_name, parse_log_file_name, ...) are shared with logread -D:
# they live in memlogd.wire.logdir and are imported here for logwrite's code.


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
