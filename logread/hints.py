"""The hint logread adds to ``-- No entries --`` when a ``-s GLOB`` names a
service's stderr but only its stdout (``GLOB.out``) exists (docs/logread.md,
"No entries").  PURE: no I/O.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from memlogd.wire.globs import SourceMatcher

__all__ = ["stdout_hint"]


def stdout_hint(globs: Sequence[str], sources: Iterable[str]) -> str | None:
    """One line (without the program name) for the ``-s`` globs that match none of
    ``sources`` while ``GLOB.out`` matches one; None when there are none."""
    names = list(sources)
    missed = [
        glob
        for glob in dict.fromkeys(globs)
        if not any(map(SourceMatcher([glob]), names))
        and any(map(SourceMatcher([glob + ".out"]), names))
    ]
    if not missed:
        return None
    given = ", ".join("-s " + shlex.quote(glob) for glob in missed)
    found = ", ".join(shlex.quote(glob + ".out") for glob in missed)
    units = " ".join("-u " + shlex.quote(glob) for glob in missed)
    prefixes = " ".join("-s " + shlex.quote(glob + "*") for glob in missed)
    one = len(missed) == 1
    return (
        f"{given} {'matches' if one else 'match'} no source, but {found} "
        f"{'exists' if one else 'exist'} (a service's stdout): "
        f"use {units} for both streams, or {prefixes}"
    )
